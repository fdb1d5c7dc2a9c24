"""The fleet's central consumer: JetStream -> the central store, each event once.

A durable pull consumer (default name ``sens-collector``) takes the stream the forwarders fill;
the messages are committed to the store in batches, one transaction each (insert-or-ignore by
event id), and only then acknowledged, so a collector killed at any point loses nothing (the
unacknowledged messages come again) and doubles nothing (the store ignores ids it has). Several
collectors on one durable share the work: the server hands each pull request different
messages.

The pull loop keeps its own clock. Each ``$JS.API.CONSUMER.MSG.NEXT`` request asks for up to
``batch`` messages within ``fetch_timeout`` seconds; it is over when the batch is full, when the
server says so (``404``/``408``: nothing more, ``409``: a leader changed, the consumer was
deleted, too many waiting, ``503``: no consumer leader now), or when its time is past by a
margin, whether or not the server said anything (nats-server before 2.9.15 can drop an expiring
request without its 408 while messages flow: a client that waits for it stalls). The next
request goes out at once, on the same connection, while what arrived is committed. A message is
committed as soon as the store is free, not when its request ends.

The connection is nats-py's (:mod:`pysens.fleet.connection`): seed lists, the cluster's
servers, reconnecting on its own, every way NATS authenticates. A request lost with a
connection simply runs out of time.

Loss that could not be prevented is said (:mod:`pysens.fleet.gaps`): at each start and every
``gap_check`` seconds the stream is compared with what the store holds; a gap is one log line
and a row of the store's ``gaps`` table.

A message that is not a pysens event (not JSON, no id, an unknown method, a body whose id does
not match its ``Nats-Msg-Id`` …) is kept aside in the store's ``rejected`` table with its
subject, the reason and the raw bytes, logged in one sentence, and acknowledged: it never blocks
the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._deprecated import renamed as _renamed
from ..aio import Retry, wait_event
from .connection import (
    NatsRefused,
    NatsTarget,
    connect,
    connected_server,
    describe_failure,
    nats_errors,
    nats_target,
)
from .gaps import describe_gap, find_gaps
from .store import CollectorMark, Rejected, Store, StoredEvent, StoreError, open_store
from .store.intake import check_message
from .stream import DEFAULT_PREFIX, DEFAULT_STREAM, StreamSettings, StreamState, ensure_stream

__all__ = ["DEFAULT_DURABLE", "Collector", "CollectorStats", "check_message"]

log = logging.getLogger("pysens.collect")

DEFAULT_DURABLE = "sens-collector"

#: How far past its own expiry a pull request is given up (the server's 408 may be late, or
#: never come).
_SLACK = 0.3


@dataclass(slots=True)
class CollectorStats:
    """What a collector has done since it started."""

    received: int = 0
    stored: int = 0
    already: int = 0
    rejected: int = 0
    batches: int = 0
    failures: int = 0
    #: pull requests sent, and those given up on the collector's own clock (no status came)
    requests: int = 0
    expired: int = 0
    #: messages that came more than once (their ack was lost, or a collector died with them)
    redelivered: int = 0
    #: messages found lost (see :mod:`pysens.fleet.gaps`)
    lost: int = 0
    #: why the run ended while failing (``exit_idle`` ran out during an outage), else None
    gave_up: str | None = None


class _Restart(Exception):
    """Bind to the stream and the consumer again (the consumer went away)."""


class Collector:
    """Consumes the fleet's stream reached at ``url`` into ``store``; :meth:`run` until
    :meth:`stop`.

    ``url``: one NATS URL, a comma-separated seed list, or a list; the credentials and TLS
    keywords are :func:`~pysens.fleet.connection.nats_target`'s. ``subject`` narrows what this
    consumer takes (default ``<prefix>.>``: everything). ``exit_idle``: return from :meth:`run`
    once nothing new has come for that many seconds (batch jobs and tests); None runs until
    :meth:`stop`. ``replicas``: the stream's when this collector has to create it (before any
    forwarder did).
    """

    def __init__(
        self,
        url: str | Sequence[str] | NatsTarget,
        store: Store | str,
        *,
        stream: str = DEFAULT_STREAM,
        prefix: str = DEFAULT_PREFIX,
        durable: str = DEFAULT_DURABLE,
        subject: str | None = None,
        replicas: int = 1,
        batch: int = 1000,
        fetch_timeout: float = 0.5,
        ack_wait: float = 30.0,
        gap_check: float = 10.0,
        exit_idle: float | None = None,
        backoff: tuple[float, float] = (0.2, 15.0),
        **connection: Any,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        self.target = nats_target(url, **connection)
        self._own_store = not isinstance(store, Store)
        self.store = store if isinstance(store, Store) else open_store(store)
        self.url = self.target.display
        self.settings = StreamSettings(stream, prefix, replicas=replicas)
        self.durable = durable
        self.subject = subject or f"{prefix}.>"
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.ack_wait = ack_wait
        self.gap_check = gap_check
        self.exit_idle = exit_idle
        self.backoff = backoff
        self.stats = CollectorStats()
        self._stop = asyncio.Event()
        self._nc: Any = None
        self._mark = CollectorMark()

    def stop(self) -> None:
        """Ask :meth:`run` to return once what arrived is stored and acknowledged."""
        self._stop.set()

    async def close(self) -> None:
        """Deprecated name of :meth:`stop`."""
        _renamed("Collector.close", "Collector.stop")
        self.stop()

    async def aclose(self) -> None:
        """:meth:`stop`, and close the store if this collector opened it."""
        self.stop()
        self.release()

    def release(self) -> None:
        """Close the store if this collector opened it."""
        if self._own_store:
            self.store.close()

    async def run(self) -> CollectorStats:
        """Collect until :meth:`stop` (or ``exit_idle``). Network and store failures are logged
        once per outage and retried with backoff. A server that refuses this client (its
        credentials, its certificates) before it ever connected raises
        :class:`~pysens.fleet.connection.NatsRefused`: retrying would not help."""
        retry = Retry(*self.backoff, log)
        loop = asyncio.get_running_loop()
        idle = _Idle(loop.time())
        connected = False
        try:
            while not self._stop.is_set():
                try:
                    if self._nc is None:
                        self._nc = await connect(self.target, name="sens-collect")
                        connected = True
                    await self._session(self._nc, idle, retry)
                    return self.stats
                except _Restart as e:
                    self.stats.failures += 1
                    msg = str(e)
                    delay = retry.failed(f"{msg}; binding to the stream again")
                except NatsRefused as e:
                    if not connected:
                        raise
                    self.stats.failures += 1
                    msg = str(e)
                    delay = retry.failed(f"{msg}; the collector keeps retrying", loud=True)
                except nats_errors(StoreError) as e:  # the network, the server or the store
                    self.stats.failures += 1
                    msg = str(e) if isinstance(e, StoreError) else describe_failure(e, self.url)
                    delay = retry.failed(f"{msg}; the collector keeps retrying")
                if self._nc is not None and self._nc.is_closed:
                    self._nc = None  # nats-py gave up on it: connect anew
                if self.exit_idle is not None and idle.for_(loop.time()) > self.exit_idle:
                    self.stats.gave_up = msg
                    break
                await wait_event(self._stop, delay)
            return self.stats
        finally:
            nc, self._nc = self._nc, None
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()

    # -- one binding -------------------------------------------------------------------------

    async def _bind(self, nc: Any) -> StreamState:
        """The stream (created when absent) and the durable consumer (created when absent);
        the gaps since the last look are said and recorded."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        js = nc.jetstream()
        state = await ensure_stream(js, self.settings)
        try:
            await js.consumer_info(self.settings.name, self.durable)
        except NotFoundError:
            whole = self.subject == f"{self.settings.prefix}.>"
            await js.add_consumer(self.settings.name, ConsumerConfig(
                durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait, max_deliver=-1,
                max_ack_pending=max(20_000, 4 * self.batch),
                filter_subject=None if whole else self.subject,
            ))
            log.info("created the durable consumer %s on %s", self.durable,
                     self.settings.name)
        self._mark = await asyncio.to_thread(self.store.collector_mark, self.settings.name,
                                             self.durable)
        await self._look_for_gaps(state)
        return state

    async def _look_for_gaps(self, state: StreamState) -> None:
        if self.subject != f"{self.settings.prefix}.>":
            return  # between a filter's messages are other subjects' sequences, not losses
        mark = self._mark
        if mark.created == state.created and state.last_seq < mark.floor_seq:
            # Same stream, lower sequences: it started over (an R1 stream back without its
            # disk keeps its name and creation time). What it lost is not known here; the
            # forwarders see it in their acks and publish again what their journals hold.
            log.warning("the stream %s started over (its last sequence is %d, below the %d "
                        "already stored); the forwarders publish again what it lost",
                        self.settings.name, state.last_seq, mark.floor_seq)
            self._mark = mark = CollectorMark(mark.created, 0, 0)
        for gap in find_gaps(self.settings.name, mark, state):
            if await asyncio.to_thread(self.store.record_gap, gap):
                self.stats.lost += gap.lost
                log.error("%s", describe_gap(gap))
        floor = self._mark.floor_seq if self._mark.created == state.created else 0
        self._mark = CollectorMark(state.created, max(floor, state.first_seq - 1),
                                   max(state.last_seq, floor))
        await asyncio.to_thread(self.store.set_collector_mark, self.settings.name,
                                self.durable, self._mark)

    async def _session(self, nc: Any, idle: _Idle, retry: Retry) -> None:
        state = await self._bind(nc)
        retry.succeeded()  # bound: the next failure is a new outage, said and retried soon
        log.info("collecting %s from %s (connected to %s) into %s", self.subject, self.url,
                 connected_server(nc), self.store.url)
        pull = _Pull(self, nc, state)
        await pull.run(idle)


