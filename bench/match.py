"""Benchmark the interest index against SQLite FTS5 saved searches.

    .venv/bin/python bench/match.py [--sizes 10000,100000,1000000] [--corpus PATH]

Articles come from the Wikinews geovirus corpus (title derived from the
article URL, body = text, tags = the annotated location names). Two
workloads are built at each size:

* mixed: single words, AND pairs, phrases, prefixes, NOT, region-only,
  word + region and field queries (title:, tag:, lang:, source:);
* long tail: a common word (one of the corpus's most frequent) AND a rare
  one. Rare words come from a pool as large as the workload: the corpus's
  words seen in at most two articles plus synthetic names never seen, so
  each rare word has about one subscriber whatever the size, as with the
  names and places real subscribers type. (A fixed pool would make the
  number of *matches* per article grow with the workload, which measures
  the output, not the index.)

For each, it prints the index build time, memory, and per-article cost
(analysis + matching) as p50/p99 and articles per second. The baseline runs
the same mixed workload as FTS5 MATCH queries against a one-row table that
holds the current article: words use FTS5's porter stemmer, and a region
becomes the OR of the region's own names, with no hierarchy, no two-mention
rule and no disambiguation. Running all saved searches per article in FTS5
is slow, so only a sample of queries is timed and the figure extrapolated;
the output says so.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sqlite3
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.matching import Document, Interest, InterestIndex, analyze, load_gazetteer
from alerts.regions import Gazetteer
from alerts.text.analysis import tokenize

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/articles/geovirus.xml"
DEFAULT_SIZES = "10000,100000,1000000"
SEED = 7
FTS_SAMPLE_ARTICLES = 20
FTS_SAMPLE_QUERIES = 2000
COMMON_WORDS = 150
RARE_DOC_FREQUENCY = 2
SOURCE = "Wikinews"


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    title: str
    body: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Spec:
    """One saved search, in our syntax and as the FTS5 approximation."""

    query: str | None
    regions: tuple[str, ...]
    fts: str


def load_corpus(path: Path) -> list[Article]:
    root = ET.parse(path).getroot()  # our own data file, not untrusted input
    articles: list[Article] = []
    for number, node in enumerate(root.iter("article")):
        url = node.findtext("source") or ""
        title = unquote(url.rsplit("/", 1)[-1]).replace("_", " ")
        tags = tuple(dict.fromkeys(n.text or "" for n in node.iter("name")))
        articles.append(Article(str(number), title, node.findtext("text") or "", tags))
    return articles


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Workloads:
    """Random interests drawn from the corpus vocabulary and detected regions."""

    def __init__(self, articles: list[Article], docs: list[Document], gz: Gazetteer) -> None:
        self.rng = random.Random(SEED)
        df: Counter[str] = Counter()
        bigrams: set[tuple[str, str]] = set()
        for article in articles:
            words = [w for w in tokenize(article.title + " " + article.body) if w.isalpha()]
            df.update(set(words))
            bigrams.update(pairwise(words))
        self.words = sorted(w for w in df if len(w) > 2)
        self.common = [w for w, _ in df.most_common(COMMON_WORDS)]
        self.rare = [w for w in self.words if df[w] <= RARE_DOC_FREQUENCY]
        self.bigrams = sorted(bigrams)
        self.tags = sorted({t for a in articles for t in a.tags})
        region_counts: Counter[str] = Counter(r for d in docs for r in d.region_ids)
        self.regions = [r for r, _ in region_counts.most_common(200)]
        self.region_names = {r: gz.regions[r].name for r in self.regions}

    def _word(self) -> str:
        return self.rng.choice(self.words)

    def _region(self) -> str:
        return self.rng.choice(self.regions)

    def _fts_region(self, region: str) -> str:
        return f'"{self.region_names[region]}"'

    def mixed_one(self) -> Spec:
        roll = self.rng.random()
        w, v = self._word(), self._word()
        if roll < 0.25:
            return Spec(w, (), f'"{w}"')
        if roll < 0.45:
            return Spec(f"{w} {v}", (), f'"{w}" AND "{v}"')
        if roll < 0.55:
            a, b = self.rng.choice(self.bigrams)
            return Spec(f'"{a} {b}"', (), f'"{a} {b}"')
        if roll < 0.60:
            prefix = w[: self.rng.randint(3, min(6, len(w)))]
            return Spec(f"{prefix}*", (), f'"{prefix}" *')
        if roll < 0.70:
            return Spec(f"{w} -{v}", (), f'"{w}" NOT "{v}"')
        if roll < 0.80:
            r = self._region()
            return Spec(None, (r,), self._fts_region(r))
        if roll < 0.90:
            r = self._region()
            return Spec(w, (r,), f'"{w}" AND {self._fts_region(r)}')
        field_roll = self.rng.random()
        if field_roll < 0.4:
            return Spec(f"title:{w}", (), f'title : "{w}"')
        if field_roll < 0.7:
            tag = self.rng.choice(self.tags)
            return Spec(f'tag:"{tag}"', (), f'tags : "{tag}"')
        if field_roll < 0.85:
            return Spec(f"lang:en {w}", (), f'lang : "en" AND "{w}"')
        return Spec(f"source:{SOURCE} {w}", (), f'source : "{SOURCE}" AND "{w}"')

    def long_tail(self, size: int) -> list[Spec]:
        pool = max(size, len(self.rare))
        specs: list[Spec] = []
        for _ in range(size):
            pick = self.rng.randrange(pool)
            rare = self.rare[pick] if pick < len(self.rare) else f"zq{pick:07d}name"
            common = self.rng.choice(self.common)
            specs.append(Spec(f"{common} {rare}", (), f'"{common}" AND "{rare}"'))
        return specs


def term_frequencies(docs: list[Document]) -> dict[str, float]:
    """Share of articles holding each presearch key, as a live system would learn it."""
    counts: Counter[str] = Counter()
    for doc in docs:
        counts.update(doc.keys)
    return {key: count / len(docs) for key, count in counts.items()}


def analyse_all(articles: list[Article], gz: Gazetteer) -> list[Document]:
    return [
        analyze(
            a.id,
            title=a.title,
            body=a.body,
            tags=a.tags,
            source=SOURCE,
            language="en",
            gazetteer=gz,
        )
        for a in articles
    ]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_index(
    label: str,
    specs: list[Spec],
    articles: list[Article],
    gz: Gazetteer,
    frequencies: dict[str, float],
) -> dict[str, float]:
    interests = [Interest(f"i{n}", s.query, s.regions) for n, s in enumerate(specs)]
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    index = InterestIndex(gazetteer=gz, term_frequencies=frequencies)
    index.add_all(interests)
    build = time.perf_counter() - started
    index_mb = rss_mb() - before
    del interests
    costs: list[float] = []
    match_only: list[float] = []
    matched = 0
    for article in articles:  # a warm-up pass fills the stem caches
        index.match_ids(
            analyze(
                article.id,
                title=article.title,
                body=article.body,
                tags=article.tags,
                source=SOURCE,
                language="en",
                gazetteer=gz,
            )
        )
    for article in articles:
        t0 = time.perf_counter()
        doc = analyze(
            article.id,
            title=article.title,
            body=article.body,
            tags=article.tags,
            source=SOURCE,
            language="en",
            gazetteer=gz,
        )
        t1 = time.perf_counter()
        matched += len(index.match_ids(doc))
        t2 = time.perf_counter()
        costs.append(t2 - t0)
        match_only.append(t2 - t1)
    result = {
        "interests": len(specs),
        "entries": index.entry_count,
        "build_s": build,
        "index_mb": index_mb,
        "peak_mb": peak_rss_mb(),
        "p50_ms": percentile(costs, 0.5) * 1e3,
        "p99_ms": percentile(costs, 0.99) * 1e3,
        "match_p50_ms": percentile(match_only, 0.5) * 1e3,
        "articles_per_s": len(costs) / sum(costs),
        "matches_per_article": matched / len(articles),
    }
    print(
        f"  {label:<10} {len(specs):>9,} interests  entries {index.entry_count:>9,}  "
        f"build {build:6.2f} s  index ~{index_mb:7.1f} MB  peak RSS {result['peak_mb']:7.1f} MB"
        f"\n  {'':<10} per article p50 {result['p50_ms']:6.3f} ms  p99 {result['p99_ms']:6.3f} ms"
        f"  (match only p50 {result['match_p50_ms']:6.3f} ms)  "
        f"{result['articles_per_s']:8.1f} articles/s  "
        f"{result['matches_per_article']:.1f} matches/article"
    )
    del index
    gc.collect()
    return result


def run_fts(specs: list[Spec], articles: list[Article]) -> float:
    """Seconds per article to run all ``specs`` as FTS5 MATCH queries (extrapolated)."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE a USING fts5(title, body, tags, lang, source, "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    rng = random.Random(SEED)
    sample = rng.sample(specs, min(FTS_SAMPLE_QUERIES, len(specs)))
    chosen = rng.sample(articles, min(FTS_SAMPLE_ARTICLES, len(articles)))
    elapsed = 0.0
    for article in chosen:
        started = time.perf_counter()
        conn.execute("DELETE FROM a")
        conn.execute(
            "INSERT INTO a VALUES (?, ?, ?, ?, ?)",
            (article.title, article.body, " ; ".join(article.tags), "en", SOURCE),
        )
        for spec in sample:
            conn.execute("SELECT 1 FROM a WHERE a MATCH ?", (spec.fts,)).fetchone()
        elapsed += time.perf_counter() - started
    per_article_sample = elapsed / len(chosen)
    return per_article_sample * len(specs) / len(sample)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--skip-fts", action="store_true", help="skip the FTS5 baseline")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    started = time.perf_counter()
    gz = load_gazetteer()
    print(f"gazetteer: {len(gz.regions)} regions loaded in {time.perf_counter() - started:.3f} s")
    articles = load_corpus(args.corpus)
    docs = analyse_all(articles, gz)
    frequencies = term_frequencies(docs)
    workloads = Workloads(articles, docs, gz)
    print(
        f"corpus: {len(articles)} articles from {args.corpus}; vocabulary "
        f"{len(workloads.words)} words, {len(workloads.rare)} of them in <= "
        f"{RARE_DOC_FREQUENCY} articles"
    )

    for size in sizes:
        print(f"\n== {size:,} interests")
        mixed = [workloads.mixed_one() for _ in range(size)]
        ours = run_index("mixed", mixed, articles, gz, frequencies)
        if not args.skip_fts:
            fts_seconds = run_fts(mixed, articles)
            ours_seconds = 1 / ours["articles_per_s"]
            print(
                f"  FTS5 saved searches: {fts_seconds * 1e3:10.1f} ms per article "
                f"({1 / fts_seconds:8.2f} articles/s; timed {FTS_SAMPLE_QUERIES} queries on "
                f"{FTS_SAMPLE_ARTICLES} articles, extrapolated to {size:,})"
                f"\n  speed-up of the index over FTS5: {fts_seconds / ours_seconds:8.1f}x"
            )
        del mixed
        tail = workloads.long_tail(size)
        run_index("long tail", tail, articles, gz, frequencies)
        del tail
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
