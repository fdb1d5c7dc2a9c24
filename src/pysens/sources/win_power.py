"""The live Windows power source (ISensOnNow): power-setting notifications, through ctypes.

* ``PowerSettingRegisterNotification(GUID_ACDC_POWER_SOURCE / GUID_BATTERY_PERCENTAGE_REMAINING,
  DEVICE_NOTIFY_CALLBACK)`` needs no window: Windows calls back on a thread of its own, at once
  with the current value and then on every change. The callback copies the
  ``POWERBROADCAST_SETTING`` and hands the bytes to the asyncio loop (``call_soon_threadsafe``).
* The first state (``existing``) waits for those first callbacks (for the percentage only when
  GetSystemPowerStatus says there is a battery), at most ``first_wait`` seconds; what has not
  come by then is taken from GetSystemPowerStatus.
* Settings that arrive together (AC and percentage after a plug) are applied together: every
  queued notification is taken before the state is decided. The "Low battery level" of the
  active scheme is read again with each percentage change (:mod:`.win_power_map`).
* A buffer that cannot be decoded is one log line; the rest keeps working.

All Win32 stays behind one seam, :class:`PowerApi`; :class:`Win32PowerApi` is the ctypes
implementation, built only on Windows. The module imports everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..observations import Observation
from . import SourceUnavailable
from .win_power_map import (
    GUID_ACDC_POWER_SOURCE,
    GUID_BATLEVEL_LOW,
    GUID_BATTERY_PERCENTAGE_REMAINING,
    GUID_BATTERY_SUBGROUP,
    PBT_POWERSETTINGCHANGE,
    PowerSettingError,
    PowerTranslator,
    guid_bytes,
    parse_power_setting,
    parse_system_power_status,
)

__all__ = ["DESCRIPTION", "PowerApi", "Win32PowerApi", "WinPowerSource", "open_win_power"]

DESCRIPTION = "the Windows power-setting notifications"
NEEDS_WINDOWS = "needs Windows (powrprof)"
log = logging.getLogger("pysens.sources.win_power")

#: ``on_setting(buffer)``: a POWERBROADCAST_SETTING's bytes, from a Windows thread.
OnSetting = Callable[[bytes], None]


class PowerApi(Protocol):
    """The one seam between the source and Win32 (tests put a fake here)."""

    def register(self, guid: str, on_setting: OnSetting) -> Callable[[], None]:
        """PowerSettingRegisterNotification for ``guid``; returns the unregister function."""
        ...

    def system_power_status(self) -> bytes:
        """GetSystemPowerStatus's 12 bytes."""
        ...

    def low_battery_level(self) -> int | None:
        """The active scheme's on-battery "Low battery level" (percent); None when unreadable."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class WinPowerSource:
    """A :class:`~pysens.sources.Source` of :class:`PowerState` on Windows (module text)."""

    name = "win_power"

    def __init__(self, api: PowerApi, *, host: str | None = None, first_wait: float = 2.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api = api
        self.host = host
        self.first_wait = first_wait
        self._clock = clock or _now
        self._translator = PowerTranslator(source=self.name, host=host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, datetime, bytes]] = asyncio.Queue()
        self._arrived = asyncio.Event()
        self._stops: list[Callable[[], None]] = []
        self._closed = False

    async def _prime(self, translator: PowerTranslator) -> None:
        try:
            status = parse_system_power_status(
                await asyncio.to_thread(self.api.system_power_status))
        except (OSError, PowerSettingError) as e:
            log.warning("GetSystemPowerStatus: %s", e)
        else:
            translator.prime(status)
        await self._read_level(translator)

    async def _read_level(self, translator: PowerTranslator) -> None:
        try:
            level = await asyncio.to_thread(self.api.low_battery_level)
        except OSError as e:
            log.debug("reading the low battery level: %s", e)
            level = None
        if level is not None and 0 <= level <= 100:
            translator.low_level = level

    async def snapshot(self) -> list[Observation]:
        """The power state now (GetSystemPowerStatus), as one ``PowerState(existing=True)``."""
        translator = PowerTranslator(source=self.name, host=self.host)
        await self._prime(translator)
        return [translator.state(self._clock(), existing=True)]

    def on_setting(self, data: bytes) -> None:
        """One notification, from any thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._arrive, ("setting", self._clock(), bytes(data)))

    def _arrive(self, item: tuple[str, datetime, bytes]) -> None:
        self._queue.put_nowait(item)
        self._arrived.set()

    def _apply(self, data: bytes) -> bool:
        """One notification; True when it was a percentage."""
        try:
            guid, value = parse_power_setting(data)
        except PowerSettingError as e:
            log.warning("power notification: %s; ignored", e)
            return False
        if not self._translator.setting(guid, value):
            log.warning("power notification: {%s} = %d is not a value pysens reads; ignored",
                        guid, value)
            return False
        return guid == GUID_BATTERY_PERCENTAGE_REMAINING

    def _apply_queued(self) -> tuple[bool, bool]:
        """Every notification queued now, in order; ``(stopped, a percentage among them)``."""
        percent_seen = False
        while not self._queue.empty():
            kind, _time, data = self._queue.get_nowait()
            if kind == "stop":
                return True, percent_seen
            percent_seen = self._apply(data) or percent_seen
        return False, percent_seen

    async def _first_callbacks(self) -> None:
        wanted = {GUID_ACDC_POWER_SOURCE}
        if self._translator.has_battery:
            wanted.add(GUID_BATTERY_PERCENTAGE_REMAINING)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_wait
        while True:
            stopped, _ = self._apply_queued()
            if stopped or wanted <= self._translator.seen:
                return
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                log.debug("no first notification for %s; using GetSystemPowerStatus",
                          sorted(wanted - self._translator.seen))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def watch(self) -> AsyncIterator[Observation]:
        """The state now (``existing=True``), then one observation per settled change."""
        self._loop = asyncio.get_running_loop()
        await self._prime(self._translator)
        for guid in (GUID_ACDC_POWER_SOURCE, GUID_BATTERY_PERCENTAGE_REMAINING):
            try:
                self._stops.append(await asyncio.to_thread(self.api.register, guid,
                                                           self.on_setting))
            except OSError as e:
                await self.aclose()
                raise SourceUnavailable(f"cannot register for power notifications: {e}"
                                        ) from None
        await self._first_callbacks()
        first = self._translator.changed(self._clock(), existing=True)
        assert first is not None  # noqa: S101 - the first look always tells a state
        yield first
        while not self._closed:
            kind, time, data = await self._queue.get()
            if kind == "stop":
                return
            self._arrived.clear()
            first_percent = self._apply(data)
            stopped, percent_seen = self._apply_queued()  # the rest of the burst with it
            if stopped:
                return
            percent_seen = percent_seen or first_percent
            if percent_seen:
                await self._read_level(self._translator)
                stopped, _ = self._apply_queued()  # what came during the read, too
                if stopped:
                    return
            state = self._translator.changed(time)
            if state is not None:
                yield state

    async def aclose(self) -> None:
        """Unregister the notifications."""
        self._closed = True
        stops, self._stops = self._stops, []
        for stop in stops:
            await asyncio.to_thread(stop)
        self._queue.put_nowait(("stop", self._clock(), b""))


