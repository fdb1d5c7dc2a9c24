"""Probe: the collector's stall when a pull request ends without the reply it waits for.

The cause, as measured here on nats-server 2.9.10: a pull request that expires while the
consumer is delivering is dropped in the delivery path without the ``408 Request Timeout`` the
expiry timer would send (nats-server fixed that in 2.9.15, nats-io/nats-server#3942: "Fix Pull
Consumer not sending request timeout"). The collector, waiting for a full batch or a status,
then gives up after ``fetch_timeout + 5`` s, reconnects and drops the messages in hand, which
come back only after the consumer's 30 s ack wait. A client must therefore never need a
terminator: a request ends on its status, on a full batch, on its own expiry (plus a margin) or
on two missed idle heartbeats, and whatever arrived is the batch.

``frames``: what nats-server sends on a raw ``$JS.API.CONSUMER.MSG.NEXT`` subscription (a
request that expires while messages flow, with an idle heartbeat, with nothing flowing, and
``no_wait``), printed verbatim.

``repro``: ``--runs`` times, a fresh stream and durable, a consumer running, then ``--events``
events published (``--rate 0``: by pysens's Forwarder from a journal, as fast as it goes; else
a nats-py publisher paced at that many events/s). Reported per run: the time from the first
publish until the consumer has stored every event, and the "tail" from the last publish ack
until then (a healthy run: well under a second; a stalled one: the 30 s ack wait). With
``--consumer current`` (pysens's Collector, unchanged), every request, status line, ``+ACK``
write and reconnect is traced (natsproto patched in this process only) and printed for the
runs that stalled. The other consumers are the candidate fixes:

  fetch   nats-py ``pull_subscribe().fetch(1000, timeout=0.5, heartbeat=0.1)``, commit, ack
  fixed   a lean loop (natsproto) whose request has its own expiry and an idle heartbeat, which
          takes whatever arrived as the batch (never waits for a full one), treats 408/404/409
          as the end of a request and silence past two heartbeats as a lost request (asks
          again, keeps the messages in hand), and acks per message

    python bench/probe_collector_stall.py frames
    python bench/probe_collector_stall.py repro [--setup single|r3] [--runs 16]
        [--events 20000] [--rate 0] [--consumer current|fetch|fixed] [--store sqlite|null]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_fleet import fleet_events  # noqa: E402
from fleet_fixtures import NatsServer  # noqa: E402
from nats_cluster import NatsCluster  # noqa: E402
from probe_nats_clients import STREAM, NullStore, fresh_stream  # noqa: E402
from pysens import natsproto  # noqa: E402
from pysens.aio import wait_event  # noqa: E402
from pysens.collector import Collector, _meta, check_message  # noqa: E402
from pysens.journal import Journal  # noqa: E402
from pysens.sinks.nats import Forwarder  # noqa: E402
from pysens.store import Store, open_store  # noqa: E402

T0 = time.monotonic()


async def _quiet(exc: Exception) -> None:
    """nats-py error callback."""


# -- frames ----------------------------------------------------------------------------------


async def frames(url: str, port: int, repeat: int = 4) -> None:
    """Print every status frame a raw MSG.NEXT subscription gets, per scenario: each on its
    own durable (no ack limit), every message acknowledged at once, ``repeat`` times."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    await fresh_stream(url, 1)
    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()

    async def publish(rate: float, seconds: float) -> None:
        for i in range(int(rate * seconds)):
            await js.publish_async("sens.h.Logon", b"x" * 600,
                                   headers={"Nats-Msg-Id": f"{time.time_ns()}-{i}"})
            await asyncio.sleep(1 / rate)
        await js.publish_async_completed()

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false,"headers":true,"no_responders":true,"protocol":1}'
                 b"\r\nSUB _INBOX.raw 1\r\n")

    async def show(t0: float, seen: list[str]) -> None:
        n = 0
        while True:
            line = await reader.readline()
            if line.startswith((b"HMSG", b"MSG")):
                args = line.split(b" ")
                body = await reader.readexactly(int(args[-1]) + 2)
                hlen = int(args[-2]) if line.startswith(b"HMSG") else 0
                # No reply subject: a status. A server writes "HMSG <inbox> <sid>  <h> <t>"
                # (an empty reply) for its own, "HMSG <inbox> <sid> <h> <t>" for one that
                # came over a route.
                if args[3:4] == [b""] or len(args) == (5 if hlen else 4):
                    seen.append(f"{time.monotonic() - t0:6.3f} s, after {n} messages: "
                                f"{line.strip().decode()!r} {body[:hlen]!r}")
                else:
                    n += 1
                    writer.write(b"PUB " + args[3] + b" 4\r\n+ACK\r\n")
            elif line.startswith(b"PING"):
                writer.write(b"PONG\r\n")

    scenarios = [
        ("batch 1000, expires 0.5 s, ~500 messages/s flowing",
         {"batch": 1000, "expires": 500_000_000}, True),
        ("batch 1000, expires 0.5 s, idle_heartbeat 0.1 s, ~500 messages/s flowing",
         {"batch": 1000, "expires": 500_000_000, "idle_heartbeat": 100_000_000}, True),
        ("batch 1000, expires 0.5 s, idle_heartbeat 0.1 s, nothing flowing",
         {"batch": 1000, "expires": 500_000_000, "idle_heartbeat": 100_000_000}, False),
        ("batch 1000, no_wait, nothing pending", {"batch": 1000, "no_wait": True}, False),
        ("batch 1000, expires 0.5 s, idle_heartbeat 0.4 s (more than half the expiry)",
         {"batch": 1000, "expires": 500_000_000, "idle_heartbeat": 400_000_000}, False),
    ]
    for k, (label, req, flowing) in enumerate(scenarios):
        print(label)
        for r in range(repeat if flowing else 1):
            durable = f"raw{k}x{r}"
            await js.add_consumer(STREAM, ConsumerConfig(
                durable_name=durable, ack_wait=30, ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=-1, deliver_policy=DeliverPolicy.NEW))
            seen: list[str] = []
            t0 = time.monotonic()
            task = asyncio.create_task(show(t0, seen))
            pub = asyncio.create_task(publish(500, 1.0)) if flowing else None
            await asyncio.sleep(0.2)
            body = json.dumps(req).encode()
            writer.write(f"PUB $JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable} _INBOX.raw "
                         f"{len(body)}\r\n".encode() + body + b"\r\n")
            await asyncio.sleep(1.3)
            task.cancel()
            if pub is not None:
                await pub
            info = await js.consumer_info(STREAM, durable)
            print(f"  try {r + 1}: sent {body.decode()} at 0.200 s; delivered "
                  f"{info.delivered.consumer_seq}, {info.num_waiting} requests still waiting")
            for line in seen or ["(no status frame at all)"]:
                print("    " + line)
    writer.close()
    await nc.close()


