"""Text analysis shared by queries, documents and the gazetteer.

Everything that compares words goes through the same three steps so that a
query term and an article token meet on equal ground:

1. ``fold``: NFKC, casefold, strip diacritics (keeping Cyrillic ``й``, folding
   ``ё`` to ``е``), so "Südossetien" and "sudossetien" are one word;
2. ``tokenize``: split folded text into word tokens, dropping possessive
   ``'s`` and splitting hyphenated words into adjacent parts;
3. ``stem``: Snowball stemming in the article's language (PyStemmer).
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from functools import cache

import ftfy
import Stemmer

#: Languages whose inflections are folded by stemming. Every query word is
#: keyed once per distinct stem over these languages, so each entry costs
#: index memory; other languages fall back to a script default (see below).
STEMMED_LANGUAGES: dict[str, str] = {"en": "english", "de": "german", "ru": "russian"}

#: Stemmer used for a token whose script the article language cannot stem
#: (a Cyrillic name in an English article, a Latin name in a Russian one)
#: and for articles in languages outside ``STEMMED_LANGUAGES``.
SCRIPT_DEFAULT_STEMMER = {"latin": "en", "cyrillic": "ru"}

LANGUAGE_SCRIPT = {"en": "latin", "de": "latin", "ru": "cyrillic"}

#: Zero-width and apostrophe-like characters normalised before tokenising.
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "‘": "'", "`": "'", "´": "'"})
# Cyrillic й is и + combining breve after NFD; protect it with a private-use
# code point so diacritic stripping does not turn it into и.
_SHORT_I = "й"
_SHORT_I_GUARD = "\ue000"
_COMBINING_MARKS = {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp))}
# A primary subtag of two letters, then any subtags ("en", "pt-BR", "de_DE").
_LANGUAGE_TAG = re.compile(r"^\s*([A-Za-z]{2})(?:[-_][A-Za-z0-9]+)*\s*$")
_TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_POSSESSIVE_SUFFIX = "'s"
_CYRILLIC_FIRST, _CYRILLIC_LAST = 0x0400, 0x052F
_LATIN_LAST = 0x0250  # end of Latin Extended-B


#: A folded word and whether its original form started with a capital (or a
#: caseless character). A plain tuple: articles have thousands of tokens and a
#: NamedTuple's constructor costs a Python call each.
Token = tuple[str, bool]


#: Sequences that only mojibake produces (UTF-8 read as Latin-1 / cp1252):
#: "Ã©" for "é", "Â£" for "£", "â€™" for "’". Text without them skips ftfy.
_MOJIBAKE_MARKERS = ("Ã", "Â", "â€", "Ð", "Ñ")
_ENTITY_RE = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")


def repair(text: str) -> str:
    """Undo what feeds leave in text before it is analysed: HTML entities
    ("&lt;", "&amp;", "&#3;") and mojibake ("Â£" -> "£", "cafÃ©" -> "café").

    ftfy does the mojibake (it knows the encodings and only changes text that
    decodes cleanly); it runs only when a marker is present, so clean text
    costs a few substring checks.
    """
    if "&" in text and _ENTITY_RE.search(text):
        text = html.unescape(text)
    if not text.isascii() and any(marker in text for marker in _MOJIBAKE_MARKERS):
        text = ftfy.fix_text(text, normalization="NFC")
    return text


def fold(text: str) -> str:
    """Return ``text`` normalised for comparison (case and diacritics removed)."""
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = folded.replace("ё", "е").replace(_SHORT_I, _SHORT_I_GUARD)
    folded = unicodedata.normalize("NFD", folded).translate(_COMBINING_MARKS)
    folded = unicodedata.normalize("NFC", folded).replace(_SHORT_I_GUARD, _SHORT_I)
    return folded.translate(_APOSTROPHES)


def _clean(raw: str) -> str:
    """Drop a possessive ``'s`` and any inner apostrophes from one token."""
    if "'" not in raw:
        return raw
    if raw.endswith(_POSSESSIVE_SUFFIX):
        raw = raw[: -len(_POSSESSIVE_SUFFIX)]
    return raw.replace("'", "")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into folded tokens (hyphenated parts become adjacent tokens)."""
    return [_clean(m.group()) for m in _TOKEN_RE.finditer(fold(text))]


def tokenize_with_case(text: str) -> list[Token]:
    """Like :func:`tokenize` but remembers capitalisation, which place names need.

    Folding can change string length (``ß`` -> ``ss``), so tokens are found in
    the unfolded text first and folded one by one.
    """
    folded = fold(text)
    if len(folded) == len(text):
        # the usual case: folding kept every character in place, so one regex
        # pass over the folded text finds the tokens and the original text
        # tells their case
        return [
            (_clean(m.group()), text[m.start()].isupper() or not text[m.start()].islower())
            for m in _TOKEN_RE.finditer(folded)
        ]
    out: list[Token] = []
    for match in _TOKEN_RE.finditer(text.translate(_APOSTROPHES)):
        raw = match.group()
        capitalised = _capitalised(raw[0])
        out.extend((part, capitalised) for part in tokenize(raw))
    return out


def _capitalised(first: str) -> bool:
    """Upper case, or a script without case (Georgian, digits)."""
    return first.isupper() or not first.islower()


def normalise_language(tag: str | None) -> str | None:
    """ISO 639-1 code from a language tag ("en-GB", "de_DE", "RU"), else None.

    The one reading of a language tag: feeds, imports and the ``lang:`` query
    field all go through it, so "english" is refused alike everywhere.
    """
    if not tag:
        return None
    match = _LANGUAGE_TAG.match(tag)
    return match.group(1).lower() if match else None


def _is_cyrillic(word: str) -> bool:
    return _CYRILLIC_FIRST <= ord(word[0]) <= _CYRILLIC_LAST


def _script(word: str) -> str:
    if _is_cyrillic(word):
        return "cyrillic"
    return "latin" if ord(word[0]) < _LATIN_LAST else "other"


#: PyStemmer's own cache is off: ours is shared across languages, and its
#: eviction made stemming a long tail of unique words four times slower.
_PYSTEMMER_CACHE_SIZE = 0


@cache
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(STEMMED_LANGUAGES[language], _PYSTEMMER_CACHE_SIZE)


def stemming_language(word: str, language: str) -> str:
    """Pick the stemmer for ``word`` in an article written in ``language``.

    Returns ``""`` when the word is not stemmed (Georgian, Armenian, digits).
    """
    return _language_for_script(_script(word) if word else "other", language)


def _language_for_script(script: str, language: str) -> str:
    if script == "other":
        return ""
    if LANGUAGE_SCRIPT.get(language) == script:
        return language
    return SCRIPT_DEFAULT_STEMMER[script]


_STEM_CACHE: dict[tuple[str, str], str] = {}
_STEM_CACHE_LIMIT = 200_000


def stem(word: str, language: str) -> str:
    """Stem one folded ``word`` as it would be stemmed in a ``language`` article."""
    key = (word, language)
    cached = _STEM_CACHE.get(key)
    if cached is not None:
        return cached
    result = _stem_uncached(word, language)
    if len(_STEM_CACHE) >= _STEM_CACHE_LIMIT:
        _STEM_CACHE.clear()
    _STEM_CACHE[key] = result
    return result


def stem_all(words: list[str], language: str) -> list[str]:
    """Stem many words of one article (cached per word)."""
    return [stem(word, language) for word in words]


_VARIANTS_CACHE: dict[str, tuple[str, ...]] = {}
#: Query words repeat across interests, but a long tail of unique names must
#: not pin a cache entry each; past this size the cache starts over.
_VARIANTS_CACHE_LIMIT = 50_000


def _stem_uncached(word: str, language: str) -> str:
    stemmer_language = stemming_language(word, language)
    return _stemmer(stemmer_language).stemWord(word) if stemmer_language else word


# Stemmers a word of each script can meet, over every article language
# (including unsupported ones, which use the script default).
_SCRIPT_STEMMERS = {
    script: tuple(
        sorted(
            {_language_for_script(script, language) for language in [*STEMMED_LANGUAGES, ""]} - {""}
        )
    )
    for script in ("latin", "cyrillic", "other")
}


def stem_variants(word: str) -> tuple[str, ...]:
    """All stems ``word`` can take in any article language, sorted.

    The index keys a query word under each of these, so that an article in
    any language finds the interest through its own stem of the word. The
    strings are interned: a million interests share one copy of each stem.
    """
    cached = _VARIANTS_CACHE.get(word)
    if cached is not None:
        return cached
    stemmers = _SCRIPT_STEMMERS[_script(word)] if word else ()
    variants = {_stemmer(language).stemWord(word) for language in stemmers} or {word}
    result = tuple(sorted(sys.intern(v) for v in variants))
    if len(_VARIANTS_CACHE) >= _VARIANTS_CACHE_LIMIT:
        _VARIANTS_CACHE.clear()
    _VARIANTS_CACHE[word] = result
    return result
