"""An event's JSON text built straight from its stored row (the forwarder's read path).

Byte for byte what :meth:`pysens.events.SensEvent.to_json_text` gives for the event the row
holds (without ``seq``), without building the event: names are quoted once per code, a raw's
keys once per shape, and only the raw's stored values are parsed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..events import METHOD_CLASSES, EventError, format_time
from .rows import (
    CODED_STRINGS,
    FLAG_CLIENT_NAME_IS_ADDRESS,
    FLAG_REMOTE,
    FLAG_SYNTHESIZED,
    FLAG_TTY_IS_SESSION,
    Row,
    RowCodec,
    id_text,
    load_json,
)

__all__ = ["RowText"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode
_quote = json.encoder.encode_basestring


def _value(v: Any) -> str:
    """One raw value as json.dumps writes it inside the event's text."""
    t = type(v)
    if t is str:
        return str(_quote(v))
    if t is int:
        return int.__repr__(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    return _ENCODE(v)


class _Quoted(dict[int | None, str]):
    """Code -> the quoted text it names (JSON), made on first use; None -> null."""

    def __init__(self, codec: RowCodec) -> None:
        super().__init__({None: "null"})
        self.codec = codec

    def __missing__(self, code: int | None) -> str:
        assert code is not None  # noqa: S101 - None is in the table from the start
        text = self[code] = str(_quote(self.codec.texts[code]))
        return text


class _Classes(dict[int, str]):
    """Method code -> the JSON list of its classes."""

    def __init__(self, codec: RowCodec) -> None:
        super().__init__()
        self.codec = codec

    def __missing__(self, method: int) -> str:
        m = self.codec.method(method)  # EventError when the code names no method
        text = self[method] = _ENCODE([str(c) for c in METHOD_CLASSES[m]])
        return text


class _Times(dict[int, str]):
    """Microseconds -> format_time's text (a Logon and its PostShell share their time, an
    import's batch its observed time). Bounded: cleared when full."""

    def __missing__(self, us: int) -> str:
        if len(self) >= 20_000:
            self.clear()
        text = self[us] = format_time(_EPOCH + timedelta(0, 0, us))
        return text


class _Cacheable(dict[int, bool]):
    def __init__(self, owner: RowText) -> None:
        super().__init__()
        self.owner = owner

    def __missing__(self, shape: int) -> bool:
        known = self.owner._shapes.get(shape, ())
        value = self[shape] = all(i is None or i < 6 for _, i in known)
        return value


class RowText:
    """Builds event texts from rows with ``codec``'s dictionaries (kept in step by its
    journal)."""

    def __init__(self, codec: RowCodec) -> None:
        self.codec = codec
        self._quoted = _Quoted(codec)
        self._times = _Times()
        self._classes = _Classes(codec)
        self._shapes: dict[int, tuple[tuple[str, int | None], ...]] = {}
        self._raws: dict[tuple[Any, ...], str] = {}
        # shape -> whether its text depends only on the strings in the cache key (the first
        # six the shape may name: user, session id, tty, client name and address, host).
        self._cacheable = _Cacheable(self)

    def _shape(self, code: int, lookup: Callable[[int], str | None]
               ) -> tuple[tuple[str, int | None], ...]:
        shape = self._shapes.get(code)
        if shape is None:
            shape = self._shapes[code] = tuple(
                (f"{_quote(k)}: ", i) for k, i in self.codec.shape(code, lookup))
        return shape

    def _raw(self, shape: int, values: str | None, lookup: Callable[[int], str | None],
             strings: tuple[Any, ...]) -> str:
        """The raw's text from its shape, its stored values and the event's strings."""
        stored = load_json(values) if values is not None else ()
        q = _quote
        qn = self._quoted
        coded = CODED_STRINGS
        parts = []
        n = 0
        for prefix, i in self._shape(shape, lookup):
            if i is None:
                parts.append(prefix + _value(stored[n]))
                n += 1
            else:
                v = strings[i]
                parts.append(prefix + (qn[v] if i in coded else q(v)))
        if n != len(stored):
            raise EventError("its raw values do not fit their shape")
        return "{" + ", ".join(parts) + "}"

    def text(self, row: Row, lookup_shape: Callable[[int], str | None]
             ) -> tuple[str, str, str, str]:
        """``(id, host, method, JSON text)`` of a stored row. EventError, KeyError, ValueError
        or TypeError when the row does not read as an event."""
        (_seq, key, us, obs, host, method, source, flags, user, domain, sid, sname, stype, tty,
         seat, cname, caddr, logon_id, reason, conn, ct, qf, qi, qo, dest, bp, shape,
         values) = row
        q = _quote
        qn = self._quoted
        times = self._times
        texts = self.codec.texts
        event_id = id_text(key)
        if flags & FLAG_TTY_IS_SESSION:
            tty = sid
        if flags & FLAG_CLIENT_NAME_IS_ADDRESS:
            cname = caddr
        if shape is not None:
            # A raw shared by events near each other (a Logon, its PostShell, its Logoff) is
            # written once: keyed by what its text depends on.
            cache_key = (shape, values, user, sid, tty, cname, caddr, host)
            raw = self._raws.get(cache_key)
            if raw is None:
                raw = self._raw(shape, values, lookup_shape, (
                    user, sid, tty, cname, caddr, host, domain, sname, stype, seat, logon_id,
                    reason, conn, dest, source))
                if len(self._raws) >= 4096:
                    self._raws.clear()
                if self._cacheable[shape]:
                    self._raws[cache_key] = raw
        elif values is not None:
            obj = load_json(values)
            if not isinstance(obj, dict):
                raise EventError("its raw is not an object")
            raw = _ENCODE(obj)
        else:
            raw = "{}"
        if (ct is not None and type(ct) is not int) or (bp is not None and type(bp) is not int):
            raise TypeError("connection_type and battery_percent must be integers")
        host_text = texts[host]
        nul = "null"
        qoc = (nul if qf is None else
               f'{{"flags": {int(qf)}, "in_speed": {int(qi)}, "out_speed": {int(qo)}}}')
        text = (
            f'{{"id": {q(event_id)}, "time": "{times[us]}", "observed": "{times[us + obs]}", '
            f'"host": {qn[host]}, "source": {qn[source]}, "method": {qn[method]}, '
            f'"classes": {self._classes[method]}, "user_name": {qn[user]}, '
            f'"domain": {qn[domain]}, "session_id": {nul if sid is None else q(sid)}, '
            f'"session_name": {nul if sname is None else q(sname)}, '
            f'"session_type": {qn[stype]}, "tty": {nul if tty is None else q(tty)}, '
            f'"seat": {qn[seat]}, "remote": {"true" if flags & FLAG_REMOTE else "false"}, '
            f'"client_name": {nul if cname is None else q(cname)}, '
            f'"client_address": {nul if caddr is None else q(caddr)}, '
            f'"logon_id": {nul if logon_id is None else q(logon_id)}, '
            f'"reason": {qn[reason]}, '
            f'"synthesized": {"true" if flags & FLAG_SYNTHESIZED else "false"}, '
            f'"connection": {qn[conn]}, "connection_type": {nul if ct is None else ct}, '
            f'"qoc": {qoc}, "destination": {nul if dest is None else q(dest)}, '
            f'"battery_percent": {nul if bp is None else bp}, "raw": {raw}}}'
        )
        return event_id, host_text, texts[method], text
