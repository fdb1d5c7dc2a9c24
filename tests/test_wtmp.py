"""wtmp / utmp reading and pairing, checked against ``last`` and plaso on real files."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from pysens.events import Method
from pysens.sources import ReadError
from pysens.sources.utmprecord import decode_record, detect_layout, encode_record
from pysens.sources.wtmp import read_records, read_wtmp
from wtmp_fixtures import (
    parse_last,
    read_events,
    run_last,
    session_rows,
    utmpdump_line,
    write_wtmp,
)

WTMP_DIR = SHARED_DATA / "wtmp"
_NOT_DATA = (".txt", ".jsonl", ".md", ".aligned384")
DATA_FILES = sorted(p.name for p in WTMP_DIR.iterdir() if not p.name.endswith(_NOT_DATA))
#: 400-byte records: util-linux `last` on x86_64 cannot read them (MANIFEST), plaso can.
LAST_CANNOT_READ = {"plaso__utmp_aarch64", "plaso__utmp_s390", "utmp-rs__basic64.utmp"}


def _oracle(name: str) -> Path:
    # `last` reads from the end of the file, so a stray tail garbles it; the MANIFEST gives the
    # whole-record cut's output, which is what a reader that starts at offset 0 must match.
    aligned = WTMP_DIR / f"{name}.aligned384.last-wx-iso.txt"
    return aligned if aligned.exists() else WTMP_DIR / f"{name}.last-wx-iso.txt"


def test_every_data_file_is_covered() -> None:
    assert len(DATA_FILES) == 13
    assert set(DATA_FILES) >= LAST_CANNOT_READ


@pytest.mark.parametrize("name", [n for n in DATA_FILES if n not in LAST_CANNOT_READ])
def test_sessions_match_last(name: str) -> None:
    expected = parse_last(_oracle(name).read_text())
    events, _errors = read_events("wtmp", WTMP_DIR / name)
    assert session_rows(events) == expected


def test_oracle_parser_sees_every_kind_of_ending() -> None:
    rows = parse_last((WTMP_DIR / "artemis__ubuntu18.04_wtmp.last-wx-iso.txt").read_text())
    assert [r[4] for r in rows] == ["down", "crash", "crash", "open"]
    rows = parse_last((WTMP_DIR / "utmp-rs__long_user_32.utmp.last-wx-iso.txt").read_text())
    assert len(rows) == 18
    assert rows[0][0] == "aaaaaaaaaa"


def _plaso(name: str) -> list[tuple[object, ...]]:
    rows = []
    for text in (WTMP_DIR / f"{name}.plaso.jsonl").read_text().splitlines():
        d = json.loads(text)
        rows.append((d["offset"], d["login_type"], d["pid"], d.get("username") or "",
                     d["timestamp"], d.get("terminal") or "", d["ip_address"]))
    return sorted(rows)


@pytest.mark.parametrize("name", DATA_FILES)
def test_records_match_plaso(name: str) -> None:
    errors: list[str] = []
    ours = []
    for r in read_records(str(WTMP_DIR / name), errors.append):
        us = int((r.time - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
        # plaso names line "~" after what it means, and shows no address as 0.0.0.0.
        line = "system boot" if r.line == "~" else r.line
        ours.append((r.offset, r.type, r.pid, r.user, us, line, r.address or "0.0.0.0"))
    assert sorted(ours) == _plaso(name)


@pytest.mark.parametrize("name", sorted(LAST_CANNOT_READ))
def test_400_byte_layouts_are_detected(name: str) -> None:
    layout = detect_layout((WTMP_DIR / name).read_bytes())
    assert layout is not None
    assert layout.size == 400
    assert layout.big_endian == (name == "plaso__utmp_s390")


def test_400_byte_files_pair_like_their_384_byte_twin() -> None:
    # plaso's aarch64 and x86_64 samples hold the same six records five minutes apart.
    def shape(name: str) -> list[tuple[str, str, str]]:
        return [(u, line, end) for u, line, _h, _t, end in
                session_rows(read_events("wtmp", WTMP_DIR / name)[0])]

    assert shape("plaso__utmp_aarch64") == shape("plaso__utmp_x86_64")
    assert shape("plaso__utmp_s390") == shape("plaso__utmp_x86_64")


def test_corrupt_records_and_cut_tail_are_reported_and_skipped() -> None:
    events, errors = read_events("wtmp", WTMP_DIR / "plaso__utmp_corrupted")
    assert [e.user_name for e in events if e.method is Method.Logon] == ["alice", "bob"]
    assert len(errors) == 3
    assert "offset 384" in errors[0] and "ut_type 99" in errors[0]
    assert "offset 768" in errors[1]
    assert "offset 1536" in errors[2] and "cut short (50 of 384 bytes)" in errors[2]
    assert all(e.startswith(str(WTMP_DIR / "plaso__utmp_corrupted")) for e in errors)


def test_not_a_wtmp_file_is_one_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a wtmp file at all\n" * 40)
    with pytest.raises(ReadError, match=r"notes.txt is not a utmp/wtmp file"):
        list(read_wtmp(str(junk), lambda _m: None))
    with pytest.raises(ReadError, match=r"cannot read .*missing"):
        list(read_wtmp(str(tmp_path / "missing"), lambda _m: None))


_OTHER_KINDS = [*sorted((SHARED_DATA / "evtx").glob("*.evtx"))[:3],
                Path(shutil.which("ls") or "/bin/ls")]


@pytest.mark.parametrize("other", _OTHER_KINDS, ids=lambda p: p.name)
def test_a_file_of_another_kind_is_not_read_as_wtmp(other: Path) -> None:
    # Before: a plausible-looking record here and there (an .evtx gave 2 SENS events, ls 4)
    # was enough for the file to be read, and hundreds of "bad record" lines followed.
    events: list[str] = []
    with pytest.raises(ReadError, match=f"{other.name} is not a utmp/wtmp file: most records "):
        events += [str(o) for o in read_wtmp(str(other), events.append)]
    assert events == []


def _scenario(now: datetime) -> list[str]:
    """The research note's scenario (4.4): boots, a shutdown, a crash, a superseded login."""
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    return [
        utmpdump_line(2, "reboot", "~", at("2024-01-01T09:00"), id="~~", host="6.1.0-test"),
        utmpdump_line(7, "alice", "pts/0", at("2024-01-01T10:00"), pid=1001, id="ts/0",
                      host="192.168.1.5", addr="192.168.1.5"),
        utmpdump_line(8, "", "pts/0", at("2024-01-01T11:00"), pid=1001, id="ts/0"),
        utmpdump_line(7, "carol", "tty2", at("2024-01-01T12:00"), pid=1005, id="tty2"),
        utmpdump_line(1, "shutdown", "~", at("2024-01-01T13:00"), pid=48, id="~~",
                      host="6.1.0-test"),
        utmpdump_line(2, "reboot", "~", at("2024-01-01T14:00"), id="~~", host="6.1.0-test"),
        utmpdump_line(7, "dave", "pts/1", at("2024-01-01T15:00"), pid=1010, id="ts/1",
                      host="10.0.0.7", addr="10.0.0.7"),
        utmpdump_line(7, "erin", "pts/2", at("2024-01-01T15:30"), pid=1011, id="ts/2",
                      host="10.0.0.8", addr="10.0.0.8"),
        utmpdump_line(7, "frank", "pts/2", at("2024-01-01T15:45"), pid=1012, id="ts/2",
                      host="10.0.0.9", addr="10.0.0.9"),
        utmpdump_line(2, "reboot", "~", at("2024-01-02T09:00"), id="~~", host="6.1.0-test"),
        utmpdump_line(7, "bob", "tty1", at("2024-01-02T09:05"), pid=1020, id="tty1"),
        # root on /dev/null with a dead pid: the one login `last` calls "still logged in".
        utmpdump_line(7, "root", "null", now, pid=99999, id="null"),
    ]