# -- Win32 (ctypes) -------------------------------------------------------------------------------

_DEVICE_NOTIFY_CALLBACK = 2


class Win32PowerApi:
    """:class:`PowerApi` through ctypes on powrprof and kernel32 (Windows only: elsewhere
    building it raises SourceUnavailable)."""

    _ctypes: Any
    _callback_type: Any
    _subscribe_type: Any
    _powrprof: Any
    _kernel32: Any

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise SourceUnavailable(f"the win_power source {NEEDS_WINDOWS}; this is "
                                    f"{sys.platform}")
        import ctypes
        from ctypes import wintypes as w

        self._ctypes = ctypes
        powrprof = ctypes.WinDLL("powrprof")  # type: ignore[attr-defined,unused-ignore]
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._callback_type = ctypes.WINFUNCTYPE(  # type: ignore[attr-defined,unused-ignore]
            w.ULONG, ctypes.c_void_p, w.ULONG, ctypes.c_void_p)

        class Subscribe(ctypes.Structure):  # DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS
            _fields_ = [("Callback", self._callback_type), ("Context", ctypes.c_void_p)]

        self._subscribe_type = Subscribe
        powrprof.PowerSettingRegisterNotification.argtypes = [
            ctypes.c_char_p, w.DWORD, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        powrprof.PowerSettingRegisterNotification.restype = w.DWORD
        powrprof.PowerSettingUnregisterNotification.argtypes = [ctypes.c_void_p]
        powrprof.PowerSettingUnregisterNotification.restype = w.DWORD
        powrprof.PowerGetActiveScheme.argtypes = [ctypes.c_void_p,
                                                  ctypes.POINTER(ctypes.c_void_p)]
        powrprof.PowerGetActiveScheme.restype = w.DWORD
        powrprof.PowerReadDCValueIndex.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                   ctypes.c_char_p, ctypes.c_char_p,
                                                   ctypes.POINTER(w.DWORD)]
        powrprof.PowerReadDCValueIndex.restype = w.DWORD
        kernel32.GetSystemPowerStatus.argtypes = [ctypes.c_void_p]
        kernel32.GetSystemPowerStatus.restype = w.BOOL
        kernel32.LocalFree.argtypes = [ctypes.c_void_p]
        kernel32.LocalFree.restype = ctypes.c_void_p
        self._powrprof = powrprof
        self._kernel32 = kernel32

    def register(self, guid: str, on_setting: OnSetting) -> Callable[[], None]:
        """One registration; the callback copies the setting (header + its data)."""
        ctypes = self._ctypes

        def callback(_context: Any, kind: int, setting: Any) -> int:
            try:
                if kind == PBT_POWERSETTINGCHANGE and setting:
                    length = ctypes.c_uint32.from_address(setting + 16).value
                    on_setting(ctypes.string_at(setting, 20 + min(length, 64)))
            except Exception:  # an exception must not unwind through Win32
                log.exception("handling a power notification failed")
            return 0

        cb = self._callback_type(callback)
        params = self._subscribe_type(cb, None)
        handle = ctypes.c_void_p()
        rc = self._powrprof.PowerSettingRegisterNotification(
            guid_bytes(guid), _DEVICE_NOTIFY_CALLBACK, ctypes.byref(params),
            ctypes.byref(handle))
        if rc != 0:
            raise OSError(rc, f"PowerSettingRegisterNotification({{{guid}}}) failed "
                              f"(error {rc})")
        keep = [cb, params]  # alive until unregistered

        def stop() -> None:
            self._powrprof.PowerSettingUnregisterNotification(handle)
            keep.clear()

        return stop

    def system_power_status(self) -> bytes:
        """GetSystemPowerStatus into a 12-byte buffer."""
        ctypes = self._ctypes
        buf = ctypes.create_string_buffer(12)
        if not self._kernel32.GetSystemPowerStatus(buf):
            err = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
            raise OSError(err, f"GetSystemPowerStatus failed (error {err})")
        return bytes(buf.raw)

    def low_battery_level(self) -> int | None:
        """PowerReadDCValueIndex(active scheme, battery subgroup, BATLEVELLOW)."""
        ctypes = self._ctypes
        from ctypes import wintypes as w

        scheme = ctypes.c_void_p()
        if self._powrprof.PowerGetActiveScheme(None, ctypes.byref(scheme)) != 0:
            return None
        try:
            value = w.DWORD()
            rc = self._powrprof.PowerReadDCValueIndex(
                None, scheme, guid_bytes(GUID_BATTERY_SUBGROUP), guid_bytes(GUID_BATLEVEL_LOW),
                ctypes.byref(value))
            return int(value.value) if rc == 0 else None
        finally:
            self._kernel32.LocalFree(scheme)


# -- the registry's entry points -------------------------------------------------------------------

async def probe(**_options: Any) -> str | None:
    """None when the power-setting API can be used here, else why not."""
    try:
        api = Win32PowerApi()
        await asyncio.to_thread(api.system_power_status)
    except SourceUnavailable as e:
        return str(e)
    except OSError as e:
        return f"the power API does not answer ({e})"
    return None


def open_win_power(*, host: str | None = None, api: PowerApi | None = None,
                   **_: Any) -> WinPowerSource:
    """The ``win_power`` source; ``api`` replaces the Win32 calls. Raises SourceUnavailable
    off Windows."""
    return WinPowerSource(api if api is not None else Win32PowerApi(), host=host)
