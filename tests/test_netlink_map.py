"""rtnetlink parsing and the link table (pysens.sources.netlink_map), on hand-built messages."""

from __future__ import annotations

import contextlib
import socket
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysens.events import CONNECTION_LAN, CONNECTION_WAN, NETWORK_ALIVE_LAN, NETWORK_ALIVE_WAN
from pysens.sources import netlink_map as nm
from pysens.sources import netlink_wire as nw
from pysens.sources.netlink_map import (
    AddressMessage,
    DoneMessage,
    ErrorMessage,
    Label,
    LinkMessage,
    NetlinkError,
    NetTable,
    RouteMessage,
    parse_datagram,
    parse_message,
)

T = datetime(2026, 12, 1, tzinfo=UTC)
UP_FLAGS = nw.IFF_UP | nw.IFF_LOWER_UP | 0x40  # IFF_RUNNING


def rta(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def nlmsg(msg_type: int, body: bytes, seq: int = 0, length: int | None = None) -> bytes:
    size = 16 + len(body) if length is None else length
    raw = struct.pack("=IHHII", size, msg_type, 0, seq, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def link_msg(index: int, name: bytes | str, *, flags: int = UP_FLAGS, operstate: int = 6,
             arphrd: int = 1, kind: str | None = None, new: bool = True, carrier: int | None = 1,
             family: int = 0) -> bytes:
    if isinstance(name, str):
        name = name.encode()
    body = struct.pack("=BxHiII", family, arphrd, index, flags, 0xFFFFFFFF)
    body += rta(nw.IFLA_IFNAME, name + b"\0") + rta(nw.IFLA_OPERSTATE, bytes([operstate]))
    if carrier is not None:
        body += rta(nw.IFLA_CARRIER, bytes([carrier]))
    if kind is not None:
        body += rta(nw.IFLA_LINKINFO | 0x8000, rta(nw.IFLA_INFO_KIND, kind.encode()))
    return nlmsg(nw.RTM_NEWLINK if new else nw.RTM_DELLINK, body)


def addr_msg(index: int, address: str, prefixlen: int = 24, *, flags: int = 0,
             new: bool = True, scope: int = 0, peer: str | None = None) -> bytes:
    ip = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    body = struct.pack("=BBBBI", family, prefixlen, flags & 0xFF, scope, index)
    if peer is not None:
        body += rta(nw.IFA_ADDRESS, socket.inet_pton(family, peer)) + rta(nw.IFA_LOCAL, ip)
    else:
        body += rta(nw.IFA_ADDRESS, ip)
    body += rta(nw.IFA_FLAGS, struct.pack("=I", flags))
    return nlmsg(nw.RTM_NEWADDR if new else nw.RTM_DELADDR, body)


def route_msg(oif: int, *, dst_len: int = 0, table: int = 254, new: bool = True,
              gateway: str | None = None) -> bytes:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, dst_len, 0, 0, table, 3, 0, 1, 0)
    body += rta(nw.RTA_TABLE, struct.pack("=I", table)) + rta(nw.RTA_OIF, struct.pack("=I", oif))
    if gateway:
        body += rta(nw.RTA_GATEWAY, socket.inet_aton(gateway))
    return nlmsg(nw.RTM_NEWROUTE if new else nw.RTM_DELROUTE, body)


def table_of(*datagrams: bytes, speed: int | None = 10_000_000_000,
             labels: dict[str, Label] | None = None) -> NetTable:
    t = NetTable(lambda _n: speed)
    if labels:
        t.set_labels(labels)
    for d in datagrams:
        msgs, errors = parse_datagram(d)
        assert errors == []
        t.apply_all(msgs)
    return t


# -- parsing ---------------------------------------------------------------------------------


def test_a_link_message_parses_with_its_attributes() -> None:
    (m,), errors = parse_datagram(link_msg(3, "veth0", kind="veth"))
    assert errors == []
    assert isinstance(m, LinkMessage) and m.new
    assert (m.link.index, m.link.name, m.link.operstate, m.link.carrier, m.link.kind) == (
        3, "veth0", 6, True, "veth")


def test_addresses_routes_done_and_errors_parse() -> None:
    data = (addr_msg(3, "10.0.0.1", peer="10.0.0.2") + route_msg(3, gateway="10.0.0.254")
            + nlmsg(nw.NLMSG_DONE, struct.pack("=i", 0), seq=7)
            + nlmsg(nw.NLMSG_ERROR, struct.pack("=i", -16) + b"\0" * 16, seq=8))
    msgs, errors = parse_datagram(data)
    assert errors == []
    a, r, d, e = msgs
    assert isinstance(a, AddressMessage) and a.address.address == "10.0.0.1"  # IFA_LOCAL wins
    assert isinstance(r, RouteMessage) and r.route.oifs == (3,) and r.route.table == 254
    assert r.route.gateway == "10.0.0.254"
    assert d == DoneMessage(7) and e == ErrorMessage(16, 8)


def test_ipv6_flags_come_from_ifa_flags() -> None:
    (m,), _ = parse_datagram(addr_msg(2, "2001:db8::1", 64, flags=nw.IFA_F_TENTATIVE | 0x100))
    assert isinstance(m, AddressMessage) and m.address.flags == nw.IFA_F_TENTATIVE | 0x100


def test_a_name_with_control_characters_is_kept_as_data() -> None:
    (m,), _ = parse_datagram(link_msg(5, "a\x1b[31m"))
    assert isinstance(m, LinkMessage) and m.link.name == "a\x1b[31m"
    (m,), _ = parse_datagram(link_msg(5, b"x\xff"))  # not UTF-8: still a name, never a crash
    assert isinstance(m, LinkMessage) and m.link.name == "x\\xff"


def test_a_truncated_header_names_its_offset() -> None:
    with pytest.raises(NetlinkError, match=r"^netlink header at offset 0: 10 bytes"):
        parse_message(b"\0" * 10)


def test_a_lying_length_ends_the_datagram_with_one_error() -> None:
    good = link_msg(3, "veth0")
    bad = nlmsg(nw.RTM_NEWADDR, b"\0" * 8, length=400)
    msgs, errors = parse_datagram(good + bad + good)
    assert len(msgs) == 1
    assert [str(e) for e in errors] == [
        f"RTM_NEWADDR at offset {len(good)}: its header claims 400 bytes, "
        f"{24 + len(good)} are left"]


def test_a_bad_body_skips_only_that_message() -> None:
    short = nlmsg(nw.RTM_NEWLINK, b"\0" * 8)
    lying_attr = nlmsg(nw.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 4, 1, 0)
                       + struct.pack("=HH", 200, 3) + b"abcd")
    msgs, errors = parse_datagram(short + lying_attr + link_msg(3, "veth0"))
    assert [m.link.name for m in msgs if isinstance(m, LinkMessage)] == ["veth0"]
    assert str(errors[0]) == "RTM_NEWLINK at offset 0: 8 bytes of ifinfomsg, needs 16"
    assert str(errors[1]).startswith("RTM_NEWLINK at offset 24: attribute 3 at offset 0 claims "
                                     "200 bytes")


