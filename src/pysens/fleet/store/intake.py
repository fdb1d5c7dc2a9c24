"""What the store takes: a message's bytes checked into a :class:`StoredEvent`, or the reason
it is not a pysens event (the collector keeps those aside in ``rejected``)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from ...events import EventError, parse_method
from .base import StoredEvent

__all__ = ["check_message"]


_loads = json.JSONDecoder().decode


# A "\\udXXX" escape of a surrogate in JSON text: rare, so its presence is the cheap test.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]").search


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _us(text: str) -> int:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("no time zone")
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def check_message(subject: str, data: bytes, msg_id: str | None,
                  published_us: int | None = None) -> StoredEvent | str:
    """The event a message carries, ready to store, or the reason it is not a pysens event.

    Cheaper than a full :meth:`SensEvent.from_json` (the store keeps the body as sent); checks
    what the store and the readers rely on: a JSON object with a string ``id`` (equal to the
    ``Nats-Msg-Id`` when there is one), a known ``method``, a ``host``, and ISO ``time``.
    """
    try:
        text = data.decode()  # once: json.loads(bytes) would sniff and decode again
        obj = _loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        return f"not JSON ({e})"
    if not isinstance(obj, dict):
        return "not a JSON object"
    event_id = obj.get("id")
    if not isinstance(event_id, str) or not event_id:
        return "no event id"
    if msg_id is not None and msg_id != event_id:
        return f"its Nats-Msg-Id {msg_id!r} is not its event id {event_id!r}"
    method = obj.get("method")
    if not isinstance(method, str):
        return "no method"
    try:
        method = parse_method(method).value
    except EventError as e:
        return str(e).split(";")[0]
    host = obj.get("host")
    if not isinstance(host, str) or not host:
        return "no host"
    when = obj.get("time")
    try:
        t_us = _us(when) if isinstance(when, str) else None
    except ValueError:
        t_us = None
    if t_us is None:
        return f"its time {when!r} is not ISO 8601"
    user, session, seq = obj.get("user_name"), obj.get("session_id"), obj.get("seq")
    if session is not None and not isinstance(session, str):
        session = str(session)
    for name, value in (("user_name", user), ("observed", obj.get("observed", ""))):
        if value is not None and not isinstance(value, str):
            return f"field {name!r} is not a string"
    if not isinstance(obj.get("raw", {}), dict):
        return "field 'raw' is not an object"
    # The store keeps these as text columns: PostgreSQL takes no NUL there, and no store a
    # lone surrogate (JSON's "\ud800"); such a message would fail its whole batch for ever.
    for name, value in (("id", event_id), ("host", host), ("user_name", user),
                        ("session_id", session)):
        if value is not None and ("\x00" in value or not _utf8(value)):
            return f"field {name!r} is not text a store can keep (a NUL or a lone surrogate)"
    if _SURROGATE_ESCAPE(text) and not _utf8(json.dumps(obj, ensure_ascii=False)):
        return "it holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        return "field 'seq' is not an integer"
    extra: dict[str, Any] = {}
    for name, kind in _TEXT_EXTRA:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            return f"field {name!r} is not {'an integer' if kind is int else 'text'}"
        if isinstance(value, str) and ("\x00" in value or not _utf8(value)):
            return f"field {name!r} is not text a store can keep (a NUL or a lone surrogate)"
        extra[name] = value
    return StoredEvent(event_id, host, t_us, method, user, session, seq, subject, text,
                       published_us, **extra)


# Fields beside the checked ones that the store's columns and projections use: their type.
_TEXT_EXTRA: tuple[tuple[str, type], ...] = (
    ("source", str), ("domain", str), ("logon_id", str), ("session_type", str), ("tty", str),
    ("seat", str), ("remote", bool), ("client_name", str), ("client_address", str),
    ("connection", str), ("connection_type", int), ("destination", str),
    ("battery_percent", int),
)
