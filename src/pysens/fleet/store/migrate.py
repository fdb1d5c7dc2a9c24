"""Bringing an older central store to this pysens's schema (see :mod:`.schema`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .base import StoredEvent
from .intake import check_message

__all__ = ["backfill", "meta_version"]

log = logging.getLogger("pysens.fleet.store")


def meta_version(select: Callable[[str], list[tuple[Any, ...]]], tables_sql: str = (
        "SELECT name FROM sqlite_master WHERE type = 'table'")) -> int:
    """The schema version of the store ``select`` reads (``tables_sql`` lists its tables): 0
    (empty), 1 (pysens 0.1: an events table and no ``pysens_meta``), or what ``pysens_meta``
    says."""
    tables = {r[0] for r in select(tables_sql)}
    if "pysens_meta" in tables:
        rows = select("SELECT value FROM pysens_meta WHERE key = 'schema'")
        return int(rows[0][0]) if rows else 0
    return 1 if "events" in tables else 0


def backfill(rows: Callable[[int, int], list[tuple[Any, ...]]],
             write: Callable[[Sequence[StoredEvent]], None], batch: int = 5000) -> int:
    """Build the projections of events stored before they existed: ``rows(after, limit)``
    gives ``(position, body, subject, published_us)`` rows; ``write`` keeps each batch's
    projections. The number of events read (those that no longer read are left as they are,
    with one log line)."""
    after, total, bad = 0, 0, 0
    while True:
        chunk = rows(after, batch)
        if not chunk:
            break
        events: list[StoredEvent] = []
        for position, body, subject, published in chunk:
            after = position
            item = check_message(subject, body.encode(), None, published)
            if isinstance(item, str):
                bad += 1
            else:
                events.append(item)
        write(events)
        total += len(events)
    if bad:
        log.warning("%d stored event(s) could not be read while building the store's session "
                    "table; they are kept as they are", bad)
    return total