def test_a_short_fixed_size_attribute_is_an_error() -> None:
    body = struct.pack("=BBBBI", 2, 24, 0, 0, 3) + rta(nw.IFA_ADDRESS, b"\1\2\3\4") + rta(
        nw.IFA_FLAGS, b"\1\2")
    with pytest.raises(NetlinkError, match="RTM_NEWADDR at offset 0: attribute 8 is 2 bytes"):
        parse_message(nlmsg(nw.RTM_NEWADDR, body))
    body = struct.pack("=BBBBI", 2, 24, 0, 0, 3) + rta(nw.IFA_ADDRESS, b"\1\2\3")
    with pytest.raises(NetlinkError, match="an address of 3 bytes for family 2"):
        parse_message(nlmsg(nw.RTM_NEWADDR, body))


_TYPES = st.sampled_from([1, 2, 3, 4, 16, 17, 20, 21, 24, 25, 99])


@st.composite
def _mangled(draw: st.DrawFn) -> bytes:
    """A real message with its bytes cut, its lengths rewritten, or random bytes appended."""
    base = draw(st.sampled_from([
        link_msg(3, "veth0", kind="veth"), addr_msg(3, "fe80::1", 64), route_msg(2),
        addr_msg(4, "10.1.2.3", peer="10.1.2.4"),
        nlmsg(nw.NLMSG_ERROR, struct.pack("=i", -1)),
    ]))
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        struct.pack_into("=H", data, 4, draw(_TYPES))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=40))


