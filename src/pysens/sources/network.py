"""The ``network`` source: rtnetlink + NetworkManager (when present) + destination probes.

One stream of :class:`~pysens.observations.ConnectionState` (from
:class:`~pysens.sources.netlink.NetlinkSource`, named and typed by NetworkManager when it is on
the system bus) and :class:`~pysens.observations.DestinationState` (from
:class:`~pysens.sources.destinations.Prober`, which probes again after every change netlink
reports). Everything runs on one queue read by one loop, so the netlink table is only touched
there.

NetworkManager is read before the kernel's state is dumped, so connections that exist at start
already carry its names. A connection that appears later may be reported under its interface
name first, when the kernel makes it usable before NetworkManager has named it; the tracker's
ConnectionLost then repeats the name its ConnectionMade gave.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..observations import DestinationState, Observation
from . import LiveKind, Source, SourceUnavailable
from .dbus import CallFailed, bus_errors
from .destinations import Destination, Prober
from .netlink import RCVBUF, NetlinkSource
from .netlink import probe as netlink_probe
from .netlink_map import Label
from .networkmanager import NetworkManagerWatch

__all__ = ["DESCRIPTION", "NetworkSource", "open_network", "probe"]

DESCRIPTION = "rtnetlink, NetworkManager when present, and destination probes"
log = logging.getLogger("pysens.sources.network")


async def probe(**options: Any) -> str | None:
    """None when the network source can run here (rtnetlink is what it cannot do without; on
    Windows, the IP Helper notifications)."""
    if sys.platform == "win32":
        from .win_network import probe as win_probe

        return await win_probe(**options)
    return await netlink_probe(**options)


class NetworkSource(NetlinkSource):
    """ConnectionState and DestinationState in one stream (see the module text).

    ``destinations``: what to probe. ``networkmanager``: use NetworkManager for names and
    types (None: when it is on the system bus at ``bus_address``; True: required; False:
    never). ``probe_timeout``, ``recheck`` and ``backoff`` tune the prober.
    """

    name = "network"

    def __init__(
        self, *, destinations: Iterable[Destination] = (), networkmanager: bool | None = None,
        bus_address: str | None = None, host: str | None = None,
        read_speed: Callable[[str], int | None] | None = None, rcvbuf: int | None = RCVBUF,
        probe_timeout: float = 3.0, recheck: float = 60.0,
        backoff: tuple[float, float] = (1.0, 60.0), icmp: bool | None = None,
    ) -> None:
        super().__init__(host=host, read_speed=read_speed, rcvbuf=rcvbuf)
        self.destinations = list(destinations)
        self.networkmanager = networkmanager
        self.bus_address = bus_address
        self._nm: Any = None
        self.prober = Prober(
            self.destinations, self._on_destination, connection_of=self.connection_of,
            timeout=probe_timeout, recheck=recheck, backoff=backoff, icmp=icmp,
            source=self.name, host=host)

    @classmethod
    async def probe(cls, **options: Any) -> str | None:
        """None when this source can run here, else the reason in one sentence."""
        return await probe(**options)

    async def snapshot(self) -> list[Observation]:
        """Every link (``existing=True``) and each destination probed once now."""
        out = await super().snapshot()
        states = await asyncio.gather(*(self.prober.check(d, existing=True)
                                        for d in self.destinations))
        return [*out, *states]

    async def aclose(self) -> None:
        """Stop probing, leave the bus, close the socket."""
        await self.prober.aclose()
        if self._nm is not None:
            await self._nm.aclose()
            self._nm = None
        await super().aclose()

    # -- the wiring --------------------------------------------------------------------------

    async def _start(self) -> None:
        if self.networkmanager is not False:
            await self._start_nm()
        await super()._start()
        self.prober.start()

    async def _start_nm(self) -> None:
        queue = self._queue_()

        def changed(labels: dict[str, Label], internet: bool | None) -> None:
            queue.put_nowait(("nm", (labels, internet)))

        watch = NetworkManagerWatch(changed, self.bus_address)
        try:
            present = await watch.start()
        except ImportError:
            if self.networkmanager:
                raise SourceUnavailable("naming connections by NetworkManager needs dbus-fast "
                                        "(pip install 'pysens[linux]')") from None
            return
        except bus_errors(CallFailed, TimeoutError) as e:  # no system bus: netlink alone serves
            if self.networkmanager:
                raise SourceUnavailable(f"cannot reach the system bus for NetworkManager "
                                        f"({e or type(e).__name__})") from None
            log.debug("no system bus for NetworkManager: %s", e)
            return
        if not present and self.networkmanager:
            await watch.aclose()
            raise SourceUnavailable("NetworkManager is not on the system bus")
        # Absent now, it may start later: the watch stays subscribed to its arrival.
        self._nm = watch
        self.table.set_labels(watch.labels)
        self.table.set_internet(watch.internet)

    def _on_destination(self, state: DestinationState) -> None:
        self._queue_().put_nowait(("destination", state))

    def _network_changed(self) -> None:
        self.prober.network_changed()

    async def _handle(self, kind: str, item: Any) -> list[Observation]:
        if kind == "destination":
            return [item]
        if kind == "nm":
            labels, internet = item
            self.table.set_labels(labels)
            self.table.set_internet(internet)
            self.prober.network_changed()
            return list(self.table.changes(_now()))
        return await super()._handle(kind, item)


def _now() -> datetime:
    return datetime.now(UTC)


def open_network(*, destinations: Iterable[Destination] = (),
                 networkmanager: bool | None = None, host: str | None = None,
                 bus_address: str | None = None, **_options: Any) -> Source:
    """The ``network`` source (``sens watch --class ISensNetwork``, the daemon): rtnetlink on
    Linux, the IP Helper notifications on Windows (without destination probes there yet)."""
    if sys.platform == "win32":
        from .win_network import open_win_network

        return open_win_network(host=host)
    return NetworkSource(destinations=destinations, networkmanager=networkmanager, host=host,
                         bus_address=bus_address)


#: The registry's entry (``sens watch --source network``; the daemon's ``[serve] network``).
LIVE = LiveKind(DESCRIPTION, open_network, probe)
