"""The system bus, for the sources that read it (logind; UPower and NetworkManager too):
where it is, connecting, one call with a time limit, and which failures mean "not here".

dbus-fast (the ``linux`` extra) is imported inside the functions: this module imports on every
OS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "DBUS",
    "DBUS_PATH",
    "DEFAULT_ADDRESS",
    "PROPERTIES",
    "BusSource",
    "CallFailed",
    "add_matches",
    "bus_address_for",
    "bus_call",
    "bus_errors",
    "connect_bus",
    "get_all",
    "has_name",
    "on_disconnect",
    "owner_rule",
    "plain",
    "properties_rule",
]

log = logging.getLogger("pysens.sources.dbus")

DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
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
    serial: int = 0,
) -> list[Any]:
    """The reply body of one method call; :class:`CallFailed` (one phrase) for an error reply,
    no answer within ``timeout`` seconds, or a bus that dropped mid-call. ``serial``: the
    message's own (0: the bus picks one), for a caller that tells its reply apart."""
    from dbus_fast import Message, MessageType

    msg = Message(destination=destination, path=path, interface=interface, member=member,
                  signature=signature, body=list(body), serial=serial)
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


def plain(value: Any) -> Any:
    """A D-Bus value as plain JSON-able Python: variants unwrapped, structs and arrays as lists,
    byte arrays as hex text."""
    inner = getattr(value, "value", None)
    if inner is not None and hasattr(value, "signature"):
        return plain(inner)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


