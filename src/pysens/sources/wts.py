"""The live Windows source: WTS session notifications, read through ctypes (no extra package).

Two ways the codes arrive, both ending in :meth:`WtsSource.notify`:

* a message-only window registered with ``WTSRegisterSessionNotification(NOTIFY_FOR_ALL_SESSIONS)``
  pumping messages in its own thread; each ``WM_WTSSESSION_CHANGE`` (wParam code, lParam session
  id) is handed over (the default, ``notifications="window"``);
* a Windows service's control handler: it accepts ``SERVICE_ACCEPT_SESSIONCHANGE`` and calls
  :func:`session_change` with the ``(dwEventType, lpEventData)`` of each
  ``SERVICE_CONTROL_SESSIONCHANGE`` (``notifications="service"``). Windows only notifies a
  service of a logon when it was fully started before it.

The session's state is read in the notifying thread at once (the session may be gone a moment
later), then the code, id and state go to the asyncio loop (``call_soon_threadsafe``), where
:class:`~pysens.sources.wts_translate.WtsTranslator` turns them into observations.

All Win32 stays behind one seam, :class:`WtsApi` (enumerate the sessions, read one, listen for
codes); :class:`Win32WtsApi` is the ctypes implementation and touches ``ctypes.WinDLL`` only when
built, on Windows. The module imports everywhere; :func:`open_wts` and :func:`probe` say plainly
that the source needs Windows elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import struct
import sys
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..observations import Observation
from . import LiveKind, SourceUnavailable
from .wts_translate import (
    WM_WTSSESSION_CHANGE,
    QueryFailure,
    SessionState,
    WtsQueryError,
    WtsTranslator,
    read_state,
)

__all__ = [
    "DESCRIPTION",
    "NEEDS_WINDOWS",
    "WTSSESSION_NOTIFICATION",
    "Listener",
    "Win32WtsApi",
    "WtsApi",
    "WtsSource",
    "notification_session_id",
    "open_wts",
    "probe",
    "session_change",
]

DESCRIPTION = "the Windows session notifications (WTS API)"
NEEDS_WINDOWS = "needs Windows (the WTS API)"
log = logging.getLogger(__name__)

#: ``listener(code, session_id)``, called from whatever thread Windows notifies on.
Listener = Callable[[int, int], None]


class WtsApi(Protocol):
    """The one seam between the source and Win32 (tests elsewhere put a fake here)."""

    def enumerate_sessions(self) -> list[int]:
        """The ids of every session now (WTSEnumerateSessionsW)."""
        ...

    def query(self, session_id: int) -> SessionState:
        """The session's state now; a failed query leaves its fields None (never raises)."""
        ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for each WM_WTSSESSION_CHANGE until the returned stop is called."""
        ...


class WTSSESSION_NOTIFICATION(ctypes.Structure):
    """``{DWORD cbSize; DWORD dwSessionId;}``, what ``lpEventData`` points to."""

    _fields_ = [("cbSize", ctypes.c_uint32), ("dwSessionId", ctypes.c_uint32)]


def notification_session_id(data: object) -> int:
    """The session id in a SERVICE_CONTROL_SESSIONCHANGE's event data, as a handler has it:
    a :class:`WTSSESSION_NOTIFICATION` (or a pointer to one), ``lpEventData`` as a
    ``ctypes.c_void_p``, its 8 bytes, pywin32's ``(session_id,)`` tuple, or the id itself."""
    if isinstance(data, WTSSESSION_NOTIFICATION):
        return int(data.dwSessionId)
    if isinstance(data, ctypes.c_void_p):
        if not data.value:
            raise ValueError("lpEventData is NULL")
        return int(WTSSESSION_NOTIFICATION.from_address(data.value).dwSessionId)
    contents = getattr(data, "contents", None)
    if isinstance(contents, WTSSESSION_NOTIFICATION):
        return int(contents.dwSessionId)
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) < 8:
            raise ValueError(f"WTSSESSION_NOTIFICATION is 8 bytes, got {len(data)}")
        return int(struct.unpack_from("<II", data)[1])
    if isinstance(data, tuple | list) and data:
        return int(data[0])
    if isinstance(data, int):
        return data
    raise TypeError(f"not a WTSSESSION_NOTIFICATION: {type(data).__name__}")


