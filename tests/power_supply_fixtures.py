"""A ``/sys/class/power_supply``-shaped tree and real kernel-uevent datagrams for the
``power_supply`` source: the test enters a private network namespace (root), where a datagram
sent to the uevent group 1 reaches the source's netlink socket and nobody else's (never the
host's udev)."""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

CLONE_NEWNET = 0x40000000
NETLINK_KOBJECT_UEVENT = 15
ACPI = "/devices/LNXSYSTM:00/LNXSYBUS:00"


@pytest.fixture
def private_netns() -> Iterator[None]:
    """This thread in a fresh network namespace for the test, then back (even on failure).

    Sockets opened meanwhile stay in it, so the uevents sent there reach only them."""
    if os.geteuid() != 0:
        pytest.fail("needs root: a private network namespace for synthetic uevents")
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            pytest.fail(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise RuntimeError(f"cannot return to the original namespace: {os.strerror(err)}")
    finally:
        os.close(home)


class SupplyTree:
    """A ``/sys/class/power_supply``-shaped directory, and the uevents the kernel would send."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self._sender: socket.socket | None = None

    def write(self, name: str, **attrs: object) -> None:
        """Set files of supply ``name`` (created when new), one value per file as sysfs has."""
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        for key, value in attrs.items():
            (directory / key).write_text(f"{value}\n")

    def ac(self, online: bool, name: str = "AC") -> None:
        """A Mains adapter."""
        self.write(name, type="Mains", online=int(online))

    def battery(self, name: str = "BAT0", **attrs: object) -> None:
        """A system battery (``type`` Battery, ``present`` 1 unless given)."""
        self.write(name, **{"type": "Battery", "present": 1, "scope": "System", **attrs})

    def inject(self, name: str, action: str = "change", kind: str = "PNP0C0A:00") -> None:
        """The uevent the kernel sends for supply ``name`` (sent to group 1, in this netns)."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                         NETLINK_KOBJECT_UEVENT)
            self._sender.bind((0, 0))
        path = f"{ACPI}/{kind}/power_supply/{name}"
        fields = [f"{action}@{path}", f"ACTION={action}", f"DEVPATH={path}",
                  "SUBSYSTEM=power_supply", f"POWER_SUPPLY_NAME={name}", "SEQNUM=4242"]
        self.send(b"\0".join(f.encode() for f in fields) + b"\0")

    def send(self, data: bytes) -> None:
        """Any datagram to the uevent group (garbled ones included)."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                         NETLINK_KOBJECT_UEVENT)
            self._sender.bind((0, 0))
        self._sender.sendto(data, (0, 1))

    def close(self) -> None:
        """Close the sending socket."""
        if self._sender is not None:
            self._sender.close()


@pytest.fixture
def tree(tmp_path: Path, private_netns: None) -> Iterator[SupplyTree]:
    """A laptop's supplies (AC online, BAT0 80 % charging) in a private network namespace."""
    t = SupplyTree(tmp_path / "power_supply")
    t.ac(True)
    t.battery(status="Charging", capacity=80, capacity_level="Normal")
    yield t
    t.close()
