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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_STREAM",
    "StreamSettings",
    "StreamState",
    "describe_differences",
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
    """The JetStream stream the fleet uses when pysens creates it: retention (None:
    unlimited), the duplicate window and the replicas (3 on a cluster of three or more)."""

    name: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX
    max_age: float | None = 30 * 24 * 3600.0
    max_msgs: int | None = None
    max_bytes: int | None = None
    duplicate_window: float = 120.0
    replicas: int = 1


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a client needs to know of the stream it found or made."""

    #: its largest message (-1: no limit of its own)
    max_msg_size: int
    #: when it was created (ISO 8601 as the server says it; a new value: the stream was made
    #: again, and what the old one held is gone)
    created: str
    first_seq: int
    last_seq: int
    #: whether this call created it
    created_now: bool = False
    #: the settings of the existing stream that differ from the configuration (name: (config,
    #: stream)); it keeps its own
    differs: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def _want(settings: StreamSettings) -> dict[str, Any]:
    window = float(settings.duplicate_window)
    if settings.max_age:
        # JetStream refuses a window longer than the retention; a message cannot be a
        # duplicate of one the stream no longer holds anyway.
        window = min(window, float(settings.max_age))
    return {
        "max_age": float(settings.max_age or 0.0),
        "max_msgs": settings.max_msgs or -1,
        "max_bytes": settings.max_bytes or -1,
        "duplicate_window": window,
        "num_replicas": settings.replicas,
    }


def _state(info: Any, created_now: bool = False,
           differs: dict[str, tuple[Any, Any]] | None = None) -> StreamState:
    size = info.config.max_msg_size
    created = getattr(info, "created", None)
    return StreamState(int(size) if size is not None and size > 0 else -1,
                       created.isoformat() if created is not None else "",
                       int(info.state.first_seq), int(info.state.last_seq), created_now,
                       differs or {})


async def ensure_stream(js: Any, settings: StreamSettings) -> StreamState:
    """The fleet's stream: created when absent (subjects ``<prefix>.>``, file storage, the
    settings' retention, window and replicas). An existing stream is the administrator's: it is
    never changed; its settings that differ from ``settings`` are listed in
    :attr:`StreamState.differs` (the caller says so, once)."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    want = _want(settings)
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        try:
            info = await js.add_stream(StreamConfig(
                name=settings.name, subjects=[f"{settings.prefix}.>"],
                storage=StorageType.FILE, **want,
            ))
        except _already_exists() as e:
            if "already in use" not in str(e) and getattr(e, "err_code", 0) != 10058:
                raise _refused(settings, e) from None
            info = await js.stream_info(settings.name)  # another client made it meanwhile
        except _api_errors() as e:
            # "insufficient resources" (more replicas than servers up now) may pass; the
            # rest (a window longer than the retention, a subject another stream takes …)
            # is the configuration's, and retrying it as it is would never work.
            if getattr(e, "err_code", 0) == 10023 or getattr(e, "code", 0) == 503:
                raise
            raise _refused(settings, e) from None
        else:
            return _state(info, created_now=True)
    cfg = info.config
    have = {
        "max_age": float(cfg.max_age or 0.0), "max_msgs": cfg.max_msgs,
        "max_bytes": cfg.max_bytes, "duplicate_window": float(cfg.duplicate_window or 0.0),
        "num_replicas": cfg.num_replicas or 1,
    }
    differs = {k: (want[k], have[k]) for k in want if have[k] != want[k]}
    subjects = list(cfg.subjects or [])
    if f"{settings.prefix}.>" not in subjects:
        differs["subjects"] = ([f"{settings.prefix}.>"], subjects)
    return _state(info, differs=differs)


def _already_exists() -> tuple[type[BaseException], ...]:
    from nats.js.errors import BadRequestError

    return (BadRequestError,)


def _api_errors() -> tuple[type[BaseException], ...]:
    from nats.js.errors import APIError

    return (APIError,)


def _refused(settings: StreamSettings, e: BaseException) -> Exception:
    from .connection import NatsRefused

    why = getattr(e, "description", None) or " ".join(str(e).split())
    return NatsRefused(f"the NATS server refused to create the stream {settings.name} "
                       f"({settings.replicas} replica{'' if settings.replicas == 1 else 's'}): "
                       f"{why}")


def describe_differences(settings: StreamSettings, differs: dict[str, tuple[Any, Any]]) -> str:
    """One sentence on an existing stream whose settings are not the configuration's."""
    parts = [f"{k} {_show(k, have)} (configured: {_show(k, want)})"
             for k, (want, have) in differs.items()]
    return (f"the JetStream stream {settings.name} exists with " + ", ".join(parts)
            + "; pysens keeps the stream's own settings (change them with the nats CLI)")


def _show(key: str, value: Any) -> str:
    if key in ("max_age", "duplicate_window"):
        return "unlimited" if not value else f"{value:g} s"
    if key in ("max_msgs", "max_bytes"):
        return "unlimited" if value in (-1, None) else f"{value:,}"
    return str(value)
