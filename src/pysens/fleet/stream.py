"""The fleet's JetStream stream: its name, subjects and retention, and host names as subject
tokens.

Each event is published to ``<prefix>.<host>.<Method>`` (``sens.web01.Logon``). A subject token
cannot hold ``.``, ``*``, ``>`` or whitespace, so :func:`host_token` percent-escapes every byte
of the UTF-8 name outside ``[A-Za-z0-9_-]`` (``web01.example.com`` -> ``web01%2Eexample%2Ecom``);
:func:`host_from_token` reverses it. The event body keeps the real host name, which is what the
collector stores.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_STREAM",
    "StreamSettings",
    "ensure_stream",
    "host_from_token",
    "host_token",
    "subject_for",
]

DEFAULT_STREAM = "SENS"
DEFAULT_PREFIX = "sens"
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@functools.lru_cache(maxsize=65536)


def host_token(host: str) -> str:
    """``host`` as one valid subject token, reversibly (see the module docstring)."""
    if not host:
        return "%"  # never a real name: an empty host still gives a valid, distinct token
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in host.encode())


def host_from_token(token: str) -> str:
    """The host name :func:`host_token` escaped into ``token``."""
    return "" if token == "%" else unquote(token)  # noqa: S105 - not a password


def subject_for(host: str, method: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject an event of ``host`` and ``method`` is published on."""
    return f"{prefix}.{host_token(host)}.{method}"




@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The JetStream stream the fleet uses, and its retention (None: unlimited)."""

    name: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX
    max_age: float | None = 30 * 24 * 3600.0
    max_msgs: int | None = None
    max_bytes: int | None = None
    duplicate_window: float = 120.0


async def ensure_stream(js: Any, settings: StreamSettings) -> int:
    """Create the stream if absent (subjects ``<prefix>.>``, file storage, the retention of
    ``settings``); an existing one is updated when its retention differs.

    Returns the stream's largest message size (-1: no limit of its own; an admin may set one).
    """
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    want: dict[str, Any] = {
        "max_age": settings.max_age or 0.0,
        "max_msgs": settings.max_msgs or -1,
        "max_bytes": settings.max_bytes or -1,
        "duplicate_window": settings.duplicate_window,
    }
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        await js.add_stream(StreamConfig(
            name=settings.name, subjects=[f"{settings.prefix}.>"], storage=StorageType.FILE,
            **want,
        ))
        return -1
    cfg = info.config
    have = {
        "max_age": cfg.max_age or 0.0, "max_msgs": cfg.max_msgs, "max_bytes": cfg.max_bytes,
        "duplicate_window": cfg.duplicate_window,
    }
    if have != want:
        for name, value in want.items():
            setattr(cfg, name, value)
        await js.update_stream(cfg)
    size = cfg.max_msg_size
    return int(size) if size is not None and size > 0 else -1
