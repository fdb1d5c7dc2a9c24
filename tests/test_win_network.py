"""The Windows network source: its pure translation (GetAdaptersAddresses buffers, laid out as
the documentation says, good and bad) and the source itself driven through a fake below its
one seam, the events judged by the real tracker. The real Win32 calls run in tests_windows/.

The recorded sequences follow what Microsoft documents: a DHCP address is tentative before it is
preferred (IP_DAD_STATE), an adapter without a DHCP answer gets only an APIPA 169.254/16 address,
a dial-up / VPN connection is a PPP adapter (IfType 23) that comes and goes with the connection
(RasDial), and every change is signalled by NotifyIpInterfaceChange,
NotifyUnicastIpAddressChange and NotifyRouteChange2 together.
"""

from __future__ import annotations

import logging
import struct
import sys
from datetime import UTC, datetime

import pytest

from pysens.events import CONNECTION_LAN, CONNECTION_WAN, Method, SensEvent
from pysens.live import tracked_events
from pysens.observations import ConnectionState
from pysens.sources import SourceUnavailable
from pysens.sources.win_network import (
    NEEDS_WINDOWS,
    Win32IpHelperApi,
    WinNetworkSource,
    open_win_network,
    probe,
)
from pysens.sources.win_network_map import (
    AdapterBufferError,
    NetworkTranslator,
    connection_state,
    parse_adapters,
)
from pysens.tracker import Tracker
from win_fixtures import (
    BASE,
    DOWN,
    LOOPBACK,
    PPP,
    PREFERRED,
    TENTATIVE,
    TUNNEL,
    UP,
    WIFI,
    FakeIpHelperApi,
    Row,
    adapter_buffer,
)

M = Method
T = datetime(2026, 1, 1, tzinfo=UTC)
LUID_ETH = 0x0006_0000_0100_0000  # NET_LUID: interface type 6 in bits 48-63, net index 1
LUID_WIFI = 0x0047_0000_0200_0000
LUID_PPP = 0x0017_0000_0300_0000
LUID_LO = 0x0018_0000_0000_0000

loopback = Row(LUID_LO, 1, "Loopback Pseudo-Interface 1", if_type=LOOPBACK, tx=1_073_741_824,
               rx=1_073_741_824, addresses=[("127.0.0.1", PREFERRED), ("::1", PREFERRED)])


def ethernet(**kw: object) -> Row:
    base = {"addresses": [("fe80::1c2a:3bff:fe4d:5e6f", PREFERRED), ("192.0.2.10", PREFERRED)]}
    return Row(LUID_ETH, 7, "Ethernet", **{**base, **kw})  # type: ignore[arg-type]


# -- the pure half --------------------------------------------------------------------------

def test_parse_reads_the_documented_fields() -> None:
    eth = ethernet(description="Intel(R) Ethernet Connection I219-LM", tx=2_500_000_000,
                   rx=1_000_000_000, name="{4D36E972-E325-11CE-BFC1-08002BE10318}")
    adapters = parse_adapters(adapter_buffer([loopback, eth]), BASE)
    assert [a.friendly_name for a in adapters] == ["Loopback Pseudo-Interface 1", "Ethernet"]
    a = adapters[1]
    assert (a.luid, a.if_index, a.if_type, a.oper_status) == (LUID_ETH, 7, 6, UP)
    assert (a.adapter_name, a.description) == ("{4D36E972-E325-11CE-BFC1-08002BE10318}",
                                               "Intel(R) Ethernet Connection I219-LM")
    assert (a.transmit_speed, a.receive_speed) == (2_500_000_000, 1_000_000_000)
    assert [(x.address, x.usable) for x in a.addresses] == [
        ("fe80::1c2a:3bff:fe4d:5e6f", False), ("192.0.2.10", True)]
    assert parse_adapters(b"", 0) == []  # ERROR_NO_DATA: no adapters at all


