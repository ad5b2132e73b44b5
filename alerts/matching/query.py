"""The interest query language: lexer, recursive-descent parser and AST.

Grammar (precedence NOT > AND > OR; AND is implicit between terms)::

    query   := or EOF
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*
    unary   := ("NOT" | "-") unary | primary
    primary := "(" or ")" | FIELD ":" value | term
    term    := WORD | WORD* | "PHRASE"

Operators are recognised only in upper case, so ``or`` is an ordinary word.
Phrase words are matched on their folded surface form (not stemmed): a phrase
asks for exactly those words. Nesting (parentheses and negation) is limited
to ``max_depth`` levels, counted over the tokens before the parser recurses,
so no query can exhaust Python's recursion limit here or in the walks of the
tree that follow (evaluation, canonical text, presearch clauses). The parser
never builds a regular expression from user input; terms are plain folded
strings compared by equality.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

from alerts.errors import InvalidInputError
from alerts.text.analysis import fold, normalise_language, tokenize

DEFAULT_MAX_LENGTH = 500
DEFAULT_MAX_TERMS = 32
#: Levels of parentheses and negation a query may nest. Readers' queries rarely
#: need more than three; the limit keeps every recursive walk of the tree short.
DEFAULT_MAX_DEPTH = 16
#: The highest limit that may be configured. The parser spends four Python
#: frames per parenthesis, evaluation two per tree level: at this ceiling a walk
#: stays a few hundred frames deep, well inside the interpreter's limit of 1000
#: even under a web server's or a worker's own stack.
MAX_DEPTH_CEILING = 64
#: Shortest prefix accepted before ``*``; shorter ones match most of the vocabulary.
MIN_PREFIX_LENGTH = 3

TEXT_FIELDS = ("title",)
VALUE_FIELDS = ("tag", "source", "lang", "region")
KNOWN_FIELDS = TEXT_FIELDS + VALUE_FIELDS

TextField = Literal["", "title"]


class QueryError(InvalidInputError):
    """A query that cannot be accepted, with the character offset of the problem."""

    def __init__(self, message: str, position: int, query: str) -> None:
        self.message = message
        self.position = position
        self.query = query
        super().__init__(f"{message} at position {position}")

    def caret(self) -> str:
        """Two lines: the query and a ``^`` under the offending character."""
        return f"{self.query}\n{' ' * self.position}^"

    def __str__(self) -> str:
        return f"{self.message} at position {self.position}\n{self.caret()}"


# --- AST ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    """A bare word: matched by stem in the article's language."""

    text: str
    field: TextField = ""
    pos: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Phrase:
    """Consecutive words, matched on folded surface forms."""

    words: tuple[str, ...]
    field: TextField = ""
    pos: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Prefix:
    """``annex*``: any folded surface token starting with ``text``."""

    text: str
    field: TextField = ""
    pos: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class FieldValue:
    """``tag:``, ``source:``, ``lang:`` or ``region:`` with its folded value."""

    name: str
    value: str
    pos: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    pos: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    pos: int = dc_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    pos: int = dc_field(default=0, compare=False)


Leaf = Word | Phrase | Prefix | FieldValue
Node = Word | Phrase | Prefix | FieldValue | And | Or | Not


def _quote(words: tuple[str, ...] | str) -> str:
    text = words if isinstance(words, str) else " ".join(words)
    return f'"{text}"'


def to_text(node: Node) -> str:
    """Canonical text of ``node``: equal for queries that mean the same thing.

    AND/OR children are sorted, so ``a b`` and ``b a`` share an index entry.
    """
    if isinstance(node, Word):
        return f"{node.field}:{node.text}" if node.field else node.text
    if isinstance(node, Phrase):
        body = _quote(node.words)
        return f"{node.field}:{body}" if node.field else body
    if isinstance(node, Prefix):
        body = f"{node.text}*"
        return f"{node.field}:{body}" if node.field else body
    if isinstance(node, FieldValue):
        return f"{node.name}:{_quote(node.value)}"
    if isinstance(node, Not):
        return f"-{to_text(node.child)}"
    joiner = " " if isinstance(node, And) else " OR "
    return "(" + joiner.join(sorted(to_text(child) for child in node.children)) + ")"


