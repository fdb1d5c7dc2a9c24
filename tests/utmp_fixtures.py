"""Helpers for the utmp tests: real utmp files written by ``utmpdump -r``, a private mount
namespace with its own ``/run/utmp`` (for GNU screen), and line readers for child processes."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
RECORD = 384


def rec(typ: int, pid: int, ident: str, user: str, line: str, host: str = "",
        addr: str = "0.0.0.0", when: str = "2024-01-01T10:00:00") -> str:
    """One line of ``utmpdump`` text (the format ``utmpdump -r`` reads back)."""
    return (f"[{typ}] [{pid:05d}] [{ident:<4}] [{user:<8}] [{line:<12}] [{host:<20}] "
            f"[{addr:<15}] [{when},000000+00:00]\n")


def undump(lines: list[str]) -> bytes:
    """The binary records of ``lines``, by ``utmpdump -r``."""
    out = subprocess.run(["utmpdump", "-r"], input="".join(lines).encode(),
                         capture_output=True, check=True).stdout
    assert len(out) == RECORD * len(lines), out
    return out


def write_utmp(path: Path, lines: list[str]) -> None:
    """Rewrite ``path`` in place with ``lines`` (``utmpdump -r -o``: truncate, then write)."""
    subprocess.run(["utmpdump", "-r", "-o", str(path)], input="".join(lines).encode(),
                   capture_output=True, check=True)


def put_slot(path: Path, index: int, line: str) -> None:
    """Write one record into slot ``index`` as glibc's ``pututline`` does (one pwrite)."""
    data = undump([line])
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, index * RECORD)
    finally:
        os.close(fd)


def replace_utmp(path: Path, lines: list[str]) -> None:
    """Replace ``path`` by a new file renamed over it."""
    tmp = path.with_name(path.name + ".new")
    write_utmp(tmp, lines)
    os.replace(tmp, path)


class Lines:
    """The lines a stream yields, read by a thread, waited for with a time limit."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        self.seen: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            self._q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._q.put(None)

    def close(self) -> None:
        """Wait for the stream's end (its process must be gone), then close it."""
        self._thread.join(timeout=10)
        self.stream.close()  # type: ignore[attr-defined]

    def expect(self, pred: Callable[[str], bool], timeout: float = 15.0) -> str:
        """The first new line for which ``pred`` holds; AssertionError after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            try:
                line = self._q.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no matching line within {timeout}s; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"stream ended; saw {self.seen}")
            self.seen.append(line)
            if pred(line):
                return line


class Namespace:
    """A private mount namespace with a tmpfs on /run and an empty ``/run/utmp`` in it,
    held open by a sleeping process; :meth:`run` and :meth:`popen` run commands inside it
    (``nsenter``), so whatever they write to /run/utmp stays private."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ, TERM="xterm", SCREENDIR=str(home / "screens"),
                        PYTHONPATH=SRC, PYTHONUNBUFFERED="1", HOME=str(home))
        (home / "screens").mkdir(mode=0o700)
        (home / "screenrc").write_text("deflogin on\nstartup_message off\nvbell off\n")
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs tmpfs /run && install -m 664 -g utmp /dev/null /run/utmp"
             " && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline() == b"ready\n", "cannot make a mount namespace"
        self.children: list[subprocess.Popen[bytes]] = []
        self.readers: list[Lines] = []
        self.ptys: list[tuple[int, int]] = []

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` entered into the namespace."""
        return ["nsenter", "-m", "-t", str(self.holder.pid), "--", *cmd]

    def run(self, *cmd: str) -> subprocess.CompletedProcess[bytes]:
        """Run ``cmd`` inside, to completion."""
        return subprocess.run(self.argv(*cmd), env=self.env, capture_output=True, timeout=30)

    def popen(self, *cmd: str) -> subprocess.Popen[bytes]:
        """Start ``cmd`` inside with piped stdout and stderr (stopped by :meth:`close`)."""
        p = subprocess.Popen(self.argv(*cmd), env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.children.append(p)
        return p

    def lines(self, p: subprocess.Popen[bytes]) -> tuple[Lines, Lines]:
        """Readers of ``p``'s stdout and stderr (closed by :meth:`close`)."""
        out, err = Lines(p.stdout), Lines(p.stderr)
        self.readers += [out, err]
        return out, err

    def python(self, *args: str) -> subprocess.Popen[bytes]:
        """This test run's Python inside (pysens importable from the checkout)."""
        return self.popen(sys.executable, *args)

    def sens(self, *args: str) -> subprocess.Popen[bytes]:
        """``sens ARGS`` inside."""
        return self.python("-c", "import sys; from pysens.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *args)

    def attach(self, *screen_args: str) -> int:
        """``screen ARGS`` on a new pseudo-terminal (a display attaching); its pid."""
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # the child: become screen inside the namespace
            try:
                argv = self.argv("screen", "-c", str(self.home / "screenrc"), *screen_args)
                os.execvpe(argv[0], argv, self.env)
            finally:
                os._exit(127)
        self.ptys.append((pid, fd))
        # screen blocks once a full terminal buffer is unread: drain it.
        threading.Thread(target=_drain, args=(fd,), daemon=True).start()
        return pid

    def screen(self, *args: str) -> None:
        """A screen command that does not attach (``-d``, ``-X quit`` …)."""
        r = self.run("screen", *args)
        assert r.returncode in (0, 1), r

    def close(self) -> None:
        """Stop everything started here, the namespace holder last."""
        for p in self.children:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for r in self.readers:
            r.close()
        for p in self.children:
            for stream in (p.stdout, p.stderr):
                if stream is not None and not stream.closed:
                    stream.close()
        for sock in (self.home / "screens").iterdir():  # "<server pid>.<name>"
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(sock.name.split(".")[0]), signal.SIGTERM)
        for pid, fd in self.ptys:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                os.close(fd)
        self.holder.kill()
        self.holder.wait()
        assert self.holder.stdout is not None
        self.holder.stdout.close()


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except OSError:
            return


def namespace(home: Path) -> Iterator[Namespace]:
    """A :class:`Namespace` for a fixture (``yield from``), closed afterwards."""
    ns = Namespace(home)
    try:
        yield ns
    finally:
        ns.close()