def test_connection_state_rules() -> None:
    (eth,) = parse_adapters(adapter_buffer([ethernet(tx=100_000_000, rx=300_000_000)]), BASE)
    st = connection_state(eth, time=T, host="win01")
    assert (st.key, st.connection, st.usable, st.connection_type) == (
        "luid:0006000001000000", "Ethernet", True, CONNECTION_LAN)
    assert st.qoc == {"flags": 1, "in_speed": 300_000_000, "out_speed": 100_000_000}
    assert st.raw["Addresses"] == ["192.0.2.10"]
    rows = [
        ethernet(oper=DOWN),                                        # cable out
        ethernet(addresses=[("169.254.12.7", PREFERRED)]),          # APIPA only
        ethernet(addresses=[("192.0.2.10", TENTATIVE)]),            # DAD not finished
        ethernet(addresses=[]),                                     # nothing at all
    ]
    for row in rows:
        (a,) = parse_adapters(adapter_buffer([row]), BASE)
        assert connection_state(a, time=T).usable is False, row
    ppp = Row(LUID_PPP, 12, "Office VPN", if_type=PPP, tx=0, rx=0,
              addresses=[("198.51.100.7", PREFERRED)])
    tun = Row(LUID_PPP, 13, "Teredo", if_type=TUNNEL, tx=(1 << 64) - 1, rx=(1 << 64) - 1,
              addresses=[("2001:db8::5", PREFERRED)])
    for row in (ppp, tun):
        (a,) = parse_adapters(adapter_buffer([row]), BASE)
        st = connection_state(a, time=T)
        assert (st.usable, st.connection_type, st.qoc) == (True, CONNECTION_WAN, None), row
    (lo,) = parse_adapters(adapter_buffer([loopback]), BASE)
    assert connection_state(lo, time=T).usable is False


def test_translator_reports_changes_and_departures() -> None:
    tr = NetworkTranslator(host="h")
    first = tr.update(parse_adapters(adapter_buffer([loopback, ethernet()]), BASE), T,
                      existing=True)
    assert [(s.key, s.usable, s.existing) for s in first] == [("luid:0006000001000000", True,
                                                               True)]
    same = tr.update(parse_adapters(adapter_buffer([loopback, ethernet()]), BASE), T)
    assert same == []
    ppp = Row(LUID_PPP, 12, "Office VPN", if_type=PPP, addresses=[("198.51.100.7", PREFERRED)])
    added = tr.update(parse_adapters(adapter_buffer([loopback, ethernet(), ppp]), BASE), T)
    assert [(s.connection, s.usable, s.connection_type) for s in added] == [
        ("Office VPN", True, CONNECTION_WAN)]
    gone = tr.update(parse_adapters(adapter_buffer([loopback, ethernet()]), BASE), T)
    assert [(s.key, s.connection, s.usable, s.connection_type) for s in gone] == [
        ("luid:0017000003000000", "Office VPN", False, CONNECTION_WAN)]


def first_unicast(b: bytearray) -> int:
    """The offset of the first adapter's first unicast record (its pointer is at 24)."""
    return int(struct.unpack_from("<Q", b, 24)[0]) - BASE


