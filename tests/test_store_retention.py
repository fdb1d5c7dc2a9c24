"""Retention in the central store (pysens.fleet.retention, ``sens collect --max-age``): on
PostgreSQL whole months dropped, on SQLite rows deleted; the hosts' counts and the closed
sessions' rows follow; the background loop and the CLI option, on real stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet_fixtures import NatsServer, await_for, nats_server, pg_url
from pysens.cli import main
from pysens.events import SensEvent
from pysens.fleet.retention import expire_older, keep_within
from pysens.fleet.store import StoredEvent, open_store, time_us
from pysens.fleet.store.intake import check_message

__all__ = ["nats_server", "pg_url"]  # fixtures

NOW = datetime(2026, 11, 15, tzinfo=UTC)


def _events() -> list[SensEvent]:
    """Two hosts: a session opened and closed in September, one open since September, a
    September network event, and November's."""
    plan = [("web01", "Logon", "1", datetime(2026, 9, 3)), ("web01", "Logoff", "1",
            datetime(2026, 9, 4)), ("web01", "Logon", "2", datetime(2026, 9, 20)),
            ("db01", "ConnectionLost", None, datetime(2026, 9, 21)),
            ("db01", "Logon", "5", datetime(2026, 10, 2)),
            ("web01", "DisplayLock", "2", datetime(2026, 11, 2)),
            ("db01", "Logoff", "5", datetime(2026, 11, 3))]
    out = []
    for n, (host, method, sid, t) in enumerate(plan, 1):
        extra: dict[str, Any] = {"connection": "eth0", "connection_type": 0} if sid is None \
            else {"user_name": f"u{sid}", "session_id": sid}
        out.append(SensEvent(method, host=host, source="test", time=t.replace(tzinfo=UTC),
                             **extra).with_seq(n))
    return out


def _stored(events: list[SensEvent]) -> list[StoredEvent]:
    items = [check_message("s", e.to_json_text().encode(), None) for e in events]
    return [i for i in items if isinstance(i, StoredEvent)]


def _state(store: Any) -> tuple[Any, ...]:
    summaries = {h["host"]: (h["events"], h["first_us"], h["open"])
                 for h in store.host_summaries()}
    return (store.count(), summaries, sorted((r.host, r.skey) for r in store.session_rows()))


def test_postgresql_drops_the_months_wholly_past(pg_url: str) -> None:
    # And an event from a clock that said 1999: kept in the default partition, older than
    # any cut, so it goes with the first month dropped.
    wrong = SensEvent("OnACPower", host="db01", source="test",
                      time=datetime(1999, 5, 1, tzinfo=UTC)).with_seq(99)
    with open_store(pg_url) as store:
        store.commit(_stored([*_events(), wrong]))
        assert store.partitions() == [(2026, 9), (2026, 10), (2026, 11)]
        # 45 days before Nov 15 is Oct 1: September is wholly older, October is not.
        done = expire_older(store, timedelta(days=45), now=time_us(NOW))
        assert (done.events, done.months) == (5, 1)
        assert store.partitions() == [(2026, 10), (2026, 11)]
        assert "5 event(s) from before 2026-10-01 00:00 UTC removed (1 month(s) dropped)" \
            in done.line("45d")
        count, hosts, rows = _state(store)
        assert count == 3 == len(store.ids())
        oct2 = time_us(datetime(2026, 10, 2, tzinfo=UTC))
        nov2 = time_us(datetime(2026, 11, 2, tzinfo=UTC))
        # web01 keeps its open session (its Logon went, the lock stayed), db01 its own.
        assert hosts == {"db01": (2, oct2, 0), "web01": (1, nov2, 1)}
        assert rows == [("db01", "5"), ("web01", "2")]  # session 1 closed in September
        assert [s.info.session_id for s in store.open_sessions()] == ["2"]
        # Nothing older left: the next run removes nothing.
        again = expire_older(store, timedelta(days=45), now=time_us(NOW))
        assert (again.events, again.months) == (0, 0)
    with open_store(pg_url) as store:  # the months are read back as they are
        assert store.partitions() == [(2026, 10), (2026, 11)]


def test_sqlite_deletes_the_rows(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/fleet.db") as store:
        store.commit(_stored(_events()))
        assert store.partitions() is None
        done = expire_older(store, timedelta(days=45), now=time_us(NOW))
        assert (done.events, done.months) == (4, None)
        assert "(rows deleted)" in done.line("45d")
        count, hosts, rows = _state(store)
        assert count == 3 == len(store.ids())
        assert hosts["db01"][0] == 2 and hosts["web01"][:1] == (1,)
        assert rows == [("db01", "5"), ("web01", "2")]
        # Row deletes are not month-aligned: 30 days takes October's Logon too.
        assert expire_older(store, timedelta(days=30), now=time_us(NOW)).events == 1
        assert store.count() == 2 and store.hosts() == ["db01", "web01"]


def test_the_loop_runs_at_once_then_every_interval(pg_url: str) -> None:
    lines: list[str] = []
    clock = [time_us(NOW)]

    def now() -> int:
        clock[0] += 20 * 86400 * 1_000_000  # each run 20 days later
        return clock[0]

    async def go() -> None:
        with open_store(pg_url) as store:
            store.commit(_stored(_events()))
            def report(line: str) -> None:
                lines.append(line)
                if len(lines) == 3:
                    task.cancel()  # from inside: its next sleep ends it, no fourth run

            task = asyncio.create_task(keep_within(store, timedelta(days=60), 0.01,
                                                   report=report, clock=now))
            await await_for(task.done, "three runs")
            with pytest.raises(asyncio.CancelledError):
                await task
            assert store.partitions() == [(2026, 11)]

    asyncio.run(go())
    # Dec 5 - 60 d = Oct 6: September; Dec 25: nothing more; Jan 14 - 60 d = Nov 15: October.
    assert lines[0].startswith("retention (max age 60d): 4 event(s) from before 2026-10-06")
    assert "1 month(s) dropped" in lines[0]
    assert lines[1].startswith("retention (max age 60d): 0 event(s)")
    assert lines[2].startswith("retention (max age 60d): 1 event(s)"), lines


def test_a_failing_run_says_why_and_the_loop_goes_on(tmp_path: Path) -> None:
    lines: list[str] = []

    async def go() -> None:
        store = open_store(f"sqlite:///{tmp_path}/fleet.db")
        store.close()  # every run now fails: a closed database
        task = asyncio.create_task(keep_within(store, timedelta(days=1), 0.01,
                                               label="1d", report=lines.append))
        await await_for(lambda: len(lines) >= 2 or task.done(), "two runs")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert all(x.startswith("retention (max age 1d) failed: ") for x in lines), lines
    assert all(x.count("\n") == 0 for x in lines)


def test_sens_collect_max_age(pg_url: str, nats_server: NatsServer,
                              capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(pg_url) as store:
        old = [e.evolve(time=e.time.replace(year=2020), id="") for e in _events()]
        store.commit(_stored(old))
    assert main(["collect", nats_server.url, "--store", pg_url, "--max-age", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-age: 'soon' is not an age" in err
    assert main(["collect", nats_server.url, "--store", pg_url, "--max-age", "400d",
                 "--exit-idle", "0.5"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "retention" in x]
    assert lines[0].startswith("sens: retention (max age 400d): 7 event(s) from"), lines
    assert "3 month(s) dropped" in lines[0]
    with open_store(pg_url) as store:
        assert store.count() == 0 and store.partitions() == []