# -- the trace of the current collector ------------------------------------------------------


class Trace:
    """What the current collector's natsproto connection sends and gets (this process)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.counted = 0
        orig_sub = natsproto.NatsConnection.subscribe
        orig_write = natsproto.NatsConnection.write
        trace = self

        def subscribe(conn: Any, subject: str, handler: Any) -> None:
            def traced(s: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
                if not reply and headers:
                    trace.add(f"status after {trace.counted} messages: {headers!r}")
                    trace.counted = 0
                else:
                    trace.counted += 1
                handler(s, reply, headers, data)
            orig_sub(conn, subject, traced)

        def write(conn: Any, data: bytes) -> None:
            if b"MSG.NEXT" in data:
                trace.add("request " + data.split(b"\r\n")[1].decode())
            elif b"+ACK" in data:
                trace.add(f"+ACK x{data.count(b'+ACK')}")
            orig_write(conn, data)

        natsproto.NatsConnection.subscribe = subscribe  # type: ignore[method-assign]
        natsproto.NatsConnection.write = write  # type: ignore[method-assign]
        handler = logging.Handler()
        handler.emit = lambda record: self.add(  # type: ignore[method-assign]
            f"log: {record.getMessage()} ({self.counted} messages since the last status)")
        logging.getLogger("pysens.collect").addHandler(handler)
        logging.getLogger("pysens.collect").setLevel(logging.INFO)

    def add(self, text: str) -> None:
        """Record one line with the time since the run's start."""
        self.lines.append(f"{time.monotonic() - T0:8.3f} {text}")


# -- consumers -------------------------------------------------------------------------------


class Counter:
    """How many events a consumer has stored so far."""

    def __init__(self) -> None:
        self.n = 0


async def consume_current(url: str, store: Store, counter: Counter, stop: asyncio.Event) -> None:
    """pysens's Collector, as it is."""
    col = Collector(url, store)
    task = asyncio.create_task(col.run())
    while not stop.is_set():
        counter.n = col.stats.received
        await asyncio.sleep(0.01)
    await col.close()
    await task