def _eth_buffer() -> bytearray:
    return bytearray(adapter_buffer([ethernet()]))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:100], "adapter 1 at 0x1d42a6f0000 lies outside the 100-byte buffer"),
    (lambda b: b[:3], "adapter 1 at 0x1d42a6f0000 lies outside the 3-byte buffer"),
    (lambda b: _pack("<I", b, 0, 144),
     "adapter 1 is a 144-byte record, shorter than the 232 bytes an IP_ADAPTER_ADDRESSES_LH "
     "needs"),
    (lambda b: _pack("<Q", b, 8, BASE), "the adapter list loops"),
    (lambda b: _pack("<Q", b, 72, 0xDEAD_BEEF),
     "adapter {00000007-0000-0000-0000-000001000000}'s FriendlyName at 0xdeadbeef lies outside "
     "the 712-byte buffer"),
    (lambda b: b[:len(b) - 30], "unicast address 1's sockaddr at"),
    (lambda b: _pack("<I", b, first_unicast(b), 20) or b,
     "unicast address 1 is a 20-byte record, shorter than the 44 bytes documented"),
])
def test_bad_buffers_are_one_sentence(damage: object, message: str) -> None:
    data = damage(_eth_buffer())  # type: ignore[operator]
    with pytest.raises(AdapterBufferError) as info:
        parse_adapters(bytes(data), BASE)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_unterminated_string() -> None:
    data = adapter_buffer([ethernet(addresses=[])])  # FriendlyName is the last thing in it
    with pytest.raises(AdapterBufferError, match=r"FriendlyName at 0x[0-9a-f]+ is not "
                                                 "NUL-terminated inside the buffer$"):
        parse_adapters(data[:-2], BASE)


def test_bad_sockaddr_family() -> None:
    data = bytearray(adapter_buffer([ethernet(addresses=[("192.0.2.10", PREFERRED)])]))
    family_at = data.index(bytes([2, 0, 0, 0, 192, 0, 2, 10]))
    data[family_at] = 17  # AF_NETBIOS
    with pytest.raises(AdapterBufferError, match="sockaddr has family 17 and length 16"):
        parse_adapters(bytes(data), BASE)


# -- the source through the fake seam ---------------------------------------------------------

class Run:
    def __init__(self, source: WinNetworkSource, tracker: Tracker) -> None:
        import asyncio

        self.queue: asyncio.Queue[SensEvent] = asyncio.Queue()
        self.observations: list[ConnectionState] = []
        self.source = source
        self.tracker = tracker
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for obs in self.source.watch():
            assert isinstance(obs, ConnectionState)
            self.observations.append(obs)
            for event in self.tracker.feed(obs):
                self.queue.put_nowait(event)

    async def next(self) -> SensEvent:
        import asyncio

        return await asyncio.wait_for(self.queue.get(), 10)

    async def close(self) -> None:
        import asyncio
        import contextlib

        await self.source.aclose()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def reads_past(api: FakeIpHelperApi, count: int) -> None:
    """Wait until the source has read the adapters more than ``count`` times."""
    import asyncio

    for _ in range(10_000):
        if api.calls > count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the source did not read the adapters")


async def started(api: FakeIpHelperApi, **kw: object) -> Run:
    run = Run(WinNetworkSource(api, host="win01"), Tracker(host="win01", **kw))  # type: ignore[arg-type]
    await reads_past(api, 0)  # it listens first, then reads: changes from now on are news
    return run


async def test_cable_plugged_dhcp_then_unplugged() -> None:
    api = FakeIpHelperApi([loopback, ethernet(oper=DOWN, addresses=[])])
    run = await started(api)
    try:
        assert api.listening.is_set()
        # Media connected: the interface is up, DHCP's address is still tentative.
        api.change([loopback, ethernet(addresses=[("192.0.2.10", TENTATIVE)])])
        # DAD done: the address is preferred, the connection usable.
        api.change([loopback, ethernet(tx=1_000_000_000, rx=1_000_000_000)])
        made = await run.next()
        assert (made.method, made.connection, made.connection_type, made.qoc, made.source) == (
            M.ConnectionMade, "Ethernet", CONNECTION_LAN,
            {"flags": 1, "in_speed": 1_000_000_000, "out_speed": 1_000_000_000}, "win_network")
        api.change([loopback, ethernet(oper=DOWN, addresses=[])])
        lost = await run.next()
        assert (lost.method, lost.connection, lost.connection_type) == (
            M.ConnectionLost, "Ethernet", CONNECTION_LAN)
        assert run.queue.empty()
    finally:
        await run.close()
    assert api.cancelled


