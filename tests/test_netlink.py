"""The network source against the real kernel, in private network namespaces (root).

Each test runs the source in a child process inside a namespace (tests/netns_fixtures.py says
why) and asserts the SENS semantics on the events it prints: nothing for what exists at start,
ConnectionMade and ConnectionLost alternating per connection, one event per change, and the
right ulType, QOC and NoQOCInfo method. "Nothing else happened" is shown with a sentinel: a
change on another link whose event must be the very next one.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from netns_fixtures import Namespaces, Netns, NetProbe, namespaces, stop
from pysens.cli.common import escape
from pysens.events import CONNECTION_LAN, CONNECTION_WAN, SensEvent
from pysens.observations import ConnectionState
from pysens.sources.netlink import NetlinkSource, _why_not
from pysens.sources.network import NetworkSource

__all__ = ["namespaces"]  # the fixture, re-exported so pytest finds it
pytestmark = pytest.mark.root
SPEED = 10_000_000_000  # a veth says 10000 Mb/s


def operstate(ns: Netns, link: str) -> str:
    # strict=False: iproute2 writes control characters in names into its JSON unescaped.
    return str(json.loads(ns.ip("-j", "link", "show", "dev", link), strict=False)[0]["operstate"])


def wait_operstate(ns: Netns, link: str, state: str = "UP") -> None:
    """Setup, not an assertion: the kernel sets a veth's carrier up to a second late."""
    deadline = time.monotonic() + 10
    while operstate(ns, link) != state:
        assert time.monotonic() < deadline, f"{link} never became {state}"
        time.sleep(0.02)


def pair(namespaces: Namespaces, a_name: str = "va", b_name: str = "vb", *, subnet: str = "10.9.0",
         a: Netns | None = None, b: Netns | None = None, address: bool = True
         ) -> tuple[Netns, Netns]:
    a = a or namespaces.new()
    b = b or namespaces.new()
    namespaces.veth(a, a_name, b, b_name)
    if address:
        a.ip("addr", "add", f"{subnet}.1/24", "dev", a_name)
    b.ip("addr", "add", f"{subnet}.2/24", "dev", b_name)
    b.ip("link", "set", b_name, "up")
    a.ip("link", "set", a_name, "up")
    wait_operstate(a, a_name)
    return a, b


def brief(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["method"], e["connection"]) for e in events]


@pytest.fixture
def probes() -> Any:
    started: list[NetProbe] = []

    def start(ns: Netns, **options: Any) -> NetProbe:
        p = NetProbe(ns, **options)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def test_existing_links_fire_nothing_then_made_and_lost_alternate(namespaces: Namespaces,
                                                                   probes: Any) -> None:
    a, b = pair(namespaces)
    probe = probes(a)
    assert [(o["connection"], o["usable"]) for o in probe.ready] == [("va", True)]
    a.ip("link", "set", "va", "down")
    (lost,) = probe.events()
    assert (lost["method"], lost["connection"], lost["connection_type"], lost["qoc"]) == (
        "ConnectionLost", "va", CONNECTION_LAN, None)
    a.ip("link", "set", "va", "up")
    (made,) = probe.events()
    assert (made["method"], made["connection"]) == ("ConnectionMade", "va")
    assert made["qoc"] == {"flags": 1, "in_speed": SPEED, "out_speed": SPEED}
    b.ip("link", "set", "vb", "down")  # the cable pulled at the other end: carrier lost
    assert brief(probe.events()) == [("ConnectionLost", "va")]
    b.ip("link", "set", "vb", "up")
    assert brief(probe.events()) == [("ConnectionMade", "va")]
    # One event per change: the next event is the sentinel's, nothing more about va.
    pair(namespaces, "vs", "vs-peer", subnet="10.10.0", a=a, b=b)
    assert brief(probe.events()) == [("ConnectionMade", "vs")]
    existing = [o["existing"] for o in probe.observations]
    assert existing[0] and not any(existing[1:])


def test_addresses_and_default_routes(namespaces: Namespaces, probes: Any) -> None:
    a, _b = pair(namespaces, address=False)
    probe = probes(a)
    assert [o["usable"] for o in probe.ready] == [False]  # fe80:: only: link-local
    a.ip("route", "add", "default", "dev", "va")  # a route alone makes nothing usable
    a.ip("addr", "add", "10.9.0.1/24", "dev", "va")
    assert brief(probe.events()) == [("ConnectionMade", "va")]
    a.ip("route", "add", "default", "via", "10.9.0.2", "dev", "va", "metric", "5")
    a.ip("route", "del", "default", "via", "10.9.0.2", "dev", "va", "metric", "5")
    a.ip("addr", "del", "10.9.0.1/24", "dev", "va")  # the last usable address gone
    assert brief(probe.events()) == [("ConnectionLost", "va")]
    a.ip("addr", "add", "169.254.7.7/16", "dev", "va")  # link-local v4: still nothing
    a.ip("addr", "add", "2001:db8::1/64", "dev", "va", "nodad")  # a global v6 address
    assert brief(probe.events()) == [("ConnectionMade", "va")]
    a.ip("addr", "del", "2001:db8::1/64", "dev", "va")
    assert brief(probe.events()) == [("ConnectionLost", "va")]
    # With duplicate address detection the address is tentative first; usable once DAD ends.
    a.ip("addr", "add", "2001:db8::2/64", "dev", "va")
    assert brief(probe.events()) == [("ConnectionMade", "va")]
    flags = json.loads(a.ip("-j", "addr", "show", "dev", "va"))[0]["addr_info"]
    assert not any(i.get("tentative") for i in flags if i["local"] == "2001:db8::2")