async def get_all(bus: Any, destination: str, path: str, interface: str,
                  timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109 - as bus_call
    """Every property of ``interface`` on ``path``, as plain values (:func:`plain`)."""
    (props,) = await bus_call(bus, destination, path, PROPERTIES, "GetAll", "s", [interface],
                              timeout)
    value = plain(props)
    if not isinstance(value, dict):
        raise CallFailed(f"GetAll of {path} answered {value!r}, not a dictionary")
    return value


async def has_name(bus: Any, name: str, *, activatable: bool = True,
                   timeout: float = 2.0) -> bool:  # noqa: ASYNC109 - as bus_call
    """Whether ``name`` is on the bus now (or, ``activatable``, can be started on demand)."""
    (owned,) = await bus_call(bus, DBUS, DBUS_PATH, DBUS, "NameHasOwner", "s", [name],
                              timeout=timeout)
    if owned or not activatable:
        return bool(owned)
    (names,) = await bus_call(bus, DBUS, DBUS_PATH, DBUS, "ListActivatableNames",
                              timeout=timeout)
    return name in names


def properties_rule(sender: str, *, path: str | None = None,
                    path_namespace: str | None = None) -> str:
    """The match rule for ``sender``'s PropertiesChanged signals (on ``path``, or under
    ``path_namespace``)."""
    rule = (f"type='signal',sender='{sender}',interface='{PROPERTIES}',"
            f"member='PropertiesChanged'")
    if path is not None:
        rule += f",path='{path}'"
    if path_namespace is not None:
        rule += f",path_namespace='{path_namespace}'"
    return rule


def owner_rule(name: str) -> str:
    """The match rule for the bus's NameOwnerChanged about ``name`` (it comes and goes)."""
    return f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged'," \
           f"arg0='{name}'"


async def add_matches(bus: Any, rules: Iterable[str],
                      timeout: float = 10.0) -> None:  # noqa: ASYNC109 - as bus_call
    """Subscribe ``bus`` to the signals ``rules`` match (before reading anything, so that
    nothing falls between a read and the first signal)."""
    for rule in rules:
        await bus_call(bus, DBUS, DBUS_PATH, DBUS, "AddMatch", "s", [rule], timeout)


def on_disconnect(bus: Any, lost: Callable[[], None]) -> asyncio.Future[Any]:
    """Call ``lost()`` once ``bus`` disconnects (the future is cancelled by a deliberate
    close, which then says nothing); the bus's own error is consumed, not raised."""
    watch: asyncio.Future[Any] = asyncio.ensure_future(bus.wait_for_disconnect())

    def done(fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        fut.exception()  # consumed: a dropped bus is reported as lost, not raised
        lost()

    watch.add_done_callback(done)
    return watch


class BusSource:
    """What the sources on the system bus share (logind, UPower): one connection, subscribed
    before anything is read, noticed when it drops, and reconnected with backoff.

    A subclass sets :attr:`bus_name` (the service it reads) and :attr:`missing` (why it would
    be absent), calls :meth:`_init_bus` in its constructor, and gives :meth:`_rules` (its match
    rules), :meth:`_on_bus_message` (every message, in the bus's order) and
    :meth:`_on_bus_lost` (the connection dropped).
    """

    name: str
    bus_name: str
    missing: str

    def _init_bus(self, bus_address: str | None, call_timeout: float,
                  max_backoff: float) -> None:
        self.address = bus_address_for(bus_address)
        self.call_timeout = call_timeout
        self.max_backoff = max_backoff
        self._bus: Any = None
        self._closing = False
        self._disconnect_watch: asyncio.Future[Any] | None = None

    def _rules(self) -> Iterable[str]:
        raise NotImplementedError

    def _on_bus_message(self, bus: Any, msg: Any) -> None:
        raise NotImplementedError

    def _on_bus_lost(self, bus: Any) -> None:
        raise NotImplementedError

    async def _connect(self) -> bool:
        """Connect, subscribe, and say whether :attr:`bus_name` is there now."""
        bus = await connect_bus(self.address, self.call_timeout)
        bus.add_message_handler(lambda msg: self._on_bus_message(bus, msg))
        try:
            await add_matches(bus, self._rules(), self.call_timeout)
            # Activatable counts too: the bus starts the service when asked (real systems do).
            present = await has_name(bus, self.bus_name, timeout=self.call_timeout)
        except BaseException:
            bus.disconnect()
            raise
        self._bus = bus
        self._disconnect_watch = on_disconnect(
            bus, lambda: None if self._closing else self._on_bus_lost(bus))
        return present

    async def _first_connect(self) -> None:
        """The first connection; :class:`~pysens.sources.SourceUnavailable` (one sentence)
        when there is no dbus-fast, no bus, or no :attr:`bus_name` on it."""
        from . import SourceUnavailable

        try:
            import dbus_fast  # noqa: F401
        except ImportError:
            raise SourceUnavailable(f"the {self.name} source needs dbus-fast (pip install "
                                    "'pysens[linux]')") from None
        try:
            present = await self._connect()
        except CallFailed as e:
            raise SourceUnavailable(f"the system bus at {self.address} did not answer ({e})"
                                    ) from None
        except bus_errors(TimeoutError) as e:  # missing, refused, auth: all mean "not here"
            raise SourceUnavailable(
                f"cannot connect to the system bus at {self.address} ({e or type(e).__name__})"
            ) from None
        if not present:
            self._close_bus()
            raise SourceUnavailable(f"{self.bus_name} is not on the system bus at "
                                    f"{self.address} ({self.missing})")

    async def _reconnect_bus(self) -> bool | None:
        """Connect again after a drop, waiting longer between tries (to ``max_backoff``);
        whether the service is there, or None once the source is closing."""
        log.warning("lost the system bus at %s; reconnecting", self.address)
        self._bus = None
        delay = 0.05
        while not self._closing:
            try:
                present = await self._connect()
            except bus_errors(CallFailed, TimeoutError) as e:  # try again later
                log.debug("reconnecting to %s failed: %s", self.address, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            log.warning("reconnected to the system bus at %s", self.address)
            return present
        return None

    def _close_bus(self) -> None:
        self._closing = True
        if self._disconnect_watch is not None:
            self._disconnect_watch.cancel()
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    @classmethod
    async def _probe_bus(cls, bus_address: str | None) -> str | None:
        """None when :attr:`bus_name` answers on (or can be started by) the system bus."""
        try:
            import dbus_fast  # noqa: F401
        except ImportError:
            return "dbus-fast is not installed (pip install 'pysens[linux]')"
        address = bus_address_for(bus_address)
        try:
            bus = await connect_bus(address, 2.0)
        except bus_errors(TimeoutError) as e:  # any failure to connect means "not here"
            return f"the system bus at {address} is not reachable ({e or type(e).__name__})"
        try:
            if await has_name(bus, cls.bus_name):
                return None
            return f"{cls.bus_name} is not on the system bus at {address} ({cls.missing})"
        except CallFailed as e:
            return f"the system bus at {address} did not answer ({e})"
        finally:
            bus.disconnect()
