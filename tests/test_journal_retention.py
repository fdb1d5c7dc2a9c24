"""Retention (max_age, max_size), its limits' syntax, and `sens journal` (disk-usage, vacuum,
verify, export) on real journal files; the daemon applying retention by itself."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.daemon.config import ConfigError, parse_config
from pysens.events import SensEvent
from pysens.journal import Journal, SubscriptionStore
from pysens.journal.limits import LimitError, format_size, parse_age, parse_size
from pysens.journal.retention import Retention
from service_fixtures import daemon, stop

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_sizes_and_ages_as_journalctl_writes_them() -> None:
    assert parse_size("500M") == 500 << 20 and parse_size("2G") == 2 << 30
    assert parse_size("1.5K") == 1536 and parse_size("4096") == 4096 == parse_size(4096)
    assert parse_size("10MiB") == parse_size("10mb") == 10 << 20
    assert parse_age("90d") == timedelta(days=90) and parse_age("2w") == timedelta(weeks=2)
    assert parse_age("1d 12h") == timedelta(hours=36) and parse_age("30min") == timedelta(
        minutes=30)
    assert parse_age("1y") == timedelta(days=365.25)
    for bad in ("", "5Q", "-1M", "M", "0"):
        with pytest.raises(LimitError):
            parse_size(bad)
    for bad in ("", "90", "90q", "d", "0d", "1d junk"):
        with pytest.raises(LimitError):
            parse_age(bad)
    assert format_size(57_600_000) == "54.9M" and format_size(512) == "512B"


def test_the_journal_section_of_the_config_and_its_mistakes() -> None:
    cfg = parse_config('[journal]\nmax_age = "90d"\nmax_size = "500M"\n', "sens.toml")
    assert cfg.max_age == timedelta(days=90) and cfg.max_size == 500 << 20
    for text, said in (
        ('[serve]\n\n[journal]\nmax_age = "90x"\n', "sens.toml:4: [journal] max_age: '90x': "
                                                    "unknown unit 'x'"),
        ('[journal]\n\nmax_size = "lots"\n', "sens.toml:3: [journal] max_size: 'lots' is not "
                                             "a size"),
        ("[journal]\nmax_size = true\n", "sens.toml:2: [journal] max_size must be a size"),
        ("[journal]\nkeep = 1\n", "sens.toml:2: unknown key 'keep' in [journal]"),
    ):
        with pytest.raises(ConfigError) as e:
            parse_config(text, "sens.toml")
        assert str(e.value).startswith(said), e.value


def fill(j: Journal, n: int, *, start: int = 0, days_ago: float = 0) -> list[int]:
    """``n`` events timed ``days_ago`` before NOW; their seqs."""
    t0 = NOW - timedelta(days=days_ago)
    events = [SensEvent("Logon", user_name=f"u{i % 7}", session_id=str(i), host="h",
                        source="test", time=t0 + timedelta(seconds=i), raw={"pad": "x" * 100})
              for i in range(start, start + n)]
    return [r.event.seq or 0 for r in j.append_many(events)]


def subscribe(j: Journal, name: str, *, enabled: bool = True) -> str:
    store = SubscriptionStore(j)
    try:
        sub = store.add(name, event_class="ISensLogon", sink="jsonl",
                        settings={"path": "/dev/null"}, enabled=enabled, from_start=True)
    finally:
        store.close()
    return sub.cursor


def test_max_age_keeps_what_a_reader_has_not_had(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as j:
        old = fill(j, 300, days_ago=200)
        new = fill(j, 100, start=300, days_ago=1)
        audit = subscribe(j, "audit")
        paused = subscribe(j, "paused", enabled=False)  # disabled: holds nothing back
        j.set_cursor("forward:nats://n:4222", old[-1])   # the forwarder has had the old ones
        j.set_cursor(audit, old[199])                     # audit: 100 old ones still to go
        r = Retention(j, max_age=timedelta(days=90), clock=lambda: NOW, batch=64, pause=0)
        result = r.run()
        assert (result.deleted, result.forced, result.kept_old) == (200, 0, 100)
        assert [e.seq for e in j.query()] == old[200:] + new
        assert result.lost == {paused: 200}  # counted, though it protected nothing
        # audit catches up: now they go.
        j.set_cursor(audit, new[-1])
        assert Retention(j, max_age=timedelta(days=90), clock=lambda: NOW).run().deleted == 100
        assert [e.seq for e in j.query()] == new
        assert j.cursors()[audit][1] == 0


def test_max_size_forces_the_oldest_out_and_counts_each_readers_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    with Journal(path) as j:
        seqs = fill(j, 4000, days_ago=1)
        audit = subscribe(j, "audit")
        j.set_cursor(audit, seqs[999])                       # audit has had 1000
        j.set_cursor("forward:nats://n:4222", seqs[2999])    # the forwarder 3000
        r = Retention(j, max_size=200 * 1024, batch=200, pause=0)
        before = r.used()
        with caplog.at_level(logging.INFO, "pysens.journal"):
            result = r.run()
        assert before > 400 * 1024 >= r.used() * 2 > 0
        assert r.used() <= 200 * 1024 and result.size_after <= 200 * 1024 + 16 * 4096
        kept = [e.seq for e in j.query()]
        assert kept == seqs[-len(kept):] and len(kept) < 1500  # the newest kept, in order
        deleted = 4000 - len(kept)
        assert result.deleted == deleted and result.forced == deleted - 1000
        assert result.lost == {audit: deleted - 1000, "forward:nats://n:4222": deleted - 3000}
        loud = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
        assert len(loud) == 1 and "\n" not in loud[0].getMessage()
        assert ("over its max_size 200.0K: deleted" in loud[0].getMessage()
                and f"subscription 'audit' lost {deleted - 1000:,}" in loud[0].getMessage())
        # Once everything is gone, a seq is still never given again.
        Retention(j, max_size=1, pause=0).run()
        assert j.count() == 0
        assert j.append(SensEvent("Logoff", user_name="u", session_id="x", host="h",
                                  time=NOW)).event.seq == 4001
    assert main(["subscriptions", "list"]) == 0
    out = capsys.readouterr().out
    assert "lost=3000 (deleted by retention before delivery; last 20" in out
    assert main(["subscriptions", "list", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["name"] == "audit" and listed["lost"] == 4000 - 1000


def test_sens_journal_disk_usage_vacuum_verify_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    with Journal(path) as j:
        fill(j, 500, days_ago=100)
        fill(j, 500, start=500, days_ago=2)
        j.set_cursor("forward:nats://n:4222", 250)
    assert main(["journal", "disk-usage"]) == 0
    out = capsys.readouterr().out
    assert f"Journal {path} takes " in out and "1,000 events, seq 1 to 1,000" in out
    assert "forwarder nats://n:4222: at seq 250, 750 behind" in out
    assert main(["journal", "export", "--since", "2026-05-25", "--until", "2026-06-01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 500 and json.loads(lines[0])["seq"] == 501
    assert main(["journal", "vacuum", "--older-than", "30d"]) == 0
    err = capsys.readouterr().err
    # (All 1,000 are older than 30 days by now; the forwarder has had 250 of them.)
    assert err.startswith("sens: deleted 250 event(s);") and "750 older event(s) kept" in err
    assert main(["journal", "vacuum", "--max-size", "lots"]) == 2
    assert "--max-size: 'lots' is not a size" in capsys.readouterr().err
    assert main(["journal", "verify"]) == 0
    assert "is sound" in capsys.readouterr().err


def damage(path: Path) -> None:
    """Overwrite a page deep inside the file (opening still works)."""
    with Journal(path) as j:
        j.append_many([SensEvent("Logon", user_name=f"u{i}", session_id=str(i), host="h",
                                 time=NOW + timedelta(seconds=i), raw={"pad": "x" * 300})
                       for i in range(2000)])
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.seek(60 * 4096)
        f.write(bytes(range(256)) * 48)


def test_a_damaged_journal_is_named_by_verify_and_refused_by_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    from service_fixtures import sens_argv

    path = tmp_path / "journal.db"
    damage(path)
    assert main(["journal", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"sens: the journal {path} is damaged: ")
    assert f"sqlite3 {path} .recover" in err and "Traceback" not in err
    served = subprocess.run(sens_argv("serve", "--source", "none"), capture_output=True,
                            text=True, timeout=60)
    assert served.returncode == 1, served.stderr
    assert served.stderr.count("\n") == 1 and "Traceback" not in served.stderr
    assert served.stderr.startswith(f"sens: the journal {path} is damaged (")
    assert f"`sqlite3 {path} .recover" in served.stderr


def test_the_daemon_applies_retention_by_itself(tmp_path: Path) -> None:
    with Journal() as j:
        fill(j, 100, days_ago=400)
        fill(j, 10, start=100, days_ago=0)
    with daemon(tmp_path, config='[journal]\nmax_age = "1y"\n') as proc:
        import time

        end = time.monotonic() + 30
        while time.monotonic() < end:
            with Journal() as j:
                if j.count() == 10:
                    break
            time.sleep(0.1)
        status = stop(proc)
    assert status == 0
    with Journal() as j:
        assert [e.session_id for e in j.query()] == [str(i) for i in range(100, 110)]


def test_a_simulated_year_stays_bounded_and_loses_nothing_undelivered(tmp_path: Path) -> None:
    # 365 days of a host, 150 events a day and one day's logon storm of 20,000; retention
    # (14 days, 4 MiB) run once a day as the daemon does; a forwarder that keeps up, and a
    # subscription that stops for three weeks in the spring: its events wait for it however
    # old, and go once it has had them.
    start = NOW - timedelta(days=365)
    per_day, max_size = 150, 4 << 20
    with Journal(tmp_path / "j.db") as j:
        audit = subscribe(j, "audit")
        seqs: list[int] = []
        days: dict[int, int] = {}  # seq -> the day it was appended
        lost = forced = kept_old = storm_deleted = peak = 0
        for day in range(365):
            t0 = start + timedelta(days=day)
            n = 20_000 if day == 200 else per_day
            events = [SensEvent("Logon", user_name=f"u{i % 7}", session_id=f"{day}.{i}",
                                host="h", source="test", time=t0 + timedelta(seconds=i * 4),
                                raw={"pad": "x" * 100}) for i in range(n)]
            got = [r.event.seq or 0 for r in j.append_many(events)]
            seqs += got
            days.update(dict.fromkeys(got, day))
            j.set_cursor("forward:nats://n:4222", seqs[-1])
            if not 100 <= day < 121:
                j.set_cursor(audit, seqs[-1])  # caught up (after its pause, at once)
            tomorrow = t0 + timedelta(days=1)
            result = Retention(j, max_age=timedelta(days=14), max_size=max_size, batch=500,
                               pause=0, clock=lambda: tomorrow).run()  # noqa: B023 - run now
            lost += sum(result.lost.values())
            forced += result.forced
            kept_old += result.kept_old
            peak = max(peak, result.size_after)
            if day == 200:
                storm_deleted = result.deleted
            kept = [e.seq or 0 for e in j.query()]
            assert kept == seqs[-len(kept):]  # the newest, contiguous
            # Older than max_age only while the paused subscription has not had them.
            if not 100 <= day < 121:
                assert day - days[kept[0]] <= 14, day
            else:
                assert kept[0] <= j.cursors()[audit][0] + 1, day
        assert kept_old > 0  # the pause did hold old events back
        assert storm_deleted > 14 * per_day  # the storm day: the size cap took more than age
        assert lost == forced == 0  # nothing a reader had not had was ever deleted
        assert peak <= max_size + 64 * 4096  # bounded (the pages SQLite keeps free)
        assert j.cursors()[audit][0] == seqs[-1]