class _Idle:
    """Since when nothing new has come (for ``exit_idle``)."""

    def __init__(self, now: float) -> None:
        self.since = now

    def saw(self, now: float) -> None:
        self.since = now

    def for_(self, now: float) -> float:
        return now - self.since


class _Pull:
    """One binding's pull loop: requests on the collector's clock, commits as the store is
    free (see the module docstring)."""

    def __init__(self, owner: Collector, nc: Any, state: StreamState) -> None:
        self.c = owner
        self.nc = nc
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.arrived: list[Any] = []
        self.changed = asyncio.Event()
        self.ended = True  # no request open
        self.deadline = 0.0
        self.want = 0
        self.received_now = 0
        self.unavailable = 0  # 503s in a row
        self.restart: str | None = None
        self.trouble: str | None = None

    async def on_msg(self, msg: Any) -> None:
        hdr = msg.headers
        if not msg.data and hdr and "Status" in hdr and not msg.reply:
            self._status(hdr["Status"], hdr.get("Description", ""))
        else:
            self.arrived.append(msg)
            self.unavailable = 0
            self.received_now += 1
            if self.received_now >= self.want:
                self.ended = True
        self.changed.set()

    def _status(self, code: str, text: str) -> None:
        if code == "100":  # an idle heartbeat: the request is alive
            return
        self.ended = True
        if code in ("404", "408"):
            self.unavailable = 0  # the consumer answers again
            return
        if code == "503":
            self.unavailable += 1  # no consumer leader now (an election), or no consumer
            return
        if code == "409" and "Leadership Change" in text:
            log.info("the consumer %s changed leader", self.c.durable)
            return
        if code == "409" and "Consumer Deleted" in text:
            self.restart = f"the consumer {self.c.durable} was deleted"
            return
        self.trouble = f"the server ended a pull request with {code} {text}".strip()

    async def request(self) -> None:
        c = self.c
        self.want = c.batch
        self.received_now = 0
        self.ended = False
        expires = c.fetch_timeout
        self.deadline = self.loop.time() + expires + _SLACK
        body = json.dumps({"batch": c.batch, "expires": int(expires * 1e9)}).encode()
        await self.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{c.settings.name}.{c.durable}",
                              body, reply=self.inbox)
        c.stats.requests += 1

    async def run(self, idle: _Idle) -> None:
        c = self.c
        nc = self.nc
        self.inbox = nc.new_inbox()
        sub = await nc.subscribe(self.inbox, cb=self.on_msg, pending_msgs_limit=-1,
                                 pending_bytes_limit=-1)
        committing: asyncio.Task[None] | None = None
        next_gap_check = self.loop.time() + c.gap_check
        try:
            while True:
                now = self.loop.time()
                stopping = c._stop.is_set()
                if committing is not None and committing.done():
                    task, committing = committing, None
                    task.result()  # a store failure ends the session (the batch was NAKed)
                if self.restart:
                    raise _Restart(self.restart)
                if self.trouble:
                    log.warning("%s", self.trouble)
                    self.trouble = None
                if not self.ended and now > self.deadline:
                    self.ended = True  # the server never said: the request is over all the same
                    c.stats.expired += 1
                if self.arrived and committing is None:
                    batch, self.arrived = self.arrived, []
                    idle.saw(now)
                    committing = asyncio.create_task(self._commit(batch))
                if self.ended and committing is None and not self.arrived and (
                        stopping or (c.exit_idle is not None
                                     and idle.for_(now) > c.exit_idle)):
                    return
                backlog = len(self.arrived) >= 2 * c.batch
                if self.ended and not stopping and not backlog:
                    if self.unavailable:
                        await self._unavailable()
                    await self.request()
                if now >= next_gap_check:
                    next_gap_check = now + c.gap_check
                    await self._check_gaps()
                self.changed.clear()
                wait = max(0.01, min(self.deadline - self.loop.time(), c.gap_check))
                if committing is None:
                    await wait_event(self.changed, wait)
                else:
                    await _first(committing, self.changed, wait)
        finally:
            if committing is not None:
                with contextlib.suppress(Exception):
                    await committing
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _unavailable(self) -> None:
        # 503: the consumer has no leader (an election takes seconds), or it is gone. Ask
        # again after a moment; now and then make sure it exists.
        n = self.unavailable
        if n % 8 == 0:
            try:
                await self.c._bind(self.nc)
            except nats_errors() as e:
                log.debug("rebinding after %d unanswered pull requests: %s", n, e)
        if n == 3:
            log.warning("the consumer %s on %s does not answer (no leader now?); asking again "
                        "every 0.25 s", self.c.durable, self.c.settings.name)
        await wait_event(self.c._stop, 0.25)

    async def _check_gaps(self) -> None:
        try:
            self.state = await ensure_stream(self.nc.jetstream(), self.c.settings)
        except nats_errors() as e:
            log.debug("stream info for the gap check: %s", e)
            return
        await self.c._look_for_gaps(self.state)

    async def _commit(self, msgs: list[Any]) -> None:
        c = self.c
        events, rejected, top, again = _check(c.settings.name, msgs)
        try:
            new = await asyncio.to_thread(c.store.commit, events, rejected)
        except StoreError:
            # Hand the batch back at once rather than after ack_wait: it is retried when the
            # store works again.
            for m in msgs:
                with contextlib.suppress(Exception):
                    await self.nc.publish(m.reply, b"-NAK")
            raise
        # Only now is every event of the batch durable in the store: acknowledge.
        publish = self.nc.publish
        for m in msgs:
            await publish(m.reply, b"+ACK")
        s = c.stats
        s.batches += 1
        s.received += len(msgs)
        s.stored += new
        s.already += len(events) - new
        s.rejected += len(rejected)
        s.redelivered += again
        floor, last = top
        mark = c._mark
        if floor > mark.floor_seq or last > mark.last_seq:
            c._mark = CollectorMark(mark.created, max(floor, mark.floor_seq),
                                    max(last, mark.last_seq))
            await asyncio.to_thread(c.store.set_collector_mark, c.settings.name, c.durable,
                                    c._mark)


