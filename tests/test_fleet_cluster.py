"""The fleet on a real three-node JetStream cluster (tests/nats_cluster.py: nats-server
processes routed on loopback ports): seed lists and discovered servers, an R3 stream, an
administrator's stream left alone, nodes, stream leaders and a collector killed with SIGKILL
while events flow, and loss that could not be prevented said.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet_fixtures import SRC, await_for, free_port, pg_url, storm
from nats_cluster import NatsCluster, nats_cluster
from pysens.fleet.collector import Collector
from pysens.fleet.forwarder import Forwarder
from pysens.fleet.store import open_store
from pysens.fleet.stream import StreamSettings, ensure_stream
from pysens.journal import Journal

__all__ = ["nats_cluster", "pg_url"]


async def _stream_config(url: list[str]) -> Any:
    import nats

    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info("SENS")).config
    finally:
        await nc.close()


async def _make_stream(url: list[str], settings: StreamSettings) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        assert (await ensure_stream(nc.jetstream(), settings)).created_now
    finally:
        await nc.close()


async def test_a_seed_list_with_a_dead_node_and_an_r3_stream(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    nats_cluster.kill(1)
    dead = f"nats://127.0.0.1:{free_port()}"  # nobody there at all
    seed = f"{dead},{nats_cluster.urls[1]},{nats_cluster.urls[0]}"
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("seeded", 50))
    fwd = Forwarder(journal, seed, replicas=3)
    await fwd.run(drain=True)
    await fwd.aclose()
    assert fwd.stats.acked == 50
    cfg = await _stream_config(nats_cluster.urls)
    assert cfg.num_replicas == 3
    # The cursor is named by the seed list's first server, whatever node took the events.
    assert journal.cursor(f"forward:{dead}") == 50
    journal.close()


async def test_the_node_in_use_dies_and_the_announced_servers_take_over(
    nats_cluster: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given one URL only: the others come from the cluster's INFO (connect_urls).
    journal = Journal(tmp_path / "j.db")
    fwd = Forwarder(journal, nats_cluster.urls[0], replicas=3, poll_interval=0.02)
    caplog.set_level(logging.INFO, "pysens.forward")
    task = asyncio.create_task(fwd.run())
    try:
        journal.append_many(storm("disc", 100))
        fwd.notify()
        await await_for(lambda: fwd.stats.cursor == 100, "the first events acked")
        assert nats_cluster.node_of(fwd._nc) == 0
        nats_cluster.kill(0)
        journal.append_many(storm("disc", 100, start=100))
        fwd.notify()
        await await_for(lambda: fwd.stats.cursor == 200, "the events after the kill acked")
        assert nats_cluster.node_of(fwd._nc) in (1, 2)
    finally:
        await fwd.aclose()
        await asyncio.gather(task, return_exceptions=True)
        journal.close()
    text = "\n".join(caplog.messages)
    assert "cannot reach" not in text  # the other nodes were up all along


async def test_an_existing_stream_keeps_its_administrators_settings(
    nats_cluster: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(nats_cluster.urls)
    try:
        await nc.jetstream().add_stream(StreamConfig(
            name="SENS", subjects=["sens.>"], max_age=7 * 86400, duplicate_window=600,
            num_replicas=3))
    finally:
        await nc.close()
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("admin", 10))
    caplog.set_level(logging.WARNING, "pysens.forward")
    for _ in range(2):
        fwd = Forwarder(journal, nats_cluster.seed)  # the defaults: 30 days, 120 s, R1
        await fwd.run(drain=True)
        await fwd.aclose()
    cfg = await _stream_config(nats_cluster.urls)
    assert (cfg.max_age, cfg.duplicate_window, cfg.num_replicas) == (7 * 86400, 600, 3)
    said = [m for m in caplog.messages if "exists with" in m]
    assert len(said) == 2  # once per forwarder that connected, not once per reconnect
    assert "max_age 604800 s (configured: 2.592e+06 s)" in said[0]
    assert "num_replicas 3 (configured: 1)" in said[0] and "keeps the stream's own" in said[0]
    journal.close()


async def test_an_r1_stream_lost_with_its_disk_loses_nothing_the_forwarder_still_has(
    nats_cluster: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j.db")
    store = f"sqlite:///{tmp_path}/fleet.db"
    journal.append_many(storm("r1", 30))
    fwd = Forwarder(journal, nats_cluster.seed, replicas=1, poll_interval=0.02,
                    backoff=(0.05, 0.5))
    task = asyncio.create_task(fwd.run())
    try:
        await await_for(lambda: fwd.stats.cursor == 30, "the first events acked")
        first = Collector(nats_cluster.seed, store, exit_idle=0.5)
        assert (await first.run()).stored == 30
        first.release()
        # 20 more reach the stream while no collector runs, and the node holding the stream
        # loses its disk: the stream comes back empty (same name, same creation time).
        journal.append_many(storm("r1", 20, start=30))
        fwd.notify()
        await await_for(lambda: fwd.stats.cursor == 50, "the next events acked")
        holder = nats_cluster.wait_stream_leader("SENS")
        nats_cluster.wipe(holder)
        nats_cluster.restart(holder)
        nats_cluster.wait_ready()
        caplog.set_level(logging.WARNING)
        journal.append_many(storm("r1", 10, start=50))
        fwd.notify()
        await await_for(lambda: fwd.stats.stream_resets == 1 and fwd.stats.cursor == 60,
                        "the forwarder to publish again what the stream lost", 90)
    finally:
        await fwd.aclose()
        await asyncio.gather(task, return_exceptions=True)
    second = Collector(nats_cluster.seed, store, exit_idle=10, backoff=(0.1, 0.5))
    collecting = asyncio.create_task(second.run())
    await await_for(lambda: second.store.count() == 60, "the events to be stored")
    second.stop()
    await collecting
    assert second.store.count() == 60  # the 20 the stream lost came again from the journal
    assert sorted(second.store.ids()) == sorted(e.id for e in journal.query())
    said = [m for m in caplog.messages if "started over" in m]
    assert len(said) == 1 and "publishing this host's events again from journal seq 1" in said[0]
    second.release()
    journal.close()


def _spawn_collector(seed: str, store: str, log: Path) -> subprocess.Popen[bytes]:
    import os

    env = dict(os.environ, PYTHONPATH=str(SRC))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pysens.cli", "-v", "collect", seed, "--store", store,
             "--batch", "200", "--replicas", "3"], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow  # three SIGKILLs; the server's elections after them take 4-9 s each
async def test_kill9_of_nodes_leaders_and_a_collector_while_events_flow(
    nats_cluster: NatsCluster, tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pysens.forward")  # all of it, should it stall
    seed = nats_cluster.seed
    journals = [Journal(tmp_path / f"j{i}.db") for i in range(2)]
    forwarders = [Forwarder(j, seed, replicas=3, poll_interval=0.02) for j in journals]
    # The stream made once, before the four clients start: when several create it in the same
    # few milliseconds, nats-server 2.9 may make it twice (both creators are told "created";
    # the collectors then rightly record a gap for what the first one held). Kills are this
    # test's subject; that race is a server's, and the forwarders' republishing after a stream
    # that started over is tested above.
    await _make_stream(nats_cluster.urls, forwarders[0].settings)
    # Every client that may create the stream says R3: the first to come makes it.
    collector = Collector(seed, pg_url, batch=200, replicas=3)
    log = tmp_path / "collector2.log"
    other = _spawn_collector(seed, pg_url, log)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(f.run()) for f in forwarders]
    tasks.append(asyncio.create_task(collector.run()))
    sent = [0, 0]
    feeding = True

    async def feed() -> None:
        # A steady 400 events a second over both hosts.
        while feeding:
            for i, (j, f) in enumerate(zip(journals, forwarders, strict=True)):
                j.append_many(storm(f"host{i}", 20, start=sent[i]))
                sent[i] += 20
                f.notify()
            await asyncio.sleep(0.1)

    store = open_store(pg_url)

    async def flowing(more: int) -> None:
        target = store.count() + more
        await await_for(lambda: store.count() >= target, f"{more} more events stored", 90)

    feeder = asyncio.create_task(feed())
    try:
        try:
            await flowing(200)
            assert nats_cluster.stream_info("SENS")["config"]["num_replicas"] == 3
            # 1. the node the first forwarder is connected to
            node = nats_cluster.node_of(forwarders[0]._nc)
            nats_cluster.kill(node)
            await flowing(400)
            nats_cluster.restart(node)
            nats_cluster.wait_ready()
            # 2. the stream's leader (once the restarted node's replica has caught up: one
            # failure at a time, as a 3-node cluster is built to take)
            leader = nats_cluster.wait_stream_current("SENS")
            nats_cluster.kill(leader)
            await flowing(400)
            nats_cluster.restart(leader)
            nats_cluster.wait_ready()
            # 3. the other collector, mid-batch, and again with it restarted
            await await_for(lambda: b"collecting" in log.read_bytes(), "the second collector")
            other.send_signal(signal.SIGKILL)
            other.wait()
            await flowing(200)
            other = _spawn_collector(seed, pg_url, log)
            feeding = False
            await feeder
            # 4. a burst
            for i, (j, f) in enumerate(zip(journals, forwarders, strict=True)):
                j.append_many(storm(f"host{i}", 3000, start=sent[i]))
                sent[i] += 3000
                f.notify()
            total = sum(sent)
            await await_for(lambda: store.count() == total, "every event stored", 120)
            await await_for(lambda: all(f.pending == 0 for f in forwarders), "every ack back")
        finally:
            feeding = False
            await asyncio.gather(feeder, return_exceptions=True)
            collector.stop()
            for f in forwarders:
                await f.aclose()
            await asyncio.gather(*tasks, return_exceptions=True)
            other.send_signal(signal.SIGTERM)
            other.wait(30)
        ids = sorted(store.ids())
        want = sorted(e.id for j in journals for e in j.query())
        assert len(ids) == len(want) == total and ids == want  # each once, none missing
        assert store.gaps() == []
        assert collector.stats.received > 0  # the in-process collector did its share
        assert b"collected" in log.read_bytes()  # and so did the restarted one
    finally:
        collector.release()
        store.close()
        for j in journals:
            j.close()