_service_sources: set[WtsSource] = set()
_service_lock = threading.Lock()


def session_change(event_type: int, data: object) -> None:
    """What a service's HandlerEx calls for SERVICE_CONTROL_SESSIONCHANGE (then it returns
    NO_ERROR): hands the code to every ``wts`` source opened with ``notifications="service"``."""
    session_id = notification_session_id(data)
    with _service_lock:
        targets = list(_service_sources)
    if not targets:
        log.debug("session change %d for session %d: no wts source is listening", event_type,
                  session_id)
    for source in targets:
        source.notify(event_type, session_id)


def _now() -> datetime:
    return datetime.now(UTC)


_CLOSE = object()


class WtsSource:
    """A :class:`~pysens.sources.Source` over WTS session notifications (module docstring)."""

    name = "wts"

    def __init__(
        self, api: WtsApi, *, host: str | None = None, notifications: str = "window",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if notifications not in ("window", "service"):
            raise ValueError(f"notifications must be 'window' or 'service', not {notifications!r}")
        self.api = api
        self.host = host
        self.notifications = notifications
        self._clock = clock or _now
        self._translator = WtsTranslator(source=self.name, host=host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stop: Callable[[], None] | None = None
        self._closed = False

    def _read(self, session_id: int) -> SessionState:
        try:
            return self.api.query(session_id)
        except (OSError, RuntimeError, ValueError) as e:  # a broken query (the RPC went away)
            # must not lose the code itself
            log.debug("WTS session %d: reading its state failed: %s", session_id, e)
            return SessionState(session_id, failures=(QueryFailure("query", -1),))

    def _read_all(self) -> list[SessionState]:
        return [self._read(i) for i in self.api.enumerate_sessions()]

    async def snapshot(self) -> list[Observation]:
        """The sessions with a user now, as ``SessionAppeared(existing=True)``."""
        states = await asyncio.to_thread(self._read_all)
        return WtsTranslator(source=self.name, host=self.host).snapshot(states, self._clock())

    def notify(self, code: int, session_id: int) -> None:
        """One notification, from any thread: the state is read here and now, the rest happens
        on the watching loop. Ignored when nothing watches."""
        loop = self._loop
        if loop is None or self._closed:
            return
        item = (self._clock(), int(code), int(session_id), self._read(int(session_id)))
        # RuntimeError: the loop closed meanwhile, and nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def watch(self) -> AsyncIterator[Observation]:
        """The snapshot, then the observations of every notification, as they come."""
        self._loop = asyncio.get_running_loop()
        # Listen before the snapshot so nothing falls in between (the translator recognizes
        # codes the snapshot already shows).
        if self.notifications == "window":
            try:
                self._stop = await asyncio.to_thread(self.api.listen, self.notify)
            except OSError as e:
                raise SourceUnavailable(f"cannot register for session notifications: {e}"
                                        ) from None
        else:
            with _service_lock:
                _service_sources.add(self)
        states = await asyncio.to_thread(self._read_all)
        for obs in self._translator.snapshot(states, self._clock()):
            yield obs
        while not self._closed:
            item = await self._queue.get()
            if item is _CLOSE:
                return
            assert isinstance(item, tuple)  # noqa: S101 - an invariant of this code, not a check of input
            time, code, session_id, state = item
            for obs in self._translator.translate(time, code, session_id, state):
                yield obs

    async def aclose(self) -> None:
        """Stop listening (the window thread ends, or the service stops feeding this source)."""
        self._closed = True
        with _service_lock:
            _service_sources.discard(self)
        stop, self._stop = self._stop, None
        if stop is not None:
            await asyncio.to_thread(stop)
        self._queue.put_nowait(_CLOSE)


# -- Win32 (ctypes) -------------------------------------------------------------------------------

NOTIFY_FOR_ALL_SESSIONS = 1
_RPC_S_INVALID_BINDING = 1702
_WM_QUIT = 0x0012


def _dlls() -> Any:
    """wtsapi32, user32 and kernel32 with their prototypes (Windows only)."""
    if sys.platform != "win32":
        raise SourceUnavailable(f"the wts source {NEEDS_WINDOWS}; this is {sys.platform}")
    from ctypes import wintypes as w

    wts = ctypes.WinDLL("wtsapi32", use_last_error=True)
    user32 = ctypes.WinDLL("user32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    wts.WTSEnumerateSessionsW.argtypes = [w.HANDLE, w.DWORD, w.DWORD,
                                          ctypes.POINTER(ctypes.c_void_p),
                                          ctypes.POINTER(w.DWORD)]
    wts.WTSEnumerateSessionsW.restype = w.BOOL
    wts.WTSQuerySessionInformationW.argtypes = [w.HANDLE, w.DWORD, ctypes.c_int,
                                                ctypes.POINTER(ctypes.c_void_p),
                                                ctypes.POINTER(w.DWORD)]
    wts.WTSQuerySessionInformationW.restype = w.BOOL
    wts.WTSFreeMemory.argtypes = [ctypes.c_void_p]
    wts.WTSFreeMemory.restype = None
    wts.WTSRegisterSessionNotification.argtypes = [w.HWND, w.DWORD]
    wts.WTSRegisterSessionNotification.restype = w.BOOL
    wts.WTSUnRegisterSessionNotification.argtypes = [w.HWND]
    wts.WTSUnRegisterSessionNotification.restype = w.BOOL
    user32.DefWindowProcW.argtypes = [w.HWND, w.UINT, w.WPARAM, w.LPARAM]
    user32.DefWindowProcW.restype = w.LPARAM
    user32.CreateWindowExW.argtypes = [w.DWORD, w.LPCWSTR, w.LPCWSTR, w.DWORD, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_int, ctypes.c_int, w.HWND,
                                       w.HMENU, w.HINSTANCE, w.LPVOID]
    user32.CreateWindowExW.restype = w.HWND
    user32.DestroyWindow.argtypes = [w.HWND]
    user32.UnregisterClassW.argtypes = [w.LPCWSTR, w.HINSTANCE]
    user32.GetMessageW.argtypes = [ctypes.POINTER(w.MSG), w.HWND, w.UINT, w.UINT]
    user32.GetMessageW.restype = w.BOOL
    user32.DispatchMessageW.argtypes = [ctypes.POINTER(w.MSG)]
    user32.DispatchMessageW.restype = w.LPARAM
    user32.PostThreadMessageW.argtypes = [w.DWORD, w.UINT, w.WPARAM, w.LPARAM]
    user32.PostThreadMessageW.restype = w.BOOL
    kernel32.GetCurrentThreadId.restype = w.DWORD
    kernel32.GetModuleHandleW.argtypes = [w.LPCWSTR]
    kernel32.GetModuleHandleW.restype = w.HMODULE
    kernel32.OpenEventW.argtypes = [w.DWORD, w.BOOL, w.LPCWSTR]
    kernel32.OpenEventW.restype = w.HANDLE
    kernel32.WaitForSingleObject.argtypes = [w.HANDLE, w.DWORD]
    kernel32.CloseHandle.argtypes = [w.HANDLE]
    return wts, user32, kernel32


class Win32WtsApi:
    """:class:`WtsApi` through ctypes on wtsapi32/user32 (Windows only: elsewhere building it
    raises SourceUnavailable)."""

    def __init__(self) -> None:
        self._wts, self._user32, self._kernel32 = _dlls()
        # WTSINFOEX SessionFlags are reversed on Windows 7 / Server 2008 R2 (NT 6.1).
        self._reversed_flags = False
        if sys.platform == "win32":
            v = sys.getwindowsversion()
            self._reversed_flags = (v.major, v.minor) == (6, 1)

    def enumerate_sessions(self) -> list[int]:
        """WTSEnumerateSessionsW on this server; each WTS_SESSION_INFOW starts with its id."""
        from ctypes import wintypes as w

        buf = ctypes.c_void_p()
        count = w.DWORD()
        if not self._wts.WTSEnumerateSessionsW(None, 0, 1, ctypes.byref(buf),
                                               ctypes.byref(count)):
            raise WtsQueryError(ctypes.get_last_error())  # type: ignore[attr-defined,unused-ignore]
        try:
            # {DWORD SessionId; LPWSTR pWinStationName; WTS_CONNECTSTATE_CLASS State}
            size = ctypes.sizeof(ctypes.c_void_p) * 3
            base = buf.value or 0
            return [ctypes.c_uint32.from_address(base + i * size).value
                    for i in range(count.value)]
        finally:
            self._wts.WTSFreeMemory(buf)

    def _fetch(self, session_id: int, info_class: int) -> bytes:
        from ctypes import wintypes as w

        buf = ctypes.c_void_p()
        size = w.DWORD()
        if not self._wts.WTSQuerySessionInformationW(None, session_id, info_class,
                                                     ctypes.byref(buf), ctypes.byref(size)):
            raise WtsQueryError(ctypes.get_last_error())  # type: ignore[attr-defined,unused-ignore]
        try:
            return ctypes.string_at(buf, size.value) if buf.value else b""
        finally:
            self._wts.WTSFreeMemory(buf)

    def query(self, session_id: int) -> SessionState:
        """The session's state (:func:`~pysens.sources.wts_translate.read_state`)."""
        return read_state(session_id, self._fetch, reversed_flags=self._reversed_flags)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """A message-only window in its own thread; returns once it is registered."""
        ready = threading.Event()
        failure: list[BaseException] = []
        thread_id: list[int] = []
        thread = threading.Thread(
            target=self._pump, args=(listener, ready, failure, thread_id),
            name="pysens-wts-window", daemon=True,
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]

        def stop() -> None:
            self._user32.PostThreadMessageW(thread_id[0], _WM_QUIT, 0, 0)
            thread.join(timeout=5)

        return stop

    def _pump(
        self, listener: Listener, ready: threading.Event, failure: list[BaseException],
        thread_id: list[int],
    ) -> None:
        from ctypes import wintypes as w

        user32, kernel32 = self._user32, self._kernel32
        wndproc_type = ctypes.WINFUNCTYPE(  # type: ignore[attr-defined,unused-ignore]
            w.LPARAM, w.HWND, w.UINT, w.WPARAM, w.LPARAM)

        def wndproc(hwnd: Any, msg: int, wparam: int, lparam: int) -> int:
            if msg == WM_WTSSESSION_CHANGE:
                try:
                    listener(int(wparam), int(lparam))
                except Exception:  # an exception must not unwind through Win32
                    log.exception("handling WM_WTSSESSION_CHANGE failed")
                return 0
            return int(user32.DefWindowProcW(hwnd, msg, wparam, lparam))

        class WNDCLASSW(ctypes.Structure):
            _fields_ = [("style", w.UINT), ("lpfnWndProc", wndproc_type),
                        ("cbClsExtra", ctypes.c_int), ("cbWndExtra", ctypes.c_int),
                        ("hInstance", w.HINSTANCE), ("hIcon", w.HICON),
                        ("hCursor", w.HANDLE), ("hbrBackground", w.HBRUSH),
                        ("lpszMenuName", w.LPCWSTR), ("lpszClassName", w.LPCWSTR)]

        callback = wndproc_type(wndproc)  # kept alive by this frame for the pump's lifetime
        hinstance = kernel32.GetModuleHandleW(None)
        class_name = f"pysens-wts-{id(self):x}-{threading.get_ident():x}"
        wc = WNDCLASSW(lpfnWndProc=callback, hInstance=hinstance, lpszClassName=class_name)
        hwnd = None
        registered = False
        try:
            thread_id.append(kernel32.GetCurrentThreadId())
            if not user32.RegisterClassW(ctypes.byref(wc)):
                raise OSError(ctypes.get_last_error(), "RegisterClassW failed")  # type: ignore[attr-defined,unused-ignore]
            hwnd = user32.CreateWindowExW(0, class_name, class_name, 0, 0, 0, 0, 0,
                                          w.HWND(-3), None, hinstance, None)  # HWND_MESSAGE
            if not hwnd:
                raise OSError(ctypes.get_last_error(), "CreateWindowExW failed")  # type: ignore[attr-defined,unused-ignore]
            registered = self._register(hwnd)
        except BaseException as e:  # noqa: BLE001 - handed to the caller, who raises it
            failure.append(e)
            ready.set()
            self._cleanup(hwnd, registered, class_name, hinstance)
            return
        ready.set()
        msg = w.MSG()
        try:
            while user32.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:
                user32.TranslateMessage(ctypes.byref(msg))
                user32.DispatchMessageW(ctypes.byref(msg))
        finally:
            self._cleanup(hwnd, registered, class_name, hinstance)
            del callback

    def _register(self, hwnd: Any) -> bool:
        """WTSRegisterSessionNotification; before Remote Desktop Services is up it fails with
        RPC_S_INVALID_BINDING: wait for ``Global\\TermSrvReadyEvent`` and try once more."""
        if self._wts.WTSRegisterSessionNotification(hwnd, NOTIFY_FOR_ALL_SESSIONS):
            return True
        err = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
        if err == _RPC_S_INVALID_BINDING:
            event = self._kernel32.OpenEventW(0x00100000, False, "Global\\TermSrvReadyEvent")
            if event:
                self._kernel32.WaitForSingleObject(event, 120_000)
                self._kernel32.CloseHandle(event)
                if self._wts.WTSRegisterSessionNotification(hwnd, NOTIFY_FOR_ALL_SESSIONS):
                    return True
                err = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
        raise OSError(err, f"WTSRegisterSessionNotification failed (error {err})")

    def _cleanup(self, hwnd: Any, registered: bool, class_name: str, hinstance: Any) -> None:
        if registered:
            self._wts.WTSUnRegisterSessionNotification(hwnd)
        if hwnd:
            self._user32.DestroyWindow(hwnd)
        self._user32.UnregisterClassW(class_name, hinstance)


# -- the registry's entry points -------------------------------------------------------------------

async def probe(**options: Any) -> str | None:
    """None when the WTS API can be used here, else why not."""
    if sys.platform != "win32":
        return NEEDS_WINDOWS
    try:
        api = Win32WtsApi()
        await asyncio.to_thread(api.enumerate_sessions)
    except (OSError, SourceUnavailable) as e:
        return f"the WTS API does not answer ({e})"
    return None


def open_wts(
    *, host: str | None = None, notifications: str = "window", api: WtsApi | None = None,
    **_: Any,
) -> WtsSource:
    """The ``wts`` source. ``notifications``: ``window`` (a message-only window, any process)
    or ``service`` (fed by :func:`session_change` from a service's control handler). ``api``
    replaces the Win32 calls. Raises SourceUnavailable off Windows."""
    if api is None:
        if sys.platform != "win32":
            raise SourceUnavailable(f"the wts source {NEEDS_WINDOWS}; this is {sys.platform}")
        api = Win32WtsApi()
    try:
        return WtsSource(api, host=host, notifications=notifications)
    except ValueError as e:
        raise SourceUnavailable(str(e)) from None


#: The registry's entry (``sens watch --source wts``).
LIVE = LiveKind(DESCRIPTION, open_wts, probe)
