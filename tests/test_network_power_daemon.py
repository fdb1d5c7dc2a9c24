"""ISensNetwork and ISensOnNow everywhere the logon events go: the daemon runs the network
source (in a private network namespace, the real kernel) and the power source (python-dbusmock's
UPower on a private bus) beside the logon ones; `sens watch --class`, `sens network`,
`sens power`, `sens history`, the journal, persistent subscriptions and `sens doctor` see them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from netns_fixtures import Namespaces, namespaces, stop
from pysens.cli import main
from pysens.daemon.config import ConfigError, parse_config
from pysens.events import CONNECTION_LAN, SensEvent
from service_fixtures import daemon, read_jsonl, request, sens_argv, wait_cursor, write_events
from test_netlink import pair
from upower_fixtures import UPowerWorld, upower

__all__ = ["namespaces", "upower"]  # the fixtures, re-exported so pytest finds them


def _lines(proc: subprocess.Popen[str], n: int, deadline: float = 30) -> list[dict[str, Any]]:
    """The next ``n`` JSON lines a `sens watch --json` prints (a hang guard, not a timing
    assertion)."""
    out: list[dict[str, Any]] = []
    end = time.monotonic() + deadline
    assert proc.stdout is not None
    while len(out) < n:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
        assert ready, f"only {out} within {deadline} s"
        line = proc.stdout.readline()
        assert line, f"sens watch ended: {proc.stderr.read() if proc.stderr else ''}"
        out.append(json.loads(line))
    return out


def _watch(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`sens watch --json ARGS` through the daemon, once the daemon counts it as a watcher."""
    proc = subprocess.Popen(sens_argv("watch", "--json", *args), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sock = Path(env["SENS_SOCKET"])
    deadline = time.monotonic() + 30
    while request(sock, {"op": "hello"}).get("watchers", 0) < 1:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "sens watch did not subscribe"
        time.sleep(0.05)
    return proc


def _end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()


def _sens_json(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    r = subprocess.run(sens_argv(*args, "--json"), env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.root
def test_the_daemon_runs_the_network_source_beside_the_logon_ones(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    a, b = pair(namespaces, "wan0", "peer0", subnet="10.77.0")
    env = dict(os.environ)  # the test's own journal and socket (conftest)
    sock = Path(env["SENS_SOCKET"])
    out = tmp_path / "network.jsonl"
    assert main(["subscriptions", "add", "lan-lost",
                 "--class", "ISensNetwork", "--method", "ConnectionLost",
                 "--criteria", f"ulConnectionLostType = {CONNECTION_LAN}",
                 "--jsonl", str(out)]) == 0
    serve = a.popen(*sens_argv("-v", "serve", "--source", "none", "--network", "--no-power",
                               "--destination", "10.77.0.2:8080"), env=env)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() or not request(sock, {"op": "hello"}).get("ok"):
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
            assert time.monotonic() < deadline, "sens serve did not come up"
            time.sleep(0.05)
        assert request(sock, {"op": "hello"})["sources"] == ["network"]
        # What exists at start is known, not fired: the link is listed, nothing journaled.
        now = _sens_json(env, "network")
        links = [c for c in now if c["kind"] == "connection"]
        assert [(c["connection"], c["type"]) for c in links] == [("wan0", "LAN")]
        assert links[0]["qoc"]["in_speed"] == 10_000_000_000
        assert "10.77.0.1" in links[0]["addresses"]
        assert [(d["destination"], d["reachable"]) for d in now if d["kind"] == "destination"
                ] == [("10.77.0.2", False)]  # nothing listens yet
        watch = _watch(env, "--class", "ISensNetwork")
        try:
            b.ip("link", "set", "peer0", "down")  # the cable is pulled at the other end
            lost = _lines(watch, 1)[0]
            assert (lost["method"], lost["connection"], lost["connection_type"]) == (
                "ConnectionLost", "wan0", CONNECTION_LAN)
            b.ip("link", "set", "peer0", "up")
            made = _lines(watch, 1)[0]
            assert (made["method"], made["connection"]) == ("ConnectionMade", "wan0")
            listener = b.listen("10.77.0.2", 8080)
            try:
                reach = _lines(watch, 1, deadline=60)[0]
            finally:
                stop(listener)
            assert (reach["method"], reach["destination"], reach["connection"]) == (
                "DestinationReachableNoQOCInfo", "10.77.0.2", "wan0") or (
                reach["method"], reach["destination"]) == ("DestinationReachable", "10.77.0.2")
        finally:
            _end(watch)
        # The journal has them; history filters on the new columns; the subscription got the
        # LAN loss, and only it.
        history = _sens_json(env, "history", "--filter", "classes = 'ISensNetwork'")
        assert [e["method"] for e in history][:2] == ["ConnectionLost", "ConnectionMade"]
        assert [e["method"] for e in _sens_json(
            env, "history", "--filter", "bstrConnection = 'wan0' AND ulType = 0")][:1] == [
            "ConnectionLost"]
        lost_seq = history[0]["seq"]
        wait_cursor(["lan-lost"], lost_seq)
        delivered, torn = read_jsonl(out)
        assert torn == 0 and [e["method"] for e in delivered] == ["ConnectionLost"]
    finally:
        stop(serve)


async def test_the_daemon_runs_the_power_source_and_sens_power_asks_it(
    upower: UPowerWorld, tmp_path: Path
) -> None:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": upower.address}
    await upower.mock.setup_display(percentage=80.0)
    with daemon(tmp_path, "--power", "--no-network", env=env):
        state = _sens_json(env, "power")
        assert state[0]["power"] == "AC" and state[0]["source"] == "upower"
        watch = _watch(env, "--class", "ISensOnNow")
        try:
            await upower.mock.unplug()
            got = _lines(watch, 1)[0]
            assert (got["method"], got["classes"]) == ("OnBatteryPower", ["ISensOnNow"])
            assert got["battery_percent"] == 80
        finally:
            _end(watch)
        assert _sens_json(env, "power")[0]["power"] == "battery"
        doctor = subprocess.run(sens_argv("doctor"), env=env, capture_output=True, text=True,  # noqa: ASYNC221 - the daemon is another process
                                timeout=60)
        assert "sources: power" in doctor.stdout and "power   yes" in doctor.stdout


def test_sources_none_means_no_network_or_power_source_unless_asked(tmp_path: Path) -> None:
    with daemon(tmp_path):
        hello = request(tmp_path / "sens.sock", {"op": "hello"})
        assert hello["sources"] == [] and hello["unavailable"] == {}
        reply = request(tmp_path / "sens.sock", {"op": "network"})
        assert reply["ok"] and reply["watching"] is False and reply["connections"] == []


def test_watch_class_keeps_only_that_class(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write_events(tmp_path / "mixed.jsonl", [
        SensEvent(method="Logon", user_name="alice", session_id="1", host="h", source="t"),
        SensEvent(method="ConnectionMade", connection="eth0", connection_type=0, host="h",
                  source="t", qoc={"flags": 1, "in_speed": 10**9, "out_speed": 10**9}),
        SensEvent(method="OnBatteryPower", battery_percent=50, host="h", source="t"),
    ])
    assert main(["watch", "--source", str(path), "--json", "--class", "ISensNetwork"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["method"], e["qoc"]["in_speed"]) for e in got] == [("ConnectionMade", 10**9)]
    assert main(["watch", "--source", str(path), "--class", "ISensOnNow"]) == 0
    line = capsys.readouterr().out.strip()
    assert "OnBatteryPower" in line and "battery=50%" in line
    assert main(["watch", "--class", "ISensBogus"]) == 2
    assert "unknown event class 'ISensBogus'" in capsys.readouterr().err


@pytest.mark.parametrize(("config", "message"), [
    ('[[destination]]\nname = "git.example.com"\nport = 70000\n',
     "sens.toml:3: [[destination]] port 70000 is not a TCP port (1-65535)"),
    ('[[destination]]\nname = "a"\n\n[[destination]]\naddress = "10.0.0.x"\n',
     "sens.toml:5: [[destination]] address '10.0.0.x' is not an IP address"),
    ('[[destination]]\nname = "a"\n[[destination]]\nname = "a"\n',
     "sens.toml:3: [[destination]] a is listed twice"),
    ('[serve]\nnetwork = "yes"\n', "sens.toml:2: [serve] network must be true or false"),
])
def test_a_bad_destination_or_switch_is_one_line_naming_the_line(config: str,
                                                                 message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(config, "sens.toml")
    assert str(e.value) == message or str(e.value).startswith(message), str(e.value)


def test_destinations_and_switches_from_the_config() -> None:
    cfg = parse_config('[serve]\npower = false\n[[destination]]\nname = "git.example.com"\n'
                       'port = 443\n[[destination]]\naddress = "192.0.2.7"\n', "sens.toml")
    assert [str(d) for d in cfg.destinations] == ["git.example.com port 443", "192.0.2.7"]
    assert cfg.wants("power") is False and cfg.wants("network") is None
    assert parse_config('[serve]\nsources = ["none"]\n', "x").wants("network") is False