def test_scenario_matches_last_run_now(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    wtmp = write_wtmp(tmp_path / "wtmp", _scenario(now))
    assert wtmp.stat().st_size == 12 * 384
    out = run_last(wtmp)
    # "still logged in" unless pid 99999 happens to exist here (then "gone - no logout").
    assert "- crash" in out and "- down" in out
    assert "still logged in" in out or "gone - no logout" in out
    events, errors = read_events("wtmp", wtmp)
    assert errors == []
    assert session_rows(events) == parse_last(out)


def test_scenario_events_and_reasons(tmp_path: Path) -> None:
    wtmp = write_wtmp(tmp_path / "wtmp", _scenario(datetime.now(UTC)))
    events, _ = read_events("wtmp", wtmp)
    by_user: dict[str, list[str]] = {}
    for e in events:
        label = str(e.method) + (f"({e.reason})" if e.reason else "")
        by_user.setdefault(e.user_name or "", []).append(label)
    assert by_user["alice"] == ["Logon", "PostShell", "Logoff"]
    assert by_user["carol"] == ["Logon", "PostShell", "Logoff(shutdown)"]
    assert by_user["dave"] == ["Logon", "PostShell", "Logoff(crash)"]
    assert by_user["erin"] == ["Logon", "PostShell", "Logoff(superseded)"]
    assert by_user["bob"] == ["Logon", "PostShell"]
    erin_off = next(e for e in events if e.user_name == "erin" and e.method is Method.Logoff)
    assert erin_off.synthesized and erin_off.time == datetime(2024, 1, 1, 15, 45, tzinfo=UTC)
    alice_on = events[0]
    assert (alice_on.source, alice_on.session_id, alice_on.tty) == ("wtmp", "pts/0", "pts/0")
    assert alice_on.remote and alice_on.client_address == "192.168.1.5"
    assert alice_on.time == datetime(2024, 1, 1, 10, tzinfo=UTC)  # the record's own time
    assert alice_on.raw["ut_pid"] == 1001


def test_ids_depend_only_on_the_records(tmp_path: Path) -> None:
    src = WTMP_DIR / "utmp-rs__with_host_32.utmp"
    copy = shutil.copy(src, tmp_path / "elsewhere")
    first = [e.id for e in read_events("wtmp", src)[0]]
    again = [e.id for e in read_events("wtmp", Path(copy))[0]]
    assert first == again and len(set(first)) == len(first)
    other_host = [e.id for e in read_events("wtmp", src, host="other")[0]]
    assert not set(first) & set(other_host)


def test_big_endian_and_gzip_read_the_same(tmp_path: Path) -> None:
    data = (WTMP_DIR / "utmp-rs__with_host_32.utmp").read_bytes()
    be = b"".join(
        encode_record(type=r.type, user=r.user, line=r.line, host=r.host, id=r.id, pid=r.pid,
                      time=r.time, address=r.address, big_endian=True)
        for r in (decode_record(data, off) for off in range(0, len(data), 384))
    )
    (tmp_path / "wtmp.be").write_bytes(be)
    with gzip.open(tmp_path / "wtmp.1.gz", "wb") as f:
        f.write(data)
    layout = detect_layout(be)
    assert layout is not None and layout.big_endian and layout.size == 384
    want = session_rows(read_events("wtmp", WTMP_DIR / "utmp-rs__with_host_32.utmp")[0])
    assert session_rows(read_events("wtmp", tmp_path / "wtmp.be")[0]) == want
    assert session_rows(read_events("wtmp", tmp_path / "wtmp.1.gz")[0]) == want


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    t0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
    old = write_wtmp(tmp_path / "wtmp.1", [
        utmpdump_line(2, "reboot", "~", t0, id="~~"),
        utmpdump_line(7, "alice", "pts/0", t0 + timedelta(hours=1), pid=10, id="ts/0"),
    ])
    new = write_wtmp(tmp_path / "wtmp", [
        utmpdump_line(8, "", "pts/0", t0 + timedelta(hours=2), pid=10, id="ts/0"),
    ])
    # Given newest first, as a shell glob of /var/log/wtmp* would.
    events, errors = read_events("wtmp", new, old)
    assert errors == []
    assert [str(e.method) for e in events] == ["Logon", "PostShell", "Logoff"]
    assert events[-1].time == t0 + timedelta(hours=2) and not events[-1].synthesized


def test_utmp_kind_names_its_source() -> None:
    events, _ = read_events("utmp", WTMP_DIR / "plaso__utmp")
    assert {e.source for e in events} == {"utmp"}
    assert len([e for e in events if e.method is Method.Logon]) == 6
