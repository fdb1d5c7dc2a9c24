"""rtnetlink messages -> links, addresses and default routes -> ConnectionState. Pure: no I/O.

The I/O half (:mod:`pysens.sources.netlink`) hands datagrams read from a ``NETLINK_ROUTE``
socket to :func:`parse_datagram` (from :mod:`.netlink_wire`, re-exported here); the messages
go into a :class:`NetTable`, which knows, per link, whether it is *usable* and reports a
:class:`~pysens.observations.ConnectionState` only for links whose (usable, name, type, QOC)
changed.

The rules, and why:

* Usable = admin up (``IFF_UP``), carrier, and at least one usable address. Carrier is
  operstate ``UP``; tun/ppp-style drivers never set an operstate (``UNKNOWN``), so for them the
  driver's ``IFF_LOWER_UP`` flag (or ``IFLA_CARRIER``) says it. A usable address is neither
  link-local (``fe80::/10``, ``169.254/16``: every link gets one, it reaches nothing beyond
  the cable), nor loopback or host-scoped, nor an IPv6 address still in duplicate address
  detection (``tentative``) or that failed it (``dadfailed``). The loopback link is never a
  connection. A default route is not required: a LAN with only its own subnet is SENS's
  ``NETWORK_ALIVE_LAN`` all the same.
* WAN (``CONNECTION_WAN``) for point-to-point links (``IFF_POINTOPOINT``), ppp, raw-IP
  (mobile broadband), ``ARPHRD_NONE`` (tun, WireGuard) and IP-in-IP tunnels, else LAN;
  NetworkManager's connection type overrides it through :meth:`NetTable.set_labels`.
* QOC comes from the link speed through the injected ``read_speed`` (bits/s, or None when the
  driver does not know, as a bridge: then the NoQOCInfo method).
* Bridge port notifications (``ifi_family == AF_BRIDGE``: a port joining or leaving) are not
  link changes and are ignored; IPv4 routes removed with their link are not announced by the
  kernel, so a link going down or away drops its routes from the table here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events import CONNECTION_LAN, CONNECTION_WAN, NETWORK_ALIVE_LAN, NETWORK_ALIVE_WAN
from ..observations import ConnectionState
from .netlink_wire import (
    AF_BRIDGE,
    AF_INET6,
    ARPHRD_LOOPBACK,
    ARPHRD_NONE,
    ARPHRD_PPP,
    ARPHRD_RAWIP,
    GROUPS,
    IF_OPER_UNKNOWN,
    IF_OPER_UP,
    IFA_F_DADFAILED,
    IFA_F_TENTATIVE,
    IFF_LOOPBACK,
    IFF_LOWER_UP,
    IFF_POINTOPOINT,
    IFF_UP,
    OPERSTATES,
    RT_SCOPE_HOST,
    RTN_UNICAST,
    Address,
    AddressMessage,
    DoneMessage,
    ErrorMessage,
    Link,
    LinkMessage,
    Message,
    NetlinkError,
    OtherMessage,
    Route,
    RouteMessage,
    dump_request,
    parse_datagram,
    parse_message,
)

__all__ = [
    "GROUPS",
    "NETWORK_ALIVE_INTERNET",
    "Address",
    "AddressMessage",
    "DoneMessage",
    "ErrorMessage",
    "Label",
    "Link",
    "LinkMessage",
    "LinkView",
    "Message",
    "NetTable",
    "NetlinkError",
    "OtherMessage",
    "Route",
    "RouteMessage",
    "dump_request",
    "parse_datagram",
    "parse_message",
]

_WAN_ARPHRD = frozenset({ARPHRD_PPP, ARPHRD_RAWIP, ARPHRD_NONE,
                         768, 769, 776, 778, 823})  # TUNNEL, TUNNEL6, SIT, IPGRE, IP6GRE
#: The SENS_QOCINFO dwFlags bit for "the Internet answers" (sensapi.h), set from
#: NetworkManager's Connectivity (full).
NETWORK_ALIVE_INTERNET = 0x8


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Label:
    """What NetworkManager says about an interface: its active connection's name and type
    (``connection_type`` None: NetworkManager's type does not decide LAN or WAN)."""

    connection: str
    connection_type: int | None = None
    nm_type: str | None = None
    #: The Manager's PrimaryConnection (the one the default route goes through).
    primary: bool = False


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the table concludes about one link (what ``sens network`` shows)."""

    index: int
    ifname: str
    connection: str
    usable: bool
    connection_type: int
    qoc: Mapping[str, int] | None
    addresses: tuple[str, ...]
    default_route: bool
    raw: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[bool, str, int, tuple[tuple[str, int], ...] | None]:
        """What a ConnectionState is reported for a change of."""
        qoc = None if self.qoc is None else tuple(sorted(self.qoc.items()))
        return (self.usable, self.connection, self.connection_type, qoc)


def usable_address(address: Address) -> bool:
    """Whether other programs can use ``address`` beyond the link itself."""
    if address.scope >= RT_SCOPE_HOST:
        return False
    if address.family == AF_INET6 and address.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
        return False
    ip = ipaddress.ip_address(address.address)
    return not (ip.is_link_local or ip.is_loopback or ip.is_unspecified or ip.is_multicast)


def is_wan(link: Link) -> bool:
    """WAN (dial-up, mobile, tunnel) rather than LAN, from what the kernel says of the link."""
    return bool(link.flags & IFF_POINTOPOINT) or link.link_type in _WAN_ARPHRD or link.kind in (
        "wireguard", "ppp")


def has_carrier(link: Link) -> bool:
    """The cable is in (or the tunnel's other end is attached)."""
    if link.operstate == IF_OPER_UP:
        return True
    if link.operstate in (None, IF_OPER_UNKNOWN):
        # Drivers without operstate (tun, ppp, dummy) report the lower layer in the flags.
        return bool(link.flags & IFF_LOWER_UP) or link.carrier is True
    return False


class NetTable:
    """Links, addresses and default routes, kept up to date from rtnetlink messages.

    ``read_speed(ifname)`` gives a link's speed in bits/s or None (I/O, injected: the netlink
    source reads sysfs); it is asked only for usable links that changed. :meth:`changes`
    returns the ConnectionStates of links whose view changed since the last call.
    """

    def __init__(self, read_speed: Callable[[str], int | None] = lambda _name: None, *,
                 source: str = "netlink", host: str | None = None) -> None:
        self.read_speed = read_speed
        self.source = source
        self.host = host
        self.links: dict[int, Link] = {}
        self.addresses: dict[int, dict[tuple[int, str, int], Address]] = {}
        self.routes: set[Route] = set()
        self.labels: dict[str, Label] = {}
        self.internet: bool | None = None
        self._views: dict[int, LinkView] = {}
        self._reported: dict[int, LinkView] = {}
        self._dirty: set[int] = set()
        #: Something changed since the last :meth:`changes` (a route, an address, a link):
        #: the moment to probe destinations again.
        self.changed = False

    # -- applying messages ---------------------------------------------------------------

    def apply(self, message: Message) -> None:
        """Take one message into the table (DONE, ERROR and others change nothing)."""
        if isinstance(message, LinkMessage):
            self._apply_link(message)
        elif isinstance(message, AddressMessage):
            self._apply_address(message)
        elif isinstance(message, RouteMessage):
            self._apply_route(message)

    def apply_all(self, messages: Iterable[Message]) -> None:
        """:meth:`apply` each message in order."""
        for m in messages:
            self.apply(m)

    def _apply_link(self, m: LinkMessage) -> None:
        link = m.link
        if link.family == AF_BRIDGE:
            return  # a bridge port's state, not the link's (see the module text)
        self._dirty.add(link.index)
        self.changed = True
        if not m.new:
            self.links.pop(link.index, None)
            self.addresses.pop(link.index, None)
            self._drop_routes(link.index)
            return
        self.links[link.index] = link
        if not link.flags & IFF_UP:
            self._drop_routes(link.index)

    def _apply_address(self, m: AddressMessage) -> None:
        a = m.address
        self._dirty.add(a.index)
        self.changed = True
        key = (a.family, a.address, a.prefixlen)
        if m.new:
            self.addresses.setdefault(a.index, {})[key] = a
        else:
            self.addresses.get(a.index, {}).pop(key, None)

    def _apply_route(self, m: RouteMessage) -> None:
        r = m.route
        if r.dst_len != 0 or r.route_type != RTN_UNICAST:
            return  # only default routes matter here
        self.changed = True
        self._dirty.update(r.oifs)
        if m.new:
            self.routes.add(r)
        else:
            self.routes.discard(r)
            # A DELROUTE may omit what the NEWROUTE carried: drop any default route it names.
            for old in [x for x in self.routes if x.family == r.family and x.table == r.table
                        and (not r.oifs or set(r.oifs) & set(x.oifs))
                        and (r.gateway is None or r.gateway == x.gateway)]:
                self.routes.discard(old)

    def _drop_routes(self, index: int) -> None:
        for r in [r for r in self.routes if index in r.oifs]:
            self.routes.discard(r)

    def set_labels(self, labels: Mapping[str, Label]) -> None:
        """NetworkManager's view, by interface name (replaces the previous one)."""
        changed = {n for n in set(labels) | set(self.labels)
                   if labels.get(n) != self.labels.get(n)}
        self.labels = dict(labels)
        self._dirty.update(i for i, link in self.links.items() if link.name in changed)

    def set_internet(self, internet: bool | None) -> None:
        """Whether the Internet answers (NetworkManager Connectivity full), None: unknown."""
        if internet != self.internet:
            self.internet = internet
            self._dirty.update(self.links)

    def begin_resync(self) -> None:
        """Forget links, addresses and routes (a fresh dump follows) but not what was
        reported, so the next :meth:`changes` reports the difference (after a socket overrun)."""
        self._dirty.update(self.links)
        self._dirty.update(self._reported)
        self.links.clear()
        self.addresses.clear()
        self.routes.clear()
        self._views.clear()
        self.changed = True

    # -- conclusions -----------------------------------------------------------------------

    def view(self, index: int) -> LinkView | None:
        """The current view of link ``index`` (None: no such link, or the loopback)."""
        if index in self._dirty:
            self._refresh(index)
        return self._views.get(index)

    def views(self) -> list[LinkView]:
        """Every link's view (the loopback excluded), by index."""
        for index in list(self._dirty):
            self._refresh(index)
        return [self._views[i] for i in sorted(self._views)]

    def link_of_address(self, address: str) -> LinkView | None:
        """The view of the link that holds local ``address`` (how a probe's source address
        names the connection it went through)."""
        try:
            wanted = str(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return None
        for index, addrs in self.addresses.items():
            if any(a.address == wanted for a in addrs.values()):
                return self.view(index)
        return None

    def _refresh(self, index: int) -> None:
        link = self.links.get(index)
        if link is None or link.flags & IFF_LOOPBACK or link.link_type == ARPHRD_LOOPBACK:
            self._views.pop(index, None)
            return
        addrs = sorted(self.addresses.get(index, {}).values(),
                       key=lambda a: (a.family, a.address))
        good = [a.address for a in addrs if usable_address(a)]
        up, carrier = bool(link.flags & IFF_UP), has_carrier(link)
        usable = up and carrier and bool(good)
        label = self.labels.get(link.name)
        kind = CONNECTION_WAN if is_wan(link) else CONNECTION_LAN
        if label is not None and label.connection_type is not None:
            kind = label.connection_type
        qoc: dict[str, int] | None = None
        if usable:
            speed = self.read_speed(link.name)
            if speed is not None:
                flags = NETWORK_ALIVE_WAN if kind == CONNECTION_WAN else NETWORK_ALIVE_LAN
                if self.internet:
                    flags |= NETWORK_ALIVE_INTERNET
                qoc = {"flags": flags, "in_speed": speed, "out_speed": speed}
        default = any(index in r.oifs for r in self.routes)
        state = OPERSTATES[link.operstate] if link.operstate is not None and \
            link.operstate < len(OPERSTATES) else link.operstate
        raw: dict[str, Any] = {
            "ifindex": index, "ifname": link.name, "kind": link.kind, "operstate": state,
            "admin_up": up, "carrier": carrier, "addresses": [a.address for a in addrs],
            "default_route": default,
        }
        if label is not None:
            raw["networkmanager"] = {"id": label.connection, "type": label.nm_type,
                                     "primary": label.primary}
        if self.internet is not None:
            raw["internet"] = self.internet
        self._views[index] = LinkView(index, link.name,
                                      label.connection if label else link.name, usable, kind,
                                      qoc, tuple(good), default, raw)

    def changes(self, time: datetime, *, existing: bool = False) -> list[ConnectionState]:
        """A ConnectionState per link whose (usable, name, type, QOC) changed since the last
        call (every link the first time), keyed ``ifindex:N``; a link gone is reported once,
        unusable, under the name it had."""
        self.changed = False
        dirty, self._dirty = self._dirty, set()
        out: list[ConnectionState] = []
        for index in sorted(dirty):
            self._refresh(index)
            new, old = self._views.get(index), self._reported.get(index)
            if new is None:
                if old is not None:
                    del self._reported[index]
                    if old.usable:
                        out.append(self._state(old, time, usable=False, existing=existing))
                continue
            if old is not None and old.key() == new.key():
                self._reported[index] = new
                continue
            self._reported[index] = new
            out.append(self._state(new, time, usable=new.usable, existing=existing))
        return out

    def snapshot(self, time: datetime) -> list[ConnectionState]:
        """Every link as it is now, ``existing=True`` (what was reported stays as it was)."""
        return [self._state(v, time, usable=v.usable, existing=True) for v in self.views()]

    def _state(self, view: LinkView, time: datetime, *, usable: bool,
               existing: bool) -> ConnectionState:
        return ConnectionState(time, self.source, f"ifindex:{view.index}", view.connection,
                               usable, view.connection_type, view.qoc if usable else None,
                               existing, view.raw, self.host)
