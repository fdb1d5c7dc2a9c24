"""Connections to NATS: opening one with nats-py, and saying in one sentence why it failed."""

from __future__ import annotations

import logging
from typing import Any

from .urls import redact_url

__all__ = ["connect", "describe_failure", "nats_errors"]

log = logging.getLogger("pysens.fleet")


def nats_errors(*more: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What talking to NATS can fail with: the network (OSError, timeouts, EOF), nats-py's own
    errors (JetStream API errors among them), and ``more``."""
    import nats.errors

    return (OSError, EOFError, TimeoutError, ConnectionError, nats.errors.Error, *more)


async def connect(url: str, **options: Any) -> Any:
    """A nats-py connection to ``url`` that does not reconnect on its own (the callers do, with
    their own backoff, so that a lost connection is noticed and the cursor rewound).

    A server that cannot be reached raises :class:`ConnectionError` saying why in one sentence.
    """
    import nats
    import nats.errors

    seen: list[Exception] = []

    async def _quiet(exc: Exception) -> None:
        seen.append(exc)
        log.debug("nats %s: %s", redact_url(url), exc)

    # nats-py retries a server inside connect() until its attempts run out (0 means forever).
    opts: dict[str, Any] = {
        "allow_reconnect": False, "connect_timeout": 2, "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.05, "error_cb": _quiet,
    }
    opts.update(options)
    try:
        return await nats.connect(url, **opts)
    except (nats.errors.NoServersError, OSError, TimeoutError) as e:
        cause = seen[-1] if seen else e
        text = " ".join(str(cause).split()) or type(cause).__name__
        where = redact_url(url)
        raise ConnectionError(f"cannot reach the NATS server at {where} ({text})") from None


def describe_failure(exc: BaseException | None, url: str) -> str:
    """One sentence for a connection or server failure."""
    where = redact_url(url)
    name = type(exc).__name__
    text = " ".join(str(exc).split()) if exc is not None else ""
    if name == "ConnectionError":
        return text
    if name in ("NoServersError", "ConnectionRefusedError", "OSError", "TimeoutError"):
        return f"cannot reach the NATS server at {where} ({text or name})"
    if name in {"NoRespondersError", "ServiceUnavailableError"}:
        return f"the NATS server at {where} does not answer JetStream requests (is -js on?)"
    if name == "NoStreamResponseError":
        return f"no JetStream stream at {where} takes these subjects"
    return f"NATS at {where}: {text or name}"
