"""At-least-once delivery of the journal to persistent subscriptions, one cursor each.

Each enabled subscription has a worker that reads the journal after its cursor, in ``seq``
order, picks the events it subscribed to, hands them to its sink and only then moves the cursor.
A crash between the two means a redelivery, never a loss. A failed delivery is retried with
exponential backoff (capped); after ``max_failures`` failures in a row the subscription is marked
``failing`` and paused until ``sens subscriptions enable``, which resumes from the cursor. One
subscription's trouble never holds up another: each worker runs on its own.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .aio import backoff_delay, wait_event
from .events import Method, SensEvent, fold_name
from .journal import Journal, PersistentSubscription, SubscriptionStore
from .sinks import Sink, SinkError, make_sink
from .subscriptions import compile_subscription

__all__ = ["DeliveryManager", "DeliveryPolicy", "SubscriptionWorker"]

log = logging.getLogger(__name__)

#: (host, session_id) of each session a user has open; seeds per-user presence.
PresenceSeed = Callable[[str], set[tuple[str, str]]]

# How many events a sink marked parallel may be handed at once, in separate slices.
_PARALLEL_SLICES = 8
# A worker hands its sink chunks sized to take about this long (seconds), and saves its cursor
# after each: a restart or crash repeats at most about this much work, not a whole batch of
# slow hook runs. Fast sinks (a file) soon get whole batches.
_CHUNK_TIME = 0.5


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try: time limit per delivery, retries, backoff and batch size."""

    max_failures: int = 5
    retry_initial: float = 1.0
    retry_max: float = 300.0
    timeout: float = 180.0
    batch: int = 500

    def backoff(self, failures: int) -> float:
        """The wait before retry number ``failures`` (1, 2, …): doubling, capped."""
        return backoff_delay(failures, self.retry_initial, self.retry_max)


class JournalTail:
    """The recent end of the journal, read and parsed once for every worker, and cursor saves
    gathered into one transaction. A worker further behind than the cache reads the journal
    itself."""

    def __init__(self, journal: Journal, store: SubscriptionStore, keep: int = 20_000) -> None:
        self.journal = journal
        self.store = store
        self.keep = keep
        self.dirty = True
        self._events: list[SensEvent] = []
        self._seqs: list[int] = []
        self._history: set[int] = set()
        self._last = -1
        self._lock = asyncio.Lock()
        self._cursors: dict[str, int] = {}
        self._saving: asyncio.Task[None] | None = None

    def _fetch(self, after: int, limit: int | None) -> tuple[list[SensEvent], set[int]]:
        events = list(self.journal.query(after_seq=after, limit=limit))
        if not events:
            return [], set()
        return events, self.store.history_seqs(after, events[-1].seq or after)

    async def _refresh(self) -> None:
        async with self._lock:
            if not self.dirty:
                return
            self.dirty = False
            if self._last < 0:  # start at the end: workers behind it read the journal
                self._last = await asyncio.to_thread(self.journal.last_seq)
                return
            events, history = await asyncio.to_thread(self._fetch, self._last, self.keep)
            if not events:
                return
            self._events.extend(events)
            self._seqs.extend(e.seq or 0 for e in events)
            self._history |= history
            self._last = self._seqs[-1]
            if len(events) >= self.keep:
                self.dirty = True  # more than one read's worth came in
            if len(self._events) > self.keep:
                cut = len(self._events) - self.keep
                del self._events[:cut], self._seqs[:cut]
                low = self._seqs[0]
                self._history = {s for s in self._history if s >= low}

    async def read(self, cursor: int, limit: int) -> tuple[list[SensEvent], set[int]]:
        """Up to ``limit`` events after ``cursor``, and which of them are history."""
        await self._refresh()
        if (self._seqs and self._seqs[0] <= cursor + 1) or (not self._seqs and cursor >= self._last
                                                           >= 0):
            i = bisect.bisect_right(self._seqs, cursor)
            events = self._events[i : i + limit]
            return events, self._history
        return await asyncio.to_thread(self._fetch, cursor, limit)

    async def save_cursor(self, name: str, seq: int) -> None:
        """Record ``name``'s progress; returns once it is committed (with others' saves)."""
        self._cursors[name] = seq
        while name in self._cursors or (self._saving is not None and not self._saving.done()):
            if self._saving is None or self._saving.done():
                self._saving = asyncio.create_task(self._save())
            await asyncio.shield(self._saving)
            if name not in self._cursors:
                return

    async def _save(self) -> None:
        batch, self._cursors = self._cursors, {}
        await asyncio.to_thread(self.store.set_cursors, batch)


