"""What a read command needs of a place that keeps events: this host's journal or the fleet's
central store (:class:`pysens.fleet.store.Store`) — so ``sens history``, ``sessions`` and
``timeline`` have one code path for both."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, runtime_checkable

from ..events import SensEvent

__all__ = ["EventReader", "OnBad"]

#: Told one sentence about each stored event that can no longer be read (then skipped).
OnBad = Callable[[str], None]


@runtime_checkable
class EventReader(Protocol):
    """Events kept somewhere, read in order (a journal: its ``seq`` order; the store: time,
    then host, then each host's journal order)."""

    def query(
        self, *, since: datetime | None = None, until: datetime | None = None,
        hosts: Sequence[str] = (), where: Callable[[SensEvent], bool] | None = None,
        limit: int | None = None, on_bad: OnBad | None = None,
    ) -> Iterator[SensEvent]:
        """Events with time in ``[since, until)``, on ``hosts`` (all when empty), for which
        ``where`` is true; at most ``limit``; unreadable rows told to ``on_bad``, skipped."""
        ...

    def session_events(
        self, methods: Iterable[str], since: datetime, until: datetime | None = None, *,
        hosts: Sequence[str] = (), on_bad: OnBad | None = None,
    ) -> Iterator[SensEvent]:
        """The events of ``methods`` a timeline of ``[since, until)`` needs (not the rest)."""
        ...

    def hosts(self) -> list[str]:
        """The hosts that have events here, sorted."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def __enter__(self) -> EventReader:
        ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        ...