@settings(max_examples=400, deadline=None)
@given(st.one_of(_mangled(), st.binary(max_size=120)))
def test_fuzz_nothing_but_netlink_error_comes_out(data: bytes) -> None:
    msgs, errors = parse_datagram(data)
    assert all(isinstance(e, NetlinkError) and "\n" not in str(e) for e in errors)
    table = NetTable(lambda _n: 1)
    table.apply_all(msgs)  # whatever parsed, the table takes it
    table.changes(T)
    with contextlib.suppress(NetlinkError):
        parse_message(data)


def test_dump_requests_are_well_formed() -> None:
    req = nw.dump_request(nw.RTM_GETADDR, 9, socket.AF_INET6)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq, req[16]) == (24, nw.RTM_GETADDR, 0x301, 9, 10)
    with pytest.raises(ValueError):
        nw.dump_request(99, 1)


# -- the table -------------------------------------------------------------------------------


def test_a_link_is_usable_when_up_with_carrier_and_an_address() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"))
    (s,) = t.changes(T, existing=True)
    assert (s.key, s.connection, s.usable, s.connection_type, s.existing) == (
        "ifindex:3", "veth0", True, CONNECTION_LAN, True)
    assert s.qoc == {"flags": NETWORK_ALIVE_LAN, "in_speed": 10**10, "out_speed": 10**10}
    assert t.changes(T) == []  # nothing new


@pytest.mark.parametrize(("why", "datagrams"), [
    ("admin down", [link_msg(3, "v", flags=0, operstate=2), addr_msg(3, "10.0.0.1")]),
    ("no carrier", [link_msg(3, "v", flags=nw.IFF_UP, operstate=3), addr_msg(3, "10.0.0.1")]),
    ("no address", [link_msg(3, "v")]),
    ("link-local v4", [link_msg(3, "v"), addr_msg(3, "169.254.3.4", 16)]),
    ("link-local v6", [link_msg(3, "v"), addr_msg(3, "fe80::1", 64)]),
    ("tentative", [link_msg(3, "v"), addr_msg(3, "2001:db8::1", 64, flags=nw.IFA_F_TENTATIVE)]),
    ("dadfailed", [link_msg(3, "v"), addr_msg(3, "2001:db8::1", 64, flags=nw.IFA_F_DADFAILED)]),
    ("host scope", [link_msg(3, "v"), addr_msg(3, "10.0.0.1", scope=254)]),
    ("unknown w/o lower up", [link_msg(3, "t", flags=nw.IFF_UP, operstate=0, carrier=None),
                              addr_msg(3, "10.0.0.1")]),
])
def test_what_makes_a_link_unusable(why: str, datagrams: list[bytes]) -> None:
    (s,) = table_of(*datagrams).changes(T)
    assert not s.usable, why
    assert s.qoc is None


def test_the_loopback_is_never_a_connection() -> None:
    t = table_of(link_msg(1, "lo", flags=UP_FLAGS | nw.IFF_LOOPBACK, operstate=0, arphrd=772),
                 addr_msg(1, "127.0.0.1", 8, scope=254), addr_msg(1, "10.9.9.9", 32))
    assert t.changes(T) == [] and t.views() == []


def test_tun_style_links_use_lower_up_and_are_wan() -> None:
    t = table_of(link_msg(4, "tun0", flags=UP_FLAGS | nw.IFF_POINTOPOINT, operstate=0,
                          arphrd=nw.ARPHRD_NONE, kind="tun", carrier=None),
                 addr_msg(4, "10.8.0.2", 32, peer="10.8.0.1"))
    (s,) = t.changes(T)
    assert s.usable and s.connection_type == CONNECTION_WAN
    assert s.qoc is not None and s.qoc["flags"] == NETWORK_ALIVE_WAN


def test_no_speed_means_no_qoc() -> None:
    (s,) = table_of(link_msg(3, "br0", kind="bridge"), addr_msg(3, "10.0.0.1"),
                    speed=None).changes(T)
    assert s.usable and s.qoc is None