async def test_nothing_for_what_exists_at_start_and_a_burst_is_one_read() -> None:
    api = FakeIpHelperApi([loopback, ethernet()])
    run = await started(api)
    try:
        reads = api.calls
        # Three callbacks of one change: answered by reads that each see the final state.
        vpn = Row(LUID_PPP, 12, "Office VPN", if_type=PPP, tx=0, rx=0,
                  addresses=[("198.51.100.7", PREFERRED)])
        api.change([loopback, ethernet(), vpn])
        made = await run.next()
        assert (made.method, made.connection, made.connection_type) == (
            M.ConnectionMadeNoQOCInfo, "Office VPN", CONNECTION_WAN)
        assert api.calls - reads <= 3
        api.change([loopback, ethernet()])  # hung up: the PPP adapter is gone
        lost = await run.next()
        assert (lost.method, lost.connection, lost.connection_type) == (
            M.ConnectionLost, "Office VPN", CONNECTION_WAN)
        assert [o.existing for o in run.observations][:1] == [True]
    finally:
        await run.close()


async def test_wifi_with_apipa_only_is_not_a_connection() -> None:
    wifi = Row(LUID_WIFI, 9, "Wi-Fi", if_type=WIFI, tx=144_000_000, rx=144_000_000)
    api = FakeIpHelperApi([loopback])
    run = await started(api)
    try:
        api.change([loopback, Row(**{**wifi.__dict__, "addresses": [("169.254.3.4",
                                                                       PREFERRED)]})])
        api.change([loopback, Row(**{**wifi.__dict__, "addresses": [("169.254.3.4", PREFERRED),
                                                                       ("10.1.2.3",
                                                                        PREFERRED)]})])
        made = await run.next()
        assert (made.method, made.connection, made.qoc) == (
            M.ConnectionMade, "Wi-Fi", {"flags": 1, "in_speed": 144_000_000,
                                        "out_speed": 144_000_000})
    finally:
        await run.close()


async def test_a_bad_buffer_is_one_line_and_the_state_is_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    api = FakeIpHelperApi([loopback, ethernet()])
    run = await started(api)
    try:
        with caplog.at_level(logging.WARNING, "pysens.sources.win_network"):
            reads = api.calls
            api.change(None, ("interface",), buffer=adapter_buffer([ethernet()])[:64])
            await reads_past(api, reads)
            api.change([loopback, ethernet(oper=DOWN)])
            lost = await run.next()
        assert lost.method == M.ConnectionLost  # the next good read continued from the last
        lines = [r.getMessage() for r in caplog.records]
        assert lines == ["GetAdaptersAddresses: adapter 1 at 0x1d42a6f0000 lies outside the "
                         "64-byte buffer at 0x1d42a6f0000; keeping the last known connections"]
    finally:
        await run.close()


async def test_include_existing_and_snapshot() -> None:
    api = FakeIpHelperApi([loopback, ethernet()])
    events = []
    async for event in tracked_events(WinNetworkSource(api), Tracker(host="w",
                                                                     include_existing=True)):
        events.append(event)
        break
    assert [(e.method, e.connection) for e in events] == [(M.ConnectionMade, "Ethernet")]
    snap = await WinNetworkSource(api).snapshot()
    assert [(s.connection, s.usable, s.existing) for s in snap
            if isinstance(s, ConnectionState)] == [("Ethernet", True, True)] and len(snap) == 1


# -- off Windows: plain words -------------------------------------------------------------------

@pytest.mark.off_windows
async def test_off_windows_it_says_so() -> None:
    assert await probe() == f"the win_network source {NEEDS_WINDOWS}; this is {sys.platform}"
    with pytest.raises(SourceUnavailable, match="needs 64-bit Windows"):
        open_win_network()
    with pytest.raises(SourceUnavailable, match="needs 64-bit Windows"):
        Win32IpHelperApi()


def _pack(fmt: str, buffer: bytearray, offset: int, value: int) -> bytearray:
    struct.pack_into(fmt, buffer, offset, value)
    return buffer
