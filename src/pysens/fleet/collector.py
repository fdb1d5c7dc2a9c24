"""The fleet's central consumer: JetStream -> the central store, each event once.

A durable pull consumer (default name ``sens-collector``) fetches batches from the stream the
forwarders fill; each batch is committed to the store in one transaction (insert-or-ignore by
event id) and only then acknowledged, so a collector killed at any point loses nothing (the
unacknowledged messages come again) and doubles nothing (the store ignores ids it has).

The messages come over :mod:`pysens.fleet.natsproto`: ``$JS.API.CONSUMER.MSG.NEXT`` requests (the
next one sent before the batch in hand is checked) answered by ``HMSG`` frames, and after the
commit one write with every ``+ACK`` of the batch. nats-py only creates the stream (when no
forwarder has) and the durable consumer.

A message that is not a pysens event (not JSON, no id, an unknown method, a body whose id does
not match its ``Nats-Msg-Id`` …) is kept aside in the store's ``rejected`` table with its subject,
the reason and the raw bytes, logged in one sentence, and acknowledged: it never blocks the
consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from .._deprecated import renamed as _renamed
from ..aio import Retry, wait_event
from .connection import connect, describe_failure, nats_errors
from .natsproto import Msg
from .store import Rejected, Store, StoredEvent, StoreError, open_store
from .store.intake import check_message
from .stream import DEFAULT_PREFIX, DEFAULT_STREAM, StreamSettings, ensure_stream
from .urls import redact_url

__all__ = ["DEFAULT_DURABLE", "Collector", "CollectorStats", "check_message"]

log = logging.getLogger("pysens.collect")

DEFAULT_DURABLE = "sens-collector"


@dataclass(slots=True)
class CollectorStats:
    """What a collector has done since it started."""

    received: int = 0
    stored: int = 0
    already: int = 0
    rejected: int = 0
    batches: int = 0
    failures: int = 0
    #: why the run ended while failing (``exit_idle`` ran out during an outage), else None
    gave_up: str | None = None


class Collector:
    """Consumes the fleet's stream at ``url`` into ``store``; :meth:`run` until :meth:`close`.

    ``subject`` narrows what this consumer takes (default ``<prefix>.>``: everything).
    ``exit_idle``: return from :meth:`run` once the stream has had nothing new for that many
    seconds (batch jobs and tests); None runs until :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        store: Store | str,
        *,
        stream: str = DEFAULT_STREAM,
        prefix: str = DEFAULT_PREFIX,
        durable: str = DEFAULT_DURABLE,
        subject: str | None = None,
        batch: int = 1000,
        fetch_timeout: float = 0.5,
        exit_idle: float | None = None,
        backoff: tuple[float, float] = (0.2, 15.0),
    ) -> None:
        self._own_store = not isinstance(store, Store)
        self.store = store if isinstance(store, Store) else open_store(store)
        self.url = url
        self.settings = StreamSettings(stream, prefix)
        self.durable = durable
        self.subject = subject or f"{prefix}.>"
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.exit_idle = exit_idle
        self.backoff = backoff
        self.stats = CollectorStats()
        self._stop = asyncio.Event()
        self._nc: Any = None

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand is stored and acknowledged."""
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
        """Collect until :meth:`close` (or ``exit_idle``); network and store failures are logged
        once per outage and retried with backoff."""
        retry = Retry(*self.backoff, log)
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while not self._stop.is_set():
            try:
                idle_since = await self._session(idle_since)
                return self.stats
            except nats_errors(StoreError) as e:  # the network, the server or the store
                self.stats.failures += 1
                msg = str(e) if isinstance(e, StoreError) else describe_failure(e, self.url)
                delay = retry.failed(f"{msg}; the collector keeps retrying")
                if self.exit_idle is not None and loop.time() - idle_since > self.exit_idle:
                    self.stats.gave_up = msg
                    return self.stats
            finally:
                nc, self._nc = self._nc, None
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.aclose()
            await wait_event(self._stop, delay)
        return self.stats

    async def _session(self, idle_since: float) -> float:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        from .natsproto import NatsConnection, status_of

        # nats-py creates (or binds to) the stream and the durable consumer; the messages
        # themselves come over the lean protocol connection (pysens.fleet.natsproto).
        nc = await connect(self.url)
        try:
            js = nc.jetstream()
            await ensure_stream_exists(js, self.settings)
            await js.pull_subscribe(
                self.subject, durable=self.durable, stream=self.settings.name,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                    ack_wait=30, max_deliver=-1,
                    max_ack_pending=max(20_000, 4 * self.batch),
                ),
            )
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        conn = self._nc = await NatsConnection.open(self.url, name="sens-collect")
        log.info("collecting %s from %s into %s", self.subject, redact_url(self.url),
                 self.store.url)
        inbox = conn.new_inbox()
        batch = self.batch
        got: list[list[Msg]] = [[]]
        complete = asyncio.Event()
        trouble: list[str] = []

        def on_msg(subject: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
            # A status ends the pull request; it has no ack reply subject, which every stream
            # message has. 408 (expired) and 404 (nothing) are the normal ends; any other
            # (503 no consumer, 409 consumer deleted …) means reconnecting, with backoff
            # rather than asking again at once.
            if not reply and (code := status_of(headers)):
                if code not in (404, 408):
                    text = headers[:headers.find(b"\r\n")].decode("utf-8", "replace")
                    trouble.append(f"the server ended a fetch with {text[9:] or code}")
                complete.set()
                return
            mine = got[0]
            mine.append((subject, reply, headers, data))
            if len(mine) >= batch:
                complete.set()

        conn.subscribe(inbox, on_msg)
        conn.closed.add_done_callback(lambda _: complete.set())
        expires = int(self.fetch_timeout * 1e9)
        body = f'{{"batch":{batch},"expires":{expires}}}'.encode()
        request = (f"PUB $JS.API.CONSUMER.MSG.NEXT.{self.settings.name}.{self.durable} "
                   f"{inbox} {len(body)}\r\n").encode() + body + b"\r\n"
        loop = asyncio.get_running_loop()
        # One batch is committed (in a worker thread) while the next is fetched and checked.
        committing: asyncio.Task[None] | None = None
        conn.write(request)
        try:
            while True:
                if not await wait_event(complete, self.fetch_timeout + 5):
                    raise ConnectionError("the server did not answer a fetch within "
                                          f"{self.fetch_timeout + 5:g} s")
                if conn.closed.done():
                    raise ConnectionError(conn.closed.result())
                if trouble:
                    raise ConnectionError(trouble[0])
                complete.clear()
                msgs, got[0] = got[0], []
                stopping = self._stop.is_set()
                if not msgs:
                    if committing is not None:
                        await committing
                        committing = None
                    if stopping or (self.exit_idle is not None
                                    and loop.time() - idle_since > self.exit_idle):
                        return idle_since
                    conn.write(request)
                    continue
                if not stopping:
                    conn.write(request)  # the next batch comes while this one is checked
                idle_since = loop.time()
                checked = self._check(msgs)
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(conn, msgs, *checked))
                if stopping:
                    return idle_since
        finally:
            if committing is not None:
                await committing

    def _check(self, msgs: list[Msg]) -> tuple[list[StoredEvent], list[Rejected]]:
        from .natsproto import header_value

        events: list[StoredEvent] = []
        rejected: list[Rejected] = []
        for subject_b, reply, headers, data in msgs:
            meta = _meta(reply.decode())
            subject = subject_b.decode()
            msg_id = header_value(headers, b"Nats-Msg-Id") if headers else None
            item = check_message(subject, data, msg_id, meta[1])
            if isinstance(item, str):
                log.warning("message %d on %s is not a pysens event: %s; kept aside in the "
                            "store's rejected table", meta[0], subject, item)
                rejected.append(Rejected(self.settings.name, meta[0], subject, item, data))
            else:
                events.append(item)
        return events, rejected

    async def _commit(self, conn: Any, msgs: list[Msg], events: list[StoredEvent],
                      rejected: list[Rejected]) -> None:
        try:
            new = await asyncio.to_thread(self.store.commit, events, rejected)
        except StoreError:
            # Hand the batch back at once rather than after ack_wait: it is retried when the
            # store works again.
            with contextlib.suppress(Exception):
                conn.write(b"".join(b"PUB " + m[1] + b" 4\r\n-NAK\r\n" for m in msgs))
            raise
        # Only now is every event of the batch durable in the store: acknowledge, in one write.
        conn.write(b"".join(b"PUB " + m[1] + b" 4\r\n+ACK\r\n" for m in msgs))
        self.stats.batches += 1
        self.stats.received += len(msgs)
        self.stats.stored += new
        self.stats.already += len(events) - new
        self.stats.rejected += len(rejected)


async def ensure_stream_exists(js: Any, settings: StreamSettings) -> None:
    """Create the stream with the default retention when no forwarder has yet."""
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(settings.name)
    except NotFoundError:
        await ensure_stream(js, settings)


def _meta(reply: str) -> tuple[int, int | None]:
    """(stream sequence, stream timestamp in µs) from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (the v1 form; the
    v2 form puts a domain and an account hash after ``ACK`` and a token at the end).
    """
    parts = reply.split(".")
    at = 5 if len(parts) == 9 else 7
    try:
        return int(parts[at]), int(parts[at + 2]) // 1000
    except (IndexError, ValueError):
        return 0, None