def test_only_changes_are_reported_and_a_burst_is_one_change() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"), route_msg(3))
    assert [s.usable for s in t.changes(T)] == [True]
    # Link down: NEWLINK, the route flushed, IPv6 addresses removed: one state change.
    burst = (link_msg(3, "veth0", flags=0, operstate=2) + route_msg(3, new=False)
             + addr_msg(3, "fe80::1", 64, new=False))
    t.apply_all(parse_datagram(burst)[0])
    assert t.changed
    assert [s.usable for s in t.changes(T)] == [False]
    assert not t.changed
    # Down and up again within one batch: nothing changed at all.
    t.apply_all(parse_datagram(link_msg(3, "veth0"))[0])
    t.apply_all(parse_datagram(link_msg(3, "veth0", flags=0, operstate=2))[0])
    assert t.changes(T) == []


def test_a_rename_is_reported_and_a_deleted_link_is_lost_under_its_name() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"))
    t.changes(T)
    t.apply_all(parse_datagram(link_msg(3, "uplink"))[0])
    (s,) = t.changes(T)
    assert (s.connection, s.usable) == ("uplink", True)
    t.apply_all(parse_datagram(link_msg(3, "uplink", new=False))[0])
    (s,) = t.changes(T)
    assert (s.key, s.connection, s.usable) == ("ifindex:3", "uplink", False)
    assert t.changes(T) == [] and t.views() == []


def test_a_link_going_down_drops_its_default_routes() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"), route_msg(3))
    assert t.views()[0].default_route
    t.apply_all(parse_datagram(link_msg(3, "veth0", flags=0, operstate=2))[0])
    assert not t.views()[0].default_route and t.routes == set()
    t.apply_all(parse_datagram(route_msg(3) + route_msg(3, dst_len=24))[0])
    assert len(t.routes) == 1  # only default routes are kept
    t.apply_all(parse_datagram(route_msg(3, new=False))[0])
    assert t.routes == set()


def test_bridge_port_messages_are_not_link_changes() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"))
    t.changes(T)
    t.apply_all(parse_datagram(link_msg(3, "veth0", new=False, family=nw.AF_BRIDGE))[0])
    assert t.changes(T) == [] and t.views()[0].usable


def test_labels_name_the_connection_and_correct_its_type() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"))
    t.changes(T)
    t.set_labels({"veth0": Label("Office VPN", CONNECTION_WAN, "vpn")})
    (s,) = t.changes(T)
    assert (s.connection, s.connection_type, s.raw["networkmanager"]) == (
        "Office VPN", CONNECTION_WAN, {"id": "Office VPN", "type": "vpn", "primary": False})
    assert s.qoc is not None and s.qoc["flags"] == NETWORK_ALIVE_WAN
    t.set_internet(True)
    (s,) = t.changes(T)
    assert s.qoc is not None and s.qoc["flags"] == NETWORK_ALIVE_WAN | nm.NETWORK_ALIVE_INTERNET
    t.set_labels({})
    (s,) = t.changes(T)
    assert (s.connection, s.connection_type) == ("veth0", CONNECTION_LAN)


def test_a_resync_reports_only_the_difference() -> None:
    t = table_of(link_msg(3, "a"), addr_msg(3, "10.0.0.1"), link_msg(4, "b"),
                 addr_msg(4, "10.0.1.1"))
    assert len(t.changes(T)) == 2
    t.begin_resync()  # the fresh dump: b is gone, a unchanged, c new
    t.apply_all(parse_datagram(link_msg(3, "a") + addr_msg(3, "10.0.0.1") + link_msg(5, "c")
                               + addr_msg(5, "10.0.2.1"))[0])
    assert sorted((s.key, s.usable) for s in t.changes(T)) == [
        ("ifindex:4", False), ("ifindex:5", True)]


def test_the_link_of_a_local_address() -> None:
    t = table_of(link_msg(3, "veth0"), addr_msg(3, "10.0.0.1"), addr_msg(3, "2001:db8::5", 64))
    view = t.link_of_address("2001:db8::5")
    assert view is not None and view.connection == "veth0"
    assert t.link_of_address("10.0.0.2") is None and t.link_of_address("nonsense") is None
