"""Windows .evtx logs -> SENS events, checked against plaso's reading of the same real files.

Expected values come from the ``FILE.plaso.jsonl`` oracles (plaso/libevtx, an independent parser:
one "Creation Time" row per record, EventData as positional ``strings``) or from reading the file
with the parser directly, never from what pysens printed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED_DATA
from pysens.cli import main
from pysens.events import Method, SensEvent
from pysens.observations import HostReset, Observation, SessionRecord
from pysens.sources import ReadError
from pysens.sources.evtx import CHUNK_SIZE, HEADER_SIZE, read_evtx, read_evtx_files
from pysens.sources.evtx_map import correlate, disconnect_reason, parse_record
from pysens.tracker import Tracker

EVTX = SHARED_DATA / "evtx"
HIJACK = EVTX / "mdecrevoisier__ID4688_4778_4779_RDP_hijack_direct.evtx"
HIJACK_EXEC = EVTX / "mdecrevoisier__ID4688-4778_RDP_hijack_command_execution.evtx"
SECURITY = EVTX / "omerbenamram__security.evtx"
SYSTEM = EVTX / "plaso__System.evtx"
VSS_RCM = EVTX / "omerbenamram__2-vss_0-RemoteConnectionManager_Operational.evtx"
TUNNEL_4624 = EVTX / "sbousseaden__DE_RDP_Tunneling_4624.evtx"
TUNNEL_5156 = EVTX / "sbousseaden__DE_RDP_Tunnel_5156.evtx"
ALL_FILES = sorted(EVTX.glob("*.evtx"))
# 4624 EventData positions (every version starts with these): TargetUserName 5,
# TargetDomainName 6, TargetLogonId 7, LogonType 8, WorkstationName 11, IpAddress 18.
NOT_USERS = {"window manager", "font driver host", "nt authority"}


def oracle(path: Path) -> list[dict[str, Any]]:
    """plaso's records of ``path``, one per record (its "Creation Time" row)."""
    rows = []
    for line in Path(f"{path}.plaso.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["timestamp_desc"] == "Creation Time":
            # from the FILETIME (100 ns) itself: plaso rounds its microseconds, Windows' own
            # rendering of SystemTime (and the evtx package's) truncates them
            filetime = row["date_time"]["timestamp"]
            row["time"] = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(
                microseconds=filetime // 10)
            rows.append(row)
    return rows


def read(path: Path | list[Path]) -> tuple[list[Observation], list[str]]:
    errors: list[str] = []
    paths = path if isinstance(path, list) else [path]
    obs = list(read_evtx_files([str(p) for p in paths], errors.append))
    return obs, errors


def events_of(obs: list[Observation]) -> list[SensEvent]:
    return Tracker(host="importer").feed_all(obs)


def records(obs: list[Observation]) -> list[SessionRecord]:
    return [o for o in obs if isinstance(o, SessionRecord)]


def hexid(text: str) -> str:
    return hex(int(text, 16))


def interactive(row: dict[str, Any]) -> bool:
    s = row["strings"]
    return (int(s[8]) in (2, 10, 11) and s[6].lower() not in NOT_USERS
            and not s[5].endswith("$"))


# -- every real file -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_file_reads_in_time_order_with_stable_ids(path: Path) -> None:
    obs, errors = read(path)
    times = [o.time for o in obs]
    assert times == sorted(times)
    for o in records(obs):
        assert o.source == "evtx"
        assert o.host and "." not in o.host
        assert {"EventID", "Channel", "RecordNumber", "EventData"} <= set(o.info.raw)
    again, errors_again = read(path)
    assert [e.id for e in events_of(obs)] == [e.id for e in events_of(again)]
    assert errors == errors_again
    if path != VSS_RCM:
        assert errors == []


@pytest.mark.parametrize("path", [HIJACK, HIJACK_EXEC], ids=lambda p: p.name)
def test_4778_4779_against_plaso(path: Path) -> None:
    expected = [r for r in oracle(path) if r["event_identifier"] in (4778, 4779)]
    assert expected
    obs, _ = read(path)
    got = records(obs)
    assert len(got) == len(expected)
    for rec, row in zip(got, sorted(expected, key=lambda r: r["time"]), strict=True):
        user, domain, logon_id, session_name, client, address = row["strings"]
        want = Method.SessionReconnect if row["event_identifier"] == 4778 else (
            Method.SessionDisconnect)
        assert rec.method is want
        assert rec.time == row["time"]
        assert rec.info.raw["RecordNumber"] == row["record_number"]
        assert rec.info.raw["EventID"] == row["event_identifier"]
        i = rec.info
        assert (i.user_name, i.domain, i.logon_id) == (user, domain, hexid(logon_id))
        assert (i.session_name, i.client_name, i.client_address) == (session_name, client, address)
        assert i.remote and i.session_id is None  # 4778/4779 carry no session id
    events = events_of(obs)
    assert [(e.method, e.user_name) for e in events] == [(r.method, r.info.user_name) for r in got]


def test_tscon_hijack_is_one_users_disconnect_and_anothers_reconnect() -> None:
    rows = sorted(oracle(HIJACK), key=lambda r: r["time"])
    events = events_of(read(HIJACK)[0])
    assert [e.method for e in events] == [Method.SessionDisconnect, Method.SessionReconnect]
    assert events[0].user_name != events[1].user_name
    assert {e.session_name for e in events} == {rows[0]["strings"][3]} == {rows[1]["strings"][3]}


def test_times_are_system_time_not_the_record_header() -> None:
    from evtx import PyEvtxParser

    header = {r["event_record_id"]: r["timestamp"]
              for r in PyEvtxParser(str(HIJACK)).records() if r is not None}
    for rec in records(read(HIJACK)[0]):
        stamp = header[rec.info.raw["RecordNumber"]].replace(" UTC", "")
        assert datetime.fromisoformat(stamp[:26] + "Z") != rec.time
    assert [r.time for r in records(read(HIJACK)[0])] == sorted(r["time"] for r in oracle(HIJACK))


def test_security_log_logons_and_logoffs_against_plaso() -> None:
    rows = oracle(SECURITY)
    logons = [r for r in rows if r["event_identifier"] == 4624 and interactive(r)]
    by_number = {r["record_number"]: r for r in rows}
    obs, _ = read(SECURITY)
    events = events_of(obs)
    got_logons = [e for e in events if e.method is Method.Logon]
    # Every Logon is an interactive 4624 of plaso's, with its user, domain and logon id …
    for e in got_logons:
        row = by_number[e.raw["RecordNumber"]]
        assert row in logons
        assert (e.user_name, e.domain) == (row["strings"][5], row["strings"][6])
        assert e.logon_id == hexid(row["strings"][7])
        assert e.time == row["time"]
    # … and every interactive 4624 is a Logon or the split-token twin of one (same user, <1 s).
    starts = {(e.user_name, e.time) for e in got_logons}
    for row in logons:
        assert any(u == row["strings"][5] and abs(t - row["time"]) < timedelta(seconds=1)
                   for u, t in starts)
    assert len(got_logons) < len(logons)  # twins collapsed
    # Each 4647 (user-initiated logoff) of plaso's is a Logoff record, and ends a session.
    logoff_numbers = {o.info.raw["RecordNumber"] for o in records(obs)
                      if o.method is Method.Logoff}
    ends = [r for r in rows if r["event_identifier"] == 4647]
    assert {r["record_number"] for r in ends} <= logoff_numbers
    observed_logoffs = [e for e in events if e.method is Method.Logoff and not e.synthesized]
    assert {e.time for e in observed_logoffs} >= {r["time"] for r in ends}
    # Every observed Logoff closes a Logon with the same logon id; the rest end at a boot.
    open_ids = set()
    for e in events:
        if e.method is Method.Logon:
            open_ids.add(e.logon_id)
        elif e.method is Method.Logoff:
            assert e.logon_id in open_ids or not e.synthesized
            open_ids.discard(e.logon_id)
    assert {e.user_name for e in events} == {r["strings"][5] for r in logons}


@pytest.mark.parametrize("path", [TUNNEL_4624, TUNNEL_5156], ids=lambda p: p.name)
def test_only_interactive_4624_are_logons(path: Path) -> None:
    rows = [r for r in oracle(path) if r["event_identifier"] == 4624]
    wanted = {r["record_number"]: r for r in rows if interactive(r)}
    others = {r["record_number"] for r in rows} - set(wanted)
    assert others  # service, network and unlock (7) logons are in these files
    events = events_of(read(path)[0])
    assert {e.raw["RecordNumber"] for e in events} == set(wanted)
    for e in events:
        s = wanted[e.raw["RecordNumber"]]["strings"]
        assert e.method is Method.Logon
        assert e.remote == (int(s[8]) == 10)
        if e.remote:
            assert (e.client_address, e.client_name) == (s[18], s[11])
        else:
            assert e.client_address is None


def test_system_log_boots_and_shutdowns_reset_the_host() -> None:
    from evtx import PyEvtxParser

    resets = {(6005, "boot"), (6006, "shutdown"), (6008, "crash"), (12, "boot"), (13, "shutdown")}
    kinds = {eid for eid, _ in resets}
    rows = [r for r in oracle(SYSTEM) if r["event_identifier"] in kinds
            and r["source_name"] in ("EventLog", "Microsoft-Windows-Kernel-General")]
    in_file_order = [r["time"] for r in sorted(rows, key=lambda r: r["record_number"])]
    assert in_file_order != sorted(in_file_order)  # record order is not time order
    # plaso's oracle leaves out Kernel-Power 41 (unexpected shutdown): read those directly.
    power = []
    for item in PyEvtxParser(str(SYSTEM)).records_json():
        assert item is not None
        system = json.loads(item["data"])["Event"]["System"]
        if (system["Provider"]["#attributes"]["Name"] == "Microsoft-Windows-Kernel-Power"
                and system["EventID"] == 41):
            power.append(datetime.fromisoformat(system["TimeCreated"]["#attributes"]["SystemTime"]))
    obs, errors = read(SYSTEM)
    got = [o for o in obs if isinstance(o, HostReset)]
    assert errors == [] and len(got) == len(obs)  # Winlogon 7001/7002 name no user: no events
    assert sorted(o.time for o in got) == sorted([r["time"] for r in rows] + power)
    reason = {eid: why for eid, why in resets}
    expected = sorted((r["time"], reason[r["event_identifier"]]) for r in rows)
    assert sorted((o.time, o.reason) for o in got if o.time not in power) == expected


def test_1149_is_not_an_event() -> None:
    rcm = [EVTX / "sbousseaden__DE_RDP_Tunneling_RCM_1149.evtx",
           EVTX / "mdecrevoisier__ID1149-RDP_success_logins_to_multiple_hosts.evtx"]
    assert any(r["event_identifier"] == 1149 for r in oracle(rcm[0]))
    obs, errors = read(rcm)
    assert obs == [] and errors == []


# -- damage --------------------------------------------------------------------------------------


def test_corrupt_vss_log_reports_the_bad_records_and_reads_the_rest() -> None:
    from evtx import PyEvtxParser

    errors: list[str] = []
    assert list(read_evtx(str(VSS_RCM), errors.append)) == []
    good = 0
    it = PyEvtxParser(str(VSS_RCM)).records_json()
    failures = 0
    while True:
        try:
            next(it)
            good += 1
        except StopIteration:
            break
        except RuntimeError:
            failures += 1
    assert len(errors) == failures > 0
    assert all(e.startswith(f"{VSS_RCM}: ") and "\n" not in e for e in errors)
    assert "record 463011" in errors[0] and "chunk" in errors[0] and "offset" in errors[0]
    assert "after record" in errors[1]


def _chunk_records(data: bytes, chunk: int) -> Iterator[tuple[int, int, int]]:
    """(offset in file, size, record number) of each record of chunk ``chunk``."""
    base = HEADER_SIZE + chunk * CHUNK_SIZE
    pos = 512
    while data[base + pos:base + pos + 4] == b"\x2a\x2a\x00\x00":
        size, number = struct.unpack_from("<IQ", data, base + pos + 4)
        yield base + pos, size, number
        pos += size


def numbers(obs: list[Observation]) -> set[int]:
    return {o.info.raw["RecordNumber"] for o in records(obs)}


def test_truncated_file_reads_what_is_left(tmp_path: Path) -> None:
    data = SECURITY.read_bytes()
    cut = HEADER_SIZE + 3 * CHUNK_SIZE + 30_000
    short = tmp_path / "cut.evtx"
    short.write_bytes(data[:cut])
    full, _ = read(SECURITY)
    obs, errors = read(short)
    assert len(errors) == 1
    assert errors[0].startswith(f"{short}: ") and f"offset {cut}" in errors[0]
    assert "chunk 3" in errors[0]
    partial = {n for off, size, n in _chunk_records(data, 3) if off + size <= cut}
    assert numbers(obs) <= numbers(full)
    assert numbers(obs) & partial  # records of the cut chunk were recovered
    assert max(numbers(obs)) <= max(partial)


def test_corrupted_record_and_chunk_are_named_and_skipped(tmp_path: Path) -> None:
    data = SECURITY.read_bytes()
    full, _ = read(SECURITY)
    recs = list(_chunk_records(data, 1))
    off, _, number = recs[4]
    bad = bytearray(data)
    bad[off + 64:off + 84] = b"\xee" * 20  # inside the record's BinXml
    path = tmp_path / "bad-record.evtx"
    path.write_bytes(bytes(bad))
    obs, errors = read(path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: record {number} (chunk 1 at offset "
                                f"{HEADER_SIZE + CHUNK_SIZE}")
    assert numbers(obs) == numbers(full) - {number}

    bad = bytearray(data)
    bad[HEADER_SIZE + CHUNK_SIZE:HEADER_SIZE + CHUNK_SIZE + 8] = b"XXXXXXXX"
    path = tmp_path / "bad-chunk.evtx"
    path.write_bytes(bytes(bad))
    obs, errors = read(path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: chunk 1 at offset {HEADER_SIZE + CHUNK_SIZE}")
    chunk1 = {n for _, _, n in recs}
    assert numbers(obs) == numbers(full) - chunk1


@pytest.mark.parametrize("content", [b"", b"ElfFile\x00", b"not an event log" * 400])
def test_not_an_evtx_file_is_one_sentence(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.evtx"
    path.write_bytes(content)
    with pytest.raises(ReadError, match=rf"^{path} is "):
        list(read_evtx(str(path), lambda _m: None))


def test_sens_import_evtx_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = str(tmp_path / "j.db")
    bad = tmp_path / "bad.evtx"
    bad.write_bytes(b"junk")
    assert main(["--journal", journal, "import", "evtx", "--json", str(HIJACK), str(bad)]) == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["method"] for e in lines] == ["SessionDisconnect", "SessionReconnect"]
    assert lines[0]["raw"]["EventID"] == 4779 and lines[0]["host"] == "fs01"
    assert str(bad) in err and "Traceback" not in err
    assert main(["--journal", journal, "import", "evtx", str(HIJACK)]) == 0
    assert "(2 already journaled, 0 new)" in capsys.readouterr().err


# -- two channels, one occurrence (records shaped as the evtx package decodes them) ---------------

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
SEC_P = {"Name": "Microsoft-Windows-Security-Auditing"}
LSM_P = {"Name": "Microsoft-Windows-TerminalServices-LocalSessionManager"}
LSM_CH = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"


def ev(seconds: float, provider: dict[str, str], eid: int, data: dict[str, Any],
       host: str = "ts01.corp.example") -> dict[str, Any]:
    lsm = provider is LSM_P
    system = {
        "Provider": {"#attributes": provider}, "EventID": eid,
        "TimeCreated": {"#attributes": {
            "SystemTime": (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")}},
        "Channel": LSM_CH if lsm else "Security", "Computer": host,
    }
    body = {"UserData": {"EventXML": {"#attributes": {"xmlns": "Event_NS"}, **data}}} if lsm else {
        "EventData": data}
    return {"Event": {"System": system, **body}}


def lsm(seconds: float, eid: int, session: int = 3, address: str = "10.0.0.7",
        user: str = "CORP\\alice") -> dict[str, Any]:
    return ev(seconds, LSM_P, eid, {"User": user, "SessionID": session, "Address": address})


def logon4624(seconds: float, logon_id: str, logon_type: int = 10) -> dict[str, Any]:
    return ev(seconds, SEC_P, 4624, {
        "TargetUserSid": "S-1-5-21-1-2-3-1104", "TargetUserName": "alice",
        "TargetDomainName": "CORP", "TargetLogonId": logon_id, "LogonType": logon_type,
        "WorkstationName": "LAPTOP7", "IpAddress": "10.0.0.7"})


def ts(seconds: float, eid: int, logon_id: str = "0x5a1") -> dict[str, Any]:
    return ev(seconds, SEC_P, eid, {
        "AccountName": "alice", "AccountDomain": "CORP", "LogonID": logon_id,
        "SessionName": "RDP-Tcp#4", "ClientName": "LAPTOP7", "ClientAddress": "10.0.0.7"})


def logoff(seconds: float, eid: int, logon_id: str, logon_type: int = 10) -> dict[str, Any]:
    data: dict[str, Any] = {"TargetUserSid": "S-1-5-21-1-2-3-1104", "TargetUserName": "alice",
            "TargetDomainName": "CORP", "TargetLogonId": logon_id}
    if eid == 4634:
        data["LogonType"] = logon_type
    return ev(seconds, SEC_P, eid, data)


def rdp_day() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One RDP session's Security and LSM records (PTB's sequences, with the fields the logs
    carry)."""
    security = [
        logon4624(0.0, "0x5a1"),
        ts(60.2, 4779), logoff(60.4, 4634, "0x5a1"),          # window closed
        logon4624(300.0, "0x7f0"), ts(301.0, 4778),           # reconnect: new auth logon id
        logoff(900.0, 4647, "0x5a1"), logoff(900.1, 4634, "0x5a1"),
        logoff(901.0, 4634, "0x7f0"),
    ]
    local = [
        lsm(0.3, 21), lsm(2.0, 22),
        lsm(60.0, 24), ev(60.1, LSM_P, 39, {"TargetSession": 3, "Source": 3}),
        ev(60.1, LSM_P, 40, {"Session": 3, "Reason": 11}),
        lsm(300.5, 25), ev(300.6, LSM_P, 40, {"Session": 3, "Reason": 0}),
        ev(899.9, LSM_P, 23, {"User": "CORP\\alice", "SessionID": 3}),
    ]
    return security, local


def parsed(events: list[dict[str, Any]], order: int) -> list[Any]:
    out = []
    for n, e in enumerate(events, 1):
        rec = parse_record(e, n)
        assert rec is not None
        rec.order = order
        out.append(rec)
    return out


def test_two_channels_make_one_event_per_occurrence() -> None:
    security, local = rdp_day()
    obs = list(correlate(parsed(security, 0) + parsed(local, 1)))
    events = Tracker(host="x").feed_all(obs)
    assert [e.method for e in events] == [
        Method.Logon, Method.PostShell, Method.SessionDisconnect, Method.SessionReconnect,
        Method.Logoff]
    assert {e.session_id for e in events} == {"3"}
    assert {e.host for e in events} == {"ts01"}
    logon = events[0]
    assert (logon.user_name, logon.domain, logon.logon_id) == ("alice", "CORP", "0x5a1")
    assert logon.remote and logon.client_address == "10.0.0.7"
    assert logon.time == T0 and logon.raw["merged"][0]["EventID"] == 21
    assert events[2].reason == disconnect_reason(11) == "RpcInitiatedDisconnectByUser (11)"
    assert events[2].session_name == "RDP-Tcp#4" and events[3].session_name == "RDP-Tcp#4"
    assert events[3].reason is None
    # the same records in any file order give the same events
    again = list(correlate(parsed(local, 0) + parsed(security, 1)))
    assert [e.id for e in Tracker(host="x").feed_all(again)] == [e.id for e in events]


def test_security_alone_keys_by_logon_id_and_lsm_alone_by_session() -> None:
    security, local = rdp_day()
    events = Tracker(host="x").feed_all(correlate(parsed(security, 0)))
    assert [e.method for e in events] == [
        Method.Logon, Method.SessionDisconnect, Method.SessionReconnect, Method.Logoff]
    assert {e.session_id for e in events} == {None}
    assert {e.logon_id for e in events} == {"0x5a1"}
    events = Tracker(host="x").feed_all(correlate(parsed(local, 0)))
    assert [e.method for e in events] == [
        Method.Logon, Method.PostShell, Method.SessionDisconnect, Method.SessionReconnect,
        Method.Logoff]
    assert {e.logon_id for e in events} == {None}


def test_console_address_in_any_language_is_local() -> None:
    recs = parsed([lsm(0, 21, session=1, address="YEREL", user="PC\\ayse"),
                   lsm(1, 22, session=1, address="LOCAL", user="PC\\ayse")], 0)
    events = Tracker(host="x").feed_all(correlate(recs))
    assert [(e.method, e.user_name, e.domain, e.session_id, e.remote, e.client_address)
            for e in events] == [
        (Method.Logon, "ayse", "PC", "1", False, None),
        (Method.PostShell, "ayse", "PC", "1", False, None)]


def test_lock_records_tie_logon_id_to_session() -> None:
    lock = {"TargetUserSid": "S-1-5-21-1-2-3-1104", "TargetUserName": "alice",
            "TargetDomainName": "CORP", "TargetLogonId": "0x5a1", "SessionId": 2}
    recs = parsed([logon4624(0, "0x5a1", 2), ev(5, SEC_P, 4800, lock), ev(9, SEC_P, 4801, lock),
                   ev(10, SEC_P, 4802, lock), ev(11, SEC_P, 4803, lock),
                   logoff(20, 4647, "0x5a1")], 0)
    events = Tracker(host="x").feed_all(correlate(recs))
    assert [e.method for e in events] == [
        Method.Logon, Method.DisplayLock, Method.DisplayUnlock, Method.StartScreenSaver,
        Method.StopScreenSaver, Method.Logoff]
    assert {e.session_id for e in events} == {"2"}


def test_service_and_window_manager_logons_are_not_users() -> None:
    dwm = ev(0, SEC_P, 4624, {"TargetUserSid": "S-1-5-90-0-1", "TargetUserName": "DWM-1",
                              "TargetDomainName": "Window Manager", "TargetLogonId": "0x9",
                              "LogonType": 2})
    assert Tracker(host="x").feed_all(correlate(parsed([dwm], 0))) == []


def test_a_malformed_relevant_record_is_one_sentence(tmp_path: Path) -> None:
    bad = ev(0, SEC_P, 4778, {"AccountName": "alice", "LogonID": "zz"})
    with pytest.raises(ValueError, match="LogonId"):
        parse_record(bad, 7)
