"""How the journal stores an event: one row of columns, every field once (schema version 3).

Pure apart from the two dictionaries it is handed (no SQL here; :mod:`.events` runs it):

* ``id``: a ULID's 128 bits as a 16-byte blob (ids are ULIDs unless a publisher chose its own:
  those stay text, and compare apart from the blobs);
* ``time_us``: microseconds since 1970 (exact, negative before); ``observed``: microseconds
  after ``time``;
* host, method, source, user and domain names, session types, seats, reasons and connection
  names: small integer codes of the ``names`` table (they repeat across events);
* ``flags``: remote, synthesized, history, and two "the same as" bits (a tty equal to the
  session id, a client name equal to the client address) that spare storing a value twice;
* ``raw``: its values as compact JSON, its keys once in the ``shapes`` table. A raw value equal
  to one of the event's columns (a wtmp record's ``ut_user`` is the user name) is not stored
  again: its shape entry names the column instead.

:class:`RowCodec` turns events into rows and back; :func:`id_key` and :func:`id_text` convert
ids. Reading a row back gives an event whose ``to_json()`` is the one appended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from ..events import METHOD_CLASSES, EventError, Method, SensEvent, recent_id_key, ulid_text

__all__ = [
    "COLUMNS",
    "FLAG_HISTORY",
    "Row",
    "RowCodec",
    "id_key",
    "id_text",
    "keys_not_after",
    "time_us",
]

#: The ``events`` table's columns, in the order of a row.
COLUMNS = (
    "seq", "id", "time_us", "observed", "host", "method", "source", "flags", "user_name",
    "domain", "session_id", "session_name", "session_type", "tty", "seat", "client_name",
    "client_address", "logon_id", "reason", "connection", "connection_type", "qoc_flags",
    "qoc_in", "qoc_out", "destination", "battery_percent", "raw_shape", "raw",
)
Row = tuple[Any, ...]

FLAG_REMOTE = 1
FLAG_SYNTHESIZED = 2
#: Imported history: persistent subscriptions are not sent it.
FLAG_HISTORY = 4
FLAG_TTY_IS_SESSION = 8
FLAG_CLIENT_NAME_IS_ADDRESS = 16

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def time_us(t: datetime) -> int:
    """``t`` in microseconds since 1970 (exactly; a naive time is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _US


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_BASE32 = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}").fullmatch


def id_key(event_id: str) -> bytes | str:
    """How ``event_id`` is stored: a canonical ULID as its 16 bytes, anything else as it is."""
    known = recent_id_key(event_id)
    if known is not None:  # an id this process made: its bits were kept
        return known
    if _ULID(event_id):
        return int(event_id.translate(_TO_BASE32), 32).to_bytes(16, "big")
    return event_id


def id_text(key: bytes | str) -> str:
    """The id a stored key stands for (:func:`id_key` undone)."""
    if type(key) is bytes:
        return ulid_text(int.from_bytes(key, "big"))
    if isinstance(key, str):
        return key
    raise EventError(f"a stored id is neither a ULID nor text: {key!r}")


def keys_not_after(keys: Iterable[bytes | str], top: bytes | str) -> list[bytes | str]:
    """The ``keys`` that SQLite orders at or before ``top`` (all text sorts before any blob)."""
    # Written out per case rather than a (is-blob, key) pair per key: it runs per appended id.
    if isinstance(top, bytes):
        return [k for k in keys if isinstance(k, str) or k <= top]
    return [k for k in keys if isinstance(k, str) and k <= top]


# Text fields a raw value may repeat, in the order they are tried (the first equal one is
# named). Their position here is their index in the tuple _strings() gives.
_ELIDABLE = (
    "user_name", "session_id", "tty", "client_name", "client_address", "host", "domain",
    "session_name", "session_type", "seat", "logon_id", "reason", "connection", "destination",
    "source",
)
_ELIDABLE_INDEX = {name: i for i, name in enumerate(_ELIDABLE)}
#: The positions in that order of the fields stored as codes of `names` (the rest: as text).
CODED_STRINGS = frozenset(_ELIDABLE_INDEX[n] for n in (
    "user_name", "host", "domain", "session_type", "seat", "reason", "connection", "source"))
