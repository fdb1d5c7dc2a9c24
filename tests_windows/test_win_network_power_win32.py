"""The real Win32 calls of the win_network and win_power sources: run on a Windows runner only.

Kept out of ``tests/`` (which runs everywhere) rather than skipped there:
``.github/workflows/windows.yml`` runs this directory on ``windows-latest``.
"""

from __future__ import annotations

import asyncio
import threading

from pysens.sources.win_network import Win32IpHelperApi, WinNetworkSource
from pysens.sources.win_network_map import IF_TYPE_SOFTWARE_LOOPBACK, parse_adapters
from pysens.sources.win_power import Win32PowerApi, WinPowerSource
from pysens.sources.win_power_map import (
    GUID_ACDC_POWER_SOURCE,
    parse_power_setting,
    parse_system_power_status,
)


def test_get_adapters_addresses_decodes_with_the_documented_layout() -> None:
    data, base = Win32IpHelperApi().adapters()
    adapters = parse_adapters(data, base)  # a layout mistake raises AdapterBufferError here
    loopback = [a for a in adapters if a.if_type == IF_TYPE_SOFTWARE_LOOPBACK]
    assert loopback, [a.friendly_name for a in adapters]
    assert any(x.address in ("127.0.0.1", "::1") for x in loopback[0].addresses)
    assert all(a.luid for a in adapters)


def test_ip_helper_notifications_register_and_cancel() -> None:
    stop = Win32IpHelperApi().listen(lambda what: None)
    stop()


async def test_network_snapshot() -> None:
    states = await WinNetworkSource(Win32IpHelperApi()).snapshot()
    assert all(s.key.startswith("luid:") for s in states)


def test_power_setting_calls_back_at_once_with_the_current_value() -> None:
    api = Win32PowerApi()
    got: list[tuple[str, int]] = []
    came = threading.Event()

    def on_setting(data: bytes) -> None:
        got.append(parse_power_setting(data))
        came.set()

    stop = api.register(GUID_ACDC_POWER_SOURCE, on_setting)
    try:
        assert came.wait(10)
    finally:
        stop()
    assert got[0][0] == GUID_ACDC_POWER_SOURCE and got[0][1] in (0, 1, 2)
    status = parse_system_power_status(api.system_power_status())
    assert status.ac_line_status in (0, 1, 255)
    level = api.low_battery_level()
    assert level is None or 0 <= level <= 100


async def test_power_watch_gives_the_first_state() -> None:
    source = WinPowerSource(Win32PowerApi())
    try:
        first = await asyncio.wait_for(source.watch().__anext__(), 10)
    finally:
        await source.aclose()
    assert first.existing