async def _first(task: asyncio.Task[None], event: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109 - a time limit is what it is for
    waiter = asyncio.create_task(event.wait())
    try:
        await asyncio.wait((task, waiter), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def _check(stream: str, msgs: list[Any]) -> tuple[list[StoredEvent], list[Rejected],
                                                   tuple[int, int], int]:
    """The batch's events, its messages that are not events, (the highest stream sequence in
    it, the stream's last sequence as the messages tell it), and how many came again."""
    events: list[StoredEvent] = []
    rejected: list[Rejected] = []
    top = last = again = 0
    for m in msgs:
        seq, ts_us, pending, delivered = _meta(m.reply)
        again += delivered > 1
        top = max(top, seq)
        last = max(last, seq + pending)
        subject = m.subject
        hdr = m.headers
        item = check_message(subject, m.data, hdr.get("Nats-Msg-Id") if hdr else None, ts_us)
        if isinstance(item, str):
            log.warning("message %d on %s is not a pysens event: %s; kept aside in the "
                        "store's rejected table", seq, subject, item)
            rejected.append(Rejected(stream, seq, subject, item, m.data))
        else:
            events.append(item)
    return events, rejected, (top, last), again


def _meta(reply: str) -> tuple[int, int | None, int, int]:
    """(stream sequence, stream timestamp in µs, messages pending after it, times delivered)
    from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (the v1 form; the
    v2 form puts a domain and an account hash after ``ACK`` and a token at the end).
    """
    parts = reply.split(".")
    at = 5 if len(parts) == 9 else 7
    try:
        return (int(parts[at]), int(parts[at + 2]) // 1000, int(parts[at + 3]),
                int(parts[at - 1]))
    except (IndexError, ValueError):
        return 0, None, 0, 1
