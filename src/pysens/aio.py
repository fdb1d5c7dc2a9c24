"""Small asyncio helpers shared by the long-running loops (delivery, forwarder, collector)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_event", "within"]

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
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


async def within(timeout: float, awaitable: Awaitable[T]) -> T:
    """``await awaitable``, raising TimeoutError after ``timeout`` seconds (what
    ``asyncio.wait_for`` does, without 3.11's lost cancellations)."""
    async with asyncio.timeout(timeout):
        return await awaitable
