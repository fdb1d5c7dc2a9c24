"""The real Win32 calls of the wts source: run on a Windows runner only.

Kept out of ``tests/`` (which runs everywhere) rather than skipped there:
``.github/workflows/windows.yml`` runs this directory on ``windows-latest``.
"""

from __future__ import annotations

import ctypes

from pysens.sources.wts import Win32WtsApi


def test_win32_enumerates_and_reads_this_process_session() -> None:
    kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
    sid = ctypes.c_uint32()
    assert kernel32.ProcessIdToSessionId(kernel32.GetCurrentProcessId(), ctypes.byref(sid))
    api = Win32WtsApi()
    ids = api.enumerate_sessions()
    assert sid.value in ids
    st = api.query(sid.value)
    assert st.session_id == sid.value
    assert st.connect_state is not None or st.failures


def test_win32_window_registers_and_stops() -> None:
    api = Win32WtsApi()
    stop = api.listen(lambda code, sid: None)
    stop()
