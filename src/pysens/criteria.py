"""Filter criteria in the [MS-COMEV] 2.2.1 grammar, compiled once into a predicate. Pure.

::

    QUERY      = "ALL" / OREXPR
    OREXPR     = ANDEXPR *( ("OR" / "|") ANDEXPR )
    ANDEXPR    = UNARY *( ("AND" / "&") UNARY )
    UNARY      = ("NOT" / "!" / "~") UNARY / COMPARISON
    COMPARISON = COLUMN CMPOP CONSTANT / "(" OREXPR ")"
    CMPOP      = "=" / "==" / "!=" / "~=" / "<>"
    CONSTANT   = 'string' / "string" / {GUID} / INTEGER / TRUE / FALSE / NULL

Keywords and column names are case-insensitive. Values compare exactly, except user and domain
names, which compare case-insensitively (as Windows account names do). The text is parsed by a
recursive-descent parser into closures; it is never evaluated as Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .events import SensEvent, format_time

__all__ = ["COLUMNS", "Criteria", "CriteriaError", "compile_criteria"]

Predicate = Callable[[SensEvent], bool]


class CriteriaError(ValueError):
    """A filter string that cannot be compiled.

    ``code`` is the COM+ error: ``EVENT_E_QUERYSYNTAX`` (the text does not parse) or
    ``EVENT_E_QUERYFIELD`` (an unknown column); ``position`` is the 0-based character offset.
    """

    def __init__(self, message: str, position: int, code: str = "EVENT_E_QUERYSYNTAX") -> None:
        super().__init__(message)
        self.position = position
        self.code = code


#: Column name (lower case) -> SensEvent attribute. The SENS parameter names come first.
COLUMNS: Mapping[str, str] = {
    "bstrusername": "user_name",
    "dwsessionid": "session_id",
    "bstrconnection": "connection",
    "ultype": "connection_type",
    "bstrdestination": "destination",
    "dwbatterylifepercent": "battery_percent",
    # SENS's publisher properties for filtering ISensNetwork subscriptions by connection type.
    "ulconnectionmadetype": "connection_type",
    "ulconnectionmadetypenoqoc": "connection_type",
    "ulconnectionlosttype": "connection_type",
    **{name: name for name in (
        "id", "seq", "time", "observed", "host", "source", "method", "classes", "user_name",
        "domain", "session_id", "session_name", "session_type", "tty", "seat", "remote",
        "client_name", "client_address", "logon_id", "reason", "synthesized", "connection",
        "connection_type", "destination", "battery_percent",
    )},
}
_FOLDED = frozenset({"user_name", "domain"})
#: Columns holding numbers: an integer constant (or its digits quoted) compares as a number.
_NUMERIC = frozenset({"seq", "connection_type", "battery_percent"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op>==|!=|~=|<>|=)
  | (?P<sym>[&|!~()])
  | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<guid>\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\})
  | (?P<int>-?[0-9]+(?![A-Za-z0-9_]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "all", "true", "false", "null"}
#: How deeply NOT and parentheses may nest: far beyond any real filter, well within Python's
#: recursion limit for parsing here and for evaluating wherever the daemon calls the filter.
MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # op, sym, str, guid, int, word, end
    text: str
    pos: int


def _lex(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "'\"":
                raise CriteriaError(
                    f"syntax error at position {pos}: the string starting here is not closed", pos)
            word = re.match(r"[^\s()&|!~=<>'\"]+", text[pos:])
            what = word.group() if word and len(word.group()) > 1 else ch
            raise CriteriaError(f"syntax error at position {pos}: unexpected {what[:40]!r}", pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


_MISSING = object()


class _Guid(str):
    """A {GUID} constant, held lower case without braces; GUIDs compare case-insensitively."""

    __slots__ = ()


def _guid_text(v: Any) -> Any:
    return v.strip("{}").lower() if isinstance(v, str) else v


@dataclass(frozen=True, slots=True)
class Criteria:
    """A compiled filter. ``matches(event)`` says whether an event passes it.

    ``equalities`` holds the comparisons every matching event must satisfy (the top-level
    ``AND`` of ``column = constant``), normalised as the event system indexes them: user and
    domain names case-folded, integers as text for text columns.
    """

    text: str
    matches: Predicate = field(repr=False, compare=False)
    equalities: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __call__(self, event: SensEvent) -> bool:
        """Same as :meth:`matches`."""
        return self.matches(event)


def _true(_: SensEvent) -> bool:
    return True


Eqs = dict[str, Any]


class _Parser:
    """Recursive descent; each rule returns its predicate and the equalities it implies."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: _Tok, expected: str) -> CriteriaError:
        got = "the end" if tok.kind == "end" else repr(tok.text)
        return CriteriaError(
            f"syntax error at position {tok.pos}: expected {expected}, found {got}", tok.pos)

    def is_word(self, tok: _Tok, *words: str) -> bool:
        return tok.kind == "word" and tok.text.lower() in words

    def query(self) -> tuple[Predicate, Eqs]:
        first = self.peek()
        if self.is_word(first, "all") and self.toks[self.i + 1].kind == "end":
            self.i += 1
            return _true, {}
        if first.kind == "end":
            raise self.fail(first, "a comparison or ALL")
        result = self.orexpr()
        end = self.peek()
        if end.kind != "end":
            raise self.fail(end, "AND, OR or the end")
        return result

    def orexpr(self) -> tuple[Predicate, Eqs]:
        first = self.andexpr()
        parts = [first[0]]
        while (t := self.peek()).text == "|" or self.is_word(t, "or"):
            self.take()
            parts.append(self.andexpr()[0])
        if len(parts) == 1:
            return first
        ps = tuple(parts)
        return (lambda e: any(p(e) for p in ps)), {}

    def andexpr(self) -> tuple[Predicate, Eqs]:
        pred, eqs = self.unary()
        parts = [pred]
        eqs = dict(eqs)
        while (t := self.peek()).text == "&" or self.is_word(t, "and"):
            self.take()
            p, e = self.unary()
            parts.append(p)
            eqs.update(e)
        if len(parts) == 1:
            return pred, eqs
        if len(parts) == 2:
            a, b = parts
            return (lambda e: a(e) and b(e)), eqs
        ps = tuple(parts)
        return (lambda e: all(p(e) for p in ps)), eqs

    def deeper(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CriteriaError(
                f"syntax error at position {tok.pos}: more than {MAX_DEPTH} levels of NOT and "
                "parentheses", tok.pos)

    def unary(self) -> tuple[Predicate, Eqs]:
        t = self.peek()
        if t.text in ("!", "~") or self.is_word(t, "not"):
            self.take()
            self.deeper(t)
            inner = self.unary()[0]
            self.depth -= 1
            return (lambda e: not inner(e)), {}
        return self.comparison()

    def comparison(self) -> tuple[Predicate, Eqs]:
        t = self.take()
        if t.text == "(":
            self.deeper(t)
            inner = self.orexpr()
            close = self.take()
            if close.text != ")":
                raise self.fail(close, "')'")
            self.depth -= 1
            return inner
        if t.kind != "word" or t.text.lower() in _KEYWORDS:
            raise self.fail(t, "a column name or '('")
        column = COLUMNS.get(t.text.lower())
        if column is None:
            raise CriteriaError(
                f"unknown column {t.text!r} at position {t.pos}; columns are bstrUserName, "
                f"dwSessionId and the event fields ({', '.join(sorted(set(COLUMNS.values())))})",
                t.pos, "EVENT_E_QUERYFIELD")
        op = self.take()
        if op.kind != "op":
            raise self.fail(op, f"a comparison operator (=, ==, !=, ~=, <>) after {t.text!r}")
        value = self.constant(self.take(), op)
        equal = op.text in ("=", "==")
        eqs: Eqs = {}
        if equal and value is not None and not isinstance(value, (bool, _Guid)):
            eqs[column] = _index_value(column, value)
        return _compare(column, value, equal), eqs

    def constant(self, tok: _Tok, op: _Tok) -> Any:
        if tok.kind == "str":
            quote = tok.text[0]
            return tok.text[1:-1].replace(quote * 2, quote)
        if tok.kind == "guid":
            return _Guid(tok.text[1:-1].lower())
        if tok.kind == "int":
            return int(tok.text)
        if self.is_word(tok, "true"):
            return True
        if self.is_word(tok, "false"):
            return False
        if self.is_word(tok, "null"):
            return None
        raise self.fail(tok, f"a constant after {op.text!r} ('text', \"text\", {{GUID}}, an "
                        "integer, TRUE, FALSE or NULL)")


def _index_value(column: str, value: Any) -> Any:
    if column in _FOLDED and isinstance(value, str):
        return value.casefold()
    if column == "method" and value == "StartShell":
        return "PostShell"  # one occurrence, two names (docs/events.md); values otherwise exact
    if column in _NUMERIC and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if column not in _NUMERIC and isinstance(value, int):
        return str(value)
    return value


def _normal(column: str, v: Any) -> Any:
    """An event's value as comparisons see it."""
    if isinstance(v, datetime):
        return format_time(v)
    if column in _FOLDED and isinstance(v, str):
        return v.casefold()
    return v


def _compare(column: str, value: Any, equal: bool) -> Predicate:
    """``column = value`` (or ``!=`` when not ``equal``) as a closure."""
    if value is None:
        if column == "classes":
            return lambda e: (len(e.classes) == 0) == equal
        return lambda e: (getattr(e, column) is None) == equal
    if column == "classes":
        wanted = str(value)
        return lambda e: any(str(c) == wanted for c in e.classes) == equal
    if isinstance(value, _Guid):
        # an event may hold a GUID in either case, with or without braces
        return lambda e: (_guid_text(getattr(e, column, _MISSING)) == value) == equal
    if column == "method" and isinstance(value, str):
        value = _index_value("method", value)
    if isinstance(value, bool):
        return lambda e: (getattr(e, column) is value) == equal
    if column in _NUMERIC and isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # a number column: '5' and 5 name the same value
    if isinstance(value, int):
        if column in _NUMERIC:
            number = value
            return lambda e: (getattr(e, column) == number) == equal
        value = str(value)
    target = value.casefold() if column in _FOLDED else value
    if column in ("user_name", "session_id", "host", "method", "domain"):
        # the hot columns: no generic normalisation on the way
        if column in _FOLDED:
            def folded(e: SensEvent) -> bool:
                v = getattr(e, column)
                return (v is not None and v.casefold() == target) == equal
            return folded
        return lambda e: (getattr(e, column) == target) == equal
    return lambda e: (_normal(column, getattr(e, column, _MISSING)) == target) == equal


def compile_criteria(text: str) -> Criteria:
    """Compile ``text`` once; raises :class:`CriteriaError` with the position on bad input."""
    if not isinstance(text, str):
        raise CriteriaError("criteria must be text", 0)
    try:
        pred, eqs = _Parser(text).query()
    except RecursionError:
        raise CriteriaError("syntax error at position 0: the criteria nest too deeply", 0) from None
    return Criteria(text, pred, eqs)
