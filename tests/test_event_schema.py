"""docs/event.schema.json against real events of every source, made by pysens in this run from
real inputs: the shared wtmp files and .evtx logs (read in place), a utmp written by
``utmpdump -r`` (live and as history), a wtmpdb database written with upstream's statements,
logind and UPower on a private bus (python-dbusmock), the kernel's netlink in private network
namespaces, a sysfs-shaped power-supply tree with real uevents, the WTS source above its Win32
seam, a replay file, and events published with ``sens publish``; the CLI's own JSON lines
(``sens import --json``, ``sens watch --json``, ``sens history --json``) included.

Also: the schema refuses bad events, and its enums are the code's (so the file cannot drift).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from dbus_fixtures import LogindWorld, logind, session_props
from netns_fixtures import Namespaces, NetProbe, namespaces
from power_supply_fixtures import SupplyTree, private_netns, tree
from pysens.cli import main
from pysens.events import (
    CLASS_METHODS,
    METHOD_CLASSES,
    EventClass,
    Method,
    SensEvent,
    parse_method,
)
from pysens.live import tracked_events
from pysens.sources.power_supply import PowerSupplySource
from pysens.sources.utmp import ProcView, UtmpSource
from pysens.sources.wts import WtsSource
from pysens.sources.wts_translate import ConnectState, SessionState, WtsCode
from pysens.tracker import Tracker
from test_netlink import pair, probes, wait_operstate
from test_wts import FakeWtsApi
from upower_fixtures import CHARGING, LEVEL_LOW, PowerCollector, UPowerWorld, upower
from utmp_fixtures import put_slot, rec, write_utmp

__all__ = ["logind", "namespaces", "private_netns", "probes", "tree", "upower"]  # fixtures

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "event.schema.json"
M = Method

#: The methods each test below must see from its source: together, every SENS method.
EXPECTED: dict[str, set[Method]] = {
    "wtmp": {M.Logon, M.PostShell, M.Logoff},
    "evtx": {M.Logon, M.Logoff, M.SessionDisconnect, M.SessionReconnect},
    "utmp": {M.Logon, M.PostShell, M.Logoff},
    "wtmpdb": {M.Logon, M.PostShell, M.Logoff},
    "logind": {M.Logon, M.PostShell, M.SessionDisconnect, M.SessionReconnect, M.DisplayLock,
               M.DisplayUnlock, M.Logoff},
    "wts": {M.Logon, M.PostShell, M.DisplayLock, M.SessionDisconnect, M.SessionReconnect,
            M.Logoff},
    "network": {M.ConnectionMade, M.ConnectionMadeNoQOCInfo, M.ConnectionLost,
                M.DestinationReachable, M.DestinationReachableNoQOCInfo},
    "upower": {M.OnBatteryPower, M.BatteryLow, M.OnACPower},
    "power_supply": {M.OnBatteryPower, M.BatteryLow, M.OnACPower},
    "replay": {M.Logon, M.StartScreenSaver, M.StopScreenSaver, M.Logoff},
    "publish": set(METHOD_CLASSES),
}


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    s = schema()
    Draft202012Validator.check_schema(s)
    return Draft202012Validator(s, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(validator: Draft202012Validator, obj: Mapping[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}"
            for e in validator.iter_errors(obj)]


def check_objects(validator: Draft202012Validator, objects: Iterable[Mapping[str, Any]],
                  source: str | None = None) -> Counter[str]:
    """Validate each JSON object; the methods seen. ``source``: what every object must say."""
    seen: Counter[str] = Counter()
    for obj in objects:
        bad = problems(validator, obj)
        assert not bad, f"{json.dumps(obj)[:400]}\n" + "\n".join(bad)
        if source is not None:
            assert obj["source"] == source, obj
        seen[obj["method"]] += 1
    assert seen, "no events to check"
    return seen


def check_events(validator: Draft202012Validator, events: Iterable[SensEvent],
                 source: str | None = None) -> Counter[str]:
    """Validate what each event writes: to_json(), and the text the journal and the CLI write
    (the fast path), which must say the same."""
    objects = []
    for e in events:
        obj = e.to_json()
        assert json.loads(e.to_json_text()) == obj
        objects.append(obj)
    return check_objects(validator, objects, source)


def covers(seen: Counter[str], name: str) -> None:
    missing = {str(m) for m in EXPECTED[name]} - set(seen)
    assert not missing, f"{name} gave {dict(seen)}, not {sorted(missing)}"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def take(events: AsyncIterator[SensEvent], n: int) -> list[SensEvent]:
    """The next ``n`` events (a hang fails the test instead of stalling it)."""
    return [await asyncio.wait_for(anext(events), 10) for _ in range(n)]


# -- the schema is the code's ---------------------------------------------------------------------

def test_the_schema_is_the_codes() -> None:
    s = schema()
    props = s["properties"]
    canonical = [str(m) for m in Method if parse_method(m) is m]  # StartShell is PostShell
    assert props["method"]["enum"] == canonical
    assert "StartShell" not in props["method"]["enum"]
    assert props["classes"]["items"]["enum"] == [str(c) for c in EventClass]
    # Every key to_json() writes, in its order; all required but seq.
    keys = list(SensEvent(method="Logon").with_seq(1).to_json())
    assert list(props) == keys
    assert s["required"] == [k for k in keys if k != "seq"]
    # The classes each method is delivered to, as the events carry them.
    tied: dict[str, list[str]] = {}
    for rule in s["allOf"]:
        for method in rule["if"]["properties"]["method"]["enum"]:
            tied[method] = rule["then"]["properties"]["classes"]["const"]
    assert tied == {str(m): [str(c) for c in cs] for m, cs in METHOD_CLASSES.items()}
    assert set(METHOD_CLASSES) == {parse_method(m) for cs in CLASS_METHODS.values() for m in cs}


def test_the_sources_below_cover_every_method() -> None:
    assert set().union(*EXPECTED.values()) == set(METHOD_CLASSES)


@pytest.mark.parametrize(("change", "where"), [
    ({"connection_type": "x"}, "connection_type"),
    ({"connection_type": 7}, "connection_type"),
    ({"id": None}, "'id' is a required property"),
    ({"id": "has space"}, "id"),
    ({"method": "StartShell"}, "method"),
    ({"method": "Logon", "classes": ["ISensLogon2"]}, "classes"),
    ({"classes": []}, "classes"),
    ({"time": "2026-11-23T20:44:39Z"}, "time"),
    ({"observed": "2026-11-23T20:44:39.123456+00:00"}, "observed"),
    ({"seq": 0}, "seq"),
    ({"remote": "false"}, "remote"),
    ({"session_id": 3}, "session_id"),
    ({"qoc": {"flags": 1, "in_speed": 10}}, "qoc"),
    ({"qoc": {"flags": 1, "in_speed": -1, "out_speed": 0}}, "qoc"),
    ({"battery_percent": 101}, "battery_percent"),
    ({"raw": []}, "raw"),
    ({"colour": "blue"}, "'colour' was unexpected"),
])
def test_the_schema_refuses_a_bad_event(validator: Draft202012Validator,
                                        change: dict[str, Any], where: str) -> None:
    good = SensEvent(method="SessionReconnect", user_name="alice", session_id="3",
                     host="web01").to_json()
    assert problems(validator, good) == []
    bad = {**good, **change}
    if change.get("id", "") is None:
        del bad["id"]  # missing, not null
    found = problems(validator, bad)
    assert found and any(where in p for p in found), found


# -- history files, through the CLI ---------------------------------------------------------------

def history_files(directory: Path) -> list[Path]:
    """The data files of a shared-data folder (not its MANIFEST or the oracles beside them)."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix not in (".md", ".txt", ".jsonl")
                  and not p.name.endswith(".aligned384"))


