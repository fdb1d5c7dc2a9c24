"""Destinations: the configuration tables, and DestinationReachable from the real kernel (a TCP
listener and ICMP echo in a second network namespace, reached over a veth)."""

from __future__ import annotations

from typing import Any

import pytest

from netns_fixtures import Namespaces, Netns, NetProbe, namespaces, run, stop
from pysens.sources.destinations import Destination, parse_destinations
from test_netlink import SPEED, pair, probes, wait_operstate

__all__ = ["namespaces", "probes"]  # the fixtures, re-exported so pytest finds them

FAST = {"recheck": 0.3, "backoff": [0.1, 0.4], "timeout": 0.5}


def test_destinations_from_tables() -> None:
    assert parse_destinations([
        {"name": "git.example.com", "port": 443}, {"address": " 2001:db8::1 "},
        {"name": "printer"},
    ]) == [Destination("git.example.com", 443), Destination("2001:db8::1"),
           Destination("printer")]
    assert str(Destination("git.example.com", 443)) == "git.example.com port 443"


@pytest.mark.parametrize(("tables", "message"), [
    ([{"name": "a"}, {"port": 80}], "destination 2: give exactly one of name or address"),
    ([{"name": "a", "address": "10.0.0.1"}], "destination 1: give exactly one of name or"),
    ([{"address": "git.example.com"}], "destination 1: address 'git.example.com' is not an IP"),
    ([{"name": "a b"}], "destination 1: name 'a b' is not a host name"),
    ([{"name": "x\x1b[31m"}], "destination 1: name 'x\\x1b[31m' is not a host name"),
    ([{"name": ""}], "destination 1: name must be a non-empty string"),
    ([{"name": "a", "port": 0}], "destination 1 (a): port 0 is not a TCP port (1-65535)"),
    ([{"name": "a", "port": "443"}], "destination 1 (a): port '443' is not a TCP port"),
    ([{"name": "a", "port": True}], "destination 1 (a): port True is not a TCP port"),
    ([{"name": "a", "prot": 1}], "destination 1: unknown key 'prot'"),
    ([{"name": "a"}, {"name": "a", "port": 22}], "destination 2 (a): listed twice"),
    (["a"], "destination 1: expected a table"),
])
def test_a_bad_entry_is_one_line_naming_it(tables: list[Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_destinations(tables)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def _server(namespaces: Namespaces) -> tuple[Netns, Netns]:
    a, b = pair(namespaces)
    a.write_etc("hosts", "127.0.0.1 localhost\n10.9.0.2 server.pysens.test\n")
    a.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    return a, b


def test_reachable_when_the_listener_appears_and_again_after_it_came_back(
        namespaces: Namespaces, probes: Any) -> None:
    a, b = _server(namespaces)
    probe: NetProbe = probes(a, destinations=[
        {"address": "10.9.0.2", "port": 8443}, {"name": "server.pysens.test", "port": 8443},
        {"name": "nowhere.invalid", "port": 443}], **FAST)
    listener = b.listen("10.9.0.2", 8443)  # nothing fired at start: nobody listened then
    events = probe.events(2)
    assert sorted(e["destination"] for e in events) == ["10.9.0.2", "server.pysens.test"]
    for e in events:
        assert (e["method"], e["connection"], e["connection_type"]) == (
            "DestinationReachable", "va", 0)
        assert e["qoc"] == {"flags": 1, "in_speed": SPEED, "out_speed": SPEED}
        assert e["raw"]["local_address"] == "10.9.0.1"
    stop(listener)  # gone: SENS has no event for that, but the next probe notices ...
    gone = {probe.observe(lambda o: o.get("reachable") is False)["destination"]
            for _ in range(2)}
    assert gone == {"10.9.0.2", "server.pysens.test"}
    listener = b.listen("10.9.0.2", 8443)  # ... so that its return fires again
    second = probe.events(2)
    assert sorted(e["destination"] for e in second) == ["10.9.0.2", "server.pysens.test"]
    assert {e["method"] for e in second} == {"DestinationReachable"}
    lines = [line for line in probe.stderr if "nowhere.invalid" in line]
    assert len(lines) == 1 and "does not resolve" in lines[0], probe.stderr
    assert "Traceback" not in "\n".join(probe.stderr)


def test_a_destination_without_port_is_pinged(namespaces: Namespaces, probes: Any) -> None:
    a, b = _server(namespaces)
    # The server ignores echo requests (a TCP reset would still come back: so this proves
    # the probe is ICMP, not the TCP fallback).
    run("ip", "netns", "exec", b.name, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
    probe: NetProbe = probes(a, destinations=[{"address": "10.9.0.2"}], **FAST)
    assert probe.observe(lambda o: o["kind"] == "destination")["reachable"] is False
    run("ip", "netns", "exec", b.name, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0")
    (e,) = probe.events()
    assert (e["method"], e["destination"], e["connection"]) == (
        "DestinationReachable", "10.9.0.2", "va")
    assert e["raw"]["port"] is None


def test_a_network_change_probes_at_once(namespaces: Namespaces, probes: Any) -> None:
    a, b = _server(namespaces)
    b.ip("link", "set", "vb", "down")
    wait_operstate(a, "va", "DOWN")
    listener = b.listen("0.0.0.0", 8443)
    # No recheck to speak of: only the network change can make it probe again in time.
    probe: NetProbe = probes(a, destinations=[{"address": "10.9.0.2", "port": 8443}],
                             recheck=600, backoff=[600, 600], timeout=0.5)
    b.ip("link", "set", "vb", "up")
    kinds = [e["method"] for e in probe.events(2)]
    assert kinds == ["ConnectionMade", "DestinationReachable"]
    stop(listener)
