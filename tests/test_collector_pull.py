"""The collector's pull loop and its loss reports, against a real nats-server.

The stall this guards against: nats-server before 2.9.15 (Debian ships 2.9.10) can end an
expiring pull request that has delivered part of its batch without sending its 408. A
collector that waits for the status never asks again; the messages it has in hand are only
acknowledged once it gives up, and by then the server has sent them again after ack_wait (30 s).
So the symptom is redelivery: a collector that never stalls has every message delivered once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fleet_fixtures import NatsServer, await_for, nats_server, storm
from pysens.events import SensEvent
from pysens.fleet.collector import Collector
from pysens.fleet.forwarder import Forwarder
from pysens.fleet.store import Gap
from pysens.journal import Journal

__all__ = ["nats_server"]


async def _consumer_info(url: str, durable: str = "sens-collector") -> object:
    import nats

    nc = await nats.connect(url)
    try:
        return await nc.jetstream().consumer_info("SENS", durable)
    finally:
        await nc.close()


async def _publish_paced(url: str, events: list[SensEvent], rate: float) -> None:
    """The events one by one at ``rate`` a second (how the stall was reproduced: a steady
    flow keeps every pull request part-filled when it expires)."""
    import nats

    from pysens.fleet.stream import StreamSettings, ensure_stream, subject_for

    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, e in enumerate(events):
        await js.publish_async(subject_for(e.host, str(e.method)), e.to_json_text().encode(),
                               headers={"Nats-Msg-Id": e.id})
        delay = start + (i + 1) / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    await js.publish_async_completed()
    await nc.close()


async def test_a_steady_flow_is_collected_without_a_stall_or_a_redelivery(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # The pysens 0.1 collector stalled here in 5 of 5 runs of 20,000 events (30 s waits for the
    # ack wait); it shows as more deliveries than messages.
    events = storm("steady", 20000)
    collector = Collector(nats_server.url, f"sqlite:///{tmp_path}/fleet.db")
    task = asyncio.create_task(collector.run())
    try:
        await _publish_paced(nats_server.url, events, 1000)
        await await_for(lambda: collector.store.count() == len(events), "every event stored")
        info = await _consumer_info(nats_server.url)
    finally:
        collector.stop()
        await task
        collector.release()
    # Every delivery, a redelivery too, takes a consumer sequence: one each means none came
    # twice.
    assert info.delivered.consumer_seq == len(events)  # type: ignore[attr-defined]
    assert collector.stats.redelivered == 0
    assert collector.stats.received == len(events)
    assert collector.stats.requests > 10  # many requests ended part-filled, none waited on


async def test_two_collectors_on_one_durable_share_the_work_and_store_each_event_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("shared", 6000))
    fwd = Forwarder(journal, nats_server.url)
    await fwd.run(drain=True)
    await fwd.aclose()
    store = f"sqlite:///{tmp_path}/fleet.db"
    # Small batches, so that both are asking while the other commits.
    a = Collector(nats_server.url, store, batch=100, exit_idle=1.0)
    b = Collector(nats_server.url, store, batch=100, exit_idle=1.0)
    sa, sb = await asyncio.gather(a.run(), b.run())
    assert sa.received > 0 and sb.received > 0
    assert sa.received + sb.received == 6000 and sa.stored + sb.stored == 6000
    assert a.store.count() == 6000 and sorted(a.store.ids()) == sorted(
        e.id for e in journal.query())
    a.release()
    b.release()
    journal.close()


async def _stream_first_seq(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info("SENS")).state.first_seq)
    finally:
        await nc.close()


async def test_messages_the_stream_dropped_before_they_were_stored_are_said_and_kept(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j.db")
    store = f"sqlite:///{tmp_path}/fleet.db"
    journal.append_many(storm("h1", 20))
    fwd = Forwarder(journal, nats_server.url, max_age=1.0)  # the stream keeps 1 s
    await fwd.run(drain=True)
    first = Collector(nats_server.url, store, exit_idle=0.3)
    assert (await first.run()).stored == 20
    first.release()
    # The collectors are down while 30 more events come and the stream's retention runs.
    journal.append_many(storm("h1", 30, start=20))
    await fwd.run(drain=True)
    await fwd.aclose()
    deadline = asyncio.get_running_loop().time() + 30
    while await _stream_first_seq(nats_server.url) <= 50:
        assert asyncio.get_running_loop().time() < deadline, "the stream never expired"
        await asyncio.sleep(0.2)
    caplog.set_level(logging.INFO, "pysens.collect")
    second = Collector(nats_server.url, store, exit_idle=0.3)
    stats = await second.run()
    assert stats.lost == 30 and stats.received == 0
    gaps = second.store.gaps()
    assert [(g.stream, g.first_seq, g.last_seq, g.lost) for g in gaps] == [("SENS", 21, 50, 30)]
    assert isinstance(gaps[0], Gap) and "retention" in gaps[0].reason
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1 and "lost 30 message(s)" in said[0] and "21-50" in said[0]
    # Said once: a later look finds the same gap already kept.
    third = Collector(nats_server.url, second.store, exit_idle=0.3)
    assert (await third.run()).lost == 0
    assert len(second.store.gaps()) == 1
    second.release()
    journal.close()
