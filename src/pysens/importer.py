"""History import: log files -> tracker -> journal (``sens import``).

Each kind of file has a reader (a :class:`~pysens.sources.HistoryKind` in the sources
registry): it yields what the file says in order, reports each bad piece in one sentence naming
the file and the offset, record or line (and skips it), and raises
:class:`~pysens.sources.ReadError` (or ``OSError``) when the file as a whole cannot be read.

:class:`Importer` feeds every reader's items through one :class:`~pysens.tracker.Tracker` per
host (so the SENS rules hold for history as for live events) and appends the events to the
journal in batches. Event ids depend only on the records, so importing a file again adds
nothing. Imported events are marked as history, which persistent subscriptions are not sent,
unless ``deliver``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ._deprecated import moved
from .events import SensEvent, default_host
from .journal import Journal
from .observations import Observation, SessionRecord
from .sources import HistoryKind, ReadError, history_kind
from .tracker import Tracker

__all__ = ["ImportSummary", "Importer"]

Item = Observation | SensEvent


# -- importing ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportSummary:
    """What an import did: the counts of the summary line."""

    files: int = 0
    failed_files: int = 0
    records: int = 0
    events: int = 0
    new: int = 0
    already: int = 0
    bad: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file was read without a bad record."""
        return not self.bad and not self.failed_files

    def line(self) -> str:
        """``imported 1234 events from 2 files (56 already journaled); 3 bad records skipped``."""
        files = f"{self.files} file{'' if self.files == 1 else 's'}"
        text = f"imported {self.events} events from {files}"
        if self.events:
            text += f" ({self.already} already journaled, {self.new} new)"
        if self.bad:
            text += f"; {self.bad} bad record{'' if self.bad == 1 else 's'} skipped"
        if self.failed_files:
            n = self.failed_files
            text += f"; {n} file{' was' if n == 1 else 's were'} not read"
        return text