def leaves(node: Node) -> Iterator[tuple[Leaf, bool]]:
    """Yield each leaf with ``True`` when it sits under an odd number of NOTs."""
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, negated = stack.pop()
        if isinstance(current, Not):
            stack.append((current.child, not negated))
        elif isinstance(current, And | Or):
            stack.extend((child, negated) for child in reversed(current.children))
        else:
            yield current, negated


# --- lexer ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "(" ")" "NOT" "AND" "OR" "WORD" "PHRASE" "FIELD" "EOF"
    text: str
    pos: int


# One pass of a fixed pattern (never built from user input). A "-" directly
# before a term is NOT; inside a word ("de-facto") it is part of the word.
_LEX_RE = re.compile(
    r'(?P<space>\s+)|(?P<paren>[()])|(?P<quote>"[^"]*"?)|(?P<neg>-(?=[^\s)]))|(?P<word>[^\s()"]+)'
)


def _lex(query: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    for match in _LEX_RE.finditer(query):
        kind, text, pos = match.lastgroup, match.group(), match.start()
        if kind == "word":
            tokens.extend(_word_tokens(query, pos, text))
        elif kind == "paren":
            tokens.append(_Tok(text, text, pos))
        elif kind == "quote":
            if len(text) < 2 or not text.endswith('"'):
                raise QueryError("unterminated quote", pos, query)
            tokens.append(_Tok("PHRASE", text[1:-1], pos))
        elif kind == "neg":
            tokens.append(_Tok("NOT", "-", pos))
    tokens.append(_Tok("EOF", "", len(query)))
    return tokens


def _word_tokens(query: str, start: int, text: str) -> list[_Tok]:
    if text in ("AND", "OR", "NOT"):
        return [_Tok(text, text, start)]
    name, colon, rest = text.partition(":")
    if colon and name.isalpha():
        if name.lower() not in KNOWN_FIELDS:
            raise QueryError(f"unknown field {name!r}", start, query)
        out = [_Tok("FIELD", name.lower(), start)]
        if rest:
            out.append(_Tok("WORD", rest, start + len(name) + 1))
        return out
    return [_Tok("WORD", text, start)]


def _check_depth(tokens: list[_Tok], max_depth: int, query: str) -> None:
    """Refuse nesting deeper than ``max_depth`` before anything recurses.

    A level is an open parenthesis or a negation still waiting for its term;
    ``-(-(a))`` is four levels deep, ``(a) (b)`` one. Counting runs over the
    flat token list, so a 10,000-deep query costs one pass and no recursion.
    """
    level = 0  # levels open at this token
    pending_not = 0  # negations read since the last term or parenthesis
    outer: list[int] = []  # the level each open parenthesis returns to when closed
    for tok in tokens:
        if tok.kind == "NOT":
            pending_not += 1
        elif tok.kind == "(":
            outer.append(level)
            level += pending_not + 1
            pending_not = 0
        elif tok.kind == ")":
            if outer:  # a stray ')' is the parser's to report
                level = outer.pop()
            pending_not = 0
        elif tok.kind != "FIELD":  # a field's value follows, still under its negations
            pending_not = 0
        if level + pending_not > max_depth:
            raise QueryError(
                f"nested too deeply (more than {max_depth} levels of parentheses and negations)",
                tok.pos,
                query,
            )


# --- parser ---------------------------------------------------------------


class _Parser:
    def __init__(self, query: str, max_terms: int, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.query = query
        self.tokens = _lex(query)
        _check_depth(self.tokens, max_depth, query)
        self.index = 0
        self.max_terms = max_terms
        self.terms = 0

    def error(self, message: str, pos: int) -> QueryError:
        return QueryError(message, pos, self.query)

    def peek(self) -> _Tok:
        return self.tokens[self.index]

    def take(self) -> _Tok:
        tok = self.tokens[self.index]
        self.index += 1
        return tok

    def parse(self) -> Node | None:
        if self.peek().kind == "EOF":
            raise self.error("empty query", 0)
        node = self.parse_or()
        tok = self.peek()
        if tok.kind == ")":
            raise self.error("unbalanced ')'", tok.pos)
        if tok.kind != "EOF":
            raise self.error(f"unexpected {tok.text!r}", tok.pos)
        return node

    def parse_or(self, field_name: str = "") -> Node | None:
        start = self.peek().pos
        parts = [self.parse_and(field_name)]
        while self.peek().kind == "OR":
            self.take()
            parts.append(self.parse_and(field_name))
        kept = [part for part in parts if part is not None]
        if len(kept) != len(parts):
            # an OR branch with nothing searchable would match everything
            raise self.error("an OR branch has no searchable term", start)
        return kept[0] if len(kept) == 1 else Or(tuple(kept), start)

    def parse_and(self, field_name: str) -> Node | None:
        start = self.peek().pos
        parts = [self.parse_unary(field_name)]
        while self.peek().kind not in ("OR", ")", "EOF"):
            if self.peek().kind == "AND":
                self.take()
            parts.append(self.parse_unary(field_name))
        kept = [part for part in parts if part is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else And(tuple(kept), start)

    def parse_unary(self, field_name: str) -> Node | None:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            child = self.parse_unary(field_name)
            if child is None:
                raise self.error("nothing to negate", tok.pos)
            return Not(child, tok.pos)
        return self.parse_primary(field_name)

    def parse_primary(self, field_name: str) -> Node | None:
        tok = self.take()
        if tok.kind == "(":
            if self.peek().kind == ")":
                raise self.error("empty parentheses", tok.pos)
            node = self.parse_or(field_name)
            if self.peek().kind != ")":
                raise self.error("unbalanced '('", tok.pos)
            self.take()
            return node
        if tok.kind == "FIELD":
            if field_name:
                raise self.error("fields cannot be nested", tok.pos)
            nxt = self.peek()
            if nxt.kind not in ("WORD", "PHRASE", "(") or nxt.pos != tok.pos + len(tok.text) + 1:
                raise self.error(f"field {tok.text}: needs a value right after ':'", tok.pos)
            return self.parse_primary(tok.text)
        if tok.kind == "WORD":
            return self.word(tok, field_name)
        if tok.kind == "PHRASE":
            return self.phrase(tok, field_name)
        if tok.kind == ")":
            raise self.error("unbalanced ')'", tok.pos)
        if tok.kind == "EOF":
            raise self.error("expected a term", tok.pos)
        raise self.error(f"expected a term before {tok.text!r}", tok.pos)

    def count_term(self, pos: int) -> None:
        self.terms += 1
        if self.terms > self.max_terms:
            raise self.error(f"too many terms (limit {self.max_terms})", pos)

    def word(self, tok: _Tok, field_name: str) -> Node | None:
        text = tok.text
        if field_name in VALUE_FIELDS:
            return self.field_value(field_name, text, tok.pos)
        star = text.find("*")
        if star >= 0:
            if star != len(text) - 1:
                raise self.error("'*' is only allowed at the end of a word", tok.pos + star)
            parts = tokenize(text[:-1])
            if len(parts) != 1:
                raise self.error("a prefix must be one word", tok.pos)
            if len(parts[0]) < MIN_PREFIX_LENGTH:
                raise self.error(f"a prefix needs at least {MIN_PREFIX_LENGTH} characters", tok.pos)
            self.count_term(tok.pos)
            return Prefix(parts[0], _text_field(field_name), tok.pos)
        parts = tokenize(text)
        if not parts:
            return None
        self.count_term(tok.pos)
        if len(parts) == 1:
            return Word(sys.intern(parts[0]), _text_field(field_name), tok.pos)
        # "de-facto" or "U.S." behave as the phrase of their parts
        return Phrase(tuple(parts), _text_field(field_name), tok.pos)

    def phrase(self, tok: _Tok, field_name: str) -> Node | None:
        if field_name in VALUE_FIELDS:
            return self.field_value(field_name, tok.text, tok.pos)
        parts = tokenize(tok.text)
        if not parts:
            return None
        self.count_term(tok.pos)
        if len(parts) == 1:
            return Phrase((parts[0],), _text_field(field_name), tok.pos)
        return Phrase(tuple(parts), _text_field(field_name), tok.pos)

    def field_value(self, name: str, raw: str, pos: int) -> Node:
        if name == "lang":
            language = normalise_language(raw)
            if language is None:
                raise self.error(f"field lang: {raw!r} is not a language code such as en", pos)
            value = language
        else:
            value = " ".join(tokenize(raw))
        if not value:
            raise self.error(f"field {name}: has an empty value", pos)
        self.count_term(pos)
        return FieldValue(name, value, pos)


def _text_field(name: str) -> TextField:
    return "title" if name == "title" else ""


def _check_positive(node: Node, query: str) -> None:
    """Refuse queries that could match an article containing none of their terms."""
    if not _positive(node):
        raise QueryError(
            "the query needs at least one term that is not negated", _negative_pos(node), query
        )


def _positive(node: Node) -> bool:
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_positive(child) for child in node.children)
    if isinstance(node, Or):
        return all(_positive(child) for child in node.children)
    return True


def _negative_pos(node: Node) -> int:
    if isinstance(node, Or):
        for child in node.children:
            if not _positive(child):
                return _negative_pos(child)
    return node.pos


def _parse_simple(text: str, max_terms: int) -> Node | None:
    """Fast path for the commonest queries: plain ASCII words joined by spaces.

    Builds exactly what the full parser would (a test holds them equal) at a
    fraction of the cost, which matters when loading a million interests.
    Returns ``None`` for anything else.
    """
    if not text.isascii():
        return None
    words = text.split()
    if len(words) > max_terms or not all(w.isalnum() for w in words):
        return None
    if any(w in ("AND", "OR", "NOT") for w in words):
        return None
    nodes: list[Node] = []
    pos = 0
    for raw in words:
        pos = text.index(raw, pos)
        nodes.append(Word(sys.intern(raw.lower()), "", pos))
        pos += len(raw)
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes), nodes[0].pos)


