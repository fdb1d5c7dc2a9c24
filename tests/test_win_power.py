"""The Windows power source: its pure translation (POWERBROADCAST_SETTING and
SYSTEM_POWER_STATUS buffers, good and bad) and the source driven through a fake below its one
seam, the events judged by the real tracker. The real Win32 calls run in tests_windows/.

Recorded from Microsoft's documentation ("Power Setting GUIDs", "SYSTEM_POWER_STATUS",
"PowerSettingRegisterNotification"): registering calls back at once with the current value;
GUID_ACDC_POWER_SOURCE is 0 (AC), 1 (DC: battery) or 2 (short-term source: UPS);
GUID_BATTERY_PERCENTAGE_REMAINING is 0-100; a desktop's SYSTEM_POWER_STATUS has BatteryFlag 128
("no system battery") and BatteryLifePercent 255 ("unknown").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import sys
from datetime import UTC, datetime

import pytest

from pysens.events import Method, SensEvent
from pysens.observations import PowerState
from pysens.sources import SourceUnavailable
from pysens.sources.win_power import (
    NEEDS_WINDOWS,
    Win32PowerApi,
    WinPowerSource,
    open_win_power,
    probe,
)
from pysens.sources.win_power_map import (
    GUID_ACDC_POWER_SOURCE as ACDC,
)
from pysens.sources.win_power_map import (
    GUID_BATTERY_PERCENTAGE_REMAINING as PERCENT,
)
from pysens.sources.win_power_map import (
    PowerSettingError,
    PowerTranslator,
    SystemPowerStatus,
    guid_bytes,
    parse_power_setting,
    parse_system_power_status,
    power_setting_bytes,
)
from pysens.tracker import Tracker
from win_fixtures import FakePowerApi

M = Method
T = datetime(2026, 1, 1, tzinfo=UTC)
# BatteryFlag bits: 1 high (> 66 %), 2 low (< 33 %), 4 critical (< 5 %), 8 charging, 128 none.
LAPTOP_ON_AC = SystemPowerStatus(ac_line_status=1, battery_flag=1 | 8, battery_life_percent=80)
DESKTOP = SystemPowerStatus(ac_line_status=1, battery_flag=128, battery_life_percent=255)


def setting(guid: str, value: int) -> tuple[str, bytes]:
    return guid, power_setting_bytes(guid, value)


def laptop(**kw: object) -> FakePowerApi:
    return FakePowerApi(LAPTOP_ON_AC.pack(), {ACDC: power_setting_bytes(ACDC, 0),
                                              PERCENT: power_setting_bytes(PERCENT, 80)},
                        **kw)  # type: ignore[arg-type]


class Run:
    def __init__(self, api: FakePowerApi, *, include_existing: bool = False,
                 first_wait: float = 2.0) -> None:
        self.source = WinPowerSource(api, host="win01", first_wait=first_wait)
        self.tracker = Tracker(host="win01", include_existing=include_existing)
        self.observations: list[PowerState] = []
        self.events: asyncio.Queue[SensEvent] = asyncio.Queue()
        self.first = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for obs in self.source.watch():
            assert isinstance(obs, PowerState)
            self.observations.append(obs)
            self.first.set()
            for event in self.tracker.feed(obs):
                self.events.put_nowait(event)

    async def started(self) -> None:
        await asyncio.wait_for(self.first.wait(), 10)

    async def next(self) -> tuple[str, int | None]:
        e = await asyncio.wait_for(self.events.get(), 10)
        return e.method, e.battery_percent

    async def close(self) -> None:
        await self.source.aclose()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# -- the pure half --------------------------------------------------------------------------

def test_parse_power_setting() -> None:
    data = power_setting_bytes(ACDC, 1)
    assert len(data) == 24 and data[:4] == bytes.fromhex("599a3e5d")  # Data1 little-endian
    assert parse_power_setting(data) == (ACDC, 1)
    assert parse_power_setting(power_setting_bytes(PERCENT, 57) + b"\0" * 3) == (PERCENT, 57)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "POWERBROADCAST_SETTING of 0 bytes, shorter than its 20-byte header"),
    (guid_bytes(ACDC)[:10], "POWERBROADCAST_SETTING of 10 bytes, shorter than its 20-byte "
                            "header"),
    (guid_bytes(ACDC) + struct.pack("<I", 8) + b"\0" * 8,
     "POWERBROADCAST_SETTING for {5d3e9a59-e9d5-4b00-a6bd-ff34ff516548} says DataLength 8, not "
     "the DWORD (4) documented"),
    (guid_bytes(PERCENT) + struct.pack("<I", 4) + b"\x07\x00",
     "POWERBROADCAST_SETTING for {a7ad8041-b45a-4cae-87a3-eecbb468a9e1} ends after 22 bytes, "
     "inside its DWORD"),
])
def test_bad_power_settings_are_one_sentence(data: bytes, message: str) -> None:
    with pytest.raises(PowerSettingError) as info:
        parse_power_setting(data)
    assert str(info.value) == message


def test_parse_system_power_status() -> None:
    st = parse_system_power_status(LAPTOP_ON_AC.pack())
    assert st == LAPTOP_ON_AC and st.has_battery
    assert not parse_system_power_status(DESKTOP.pack()).has_battery
    with pytest.raises(PowerSettingError, match="SYSTEM_POWER_STATUS of 5 bytes, not 12"):
        parse_system_power_status(b"\1\2\3\4\5")


def test_translator() -> None:
    tr = PowerTranslator(low_level=10)
    tr.prime(SystemPowerStatus(0, 2, 30))
    st = tr.changed(T, existing=True)
    assert st is not None and (st.on_battery, st.percent, st.low, st.existing) == (True, 30,
                                                                                   False, True)
    assert tr.changed(T) is None
    assert tr.setting(PERCENT, 10)
    st = tr.changed(T)
    assert st is not None and (st.percent, st.low) == (10, True)
    assert not tr.setting(ACDC, 7)  # not a documented value
    assert not tr.setting("00000000-0000-0000-0000-000000000000", 1)
    assert tr.setting(ACDC, 2)  # a UPS: on a limited supply
    assert tr.state(T).on_battery is True
    desk = PowerTranslator()
    desk.prime(DESKTOP)
    st = desk.state(T)
    assert (st.on_battery, st.percent, st.low) == (False, None, False)


# -- the source through the fake seam ---------------------------------------------------------

async def test_unplug_drain_low_and_plug() -> None:
    api = laptop()
    run = Run(api)
    try:
        await run.started()
        (first,) = run.observations
        assert (first.on_battery, first.percent, first.low, first.existing) == (False, 80, False,
                                                                                True)
        api.send(setting(ACDC, 1))
        assert await run.next() == (M.OnBatteryPower, 80)
        api.send(setting(PERCENT, 11))  # above the level: nothing
        api.send(setting(PERCENT, 10))  # at Windows' default "Low battery level"
        assert await run.next() == (M.BatteryLow, 10)
        api.send(setting(PERCENT, 9))  # the same spell
        api.send(setting(ACDC, 0))
        assert await run.next() == (M.OnACPower, None)
        assert run.events.empty()
        assert api.level_reads >= 3  # the level is read again with percentage changes
    finally:
        await run.close()
    assert sorted(api.unregistered) == sorted([ACDC, PERCENT])


async def test_the_schemes_low_level_is_used_and_a_burst_is_settled_together() -> None:
    api = laptop(low_level=25)
    run = Run(api)
    try:
        await run.started()
        # Unplugged at 30 % and at once down to 24 % (one burst): OnBatteryPower with the
        # settled percentage, then BatteryLow.
        api.send(setting(ACDC, 1), setting(PERCENT, 24))
        assert [await run.next(), await run.next()] == [(M.OnBatteryPower, 24),
                                                        (M.BatteryLow, 24)]
        assert len(run.observations) == 2
    finally:
        await run.close()


async def test_nothing_at_start_even_low_on_battery_and_include_existing() -> None:
    status = SystemPowerStatus(0, 2, 7)
    settings = {ACDC: power_setting_bytes(ACDC, 1), PERCENT: power_setting_bytes(PERCENT, 7)}
    run = Run(FakePowerApi(status.pack(), settings))
    try:
        await run.started()
        run.source.api.send(setting(PERCENT, 6))  # type: ignore[attr-defined]
        run.source.api.send(setting(ACDC, 0))  # type: ignore[attr-defined]
        assert await run.next() == (M.OnACPower, None)
    finally:
        await run.close()
    run = Run(FakePowerApi(status.pack(), settings), include_existing=True)
    try:
        await run.started()
        assert [await run.next(), await run.next()] == [(M.OnBatteryPower, 7),
                                                        (M.BatteryLow, 7)]
    finally:
        await run.close()


async def test_a_desktop_and_a_ups() -> None:
    # No battery: Windows still sends the AC/DC setting; no percentage is waited for.
    api = FakePowerApi(DESKTOP.pack(), {ACDC: power_setting_bytes(ACDC, 0)}, low_level=None)
    run = Run(api, first_wait=30.0)
    try:
        await run.started()
        (first,) = run.observations
        assert (first.on_battery, first.percent, first.low) == (False, None, False)
        api.send(setting(ACDC, 2))  # mains gone, the UPS carries the machine
        assert await run.next() == (M.OnBatteryPower, None)
    finally:
        await run.close()


async def test_without_first_callbacks_the_status_is_the_first_state() -> None:
    api = FakePowerApi(SystemPowerStatus(0, 0, 55).pack(), {})
    run = Run(api, first_wait=0.01)
    try:
        await run.started()
        (first,) = run.observations
        assert (first.on_battery, first.percent, first.existing) == (True, 55, True)
        api.send(setting(ACDC, 0))
        assert await run.next() == (M.OnACPower, None)
    finally:
        await run.close()


async def test_bad_notifications_are_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    api = laptop()
    run = Run(api)
    try:
        await run.started()
        with caplog.at_level(logging.WARNING, "pysens.sources.win_power"):
            api.send((ACDC, b"\x59\x9a"), (ACDC, power_setting_bytes(ACDC, 9)),
                     (ACDC, guid_bytes(ACDC) + struct.pack("<I", 0)))
            api.send(setting(ACDC, 1))
            assert await run.next() == (M.OnBatteryPower, 80)
        assert [r.getMessage() for r in caplog.records] == [
            "power notification: POWERBROADCAST_SETTING of 2 bytes, shorter than its 20-byte "
            "header; ignored",
            "power notification: {5d3e9a59-e9d5-4b00-a6bd-ff34ff516548} = 9 is not a value "
            "pysens reads; ignored",
            "power notification: POWERBROADCAST_SETTING for "
            "{5d3e9a59-e9d5-4b00-a6bd-ff34ff516548} says DataLength 0, not the DWORD (4) "
            "documented; ignored",
        ]
    finally:
        await run.close()


async def test_snapshot_uses_the_system_power_status() -> None:
    (st,) = await WinPowerSource(laptop(low_level=85), host="w").snapshot()
    assert isinstance(st, PowerState)
    assert (st.on_battery, st.percent, st.low, st.existing, st.host) == (False, 80, True, True,
                                                                         "w")


# -- off Windows: plain words -------------------------------------------------------------------

@pytest.mark.off_windows
async def test_off_windows_it_says_so() -> None:
    assert await probe() == f"the win_power source {NEEDS_WINDOWS}; this is {sys.platform}"
    with pytest.raises(SourceUnavailable, match=r"needs Windows \(powrprof\)"):
        open_win_power()
    with pytest.raises(SourceUnavailable, match="needs Windows"):
        Win32PowerApi()