class Importer:
    """Reads files of any kind into the journal through per-host trackers.

    ``journal`` may be None (read and pair only). ``host`` is the host of records that carry
    none (wtmp, wtmpdb): default this machine. ``on_events`` receives each journaled batch (with
    ``seq``), ``on_error`` each bad-record or unreadable-file sentence, ``on_progress(path,
    records, fraction)`` a count every ``progress_every`` records, with how far through the file
    the reader is (0 to 1) when its kind can tell, else None. ``deliver``: do not mark the events
    as history (persistent subscriptions get them too).
    """

    def __init__(
        self,
        journal: Journal | None,
        *,
        host: str | None = None,
        deliver: bool = False,
        on_events: Callable[[list[SensEvent]], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_progress: Callable[[str, int, float | None], None] | None = None,
        progress_every: int = 10_000,
        batch: int = 5_000,
    ) -> None:
        self.journal = journal
        self.host = host
        self.deliver = deliver
        self.summary = ImportSummary()
        self._on_events = on_events
        self._on_error = on_error
        self._on_progress = on_progress
        self._every = max(1, progress_every)
        self._batch = batch
        self._trackers: dict[str, Tracker] = {}
        self._own: Tracker | None = None  # tracker(None), once asked for
        self._pending: list[SensEvent] = []
        self._now: datetime | None = None

    def tracker(self, host: str | None = None) -> Tracker:
        """The tracker for ``host`` (None: the import's own host)."""
        name = host or self.host or default_host()
        t = self._trackers.get(name)
        if t is None:
            t = self._trackers[name] = Tracker(host=name, clock=self._observed)
        return t

    def _observed(self) -> datetime:
        # An import observes a whole batch at once: its events share one observed time.
        if self._now is None:
            self._now = datetime.now(UTC)
        return self._now

    def _error(self, message: str) -> None:
        self.summary.bad += 1
        if self._on_error is not None:
            self._on_error(message)

    def import_files(self, kind: str, paths: Iterable[str]) -> ImportSummary:
        """Import every file of ``kind`` (rotated logs oldest first when the reader can tell)
        and flush; the running summary."""
        paths = list(paths)
        try:
            reader = history_kind(kind)
        except ReadError as e:
            self._failed(str(e), len(paths))
            return self.summary
        if reader.read_many is not None and len(paths) > 1:
            self._import_together(reader, paths)
            self.flush()
            return self.summary
        first_time = reader.first_time
        if first_time is not None and len(paths) > 1:
            never = datetime.max.replace(tzinfo=UTC)
            paths.sort(key=lambda p: first_time(p) or never)
        for path in paths:
            self._import_file(reader, path)
        self.flush()
        return self.summary

    def _import_together(self, reader: HistoryKind, paths: list[str]) -> None:
        read_many = reader.read_many
        assert read_many is not None  # noqa: S101 - an invariant of this code, not a check of input
        remaining = list(paths)
        while remaining:
            errors: list[str] = []
            try:
                # Read before feeding: a file found unreadable half way must leave no trace.
                items: list[Item] = list(read_many(remaining, errors.append))
            except (ValueError, OSError) as e:
                message = str(e)
                culprit = next((p for p in remaining if p in message), None)
                if culprit is None:  # cannot tell which file: none of them is imported
                    self._failed(f"cannot read {', '.join(remaining)}: {message}",
                                 len(remaining))
                    return
                self._failed(message, 1)
                remaining.remove(culprit)
                continue
            for message in errors:
                self._error(message)
            for n, item in enumerate(items, 1):
                if n % self._every == 0 and self._on_progress is not None:
                    self._on_progress(", ".join(remaining), n, n / len(items))
                self._feed(item)
            self.summary.files += len(remaining)
            self.summary.records += len(items)
            return

    def import_file(self, kind: str, path: str) -> None:
        """Read one file into the pending batch (journaled each ``batch`` events)."""
        try:
            reader = history_kind(kind)
        except ReadError as e:
            self._failed(str(e), 1)
            return
        self._import_file(reader, path)

    def _import_file(self, reader: HistoryKind, path: str) -> None:
        where: list[float] = []  # the reader's last position, as a fraction of the file

        def at(done: int, total: int) -> None:
            where[:] = [done / total if total else 1.0]

        try:
            items: Iterable[Item] = (
                reader.read(path, self._error, on_position=at) if reader.positioned
                else reader.read(path, self._error))
            count = 0
            for item in items:
                count += 1
                if count % self._every == 0 and self._on_progress is not None:
                    self._on_progress(path, count, where[0] if where else None)
                self._feed(item)
        except (ValueError, OSError) as e:
            # ReadError says it all; anything else a reader lets through gets the file's name.
            msg = str(e) if isinstance(e, ReadError) else f"cannot read {path}: {e}"
            self._failed(msg, 1)
            return
        self.summary.files += 1
        self.summary.records += count

    def _failed(self, message: str, files: int) -> None:
        self.summary.failed_files += files
        self.summary.failures.append(message)
        if self._on_error is not None:
            self._on_error(message)

    def _feed(self, item: Item) -> None:
        if isinstance(item, SensEvent):
            events = self.tracker(item.host).feed(SessionRecord.of_event(item))
        elif item.host is None:  # most records name no host: the import's own tracker
            own = self._own
            if own is None:
                own = self._own = self.tracker(None)
            events = own.feed(item)
        else:
            events = self.tracker(item.host).feed(item)
        if events:
            self._pending.extend(events)
            if len(self._pending) >= self._batch:
                self.flush()

    def flush(self) -> None:
        """Journal the pending events (one transaction), mark them as history unless
        ``deliver``, and hand them to ``on_events``."""
        events, self._pending = self._pending, []
        self._now = None
        if not events:
            return
        self.summary.events += len(events)
        if self.journal is None:
            if self._on_events is not None:
                self._on_events(events)
            return
        if self._on_events is None:
            # Only the counts are wanted: the stored copies (with seq) are not built.
            new = self.journal.append_count(events, history=not self.deliver)
        else:
            results = self.journal.append_many(events, history=not self.deliver)
            new = sum(r.inserted for r in results)
            self._on_events([r.event for r in results])
        self.summary.new += new
        self.summary.already += len(events) - new


# Names this module had in pysens 0.1, before the sources registry took the readers.
__getattr__ = moved(__name__, "pysens.sources", {
    "read_jsonl": "pysens.sources.replay:read_jsonl",
    "pair_sessions": "pysens.timeline:pair_sessions",
    "Session": "pysens.timeline:LogonPair",
})
