"""Small asyncio helpers shared by the long-running loops (delivery, forwarder, collector)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["Retry", "backoff_delay", "wait_event", "within"]

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109 - the
    # helper that gives the others their time limits
    """Wait until ``event`` is set (True) or ``timeout`` seconds pass (False).

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives as the
    event is set (fixed in 3.12), and a loop that polls with it may then never stop.
    ``asyncio.timeout`` tells its own cancellation from one sent by others.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(timeout: float, awaitable: Awaitable[T]) -> T:  # noqa: ASYNC109 - as above
    """``await awaitable``, raising TimeoutError after ``timeout`` seconds (what
    ``asyncio.wait_for`` does, without 3.11's lost cancellations)."""
    async with asyncio.timeout(timeout):
        return await awaitable


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """The wait before retry number ``attempt`` (1, 2, …): ``initial`` doubling, capped."""
    return min(cap, initial * math.pow(2, max(0, attempt - 1)))


class Retry:
    """How a loop that must keep trying (a server that is down) waits between attempts: the
    backoff of :func:`backoff_delay`, jittered so that a fleet does not retry in step, and
    one log line per outage (the first failure at WARNING, the rest at DEBUG)."""

    def __init__(self, initial: float, cap: float, log: logging.Logger,
                 jitter: float = 0.2) -> None:
        self.initial = initial
        self.cap = cap
        self.log = log
        self.jitter = jitter
        self.failures = 0

    def failed(self, message: str, *, loud: bool = False) -> float:
        """Count a failure (``message``: one sentence; ``loud``: at WARNING even within an
        outage); the seconds to wait before the next attempt."""
        self.failures += 1
        if self.failures == 1 or loud:
            self.log.warning("%s", message)
        else:
            self.log.debug("%s", message)
        spread = random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - not crypto
        return backoff_delay(self.failures, self.initial, self.cap) * spread

    def succeeded(self) -> None:
        """The outage is over: the next failure is news again and waits ``initial``."""
        self.failures = 0
