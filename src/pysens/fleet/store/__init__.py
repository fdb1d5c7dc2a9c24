"""The fleet's central store: every host's events, once each, in SQLite or PostgreSQL, with
each session's state and each host's counts beside them (:mod:`pysens.fleet.projection`), so
that the questions an admin asks of 10,000 hosts are indexed reads.

:mod:`.base` reads (the store is an :class:`~pysens.journal.EventReader` like a journal) and
commits; :mod:`.schema` holds the tables and their migrations; :mod:`.sqlite` and
:mod:`.postgres` are the two back ends (PostgreSQL's events in monthly partitions, so that
retention drops whole months instead of deleting rows).
"""

from .base import (
    CollectorMark,
    Gap,
    Rejected,
    Store,
    StoredEvent,
    StoreError,
    now_us,
    open_store,
    time_us,
)

__all__ = [
    "CollectorMark",
    "Gap",
    "Rejected",
    "Store",
    "StoreError",
    "StoredEvent",
    "now_us",
    "open_store",
    "time_us",
]