def test_a_bridge_has_no_speed_so_its_made_is_noqocinfo(namespaces: Namespaces,
                                                       probes: Any) -> None:
    a = namespaces.new()
    probe = probes(a)
    a.ip("link", "add", "br0", "type", "bridge")
    a.ip("addr", "add", "10.7.0.1/24", "dev", "br0")
    a.ip("link", "set", "br0", "up")
    (made,) = probe.events()
    assert (made["method"], made["connection"], made["qoc"]) == (
        "ConnectionMadeNoQOCInfo", "br0", None)
    a.ip("link", "set", "br0", "down")
    assert brief(probe.events()) == [("ConnectionLost", "br0")]


def test_a_tun_device_is_wan_and_its_carrier_is_the_process_attached(
        namespaces: Namespaces, probes: Any) -> None:
    a = namespaces.new()
    a.ip("tuntap", "add", "mode", "tun", "name", "tun0")
    a.ip("addr", "add", "10.8.0.2", "peer", "10.8.0.1", "dev", "tun0")
    a.ip("link", "set", "tun0", "up")
    probe = probes(a)
    assert [(o["usable"], o["type"]) for o in probe.ready] == [(False, CONNECTION_WAN)]
    holder = a.hold_tun("tun0")
    (made,) = probe.events()
    assert (made["connection"], made["connection_type"]) == ("tun0", CONNECTION_WAN)
    if made["qoc"] is not None:  # the tun driver says 10 Mb/s
        assert made["qoc"]["flags"] == 2 and made["method"] == "ConnectionMade"
    stop(holder)  # the VPN client exits: carrier gone
    (lost,) = probe.events()
    assert (lost["method"], lost["connection"], lost["connection_type"]) == (
        "ConnectionLost", "tun0", CONNECTION_WAN)


def _alternate(events: list[dict[str, Any]], first: str, last: str) -> None:
    methods = [e["method"].replace("NoQOCInfo", "") for e in events]
    assert methods, "no events"
    assert methods[0] == first and methods[-1] == last, methods
    assert all(x != y for x, y in itertools.pairwise(methods)), methods


def test_a_flapping_link_alternates_and_ends_in_the_right_state(namespaces: Namespaces,
                                                                probes: Any) -> None:
    a, b = pair(namespaces)
    pair(namespaces, "vs", "vs-peer", subnet="10.10.0", a=a, b=b)
    probe = probes(a)
    # The address taken away and given back 40 times, the link down and up 10 times.
    a.batch(["address del 10.9.0.1/24 dev va", "address add 10.9.0.1/24 dev va"] * 40
            + ["link set va down", "link set va up"] * 10)
    wait_operstate(a, "va")
    a.ip("link", "set", "vs", "down")  # the sentinel
    seen = []
    while True:
        (e,) = probe.events()
        if e["connection"] == "vs":
            break
        seen.append(e)
    assert {e["connection"] for e in seen} == {"va"}
    _alternate(seen, "ConnectionLost", "ConnectionMade")


def test_a_renamed_link_and_a_deleted_link(namespaces: Namespaces, probes: Any) -> None:
    a, _b = pair(namespaces)
    probe = probes(a)
    a.ip("link", "set", "va", "down")
    a.ip("link", "set", "va", "name", "uplink")
    a.ip("link", "set", "uplink", "up")
    lost, made = probe.events(2)
    assert brief([lost, made]) == [("ConnectionLost", "va"), ("ConnectionMade", "uplink")]
    assert lost["raw"]["ifindex"] == made["raw"]["ifindex"]
    a.ip("link", "del", "uplink")
    assert brief(probe.events()) == [("ConnectionLost", "uplink")]


def test_a_name_with_control_characters_is_data(namespaces: Namespaces, probes: Any) -> None:
    a, b = namespaces.new(), namespaces.new()
    probe = probes(a)
    name = "a\x1b[31m"
    pair(namespaces, name, "vb", a=a, b=b)
    (made,) = probe.events()
    assert made["connection"] == name  # JSON keeps it
    event = SensEvent.from_json(made)
    assert event.connection == name
    text = json.dumps(event.to_json(), ensure_ascii=False)  # what `sens watch --json` prints
    assert json.loads(text)["connection"] == name
    assert escape(event.connection) == "a\\x1b[31m"  # human output escapes it


def test_an_overrun_socket_resyncs_and_reports_the_difference(namespaces: Namespaces,
                                                              probes: Any) -> None:
    a, b = pair(namespaces, address=False)
    pair(namespaces, "vs", "vs-peer", subnet="10.10.0", a=a, b=b)
    probe = probes(a, rcvbuf=2048)  # the kernel's minimum: a burst overruns it
    a.batch([f"address add 10.50.{i // 250}.{i % 250 + 1}/32 dev va" for i in range(400)])
    assert brief(probe.events()) == [("ConnectionMade", "va")]
    a.ip("link", "set", "vs", "down")
    assert brief(probe.events()) == [("ConnectionLost", "vs")]
    overruns = [line for line in probe.stderr if "overran" in line]
    assert overruns, probe.stderr
    assert all("re-reading" in line or "dumping again" in line for line in overruns)


async def test_probe_and_snapshot_here() -> None:
    assert await NetlinkSource.probe() is None and await NetworkSource.probe() is None
    why = _why_not(PermissionError(1, "Operation not permitted"))
    assert why.startswith("opening a netlink route socket is not permitted here")
    assert "RestrictAddressFamilies=" in why and "\n" not in why
    source = NetworkSource(networkmanager=False)
    try:
        states = await source.snapshot()
    finally:
        await source.aclose()
    assert states and all(isinstance(s, ConnectionState) for s in states)
    links = [s for s in states if isinstance(s, ConnectionState)]
    assert all(s.existing and s.key.startswith("ifindex:") for s in links)
    assert "lo" not in {s.connection for s in links}  # never a connection
