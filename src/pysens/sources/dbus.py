"""The system bus, for the sources that read it (logind; UPower and NetworkManager too):
where it is, connecting, one call with a time limit, and which failures mean "not here".

dbus-fast (the ``linux`` extra) is imported inside the functions: this module imports on every
OS.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

__all__ = [
    "DBUS",
    "DEFAULT_ADDRESS",
    "PROPERTIES",
    "CallFailed",
    "bus_address_for",
    "bus_call",
    "bus_errors",
    "connect_bus",
    "get_all",
    "has_name",
]

DBUS = "org.freedesktop.DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"
DEFAULT_ADDRESS = "unix:path=/run/dbus/system_bus_socket"


class CallFailed(Exception):
    """A D-Bus call got an error or no answer (the object is gone, the bus dropped)."""


def bus_address_for(bus_address: str | None = None) -> str:
    """The system bus address used: the argument, ``$DBUS_SYSTEM_BUS_ADDRESS``, or the default."""
    return bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_ADDRESS


def bus_errors(*more: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What a bus connection or call can fail with: a missing or refused socket (OSError), a
    connection cut mid-message (EOFError), and every dbus-fast error (auth, a bad address, an
    invalid message); and ``more``."""
    from dbus_fast.errors import DBusFastError

    return (OSError, EOFError, DBusFastError, *more)


async def connect_bus(address: str, timeout: float) -> Any:  # noqa: ASYNC109 - each caller's own
    """A connected dbus-fast ``MessageBus`` on ``address``, within ``timeout`` seconds."""
    from dbus_fast.aio import MessageBus

    bus = MessageBus(bus_address=address)
    await asyncio.wait_for(bus.connect(), timeout)
    return bus


async def bus_call(
    bus: Any, destination: str, path: str, interface: str, member: str,
    signature: str = "", body: Iterable[Any] = (),
    timeout: float = 10.0,  # noqa: ASYNC109 - a call the bus never answers must end
) -> list[Any]:
    """The reply body of one method call; :class:`CallFailed` (one phrase) for an error reply,
    no answer within ``timeout`` seconds, or a bus that dropped mid-call."""
    from dbus_fast import Message, MessageType

    msg = Message(destination=destination, path=path, interface=interface, member=member,
                  signature=signature, body=list(body))
    try:
        reply = await asyncio.wait_for(bus.call(msg), timeout)
    except TimeoutError:
        raise CallFailed(f"{member} got no answer within {timeout:g} s") from None
    except bus_errors() as e:
        raise CallFailed(f"{member} failed: {e or type(e).__name__}") from None
    if reply is None:
        raise CallFailed(f"{member} failed: the bus connection is gone")
    if reply.message_type == MessageType.ERROR:
        text = reply.body[0] if reply.body else ""
        raise CallFailed(f"{member} failed: {reply.error_name}: {text}")
    return list(reply.body)


async def get_all(bus: Any, destination: str, path: str, interface: str) -> dict[str, Any]:
    """Every property of ``interface`` on ``path``, unwrapped from their Variants."""
    (props,) = await bus_call(bus, destination, path, PROPERTIES, "GetAll", "s", [interface])
    return {k: getattr(v, "value", v) for k, v in props.items()}


async def has_name(bus: Any, name: str) -> bool:
    """Whether ``name`` is on the bus now or can be started on demand."""
    (owned,) = await bus_call(bus, DBUS, "/org/freedesktop/DBus", DBUS, "NameHasOwner", "s",
                              [name], timeout=2.0)
    if owned:
        return True
    (names,) = await bus_call(bus, DBUS, "/org/freedesktop/DBus", DBUS, "ListActivatableNames",
                              timeout=2.0)
    return name in names
