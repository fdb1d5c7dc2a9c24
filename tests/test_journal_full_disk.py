"""A full disk under a real `sens serve`: a 600 KB tmpfs in a private mount namespace holds the
journal while 3,000 events are published. The daemon and the publisher say it in one line,
every acknowledged event stays, the rest are refused (not lost), and once a filler file is
removed the daemon accepts events again by itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from service_fixtures import events, sens_argv, wait_ready, write_events


def _in_namespace(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the mount namespace of process ``pid`` (where the tmpfs is)."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *argv], capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_full_disk_refuses_events_in_one_line_and_resumes_when_there_is_room(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.fail("this test mounts a tmpfs in a private mount namespace: it needs root and "
                    "util-linux's unshare and nsenter (CI has them)")
    disk = tmp_path / "disk"
    disk.mkdir()
    journal = disk / "journal.db"
    env = dict(os.environ, SENS_JOURNAL=str(journal), SENS_SOCKET=str(tmp_path / "sens.sock"))
    # The daemon's own namespace: the tmpfs, a 200 KB filler on it, then `sens serve`.
    script = (f"mount -t tmpfs -o size=600k pysens-full {disk} && "
              f"head -c 200000 /dev/zero > {disk}/filler && exec \"$@\"")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         *sens_argv("-v", "serve", "--source", "none")],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, tmp_path / "sens.sock")
        assert not (disk / "filler").exists()  # the tmpfs is the daemon's alone
        evs = write_events(tmp_path / "events.jsonl", events(3000))
        first = subprocess.run(sens_argv("publish", "--json", str(evs)), env=env,
                               capture_output=True, text=True, timeout=120)
        assert first.returncode == 1, first.stderr
        said = first.stderr
        assert said.count("\n") == 1 and "Traceback" not in said, said
        assert "the disk is full" in said and "event(s) journaled before that" in said
        m = re.search(r"\((\d+) event\(s\) journaled before that\)$", said.strip())
        assert m is not None, said
        acknowledged = int(m.group(1))
        assert 0 < acknowledged < 3000
        exported = _in_namespace(proc.pid, *sens_argv("--journal", str(journal), "journal",
                                                      "export"))
        assert exported.returncode == 0, exported.stderr
        kept = exported.stdout.splitlines()
        assert len(kept) == acknowledged  # every acknowledged event, nothing else
        # Room again: the daemon takes events without being restarted.
        assert _in_namespace(proc.pid, "rm", str(disk / "filler")).returncode == 0
        again = subprocess.run(sens_argv("publish", "--json", str(evs)), env=env,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert again.stderr == (f"sens: published {3000 - acknowledged} event(s); "
                                f"{acknowledged} already journaled\n")
        count = _in_namespace(proc.pid, *sens_argv("--journal", str(journal), "journal",
                                                   "export"))
        assert len(count.stdout.splitlines()) == 3000
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    log = err.decode()
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "Unhandled exception" not in log, log
    full = [line for line in log.splitlines() if "disk is full" in line]
    assert len(full) == 1 and "refusing new events until there is room" in full[0], log
    assert sum("has room again: accepting events" in line for line in log.splitlines()) == 1
