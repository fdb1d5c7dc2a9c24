"""The exec sink: run a program for each event, never through a shell.

The program gets the event as one JSON line on standard input and as ``SENS_*`` environment
variables (``SENS_METHOD``, ``SENS_USER_NAME``, ``SENS_SESSION_ID``, ``SENS_EVENT_ID`` …). A user
name such as ``$(touch /tmp/x)`` is only ever data: the argv list goes to ``execve`` as given.
Exit status 0 is success; anything else, or running past the time limit, is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from ..aio import within
from ..events import SensEvent
from . import DEFAULT_TIMEOUT, SinkError

__all__ = ["ExecSink", "event_environment"]

# Inherited from the daemon so the program can run at all; nothing else leaks through.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")
# How much of a failing program's standard error is kept to name the failure (its last line).
_STDERR_KEPT = 4096


def event_environment(event: SensEvent) -> dict[str, str]:
    """The ``SENS_*`` variables for ``event``: every event field but ``raw``, upper-cased."""
    env: dict[str, str] = {}
    for name, value in event.to_json().items():
        if name == "raw":
            continue
        key = "SENS_EVENT_ID" if name == "id" else f"SENS_{name.upper()}"
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ",".join(map(str, value))
        else:
            text = str(value)
        env[key] = text.replace("\0", "")  # execve cannot carry NUL
    return env


class ExecSink:
    """Runs ``settings["argv"]`` once per event."""

    kind = "exec"

    def __init__(self, settings: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.argv = [str(a) for a in self.validate(settings)["argv"]]
        self.timeout = timeout

    @staticmethod
    def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
        """``{"argv": [program, args…]}`` with a non-empty list of strings."""
        argv = settings.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("an exec sink needs a program and its arguments (a list of strings)")
        if not argv[0]:
            raise ValueError("an exec sink's program name is empty")
        return {"argv": list(argv)}

    async def deliver(self, events: Sequence[SensEvent]) -> None:
        """Run the program once per event, in order."""
        for done, event in enumerate(events):
            try:
                await self._run(event)
            except SinkError as e:
                raise SinkError(str(e), done) from None

    async def _run(self, event: SensEvent) -> None:
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(event_environment(event))
        data = (json.dumps(event.to_json(), ensure_ascii=False) + "\n").encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
            )
        except OSError as e:
            raise SinkError(f"cannot run {self.argv[0]}: {e.strerror}") from None
        try:
            err = await within(self.timeout, _talk(proc, data))
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            raise SinkError(
                f"{self.argv[0]} ran past its time limit of {self.timeout:g} s") from None
        except BaseException:
            _kill(proc)
            raise
        status = proc.returncode or 0
        if status != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
            why = f": {(last[0] if len(last[0]) <= 200 else '…' + last[0][-200:])!r}" \
                if last else ""
            if status < 0:
                try:
                    name = signal.Signals(-status).name
                except ValueError:
                    name = f"signal {-status}"
                raise SinkError(f"{self.argv[0]} was killed by {name}{why}")
            raise SinkError(f"{self.argv[0]} exited with status {status}{why}")

    async def aclose(self) -> None:
        """Nothing held between events."""


async def _talk(proc: asyncio.subprocess.Process, data: bytes) -> bytes:
    """Feed ``data`` to the program and wait for it; the last bytes of its standard error.

    Not ``communicate()``: that keeps all the output in memory, and a hook printing gigabytes
    would take the daemon's memory with it. Only the tail is needed to say why it failed."""
    assert proc.stdin is not None and proc.stderr is not None  # noqa: S101 - an invariant of this code, not a check of input
    stdin, stderr = proc.stdin, proc.stderr

    async def feed() -> None:
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program need not read its input
        finally:
            stdin.close()

    async def tail() -> bytes:
        kept = b""
        while chunk := await stderr.read(65536):
            kept = (kept + chunk)[-_STDERR_KEPT:]
        return kept

    _, err = await asyncio.gather(feed(), tail())
    await proc.wait()
    return err


def _kill(proc: asyncio.subprocess.Process) -> None:
    # The program runs in its own session: kill its whole process group, so a hung child it
    # started cannot outlive the time limit either.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