def parse_query(
    text: str,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_terms: int = DEFAULT_MAX_TERMS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Node:
    """Parse ``text`` into an AST or raise :class:`QueryError` saying where it fails."""
    if not 1 <= max_depth <= MAX_DEPTH_CEILING:
        # a programming or settings error, not a reader's: the ceiling is what
        # keeps the recursive walks of the tree safe
        raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_CEILING}")
    if len(text) > max_length:
        raise QueryError(f"query longer than {max_length} characters", max_length, text)
    if not text.strip():
        raise QueryError("empty query", 0, text)
    simple = _parse_simple(text, max_terms)
    if simple is not None:
        return simple
    node = _Parser(text, max_terms, max_depth).parse()
    if node is None:
        raise QueryError("the query has no searchable term", 0, text)
    _check_positive(node, text)
    return node


__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_DEPTH_CEILING",
    "And",
    "FieldValue",
    "Leaf",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "QueryError",
    "Word",
    "fold",
    "leaves",
    "map_field_values",
    "parse_query",
    "to_text",
]


def map_field_values(node: Node, name: str, convert: Callable[[FieldValue], str]) -> Node:
    """Copy of ``node`` with each ``name:`` value replaced by ``convert(leaf)``.

    Used to turn ``region:`` names into gazetteer ids once, at index time.
    """
    if isinstance(node, FieldValue):
        return FieldValue(node.name, convert(node), node.pos) if node.name == name else node
    if isinstance(node, Not):
        return Not(map_field_values(node.child, name, convert), node.pos)
    if isinstance(node, And):
        return And(tuple(map_field_values(c, name, convert) for c in node.children), node.pos)
    if isinstance(node, Or):
        return Or(tuple(map_field_values(c, name, convert) for c in node.children), node.pos)
    return node
