"""Delivery channels for persistent subscriptions, each behind one small protocol.

A sink receives events in journal order and either takes them all or raises :class:`SinkError`
saying how many it took before failing. The delivery loop (:mod:`pysens.delivery`) owns retries,
backoff and cursors; a sink only delivers, within its time limit, and never runs a shell.
A sink class may set ``whole_batches = True`` when a batch costs about what one event costs
(the jsonl sink: one write and one fsync); the loop then hands it whole batches rather than
chunks sized by how long delivery takes.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ..events import SensEvent

__all__ = ["DEFAULT_TIMEOUT", "SINKS", "Sink", "SinkError", "make_sink", "validate_settings"]

#: The default time limit of one delivery, in seconds (SENS gives logon subscribers 3 minutes).
DEFAULT_TIMEOUT = 180.0


class SinkError(Exception):
    """A delivery failed: the message says why in one sentence; ``done`` events went through
    before the failure (the delivery loop advances the cursor past those)."""

    def __init__(self, message: str, done: int = 0) -> None:
        super().__init__(message)
        self.done = done


@runtime_checkable
class Sink(Protocol):
    """What every delivery channel offers."""

    kind: str

    async def deliver(self, events: Sequence[SensEvent]) -> None:
        """Deliver ``events`` in order, or raise :class:`SinkError`."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds."""
        ...


#: kind -> "module:class". The class takes ``(settings, timeout=…)`` and has a static
#: ``validate(settings) -> dict`` that checks and normalizes the settings (ValueError: why).
SINKS: dict[str, str] = {
    "exec": "pysens.sinks.exec:ExecSink",
    "webhook": "pysens.sinks.webhook:WebhookSink",
    "jsonl": "pysens.sinks.jsonl:JsonlSink",
}


def _class(kind: str) -> Any:
    if kind not in SINKS:
        raise ValueError(f"unknown sink kind {kind!r}; known kinds are: {', '.join(SINKS)}")
    return pkgutil.resolve_name(SINKS[kind])


def validate_settings(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, normalized settings of a ``kind`` sink; ValueError says what is wrong."""
    return dict(_class(kind).validate(settings))


def make_sink(kind: str, settings: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> Sink:
    """A ready sink of ``kind`` with ``settings`` (as stored by ``sens subscriptions add``)."""
    sink: Sink = _class(kind)(settings, timeout=timeout)
    return sink
