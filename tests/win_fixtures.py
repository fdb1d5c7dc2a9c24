"""Recorded Windows answers for the network and power sources, and the fakes that replay them
below the one seam of each (``IpHelperApi``, ``PowerApi``). Nothing above the seams is faked.

:func:`adapter_buffer` lays out what GetAdaptersAddresses writes into its caller's buffer, from
the documented 64-bit layouts (iptypes.h; learn.microsoft.com "IP_ADAPTER_ADDRESSES_LH",
"IP_ADAPTER_UNICAST_ADDRESS_LH", "SOCKET_ADDRESS", "SOCKADDR_IN6"): the records first, one after
the other, then the strings and sockaddrs they point to, every pointer an address inside the
buffer (which sits at ``base``).
"""

from __future__ import annotations

import ipaddress
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pysens.sources.win_network import Notify
from pysens.sources.win_power import OnSetting

BASE = 0x0000_01D4_2A6F_0000  # a heap address as 64-bit Windows hands them out

# IfType (ipifcons.h), OperStatus (IF_OPER_STATUS), DadState (IP_DAD_STATE)
ETHERNET, PPP, LOOPBACK, WIFI, TUNNEL = 6, 23, 24, 71, 131
UP, DOWN = 1, 2
TENTATIVE, DUPLICATE, DEPRECATED, PREFERRED = 1, 2, 3, 4


@dataclass
class Row:
    """One adapter as GetAdaptersAddresses reports it (the fields pysens reads)."""

    luid: int
    index: int
    friendly: str
    if_type: int = ETHERNET
    oper: int = UP
    tx: int = 1_000_000_000
    rx: int = 1_000_000_000
    addresses: list[tuple[str, int]] = field(default_factory=list)
    name: str = ""
    description: str = ""


class _Layout:
    def __init__(self, base: int) -> None:
        self.base = base
        self.data = bytearray()

    def alloc(self, size: int) -> int:
        self.data.extend(b"\0" * (-len(self.data) % 8))
        ptr = self.base + len(self.data)
        self.data.extend(b"\0" * size)
        return ptr

    def put(self, ptr: int, fmt: str, *values: object) -> None:
        struct.pack_into(fmt, self.data, ptr - self.base, *values)

    def wide(self, text: str) -> int:
        raw = text.encode("utf-16-le") + b"\0\0"
        ptr = self.alloc(len(raw))
        self.data[ptr - self.base:ptr - self.base + len(raw)] = raw
        return ptr

    def narrow(self, text: str) -> int:
        raw = text.encode() + b"\0"
        ptr = self.alloc(len(raw))
        self.data[ptr - self.base:ptr - self.base + len(raw)] = raw
        return ptr

    def sockaddr(self, address: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(address)
        if ip.version == 4:
            ptr = self.alloc(16)  # SOCKADDR_IN: family, port, address, zero[8]
            self.put(ptr, "<HH4s", 2, 0, ip.packed)
            return ptr, 16
        ptr = self.alloc(28)  # SOCKADDR_IN6: family, port, flowinfo, address, scope id
        self.put(ptr, "<HHI16sI", 23, 0, 0, ip.packed, 0)
        return ptr, 28


def adapter_buffer(rows: list[Row], base: int = BASE) -> bytes:
    """What GetAdaptersAddresses would write at ``base`` for these adapters."""
    if not rows:
        return b""
    lay = _Layout(base)
    records = [lay.alloc(448) for _ in rows]
    for i, (ptr, row) in enumerate(zip(records, rows, strict=True)):
        nxt = records[i + 1] if i + 1 < len(rows) else 0
        name = row.name or f"{{{row.index:08X}-0000-0000-0000-{row.luid & 0xFFFFFFFFFFFF:012X}}}"
        lay.put(ptr, "<IIQQ", 448, row.index, nxt, lay.narrow(name))
        lay.put(ptr + 64, "<QQ", lay.wide(row.description or row.friendly),
                lay.wide(row.friendly))
        lay.put(ptr + 100, "<II", row.if_type, row.oper)
        lay.put(ptr + 184, "<QQ", row.tx, row.rx)
        lay.put(ptr + 224, "<Q", row.luid)
        unicasts = [lay.alloc(64) for _ in row.addresses]
        lay.put(ptr + 24, "<Q", unicasts[0] if unicasts else 0)
        for j, (uptr, (address, dad)) in enumerate(zip(unicasts, row.addresses, strict=True)):
            sa, sa_len = lay.sockaddr(address)
            unext = unicasts[j + 1] if j + 1 < len(unicasts) else 0
            lay.put(uptr, "<IIQQi", 64, 0, unext, sa, sa_len)
            lay.put(uptr + 32, "<III", 1, 1, dad)  # PrefixOrigin, SuffixOrigin, DadState
    return bytes(lay.data)


class FakeIpHelperApi:
    """Stands in for iphlpapi below the IpHelperApi seam: replays recorded adapter lists."""

    def __init__(self, rows: list[Row]) -> None:
        self.buffer = adapter_buffer(rows)
        self.notify: Notify | None = None
        self.listening = threading.Event()
        self.cancelled = False
        self.calls = 0

    def adapters(self) -> tuple[bytes, int]:
        self.calls += 1
        return self.buffer, BASE

    def listen(self, notify: Notify) -> Callable[[], None]:
        self.notify = notify
        self.listening.set()

        def stop() -> None:
            self.cancelled = True

        return stop

    def change(self, rows: list[Row] | None, notifications: tuple[str, ...] = (
            "interface", "address", "route"), *, buffer: bytes | None = None) -> None:
        """From a pool thread, as Windows does: the adapters change, then the callbacks run
        (an interface change, its address change, its route change: one burst)."""
        def run() -> None:
            self.buffer = buffer if buffer is not None else adapter_buffer(rows or [])
            assert self.notify is not None
            for what in notifications:
                self.notify(what)

        t = threading.Thread(target=run)
        t.start()
        t.join()


class FakePowerApi:
    """Stands in for powrprof/kernel32 below the PowerApi seam: replays recorded settings.

    As PowerSettingRegisterNotification does, each registration calls back at once (from
    another thread) with the setting's current value, unless ``initial`` leaves it out."""

    def __init__(self, status: bytes, settings: dict[str, bytes], *,
                 low_level: int | None = 10) -> None:
        self.status = status
        self.settings = dict(settings)
        self.level = low_level
        self.callbacks: dict[str, OnSetting] = {}
        self.unregistered: list[str] = []
        self.level_reads = 0

    def register(self, guid: str, on_setting: OnSetting) -> Callable[[], None]:
        self.callbacks[guid] = on_setting
        if guid in self.settings:
            initial = self.settings[guid]
            t = threading.Thread(target=on_setting, args=(initial,))
            t.start()
            t.join()

        def stop() -> None:
            self.unregistered.append(guid)

        return stop

    def system_power_status(self) -> bytes:
        return self.status

    def low_battery_level(self) -> int | None:
        self.level_reads += 1
        return self.level

    def send(self, *buffers: tuple[str, bytes]) -> None:
        """Notifications from Windows' thread, in order (one burst)."""
        def run() -> None:
            for guid, data in buffers:
                self.callbacks[guid](data)

        t = threading.Thread(target=run)
        t.start()
        t.join()
