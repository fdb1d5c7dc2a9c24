"""End to end: host journals -> forwarder processes -> JetStream -> collector process -> store,
with a forwarder and the collector killed -9 and NATS restarted in the middle. The store must end
with every journaled event exactly once, and the stream with every event once too."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from fleet_fixtures import (
    NatsServer,
    nats_server,
    pg_url,
    reap,
    spawn,
    storm,
    stream_messages,
    wait_for,
)
from pysens.fleet.store import open_store
from pysens.journal import Journal

__all__ = ["nats_server", "pg_url"]

HOSTS = ("web01.example.com", "db2", "kiosk 3")
ROUND = 1500


def _forwarder(url: str, journal: Path, log: Path, *extra: str) -> object:
    return spawn("-m", "pysens.cli", "forward", url, "--journal", str(journal), *extra, log=log)


def _collector(url: str, store: str, log: Path, *extra: str) -> object:
    return spawn("-m", "pysens.cli", "collect", url, "--store", store, *extra, log=log)


def test_kill9_and_restarts_lose_and_double_nothing(
    nats_server: NatsServer, tmp_path: Path, pg_url: str
) -> None:
    log = tmp_path / "children.log"
    paths = {h: tmp_path / f"{i}.db" for i, h in enumerate(HOSTS)}
    journals = {h: Journal(p) for h, p in paths.items()}
    written = dict.fromkeys(HOSTS, 0)

    def write_round() -> None:
        for h, j in journals.items():
            j.append_many(storm(h, ROUND, start=written[h]))
            written[h] += ROUND

    store = open_store(pg_url)
    forwarders = {h: _forwarder(nats_server.url, p, log) for h, p in paths.items()}
    collector = _collector(nats_server.url, pg_url, log)
    try:
        write_round()
        wait_for(lambda: store.count() > 0, "the first events in the store")
        # A forwarder dies without warning, in the middle of its backlog.
        reap(forwarders[HOSTS[0]], signal.SIGKILL)  # type: ignore[arg-type]
        write_round()
        # NATS goes away and comes back while the others are publishing.
        nats_server.restart()
        forwarders[HOSTS[0]] = _forwarder(nats_server.url, paths[HOSTS[0]], log)
        write_round()
        before = store.count()
        wait_for(lambda: store.count() > before, "the collector to make progress")
        # The collector dies without warning; a new one takes over the durable consumer.
        reap(collector, signal.SIGKILL)  # type: ignore[arg-type]
        write_round()
        collector = _collector(nats_server.url, pg_url, log)
        total = sum(written.values())
        wait_for(lambda: store.count() >= total, "every event in the store", limit=120)
    finally:
        for proc in forwarders.values():
            reap(proc)  # type: ignore[arg-type]
        reap(collector)  # type: ignore[arg-type]
    expected = sorted(e.id for j in journals.values() for e in j.query())
    assert len(expected) == total == 4 * ROUND * len(HOSTS)
    assert store.ids() == expected  # exactly once: no loss (all there), no doubles (unique ids)
    assert store.count() == total and store.hosts() == sorted(HOSTS)
    assert store.rejected() == []
    msgs = asyncio.run(stream_messages(nats_server.url))
    ids = [m.headers["Nats-Msg-Id"] for m in msgs]
    assert len(ids) == len(set(ids)) == total  # the stream itself holds each event once
    for h, j in journals.items():
        assert j.cursor(f"forward:{nats_server.url}") == j.last_seq(), h
        j.close()
    store.close()