def import_json(capsys: pytest.CaptureFixture[str], kind: str, paths: Iterable[Path],
                *extra: str) -> list[dict[str, Any]]:
    """``sens import KIND PATHS --json``: the events it prints."""
    code = main(["import", kind, *map(str, paths), "--json", "--host", "testhost", *extra])
    out = capsys.readouterr().out
    assert code in (0, 1), code  # 1: some damaged records in the files (reported, skipped)
    return json_lines(out)


def test_wtmp_files(validator: Draft202012Validator, shared_data: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    files = history_files(shared_data / "wtmp")
    assert len(files) >= 10, files
    seen = check_objects(validator, import_json(capsys, "wtmp", files), "wtmp")
    covers(seen, "wtmp")


def test_evtx_files(validator: Draft202012Validator, shared_data: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted((shared_data / "evtx").glob("*.evtx"))
    assert len(files) >= 5, files
    seen = check_objects(validator, import_json(capsys, "evtx", files), "evtx")
    covers(seen, "evtx")


def test_wtmpdb_database(validator: Draft202012Validator, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    # Upstream's table and statements (thkukuk/wtmpdb lib/sqlite.c); times in µs.
    def us(t: str) -> int:
        return int(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() * 1_000_000)

    path = tmp_path / "wtmp.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE wtmp(ID INTEGER PRIMARY KEY, Type INTEGER, User TEXT NOT NULL, "
                   "Login INTEGER, Logout INTEGER, TTY TEXT, RemoteHost TEXT, Service TEXT) "
                   "STRICT")
        insert = ("INSERT INTO wtmp (Type, User, Login, TTY, RemoteHost, Service) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
        db.execute(insert, (1, "reboot", us("2025-06-01T08:00"), "~", "6.12.0", None))
        db.execute(insert, (3, "alice", us("2025-06-01T08:05"), "tty1", None, "login"))
        db.execute(insert, (3, "bob", us("2025-06-01T08:10"), "ssh", "192.0.2.9", "sshd"))
        db.execute("UPDATE wtmp SET Logout = ? WHERE ID = 2", (us("2025-06-01T09:00"),))
        db.commit()
    seen = check_objects(validator, import_json(capsys, "wtmpdb", [path]), "wtmpdb")
    covers(seen, "wtmpdb")


# -- utmp, written by utmpdump -r -----------------------------------------------------------------

BOOT = rec(2, 0, "~~", "reboot", "~", "6.1.0-test", "0.0.0.0", "2024-01-01T09:00:00")
ALICE = rec(7, 1001, "ts/0", "alice", "pts/0", "192.168.1.5", "192.168.1.5",
            "2024-01-01T10:00:00")
BOB = rec(7, 1002, "tty2", "bob", "tty2", "", "0.0.0.0", "2024-01-01T10:05:00")


async def test_utmp_live_and_as_history(validator: Draft202012Validator, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "utmp"
    write_utmp(path, [BOOT, ALICE])
    source = UtmpSource(str(path), host="h", proc=ProcView("/nonexistent-proc"))
    events = tracked_events(source, Tracker(host="h", include_existing=True))
    try:
        live = await take(events, 2)  # alice, open at start: reported as asked
        put_slot(path, 2, BOB)
        live += await take(events, 2)
        put_slot(path, 1, rec(8, 1001, "ts/0", "", "pts/0", "", "0.0.0.0",
                              "2024-01-01T10:59:00"))
        live += await take(events, 1)
    finally:
        await source.aclose()
    seen = check_events(validator, live, "utmp")
    assert list(seen.elements()).count("Logoff") == 1
    covers(seen, "utmp")
    # As history, the file says what it holds now: bob logged on (alice's slot is dead).
    as_history = check_objects(validator, import_json(capsys, "utmp", [path]), "utmp")
    assert as_history == Counter({"Logon": 1, "PostShell": 1})


# -- logind on a private bus (python-dbusmock) ----------------------------------------------------

async def test_logind(validator: Draft202012Validator, logind: LogindWorld) -> None:
    c = await logind.watch()
    mock = logind.mock
    await mock.add(session_props("c1", "Debian-gdm", 116, seat="seat0", type_="wayland",
                                 class_="greeter", service="gdm-launch-environment"))
    await mock.add(session_props("2", "alice", seat="seat0", tty="tty2", type_="x11",
                                 service="gdm-password"))
    events = await c.next(2)  # nothing for the greeter
    await mock.add(session_props("c7", "bob", tty="pts/1", remote=True,
                                 remote_host="198.51.100.4", service="sshd"))
    events += await c.next(2)
    await mock.call(mock.paths["2"], "org.freedesktop.login1.Session", "SetLockedHint", "b",
                    [True])
    events += await c.next()
    await mock.change("2", LockedHint=False)
    events += await c.next()
    await mock.change("2", Active=False)
    events += await c.next()
    await mock.change("2", Active=True)
    events += await c.next()
    await mock.remove("c7")
    await mock.remove("2")
    events += await c.next(2)
    assert {e.user_name for e in events} == {"alice", "bob"}
    covers(check_events(validator, events, "logind"), "logind")


# -- WTS, above its Win32 seam --------------------------------------------------------------------

async def test_wts(validator: Draft202012Validator) -> None:
    def bob(**kw: Any) -> SessionState:
        kw = {"connect_state": ConnectState.Active, "client_address": "198.51.100.4", **kw}
        return SessionState(2, user_name="bob", domain="CORP", session_name="RDP-Tcp#2",
                            protocol=2, client_name="DESK-9", **kw)

    class Api(FakeWtsApi):
        """Tells when the source has listed the sessions (its snapshot): codes sent after
        that are news."""

        listed = threading.Event()

        def enumerate_sessions(self) -> list[int]:
            try:
                return super().enumerate_sessions()
            finally:
                self.listed.set()

    api = Api({0: SessionState(0, session_name="Services")})
    source = WtsSource(api, host="win01")
    events = tracked_events(source, Tracker(host="win01"))
    first = asyncio.ensure_future(anext(events))
    try:
        assert await asyncio.to_thread(api.listed.wait, 10)
        disconnected = bob(connect_state=ConnectState.Disconnected, client_address=None)
        await asyncio.to_thread(api.send, [
            (WtsCode.REMOTE_CONNECT, 2, bob()),
            (WtsCode.SESSION_LOGON, 2, bob()),
            (WtsCode.SESSION_DESKTOP_READY, 2, bob()),
            (WtsCode.SESSION_LOCK, 2, bob(locked=True)),
            (WtsCode.REMOTE_DISCONNECT, 2, disconnected),
            (WtsCode.REMOTE_CONNECT, 2, bob(locked=True)),
            (WtsCode.SESSION_LOGOFF, 2, disconnected),
        ])
        got = [await asyncio.wait_for(first, 10), *await take(events, 5)]
    finally:
        first.cancel()
        await source.aclose()
    covers(check_events(validator, got, "wts"), "wts")


# -- network: the kernel's netlink in private namespaces, destinations probed ---------------------

def test_network(validator: Draft202012Validator, namespaces: Namespaces, probes: Any) -> None:
    a, b = pair(namespaces)  # va (a veth: 10 Gb/s) in a, its peer vb in b
    probe: NetProbe = probes(a, destinations=[{"address": "10.9.0.2", "port": 8443},
                                              {"address": "10.7.0.1", "port": 8080}],
                             recheck=0.3, backoff=[0.1, 0.4], timeout=0.5)
    events = []
    a.ip("link", "add", "br0", "type", "bridge")  # a bridge has no speed: NoQOCInfo
    a.ip("addr", "add", "10.7.0.1/24", "dev", "br0")
    a.ip("link", "set", "br0", "up")
    events += probe.events()
    b.listen("10.9.0.2", 8443)  # reached over va
    events += probe.events()
    a.listen("10.7.0.1", 8080)  # reached from br0's own address
    events += probe.events()
    a.ip("link", "set", "va", "down")
    events += probe.events()
    a.ip("link", "set", "va", "up")
    wait_operstate(a, "va")
    for _ in range(3):  # its Made, and 10.9.0.2 reachable again, in either order
        events += probe.events()
        if events[-1]["method"] == "ConnectionMade":
            break
    covers(check_objects(validator, events, "network"), "network")


# -- power: UPower on a private bus, and the kernel's power supplies ------------------------------

async def test_upower(validator: Draft202012Validator, upower: UPowerWorld) -> None:
    await upower.restart_mock(on_battery=True)
    await upower.mock.setup_display(percentage=12.0, warning_level=LEVEL_LOW)
    c = await upower.watch(include_existing=True)
    events = await c.next(2)  # on battery and low at start: reported as asked
    await upower.mock.set_on_battery(False)
    await upower.mock.set_display(State=CHARGING)
    events += await c.next()
    covers(check_events(validator, events, "upower"), "upower")


@pytest.mark.root
async def test_power_supply(validator: Draft202012Validator, tree: SupplyTree) -> None:
    c = PowerCollector(PowerSupplySource(tree.root, reread_interval=None),
                       Tracker(host="testhost"))
    try:
        await c.started()
        tree.ac(False)
        tree.battery(status="Discharging", capacity=15, capacity_level="Low")
        tree.inject("AC")
        tree.inject("BAT0")
        events = await c.next(2)
        tree.ac(True)
        tree.battery(status="Charging")
        tree.inject("AC")
        events += await c.next()
    finally:
        await c.close()
    covers(check_events(validator, events, "power_supply"), "power_supply")


# -- a replay file, and published events ----------------------------------------------------------

REPLAY = [
    {"method": "Logon", "user_name": "carol", "session_id": "4", "host": "desk7",
     "time": "2026-03-02T08:00:00Z", "source": "replay"},
    {"method": "StartScreenSaver", "user_name": "carol", "session_id": "4", "host": "desk7",
     "time": "2026-03-02T08:30:00Z", "source": "replay"},
    {"method": "stop_screen_saver", "user_name": "carol", "session_id": "4", "host": "desk7",
     "time": "2026-03-02T09:31:00.5+01:00", "source": "replay"},
    {"method": "Logoff", "user_name": "CAROL", "session_id": "4", "host": "desk7",
     "time": "2026-03-02T09:00:00Z", "source": "replay", "reason": "logout"},
]


def test_replay_file(validator: Draft202012Validator, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in REPLAY), encoding="utf-8")
    assert main(["watch", "--source", str(path), "--json"]) == 0
    covers(check_objects(validator, json_lines(capsys.readouterr().out), "replay"), "replay")
    covers(check_objects(validator, import_json(capsys, "jsonl", [path]), "replay"), "replay")


def published() -> list[dict[str, Any]]:
    """One event of every method, as a publisher writes them (few fields; pysens fills in)."""
    out: list[dict[str, Any]] = []
    for i, method in enumerate(m for m in Method if m is not M.PostShell):
        obj: dict[str, Any] = {"method": str(method), "time": f"2026-05-01T10:{i:02d}:00Z",
                               "host": "pub01", "source": "publish"}
        classes = METHOD_CLASSES[parse_method(method)]
        if EventClass.ISensNetwork in classes:
            obj |= {"connection": "Office", "connection_type": 0}
            if "QOC" not in str(method) and method is not M.ConnectionLost:
                obj["qoc"] = {"flags": 1, "in_speed": 10**9, "out_speed": 10**9}
            if "Destination" in str(method):
                obj["destination"] = "git.example.com"
        elif EventClass.ISensOnNow in classes:
            obj["battery_percent"] = None if method is M.OnACPower else 9
        else:
            obj |= {"user_name": "alice", "domain": "CORP", "session_id": 3}
        out.append(obj)
    return out


def test_published_events_and_history(validator: Draft202012Validator, tmp_path: Path,
                                      shared_data: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "publish.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in published()), encoding="utf-8")
    assert main(["publish", "--json", str(path)]) == 0
    assert main(["publish", "Logon", "--user", "CORP\\dave", "--session", "5",
                 "--client-address", "203.0.113.8"]) == 0
    import_json(capsys, "wtmp", [shared_data / "wtmp" / "artemis__ubuntu18.04_wtmp"])
    capsys.readouterr()
    assert main(["history", "--json"]) == 0
    lines = json_lines(capsys.readouterr().out)
    assert all("seq" in obj for obj in lines)
    assert [obj["seq"] for obj in lines] == sorted(obj["seq"] for obj in lines)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for obj in lines:
        by_source.setdefault(obj["source"], []).append(obj)
    assert set(by_source) == {"publish", "wtmp"}
    covers(check_objects(validator, by_source["publish"]), "publish")
    covers(check_objects(validator, by_source["wtmp"]), "wtmp")
