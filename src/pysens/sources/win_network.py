"""The live Windows network source (ISensNetwork): IP Helper notifications, read through ctypes.

* ``NotifyIpInterfaceChange``, ``NotifyUnicastIpAddressChange`` and ``NotifyRouteChange2``
  (AF_UNSPEC, no initial notification) call back on a system pool thread; the callback only
  hands a poke to the asyncio loop (``call_soon_threadsafe``). All three are registered *before*
  the first read, so nothing falls in between; ``CancelMibChangeNotify2`` undoes them at close
  (never from inside a callback: it waits for running callbacks to finish).
* Each burst of pokes (a cable plugged in is an interface change, two or more address changes
  and a route change) is one ``GetAdaptersAddresses`` read, in a thread: the pokes that arrive
  before the read starts are all answered by it. The adapters are translated by
  :mod:`pysens.sources.win_network_map`, which reports only connections that changed.
* A buffer that cannot be decoded is one log line; the last known connections stay as they
  were and the next notification reads again.

All Win32 stays behind one seam, :class:`IpHelperApi`; :class:`Win32IpHelperApi` is the ctypes
implementation, built only on (64-bit) Windows. The module imports everywhere.
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
from .win_network_map import AdapterBufferError, NetworkTranslator, parse_adapters

__all__ = ["DESCRIPTION", "IpHelperApi", "Win32IpHelperApi", "WinNetworkSource",
           "open_win_network"]

DESCRIPTION = "the Windows IP Helper notifications (iphlpapi)"
NEEDS_WINDOWS = "needs 64-bit Windows (iphlpapi)"
log = logging.getLogger("pysens.sources.win_network")

#: ``notify(what)``, called from a Windows pool thread (``what``: interface, address, route).
Notify = Callable[[str], None]


class IpHelperApi(Protocol):
    """The one seam between the source and Win32 (tests put a fake here)."""

    def adapters(self) -> tuple[bytes, int]:
        """GetAdaptersAddresses: the filled buffer and the address it was at (b"" for none)."""
        ...

    def listen(self, notify: Notify) -> Callable[[], None]:
        """Register the three change notifications; returns the function that cancels them."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class WinNetworkSource:
    """A :class:`~pysens.sources.Source` of :class:`ConnectionState` (module text)."""

    name = "win_network"

    def __init__(self, api: IpHelperApi, *, host: str | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api = api
        self.host = host
        self._clock = clock or _now
        self._translator = NetworkTranslator(source=self.name, host=host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, datetime]] = asyncio.Queue()
        self._pending = False
        self._stop: Callable[[], None] | None = None
        self._closed = False
        #: How many times the adapters were read (the first look included).
        self.reads = 0

    async def _adapters_now(self) -> list[Any] | None:
        try:
            data, base = await asyncio.to_thread(self.api.adapters)
        except OSError as e:
            log.warning("GetAdaptersAddresses failed: %s; keeping the last known connections",
                        e)
            return None
        self.reads += 1
        try:
            return parse_adapters(data, base)
        except AdapterBufferError as e:
            log.warning("GetAdaptersAddresses: %s; keeping the last known connections", e)
            return None

    async def snapshot(self) -> list[Observation]:
        """Every adapter's connection now, as ``ConnectionState(existing=True)``."""
        adapters = await self._adapters_now()
        translator = NetworkTranslator(source=self.name, host=self.host)
        return list(translator.update(adapters or [], self._clock(), existing=True))

    def notify(self, what: str) -> None:
        """A change notification, from any thread (the pool thread Windows calls back on)."""
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._poke, self._clock())

    def _poke(self, time: datetime) -> None:
        if not self._pending:  # later pokes of the same burst are answered by the same read
            self._pending = True
            self._queue.put_nowait(("changed", time))

    async def watch(self) -> AsyncIterator[Observation]:
        """The connections now (``existing=True``), then the ones that change."""
        self._loop = asyncio.get_running_loop()
        try:
            self._stop = await asyncio.to_thread(self.api.listen, self.notify)
        except OSError as e:
            raise SourceUnavailable(f"cannot register for IP Helper notifications: {e}"
                                    ) from None
        adapters = await self._adapters_now()
        for obs in self._translator.update(adapters or [], self._clock(), existing=True):
            yield obs
        while not self._closed:
            kind, time = await self._queue.get()
            if kind == "stop":
                return
            self._pending = False
            adapters = await self._adapters_now()
            if adapters is None:
                continue
            for obs in self._translator.update(adapters, time):
                yield obs

    async def aclose(self) -> None:
        """Cancel the notifications (in a thread: Windows waits for running callbacks)."""
        self._closed = True
        stop, self._stop = self._stop, None
        if stop is not None:
            await asyncio.to_thread(stop)
        self._queue.put_nowait(("stop", self._clock()))


# -- Win32 (ctypes) -------------------------------------------------------------------------------