# All of them at once (in C), and their positions last to first: dict(zip()) of the two keeps
# the first field holding a value, as the order above says.
_STRINGS_REVERSED = attrgetter(*reversed(_ELIDABLE))
_INDEXES_REVERSED = tuple(range(len(_ELIDABLE) - 1, -1, -1))
# Compact JSON for raw values (the stored form); what the event's JSON shows is unchanged.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
# A shape with more keys than this, or once this many shapes exist, is not worth a code: the
# raw is stored as one compact JSON object instead (a publisher's free-form raw).
_SHAPE_KEYS_MAX = 64
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def load_json(text: str) -> Any:
    """``json.loads(text)`` for the compact text this module writes, without json.loads's
    wrapper (four times faster on a short array). ValueError when it is not that."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError(f"not JSON: {text[:40]!r}") from None
    if end != len(text):
        raise ValueError(f"not JSON: {text[:40]!r}")
    return value


_SHAPES_MAX = 10_000

_SLOTS = tuple(f for f in SensEvent.__slots__)
assert _SLOTS == (  # noqa: S101 - an invariant of this code, not a check of input
    "method", "user_name", "session_id", "id", "seq", "time", "observed", "host", "source",
    "classes", "domain", "session_name", "session_type", "tty", "seat", "remote", "client_name",
    "client_address", "logon_id", "reason", "synthesized", "raw", "connection",
    "connection_type", "qoc", "destination", "battery_percent",
), "RowCodec.decode sets SensEvent's fields in this order"
_SETTERS = tuple(getattr(SensEvent, name).__set__ for name in _SLOTS)
_new = object.__new__


#: A parsed shape: per raw key, the key and the index of the column it repeats (None: stored).
Shape = tuple[tuple[str, int | None], ...]


class RowCodec:
    """Events to rows and back, given the journal's two dictionaries: ``names`` (text -> code,
    hosts, methods, users …) and ``shapes`` (a raw's keys as JSON -> code).

    New texts get the next free code at once (:attr:`new_names`, :attr:`new_shapes`: what the
    caller must insert in the same transaction; :meth:`forget` drops them after a rollback).
    Before a write the caller brings the dictionaries up to date (:meth:`learn`), so codes
    another process added are known and not handed out again.
    """

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.texts: dict[int, str] = {}
        self.shapes: dict[str, int] = {}
        self.parsed: dict[int, Shape] = {}
        self.new_names: list[tuple[int, str]] = []
        self.new_shapes: list[tuple[int, str]] = []
        self._methods: dict[int, Method] = {}
        # (raw keys, the field each repeats) -> the shape's text, the getter of those fields
        self._shape_texts: dict[tuple[tuple[Any, ...], tuple[int, ...]],
                                tuple[str, Callable[[SensEvent], Any] | None]] = {}
        self._next_name = 1
        self._next_shape = 1

    # -- the dictionaries ---------------------------------------------------------------------

    def learn(self, names: Iterable[tuple[int, str]], shapes: Iterable[tuple[int, str]]) -> None:
        """Take in stored ``(code, text)`` entries (those read from the database)."""
        for code, text in names:
            self.names[text] = code
            self.texts[code] = text
            self._next_name = max(self._next_name, code + 1)
        for code, text in shapes:
            self.shapes[text] = code
            self._next_shape = max(self._next_shape, code + 1)

    @property
    def known(self) -> tuple[int, int]:
        """The highest name and shape codes known (what to read beyond)."""
        return self._next_name - 1, self._next_shape - 1

    def committed(self) -> None:
        """The new entries are stored."""
        self.new_names.clear()
        self.new_shapes.clear()

    def forget(self) -> None:
        """The transaction that was to store the new entries rolled back: drop them."""
        for code, text in self.new_names:
            del self.names[text]
            del self.texts[code]
            self._methods.pop(code, None)
        for code, text in self.new_shapes:
            del self.shapes[text]
            self.parsed.pop(code, None)
        self._next_name = max(self.texts, default=0) + 1
        self._next_shape = max(self.shapes.values(), default=0) + 1
        self.committed()

    def _name(self, text: str) -> int:
        code = self.names.get(text)
        if code is None:
            if type(text) is not str:
                raise TypeError(f"a name must be text, not {text!r}")
            code = self._next_name
            self._next_name += 1
            self.names[text] = code
            self.texts[code] = text
            self.new_names.append((code, text))
        return code

    def _shape(self, keys: str) -> int | None:
        code = self.shapes.get(keys)
        if code is None:
            if len(self.shapes) >= _SHAPES_MAX:
                return None
            code = self._next_shape
            self._next_shape += 1
            self.shapes[keys] = code
            self.new_shapes.append((code, keys))
        return code

    # -- writing ------------------------------------------------------------------------------

    def encode(self, events: Sequence[SensEvent], first_seq: int, history: bool,
               keys: Sequence[bytes | str] | None = None) -> list[Row]:
        """The rows of ``events``, numbered from ``first_seq`` (``keys``: their ids'
        :func:`id_key`, when the caller has them already). TypeError or ValueError for a
        field of the wrong type (the event did not come through SensEvent's checks)."""
        if keys is None:
            keys = [id_key(e.id) for e in events]
        name = self._name
        names = self.names
        rows: list[Row] = []
        add = rows.append
        # A raw shared by several events (a Logon, its PostShell and its Logoff) is encoded
        # once: (the mapping, its shape code, its stored values, the columns it repeats).
        raws: dict[int, tuple[Mapping[str, Any], int | None, str | None, _Same]] = {}
        base = FLAG_HISTORY if history else 0
        seq = first_seq
        for e, key in zip(events, keys, strict=True):
            flags = base
            if e.remote:
                flags |= FLAG_REMOTE
            if e.synthesized:
                flags |= FLAG_SYNTHESIZED
            sid, tty = e.session_id, e.tty
            if tty is not None and tty == sid:
                flags |= FLAG_TTY_IS_SESSION
                tty = None
            cname, caddr = e.client_name, e.client_address
            if cname is not None and cname == caddr:
                flags |= FLAG_CLIENT_NAME_IS_ADDRESS
                cname = None
            t = e.time
            us = (t - _EPOCH) // _US
            raw = e.raw
            if raw:
                known = raws.get(id(raw))
                if known is None or known[0] is not raw or not _still_equal(e, known[3]):
                    known = raws[id(raw)] = (raw, *self._encode_raw(e, raw))
                shape, values = known[1], known[2]
            else:
                shape = values = None
            user, domain, stype, seat, reason, conn = (
                e.user_name, e.domain, e.session_type, e.seat, e.reason, e.connection)
            qoc = e.qoc
            ct, bp = e.connection_type, e.battery_percent
            if (ct is not None and type(ct) is not int) or (bp is not None and type(bp) is not int):
                raise TypeError("connection_type and battery_percent must be integers")
            # No qoc (every session event): its three columns without unpacking a tuple.
            qf = qi = qo = None
            if qoc is not None:
                qf, qi, qo = int(qoc["flags"]), int(qoc["in_speed"]), int(qoc["out_speed"])
            method = str(e.method)
            add((
                seq, key, us, (e.observed - t) // _US,
                names.get(e.host) or name(e.host), names.get(method) or name(method),
                names.get(e.source) or name(e.source), flags,
                None if user is None else names.get(user) or name(user),
                None if domain is None else names.get(domain) or name(domain),
                sid, e.session_name,
                None if stype is None else names.get(stype) or name(stype),
                tty,
                None if seat is None else names.get(seat) or name(seat),
                cname, caddr, e.logon_id,
                None if reason is None else names.get(reason) or name(reason),
                None if conn is None else names.get(conn) or name(conn),
                ct, qf, qi, qo, e.destination, bp, shape, values,
            ))
            seq += 1
        return rows

    def _encode_raw(self, e: SensEvent, raw: Mapping[str, Any]
                    ) -> tuple[int | None, str | None, _Same]:
        """``raw`` as (shape code, stored values, the columns it repeats)."""
        if len(raw) > _SHAPE_KEYS_MAX:
            return None, _COMPACT(dict(raw)), _NOTHING_SAME
        # text -> the first field holding it (a None key is never looked up: only text is)
        columns: dict[str | None, int] = dict(zip(_STRINGS_REVERSED(e), _INDEXES_REVERSED,
                                                  strict=True))
        values: list[Any] = []
        same: list[str] = []  # the values that repeat a field, in order
        where: list[int] = []  # per key, the field it repeats (-1: none)
        for v in raw.values():
            at = columns.get(v) if type(v) is str else None
            if at is None:
                values.append(v)
                where.append(-1)
            else:
                same.append(v)
                where.append(at)
        # The same keys repeating the same fields: the same shape (its text and the getter of
        # the fields it names made once; only keys that are all text get there).
        shape_key = (tuple(raw), tuple(where))
        known = self._shape_texts.get(shape_key)
        if known is None:
            if not all(type(k) is str for k in raw):
                return None, _COMPACT(dict(raw)), _NOTHING_SAME
            if len(self._shape_texts) >= _SHAPES_MAX:
                self._shape_texts.clear()
            fields = [_ELIDABLE[at] for at in where if at >= 0]
            known = self._shape_texts[shape_key] = (_COMPACT(
                [k if at < 0 else [k, _ELIDABLE[at]] for k, at in zip(raw, where, strict=True)]),
                attrgetter(*fields) if fields else None)
        text, getter = known
        code = self._shape(text)
        if code is None:
            return None, _COMPACT(dict(raw)), _NOTHING_SAME
        values_text = _compact_list(values) if values else None
        if getter is None:
            return code, values_text, _NOTHING_SAME
        # attrgetter of one name gives the value itself, of several a tuple
        return code, values_text, (getter, same[0] if len(same) == 1 else tuple(same))

    # -- reading ------------------------------------------------------------------------------

    def method(self, code: int) -> Method:
        """The method a code names (KeyError for a code not known yet, EventError when it
        names no method)."""
        m = self._methods.get(code)
        if m is None:
            text = self.texts[code]  # KeyError: a code another process added (learn it)
            try:
                m = self._methods[code] = Method(text)
            except ValueError:
                raise EventError(f"method code {code} names no method") from None
        return m

    def shape(self, code: int, lookup: Callable[[int], str | None]) -> Shape:
        """The parsed shape of ``code`` (``lookup`` reads the shape's text when not known)."""
        shape = self.parsed.get(code)
        if shape is None:
            text = lookup(code)
            if text is None:
                raise EventError(f"raw shape {code} is not in the journal")
            try:
                keys = json.loads(text)
                shape = tuple((k, None) if isinstance(k, str) else (str(k[0]),
                              _ELIDABLE_INDEX[k[1]]) for k in keys)
            except (ValueError, KeyError, IndexError, TypeError):
                raise EventError(f"raw shape {code} cannot be read") from None
            self.parsed[code] = shape
        return shape

    def decode(self, row: Row, lookup_shape: Callable[[int], str | None],
               seq: bool = True) -> SensEvent:
        """The event of a stored row (with its ``seq`` unless ``seq`` is False). EventError,
        KeyError, ValueError or TypeError when the row does not read as one."""
        (s, key, us, obs, host, method, source, flags, user, domain, sid, sname, stype, tty,
         seat, cname, caddr, logon_id, reason, conn, ct, qf, qi, qo, dest, bp, shape,
         values) = row
        texts = self.texts
        m = self.method(method)
        host_t = texts[host]
        user_t = None if user is None else texts[user]
        if flags & FLAG_TTY_IS_SESSION:
            tty = sid
        if flags & FLAG_CLIENT_NAME_IS_ADDRESS:
            cname = caddr
        domain_t = None if domain is None else texts[domain]
        stype_t = None if stype is None else texts[stype]
        seat_t = None if seat is None else texts[seat]
        reason_t = None if reason is None else texts[reason]
        conn_t = None if conn is None else texts[conn]
        source_t = texts[source]
        if shape is not None:
            stored = load_json(values) if values is not None else ()
            strings = (user_t, sid, tty, cname, caddr, host_t, domain_t, sname, stype_t,
                       seat_t, logon_id, reason_t, conn_t, dest, source_t)
            raw: dict[str, Any] = {}
            n = 0
            for k, i in self.shape(shape, lookup_shape):
                if i is None:
                    raw[k] = stored[n]
                    n += 1
                else:
                    raw[k] = strings[i]
            if n != len(stored):
                raise EventError("its raw values do not fit their shape")
        elif values is not None:
            raw = load_json(values)
            if not isinstance(raw, dict):
                raise EventError("its raw is not an object")
        else:
            raw = {}
        t = _EPOCH + timedelta(0, 0, us)
        event = _new(SensEvent)
        (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, s16, s17, s18,
         s19, s20, s21, s22, s23, s24, s25, s26) = _SETTERS
        s0(event, m)
        s1(event, user_t)
        s2(event, sid)
        s3(event, id_text(key))
        s4(event, s if seq else None)
        s5(event, t)
        s6(event, t + timedelta(0, 0, obs))
        s7(event, host_t)
        s8(event, source_t)
        s9(event, METHOD_CLASSES[m])
        s10(event, domain_t)
        s11(event, sname)
        s12(event, stype_t)
        s13(event, tty)
        s14(event, seat_t)
        s15(event, bool(flags & FLAG_REMOTE))
        s16(event, cname)
        s17(event, caddr)
        s18(event, logon_id)
        s19(event, reason_t)
        s20(event, bool(flags & FLAG_SYNTHESIZED))
        s21(event, raw)
        s22(event, conn_t)
        s23(event, ct)
        s24(event, None if qf is None else {"flags": qf, "in_speed": qi, "out_speed": qo})
        s25(event, dest)
        s26(event, bp)
        return event


#: The columns a shared raw's shape names and the values they held when it was encoded: a
#: getter of those columns (None: no column) and what it gave.
_Same = tuple[Callable[[SensEvent], Any] | None, Any]
_NOTHING_SAME: _Same = (None, None)


def _still_equal(e: SensEvent, same: _Same) -> bool:
    """Whether the columns a shared raw's shape names still hold its values for ``e``."""
    get, expected = same
    return get is None or bool(get(e) == expected)


_quote = json.encoder.encode_basestring


def _compact_list(values: list[Any]) -> str:
    """``_COMPACT(values)``, built directly for a list of text, integers and nulls (a wtmp
    record's values: the JSON encoder's own setup costs more than the work)."""
    parts: list[str] = []
    add = parts.append
    for v in values:
        t = type(v)
        if t is str:
            add(_quote(v))
        elif t is int:
            add(int.__repr__(v))  # what the encoder writes for an int (not for a bool)
        elif v is None:
            add("null")
        else:
            return _COMPACT(values)
    return "[" + ",".join(parts) + "]"