class SubscriptionWorker:
    """Delivers the journal to one subscription until stopped or failing."""

    def __init__(
        self,
        sub: PersistentSubscription,
        journal: Journal,
        store: SubscriptionStore,
        policy: DeliveryPolicy,
        presence: PresenceSeed | None = None,
        tail: JournalTail | None = None,
    ) -> None:
        self.sub = sub
        self.tail = tail or JournalTail(journal, store)
        self.journal = journal
        self.store = store
        self.policy = policy
        self._wake = asyncio.Event()
        self._predicate = compile_subscription(sub)
        self._owner = fold_name(sub.owner)
        self._present: set[tuple[str, str]] = (
            presence(self._owner) if sub.per_user and presence is not None else set())
        self._pending_presence = self._present
        self.failures = sub.failures
        self.delivered = 0
        self._chunk = 1
        timeout = float(sub.settings.get("timeout") or policy.timeout)
        # Made here, so that stored settings this pysens cannot use stop the worker before it
        # starts (the manager marks it failing, naming why), not inside its loop.
        self.sink = make_sink(sub.sink, sub.settings, timeout=timeout)

    def wake(self) -> None:
        """New events are in the journal."""
        self._wake.set()

    def _wanted(self, event: SensEvent, present: set[tuple[str, str]]) -> bool:
        # Per-user: delivered only while the owner has a session on this host (COM+). The
        # owner's own Logon counts as present, and so does their last Logoff.
        key = (event.host, event.session_id or "")
        mine = fold_name(event.user_name) == self._owner
        if mine and event.method is Method.Logon:
            present.add(key)
        wanted = bool(present)
        if mine and event.method is Method.Logoff:
            present.discard(key)
        return wanted and self._predicate(event)

    def _pick(
        self, events: list[SensEvent], history: set[int], cursor: int
    ) -> tuple[list[SensEvent], int, list[set[tuple[str, str]]]]:
        """The events to deliver after ``cursor``, the seq read up to, and (per-user only)
        the owner's presence after each of them."""
        if not events:
            return [], cursor, []
        todo: list[SensEvent] = []
        states: list[set[tuple[str, str]]] = []
        present = set(self._present)
        for e in events:
            if e.seq in history:
                continue
            if self.sub.per_user:
                if self._wanted(e, present):
                    todo.append(e)
                    states.append(set(present))
            elif self._predicate(e):
                todo.append(e)
        if self.sub.per_user:
            self._pending_presence = present
        return todo, events[-1].seq or cursor, states

    async def _deliver(self, sink: Sink, events: Sequence[SensEvent]) -> None:
        if not self.sub.parallel or len(events) < 2:
            await sink.deliver(events)
            return
        size = math.ceil(len(events) / _PARALLEL_SLICES)
        results = await asyncio.gather(
            *(sink.deliver(events[i : i + size]) for i in range(0, len(events), size)),
            return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                # Slices ran side by side: which came through is unknown, so all go again.
                raise SinkError(str(r), 0)

    async def run(self) -> None:
        """Deliver until cancelled, or until the subscription is marked failing."""
        sub = self.sub
        cursor = await asyncio.to_thread(self.journal.cursor, sub.cursor)
        try:
            while True:
                self._wake.clear()
                events, history = await self.tail.read(cursor, self.policy.batch)
                todo, upto, states = self._pick(events, history, cursor)
                if upto == cursor:
                    await self._wake.wait()
                    continue
                done = 0
                try:
                    while done < len(todo):
                        n = len(todo) - done
                        if not sub.parallel:
                            n = min(n, self._chunk)
                        began = time.monotonic()
                        await self._deliver(self.sink, todo[done : done + n])
                        self._resize(n, time.monotonic() - began)
                        done += n
                        self.delivered += n
                        if done < len(todo):
                            cursor = await self._advance(todo, states, done)
                except SinkError as e:
                    done += e.done
                    self.delivered += e.done
                    if sub.per_user:
                        # The owner's presence is known after each delivered event: the
                        # cursor goes to the last one, not past the events between it and the
                        # failed one (they may change the presence).
                        if done and todo[done - 1].seq != cursor:
                            cursor = await self._advance(todo, states, done)
                    else:
                        # Skip past what went through; the failed event is retried.
                        skip = (todo[done].seq or cursor + 1) - 1
                        if skip > cursor:
                            cursor = skip
                            await self.tail.save_cursor(sub.cursor, cursor)
                    if await self._failed(str(e)):
                        return
                    continue
                cursor = upto
                self._present = self._pending_presence
                await self.tail.save_cursor(sub.cursor, cursor)
                await self._succeeded()
        finally:
            await self.sink.aclose()

    async def _advance(self, todo: list[SensEvent], states: list[set[tuple[str, str]]],
                       done: int) -> int:
        """The first ``done`` events of ``todo`` went through: save the cursor at the last of
        them (with the owner's presence after it); the new cursor."""
        cursor = todo[done - 1].seq or 0
        if states:
            self._present = states[done - 1]
        await self.tail.save_cursor(self.sub.cursor, cursor)
        await self._succeeded()
        return cursor

    def _resize(self, n: int, took: float) -> None:
        """Size the next chunk from how long ``n`` events took."""
        if took < _CHUNK_TIME / 2 and n >= self._chunk:
            self._chunk = min(self.policy.batch, self._chunk * 2)
        elif took > _CHUNK_TIME:
            self._chunk = max(1, int(n * _CHUNK_TIME / took))

    async def _succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            await asyncio.to_thread(self.store.record_success, self.sub.id)

    async def _failed(self, error: str) -> bool:
        self.failures += 1
        failing = self.failures >= self.policy.max_failures
        await asyncio.to_thread(self.store.record_failure, self.sub.id, error, failing=failing)
        if failing:
            log.warning("subscription %r is failing after %d attempts (%s); delivery paused "
                        "until 'sens subscriptions enable %s'", self.sub.name, self.failures,
                        error, self.sub.name)
            return True
        delay = self.policy.backoff(self.failures)
        log.info("subscription %r: %s; retry %d in %.3g s", self.sub.name, error,
                 self.failures, delay)
        await asyncio.sleep(delay)
        return False


class DeliveryManager:
    """Runs one worker per enabled, healthy subscription and follows changes to the table."""

    def __init__(
        self,
        journal: Journal,
        store: SubscriptionStore,
        policy: DeliveryPolicy | None = None,
        presence: PresenceSeed | None = None,
        poll: float = 1.0,
    ) -> None:
        self.journal = journal
        self.store = store
        self.policy = policy or DeliveryPolicy()
        self.presence = presence
        self.poll = poll
        self.workers: dict[str, tuple[SubscriptionWorker, asyncio.Task[None]]] = {}
        self._signature: object = None
        self._changed = asyncio.Event()
        self._syncing = asyncio.Lock()
        self.tail = JournalTail(journal, store)

    def wake(self) -> None:
        """New events were journaled."""
        self.tail.dirty = True
        for worker, _ in self.workers.values():
            worker.wake()

    def reload(self) -> None:
        """Re-read the subscriptions now (``sens subscriptions`` changed them)."""
        self._changed.set()

    async def sync(self) -> None:
        """Start and stop workers to match the stored subscriptions."""
        # One at a time: the poll loop and a client's reload may both ask, and two passes
        # side by side would start two workers for one subscription.
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
        subs = await asyncio.to_thread(self.store.list)
        self._signature = await asyncio.to_thread(self.store.signature)
        wanted = {s.id: s for s in subs if s.enabled and s.state == "ok"}
        ended = set()
        for sub_id in list(self.workers):
            worker, task = self.workers[sub_id]
            if sub_id not in wanted or task.done():
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                else:
                    ended.add(sub_id)
                del self.workers[sub_id]
        for sub_id, sub in wanted.items():
            if sub_id in self.workers or sub_id in ended:
                # A worker that ended (marked failing) may have done so after the table was
                # read: restarting it from that stale row would try once more than allowed.
                # Its end asked for another pass, which reads the table afresh.
                continue
            try:
                worker = SubscriptionWorker(sub, self.journal, self.store, self.policy,
                                            self.presence, self.tail)
            except (ValueError, TypeError, ImportError) as e:  # stored criteria, a class or a
                # sink this pysens cannot read
                await asyncio.to_thread(
                    self.store.record_failure, sub.id, f"cannot start: {e}", failing=True)
                continue
            task = asyncio.create_task(self._guard(worker), name=f"subscription {sub.name}")
            self.workers[sub_id] = (worker, task)

    async def _guard(self, worker: SubscriptionWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not stop the other subscriptions
            log.exception("subscription %r stopped", worker.sub.name)
            await asyncio.to_thread(self.store.record_failure, worker.sub.id,
                                    f"internal error: {e}", failing=True)
        self._changed.set()

    async def run(self) -> None:
        """Follow the subscriptions table until cancelled."""
        await self.sync()
        last = await asyncio.to_thread(self.journal.last_seq)
        while True:
            if not await wait_event(self._changed, self.poll):
                # Events journaled by another process (`sens import --deliver`, a publish
                # while the daemon was restarting) wake the workers too.
                seq = await asyncio.to_thread(self.journal.last_seq)
                if seq != last:
                    last = seq
                    self.wake()
                if await asyncio.to_thread(self.store.signature) == self._signature:
                    continue
            self._changed.clear()
            await self.sync()

    async def aclose(self) -> None:
        """Stop every worker."""
        tasks = [t for _, t in self.workers.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.workers.clear()
