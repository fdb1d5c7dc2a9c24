"""The collector and the central store, against a real nats-server and real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from fleet_fixtures import NatsServer, free_port, nats_server, pg_url, storm
from pysens.cli import main
from pysens.events import SensEvent
from pysens.fleet.collector import Collector, check_message
from pysens.fleet.forwarder import Forwarder
from pysens.fleet.store import StoredEvent, StoreError, open_store
from pysens.fleet.stream import StreamSettings, ensure_stream
from pysens.journal import Journal

__all__ = ["nats_server", "pg_url"]


async def _forward(url: str, journal: Journal) -> None:
    fwd = Forwarder(journal, url)
    await fwd.run(drain=True)
    await fwd.aclose()


async def _publish_raw(url: str, items: list[tuple[str, bytes, dict[str, str] | None]]) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    for subject, data, headers in items:
        await js.publish(subject, data, headers=headers)
    await nc.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_collects_each_event_once_with_its_host(
    nats_server: NatsServer, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path}/fleet.db" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("web01.example.com", 30) + storm("db2", 12))
    await _forward(nats_server.url, journal)
    collector = Collector(nats_server.url, url, exit_idle=0.5, batch=7)
    stats = await collector.run()
    assert (stats.received, stats.stored, stats.rejected) == (42, 42, 0)
    store = collector.store
    assert store.count() == 42 and store.count("db2") == 12
    assert store.hosts() == ["db2", "web01.example.com"]
    assert store.ids() == sorted(e.id for e in journal.query())
    got = {e.id: e for e in store.query()}
    for e in journal.query():
        assert got[e.id] == e  # the whole event, seq included, survives the trip
    # A second collector on the same durable has nothing left; a fresh durable re-reads the
    # stream and the store ignores every id it already has.
    again = Collector(nats_server.url, store, exit_idle=0.3)
    assert (await again.run()).received == 0
    fresh = Collector(nats_server.url, store, durable="audit", exit_idle=0.3)
    s = await fresh.run()
    assert (s.received, s.stored, s.already) == (42, 0, 42)
    assert store.count() == 42
    collector.release()
    journal.close()


def test_foreign_messages_are_kept_aside_and_never_block(
    nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = Journal(tmp_path / "j.db")
    good = storm("h1", 3)
    journal.append_many(good)
    mismatched = json.dumps(good[0].to_json() | {"id": "01OTHER"}).encode()
    asyncio.run(_publish_raw(nats_server.url, [
        ("sens.h1.Logon", b"hello, not json", None),
        ("sens.h1.Logon", b'{"method": "Logon", "host": "h1"}', None),
        ("sens.h1.Dance", json.dumps({"id": "X1", "method": "Dance", "host": "h1",
                                      "time": "2026-11-23T08:00:00Z"}).encode(), None),
        ("sens.h1.Logon", mismatched, {"Nats-Msg-Id": "someone-else"}),
    ]))
    asyncio.run(_forward(nats_server.url, journal))
    store_url = f"sqlite:///{tmp_path}/fleet.db"
    status = main(["collect", nats_server.url, "--store", store_url, "--exit-idle", "0.5"])
    err = capsys.readouterr().err
    assert status == 1
    assert "3 new event(s)" in err and "4 rejected" in err
    logged = caplog.messages
    assert len(logged) == 4 and "message 1 on sens.h1.Logon is not a pysens event: not JSON" in (
        logged[0])
    with open_store(store_url) as store:
        assert store.count() == 3
        rejected = store.rejected()
        assert [r.raw for r in rejected[:1]] == [b"hello, not json"]
        assert [r.subject for r in rejected] == ["sens.h1.Logon"] * 2 + ["sens.h1.Dance",
                                                                         "sens.h1.Logon"]
        reasons = [r.reason for r in rejected]
        assert reasons[1] == "no event id" and "unknown method 'Dance'" in reasons[2]
        assert "is not its event id" in reasons[3]
    # They were acknowledged: a second run finds nothing and succeeds.
    assert main(["collect", nats_server.url, "--store", store_url, "--exit-idle", "0.3"]) == 0


async def test_a_deleted_consumer_is_recreated_after_backoff_and_nothing_is_lost(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    import nats

    from fleet_fixtures import await_for

    journal = Journal(tmp_path / "j.db")
    journal.append_many(storm("h1", 20))
    await _forward(nats_server.url, journal)
    collector = Collector(nats_server.url, f"sqlite:///{tmp_path}/fleet.db",
                          backoff=(0.05, 0.2), fetch_timeout=0.2)
    task = asyncio.create_task(collector.run())
    try:
        await await_for(lambda: collector.store.count() == 20, "the first events stored")
        # Twice: each time is an outage of its own, said at WARNING and retried after the
        # first backoff step (not after the second outage's doubled one, nor at DEBUG).
        for n in (1, 2):
            nc = await nats.connect(nats_server.url)
            try:
                await nc.jetstream().delete_consumer("SENS", "sens-collector")
            finally:
                await nc.close()
            await await_for(lambda n=n: collector.stats.failures >= n,  # type: ignore[misc]
                            "the collector to notice")
            journal.append_many(storm("h1", 10, start=10 + 10 * n))
            await _forward(nats_server.url, journal)
            await await_for(lambda n=n: collector.store.count() == 20 + 10 * n,  # type: ignore[misc]
                            "the later events stored")
    finally:
        collector.stop()
        await task
        collector.release()
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == ["the consumer sens-collector was deleted; binding to the stream again"] * 2
    # The recreated durable read the stream again from its start; the store kept each once.
    assert collector.stats.already >= 20


def test_check_message_reasons() -> None:
    ok = check_message("s", json.dumps(storm("h", 1)[0].to_json()).encode(), None)
    assert isinstance(ok, StoredEvent) and ok.host == "h" and ok.method == "Logon"
    assert check_message("s", b"[1]", None) == "not a JSON object"
    assert check_message("s", b'{"id": "A", "method": "Logon", "host": "h", "time": "x"}',
                         None) == "its time 'x' is not ISO 8601"
    assert check_message("s", b'{"id": "A", "method": "Logon", "time": "2026-01-01T00:00Z"}',
                         None) == "no host"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_commit_is_insert_or_ignore(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path}/s.db" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    # Text that COPY must escape (tab, newline, backslash, \N, quotes, non-ASCII) survives.
    odd = storm("h\tq", 2)[1].evolve(user_name="a\\b\n\\N\t'\"é€", session_id=None,
                                     raw={"cmd": "x\ty\r\n\\z"})
    sent = [*storm("h", 5), odd]
    with open_store(url) as store:
        items = [check_message("s", e.to_json_text().encode(), None) for e in sent]
        events = [i for i in items if isinstance(i, StoredEvent)]
        assert store.commit(events) == 6
        assert store.commit(events) == 0
        assert store.commit([*events[:2], *events[:2]]) == 0  # twice in one batch: still once
        assert store.count() == 6
        got = {e.id: e for e in store.query()}
        assert got == {e.id: e for e in sent}
        assert got[odd.id].user_name == "a\\b\n\\N\t'\"é€" and got[odd.id].session_id is None


def test_store_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="sqlite:///PATH"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="cannot open the store"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def test_collect_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "http://x", "--store", f"sqlite:///{tmp_path}/s.db"]) == 2
    assert "not a NATS URL" in capsys.readouterr().err
    assert main(["collect", "nats://127.0.0.1:1", "--store", "oracle://x"]) == 1
    err = capsys.readouterr().err
    assert "unknown store URL" in err and "Traceback" not in err


async def test_history_and_sessions_across_the_fleet(
    nats_server: NatsServer, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = Journal(tmp_path / "j.db")
    # h1: session 0 goes through Logoff; session 1 is left disconnected. h2: one open session.
    journal.append_many(storm("h1", 8) + storm("h2", 2))
    await _forward(nats_server.url, journal)
    collector = Collector(nats_server.url, pg_url, exit_idle=0.3)
    await collector.run()
    collector.release()
    capsys.readouterr()
    assert main(["history", "--store", pg_url, "--host", "h2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["host"], r["method"]) for r in rows] == [("h2", "Logon"), ("h2", "PostShell")]
    assert main(["history", "--store", pg_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 10 and all(" h1 " in line or " h2 " in line for line in out)
    assert main(["sessions", "--store", pg_url]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["HOST", "SESSION", "USER"]
    assert main(["sessions", "--store", pg_url, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((r["host"], r["session_id"], r["state"]) for r in rows) == [
        ("h1", "1", "disconnected"), ("h2", "0", "active")]
    journal.close()


async def test_text_no_store_can_keep_is_set_aside_and_the_rest_flows(
    nats_server: NatsServer, pg_url: str, tmp_path: Path
) -> None:
    # Before: PostgreSQL refused the whole batch ("text fields cannot contain NUL") on every
    # retry and the collector stored nothing more, ever.
    journal = Journal(tmp_path / "j.db")
    events = storm("h1", 3)
    # A journal written before SensEvent checked its text (trusted() skips the checks).
    e = events[0]
    nul = SensEvent.trusted(e.canonical_method, e.time, e.observed, e.host, e.source,
                            user_name="a\x00b", session_id="nul")
    journal.append_many([*events, nul, *storm("h1", 3, start=3)])
    await _forward(nats_server.url, journal)
    lone = json.dumps(events[1].to_json() | {"id": "01LONE", "raw": {"k": "\ud800"}})
    pair = json.dumps(events[1].to_json() | {"id": "01PAIR", "user_name": "\U0001f600"})
    await _publish_raw(nats_server.url, [("sens.h1.Logon", lone.encode(), None),
                                         ("sens.h1.Logon", pair.encode(), None)])
    collector = Collector(nats_server.url, pg_url, exit_idle=0.5)
    stats = await asyncio.wait_for(collector.run(), 60)
    assert (stats.stored, stats.rejected, stats.failures) == (7, 2, 0)
    store = collector.store
    assert {e.user_name for e in store.query() if e.id == "01PAIR"} == {"\U0001f600"}
    reasons = sorted(r.reason for r in store.rejected())
    assert "'user_name' is not text a store" in reasons[0] and "it holds a lone surrogate" in (
        reasons[1])
    collector.release()
    journal.close()


def test_a_batch_run_that_never_gets_through_exits_1_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
    status = main(["collect", url, "--store", f"sqlite:///{tmp_path}/fleet.db",
                   "--exit-idle", "0.3"])
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert err[-1].startswith("sens: stopped after 0.3 s without getting through: cannot reach "
                              f"the NATS server at {url}")