_AF_UNSPEC = 0
_GAA_FLAG_SKIP_ANYCAST = 0x2
_GAA_FLAG_SKIP_MULTICAST = 0x4
_GAA_FLAG_SKIP_DNS_SERVER = 0x8
_ERROR_BUFFER_OVERFLOW = 111
_ERROR_NO_DATA = 232


class Win32IpHelperApi:
    """:class:`IpHelperApi` through ctypes on iphlpapi (64-bit Windows only: elsewhere building
    it raises SourceUnavailable)."""

    _ctypes: Any
    _lib: Any
    _callback_type: Any

    def __init__(self) -> None:
        import ctypes

        if sys.platform != "win32" or ctypes.sizeof(ctypes.c_void_p) != 8:
            raise SourceUnavailable(f"the win_network source {NEEDS_WINDOWS}; this is "
                                    f"{sys.platform}")
        from ctypes import wintypes as w

        self._ctypes = ctypes
        lib = ctypes.WinDLL("iphlpapi")  # type: ignore[attr-defined,unused-ignore]
        lib.GetAdaptersAddresses.argtypes = [w.ULONG, w.ULONG, ctypes.c_void_p,
                                             ctypes.c_void_p, ctypes.POINTER(w.ULONG)]
        lib.GetAdaptersAddresses.restype = w.ULONG
        callback = ctypes.WINFUNCTYPE(  # type: ignore[attr-defined,unused-ignore]
            None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
        for name in ("NotifyIpInterfaceChange", "NotifyUnicastIpAddressChange",
                     "NotifyRouteChange2"):
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.c_ushort, callback, ctypes.c_void_p, ctypes.c_ubyte,
                           ctypes.POINTER(w.HANDLE)]
            fn.restype = w.ULONG
        lib.CancelMibChangeNotify2.argtypes = [w.HANDLE]
        lib.CancelMibChangeNotify2.restype = w.ULONG
        self._lib = lib
        self._callback_type = callback

    def adapters(self) -> tuple[bytes, int]:
        """GetAdaptersAddresses(AF_UNSPEC), growing the buffer as Windows asks (15 KB first, as
        the documentation recommends)."""
        ctypes = self._ctypes
        from ctypes import wintypes as w

        flags = _GAA_FLAG_SKIP_ANYCAST | _GAA_FLAG_SKIP_MULTICAST | _GAA_FLAG_SKIP_DNS_SERVER
        size = w.ULONG(15000)
        for _ in range(5):  # adapters may appear between the size query and the call
            buf = ctypes.create_string_buffer(size.value)
            rc = self._lib.GetAdaptersAddresses(_AF_UNSPEC, flags, None, buf, ctypes.byref(size))
            if rc == 0:  # on success Windows does not say how much it used: keep it all
                return bytes(buf.raw), ctypes.addressof(buf)
            if rc == _ERROR_NO_DATA:
                return b"", 0
            if rc != _ERROR_BUFFER_OVERFLOW:
                raise OSError(rc, f"GetAdaptersAddresses failed (error {rc})")
        raise OSError(_ERROR_BUFFER_OVERFLOW, "GetAdaptersAddresses kept asking for more room")

    def listen(self, notify: Notify) -> Callable[[], None]:
        """The three registrations; the returned stop cancels them and frees the callbacks."""
        ctypes = self._ctypes
        from ctypes import wintypes as w

        handles: list[Any] = []
        keep: list[Any] = []  # the callback objects must outlive the registrations

        def make(what: str) -> Any:
            def on_change(_context: Any, _row: Any, _kind: int) -> None:
                try:
                    notify(what)
                except Exception:  # an exception must not unwind through Win32
                    log.exception("handling an IP Helper %s notification failed", what)
            cb = self._callback_type(on_change)
            keep.append(cb)
            return cb

        def stop() -> None:
            for handle in handles:
                self._lib.CancelMibChangeNotify2(handle)
            handles.clear()
            keep.clear()

        for name, what in (("NotifyIpInterfaceChange", "interface"),
                           ("NotifyUnicastIpAddressChange", "address"),
                           ("NotifyRouteChange2", "route")):
            handle = w.HANDLE()
            rc = getattr(self._lib, name)(_AF_UNSPEC, make(what), None, 0, ctypes.byref(handle))
            if rc != 0:
                stop()
                raise OSError(rc, f"{name} failed (error {rc})")
            handles.append(handle)
        return stop


# -- the registry's entry points -------------------------------------------------------------------

async def probe(**_options: Any) -> str | None:
    """None when the IP Helper API can be used here, else why not."""
    try:
        api = Win32IpHelperApi()
        await asyncio.to_thread(api.adapters)
    except SourceUnavailable as e:
        return str(e)
    except OSError as e:
        return f"the IP Helper API does not answer ({e})"
    return None


def open_win_network(*, host: str | None = None, api: IpHelperApi | None = None,
                     **_: Any) -> WinNetworkSource:
    """The ``win_network`` source; ``api`` replaces the Win32 calls. Raises SourceUnavailable
    off Windows."""
    return WinNetworkSource(api if api is not None else Win32IpHelperApi(), host=host)
