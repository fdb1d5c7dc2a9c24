"""NetworkManager's D-Bus properties -> a name and a LAN/WAN type per interface. Pure: no I/O.

NetworkManager knows what the kernel does not: that ``wwan0`` is the mobile connection "Telekom"
(WAN) and ``eth0`` the wired connection "Office" (LAN). :func:`labels_from` turns its active
connections (``org.freedesktop.NetworkManager.Connection.Active``: ``Id``, ``Type``, ``Devices``,
``State``, ``Vpn``) and their devices (``Interface``, ``IpInterface``) into
:class:`~pysens.sources.netlink_map.Label` objects keyed by interface name, which the netlink
table uses to name connections and correct their type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import CONNECTION_LAN, CONNECTION_WAN
from .netlink_map import Label

__all__ = ["LAN_TYPES", "WAN_TYPES", "connection_type_of", "internet_of", "labels_from"]

#: NetworkManager connection types (``connection.type``) that SENS calls WAN: dial-up, mobile
#: broadband, DSL and VPNs (what Windows reaches through RAS).
WAN_TYPES = frozenset({"gsm", "cdma", "pppoe", "adsl", "vpn", "wireguard", "wimax"})
#: Connection types that are a LAN whatever the kernel's link looks like.
LAN_TYPES = frozenset({"802-3-ethernet", "802-11-wireless", "bridge", "bond", "team", "vlan",
                       "infiniband", "macsec", "veth", "wifi-p2p", "olpc-mesh"})
_DEACTIVATED = 4  # NM_ACTIVE_CONNECTION_STATE_DEACTIVATED
_CONNECTIVITY_FULL, _CONNECTIVITY_UNKNOWN = 4, 0


def connection_type_of(nm_type: str | None) -> int | None:
    """CONNECTION_WAN / CONNECTION_LAN for a NetworkManager type, None when it does not say
    (``tun``, ``ip-tunnel``, ``generic``: the kernel's view then decides)."""
    if nm_type in WAN_TYPES:
        return CONNECTION_WAN
    if nm_type in LAN_TYPES:
        return CONNECTION_LAN
    return None


def internet_of(connectivity: object) -> bool | None:
    """Manager ``Connectivity``: True when full, False when none / portal / limited, None when
    unknown or not checked."""
    if not isinstance(connectivity, int) or isinstance(connectivity, bool):
        return None
    if connectivity == _CONNECTIVITY_UNKNOWN:
        return None
    return connectivity == _CONNECTIVITY_FULL


def _interface(device: Mapping[str, Any]) -> str | None:
    # A modem's Interface is its tty; the IP traffic flows through IpInterface (ppp0, wwan0).
    for key in ("IpInterface", "Interface"):
        value = device.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def labels_from(active: Mapping[str, Mapping[str, Any]],
                devices: Mapping[str, Mapping[str, Any]],
                primary: str | None = None) -> dict[str, Label]:
    """Labels by interface name from active connections (by object path) and devices (by
    object path); ``primary`` is the Manager's PrimaryConnection path. A VPN that names its
    carrier's device does not take that device's name: the device's own connection does."""
    labels: dict[str, tuple[bool, Label]] = {}
    for path, props in sorted(active.items()):
        if props.get("State") == _DEACTIVATED:
            continue
        name, nm_type = props.get("Id"), props.get("Type")
        if not isinstance(name, str) or not name:
            continue
        nm_type = nm_type if isinstance(nm_type, str) else None
        vpn = bool(props.get("Vpn")) or nm_type == "vpn"
        label = Label(name, connection_type_of(nm_type), nm_type, path == primary)
        paths = props.get("Devices")
        for dev_path in paths if isinstance(paths, list | tuple) else []:
            iface = _interface(devices.get(str(dev_path), {}))
            if iface is None:
                continue
            known = labels.get(iface)
            if known is not None and not known[0] and vpn:
                continue  # the device's own connection keeps its name
            labels[iface] = (vpn, label)
    return {iface: label for iface, (_vpn, label) in labels.items()}