async def consume_fetch(url: str, store: Store, counter: Counter, stop: asyncio.Event) -> None:
    """nats-py fetch with its own expiry and heartbeat; commit what came, ack each."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()
    psub = await js.pull_subscribe("sens.>", durable="sens-collector", stream=STREAM,
                                   config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                                         ack_wait=30, max_ack_pending=20_000))
    while not stop.is_set():
        # No heartbeat: nats-py's second (lingering) request gets the *remaining* time as its
        # expiry, and a heartbeat over half of that is refused with "400 Bad Request -
        # heartbeat value too large" (raised as APIError). fetch's own deadline is enough.
        try:
            msgs = await psub.fetch(1000, timeout=0.5)
        except TimeoutError:  # nats.errors.TimeoutError, and a bare one from _fetch_n
            continue
        items = [check_message(m.subject, m.data, (m.headers or {}).get("Nats-Msg-Id"))
                 for m in msgs]
        await asyncio.to_thread(store.commit, [i for i in items if not isinstance(i, str)])
        for m in msgs:
            await m.ack()
        counter.n += len(msgs)
    await nc.close()


async def consume_fixed(url: str, store: Store, counter: Counter, stop: asyncio.Event,
                        batch: int = 1000, expires: float = 0.5, heartbeat: float = 0.1) -> None:
    """The lean loop the fix describes (see the module docstring)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url, error_cb=_quiet)
    await nc.jetstream().pull_subscribe(
        "sens.>", durable="sens-collector", stream=STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30,
                              max_ack_pending=20_000))
    await nc.close()
    conn = await natsproto.NatsConnection.open(url)
    inbox = conn.new_inbox()
    got: list[tuple[bytes, bytes, bytes, bytes]] = []
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    state = {"open": False, "last": loop.time(), "sent": loop.time(), "n": 0, "lost": 0}

    def on_msg(subject: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
        state["last"] = loop.time()
        if not reply and (code := natsproto.status_of(headers)):
            if code != 100:  # 100: idle heartbeat, the request is alive
                state["open"] = False  # 404, 408 (with Nats-Pending-*), 409: it has ended
                wake.set()
            return
        got.append((subject, reply, headers, data))
        state["n"] += 1
        if state["n"] >= batch:  # a full batch ends the request with no status at all
            state["open"] = False
            wake.set()

    conn.subscribe(inbox, on_msg)
    body = json.dumps({"batch": batch, "expires": int(expires * 1e9),
                       "idle_heartbeat": int(heartbeat * 1e9)}).encode()
    request = (f"PUB $JS.API.CONSUMER.MSG.NEXT.{STREAM}.sens-collector {inbox} {len(body)}\r\n"
               .encode() + body + b"\r\n")
    while not stop.is_set():
        if not state["open"]:
            conn.write(request)
            state["open"], state["n"] = True, 0
            state["last"] = state["sent"] = loop.time()
        await wait_event(wake, heartbeat)
        wake.clear()
        now = loop.time()
        if state["open"] and (now - state["last"] > 2 * heartbeat + 0.2
                              or now - state["sent"] > expires + 0.3):
            # Silence past two heartbeats, or past the request's own expiry: the server has
            # dropped it without a status (nats-server before 2.9.15). Ask again; the
            # messages it did deliver are in hand and get acknowledged below.
            state["open"] = False
            state["lost"] += 1
        if got:
            msgs, got[:] = list(got), []
            if not state["open"]:  # the next batch comes while this one is stored
                conn.write(request)
                state["open"], state["n"] = True, 0
                state["last"] = state["sent"] = loop.time()
            items = [check_message(m[0].decode(), m[3], natsproto.header_value(
                m[2], b"Nats-Msg-Id"), _meta(m[1].decode())[1]) for m in msgs]
            await asyncio.to_thread(store.commit, [i for i in items if not isinstance(i, str)])
            conn.write(b"".join(b"PUB " + m[1] + b" 4\r\n+ACK\r\n" for m in msgs))
            counter.n += len(msgs)
    if state["lost"]:
        print(f"    (fixed: {state['lost']} requests ended without a status)")
    await conn.close()


CONSUMERS = {"current": consume_current, "fetch": consume_fetch, "fixed": consume_fixed}


# -- one run ---------------------------------------------------------------------------------


async def publish_paced(url: str, bodies: list[tuple[str, bytes, str]], rate: float) -> None:
    """nats-py publish_async at ``rate`` events/s."""
    import nats

    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()
    start = time.monotonic()
    for i, (subject, data, msg_id) in enumerate(bodies):
        await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
        delay = start + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await js.publish_async_completed()
    await nc.close()


async def one_run(url: str, replicas: int, args: argparse.Namespace, journal: Journal,
                  bodies: list[tuple[str, bytes, str]], tmp: Path, k: int) -> tuple[float, float]:
    """(seconds from the first publish until all are stored, the tail after the last ack)."""
    await fresh_stream(url, replicas)
    store: Store = (NullStore() if args.store == "null"
                    else open_store(f"sqlite:///{tmp}/store{k}.db"))
    counter = Counter()
    stop = asyncio.Event()
    task = asyncio.create_task(CONSUMERS[args.consumer](url, store, counter, stop))
    await asyncio.sleep(args.warm)  # the consumer has its durable before the events come
    t0 = time.monotonic()
    if args.rate:
        await publish_paced(url, bodies, args.rate)
    else:
        fwd = Forwarder(journal, url, cursor=f"run{k}")
        await fwd.run(drain=True)
        await fwd.close()
    t_pub = time.monotonic()
    deadline = t_pub + 90
    while counter.n < len(bodies) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    done = time.monotonic()
    stop.set()
    await task
    store.close()
    return done - t0, done - t_pub


async def repro(url: str, replicas: int, args: argparse.Namespace, tmp: Path) -> None:
    """Every run, one line each; the trace of each stalled run of the current collector."""
    trace = Trace() if args.consumer == "current" else None
    events = fleet_events(args.events, 1000)
    journal = Journal(tmp / "journal.db")
    journal.append_many(events)
    with sqlite3.connect(tmp / "journal.db") as db:
        rows = db.execute("SELECT seq, id, host, method, body FROM events ORDER BY seq"
                          ).fetchall()
    from pysens.sinks.nats import _payload, host_token

    bodies = [(f"sens.{host_token(host)}.{method}", _payload(body, seq, event_id), event_id)
              for seq, event_id, host, method, body in rows]
    how = f"{args.rate:g}/s by nats-py" if args.rate else "by the Forwarder"
    print(f"{args.runs} runs: {args.events} events published {how}, consumer {args.consumer}, "
          f"store {args.store}, {args.setup}")
    stalls = 0
    for k in range(args.runs):
        if trace is not None:
            trace.lines.clear()
        total, tail = await one_run(url, replicas, args, journal, bodies, tmp, k)
        stalled = tail > 5
        stalls += stalled
        print(f"  run {k + 1:2}: {total:6.2f} s in all, tail {tail:6.2f} s"
              + ("  STALLED" if stalled else ""), flush=True)
        if stalled and trace is not None:
            for line in _around_stall(trace.lines):
                print("      " + line)
    journal.close()
    print(f"{stalls} of {args.runs} runs stalled (tail > 5 s)")


def _around_stall(lines: list[str]) -> list[str]:
    """The trace lines around the longest silence (acks folded), at most ~16 lines."""
    times = [float(line.split()[0]) for line in lines]
    if len(times) < 2:
        return lines
    gaps = [b - a for a, b in itertools.pairwise(times)]
    at = gaps.index(max(gaps))
    return lines[max(0, at - 6):at + 10]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["frames", "repro"])
    p.add_argument("--setup", choices=["single", "r3"], default="single")
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=0.0, help="events/s (0: the Forwarder)")
    p.add_argument("--consumer", choices=sorted(CONSUMERS), default="current")
    p.add_argument("--store", choices=["sqlite", "null"], default="sqlite")
    p.add_argument("--warm", type=float, default=1.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe_stall_"))
    server: NatsServer | None = None
    cluster: NatsCluster | None = None
    try:
        if args.setup == "r3":
            cluster = NatsCluster(tmp / "cluster", 3)
            cluster.start()
            cluster.wait_ready()
            url, port, replicas = cluster.urls[0], cluster.nodes[0].port, 3
        else:
            server = NatsServer(tmp / "js")
            server.start()
            url, port, replicas = server.url, server.port, 1
        if args.what == "frames":
            asyncio.run(frames(url, port))
        else:
            asyncio.run(repro(url, replicas, args, tmp))
    finally:
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
