"""Network-namespace labs for the transport tests.

A lab is a few "hosts", each a network namespace whose ``eth0`` is one end of a veth pair;
the other ends sit on a bridge inside a namespace of their own, so no traffic and no
interface ever touches the namespace the tests run in. Only documentation addresses are
used (192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32, fe80::/64).

Namespace names start with a per-process prefix (``vk<pid hex>-``) so parallel runs never
collide and leftovers can be found and removed.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import anyio

from vrrpkit.transports.netns import run_in_netns

PREFIX = f"vk{os.getpid():x}-"
_counter = itertools.count()
_counter_lock = threading.Lock()
_created: set[str] = set()
_used = False


class LabError(RuntimeError):
    """An ``ip`` command failed while building or changing a lab."""


def ip(*args: str, netns: str | None = None, batch: Sequence[str] | None = None) -> str:
    """Run ``ip [-n netns] args`` (or a batch of ip commands) and return its stdout."""
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", netns]
    argv += list(args)
    stdin = None
    if batch is not None:
        argv += ["-b", "-"]
        stdin = "\n".join(batch) + "\n"
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Return why namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "network namespace tests need the ip command (iproute2)"
    probe = _new_name("probe")
    try:
        ip("netns", "add", probe)
    except LabError as exc:
        return f"cannot create network namespaces: {exc}"
    delete_namespaces([probe])
    remove_stale()
    return None


def remove_stale() -> None:
    """Delete namespaces left by earlier runs whose process is gone (killed mid-run)."""
    stale = []
    for name in _listed():
        match = re.fullmatch(r"vk([0-9a-f]+)-\d+-[a-z0-9]+", name)
        if match is None or name.startswith(PREFIX):
            continue
        if not Path(f"/proc/{int(match.group(1), 16)}").exists():
            stale.append(name)
    delete_namespaces(stale)


def _new_name(role: str) -> str:
    global _used
    with _counter_lock:
        _used = True
        name = f"{PREFIX}{next(_counter)}-{role}"
        _created.add(name)
    return name


def delete_namespaces(names: Sequence[str]) -> None:
    """Delete namespaces, ignoring ones already gone."""
    if not names:
        return
    subprocess.run(
        ["ip", "-force", "-b", "-"],
        input="".join(f"netns del {name}\n" for name in names),
        capture_output=True,
        text=True,
        check=False,
    )
    _created.difference_update(names)


def _listed() -> list[str]:
    if shutil.which("ip") is None:
        return []
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def leftovers() -> list[str]:
    """Return the namespaces of this process that still exist."""
    return [name for name in _listed() if name.startswith(PREFIX)]


def remove_leftovers() -> None:
    """Delete every namespace this process created and did not delete yet."""
    if _used:
        delete_namespaces(sorted(set(_created) | set(leftovers())))


@dataclass
class Host:
    """One namespace with ``eth0`` on the lab's bridge and fixed addresses."""

    netns: str
    number: int
    port: str
    ifname: str = "eth0"
    mac: bytes = field(init=False)
    ipv4: IPv4Address = field(init=False)
    ipv6: IPv6Address = field(init=False)
    link_local: IPv6Address = field(init=False)

    def __post_init__(self) -> None:
        self.mac = bytes([0x02, 0x00, 0x00, 0x00, 0x01, self.number])
        self.ipv4 = IPv4Address(f"192.0.2.{self.number}")
        self.ipv6 = IPv6Address(f"2001:db8::{self.number}")
        self.link_local = IPv6Address(f"fe80::{self.number}")

    def ip(self, *args: str) -> str:
        """Run an ip command inside this host's namespace."""
        return ip(*args, netns=self.netns)

    def ifindex(self) -> int:
        """Return the index of ``eth0``."""
        return int(self._link()["ifindex"])

    def link_flags(self) -> list[str]:
        """Return the flags ``ip link`` shows for ``eth0`` (e.g. UP, LOWER_UP)."""
        return list(self._link()["flags"])

    def _link(self) -> dict[str, Any]:
        links: list[dict[str, Any]] = json.loads(self.ip("-j", "link", "show", self.ifname))
        return links[0]

    def addresses(self) -> list[dict[str, Any]]:
        """Return ``ip -j addr show eth0``'s address entries."""
        links: list[dict[str, Any]] = json.loads(self.ip("-j", "addr", "show", self.ifname))
        entries: list[dict[str, Any]] = links[0]["addr_info"]
        return entries

    def setup_commands(self) -> list[str]:
        """The ip batch that configures this host's side (run in its namespace)."""
        mac = ":".join(f"{octet:02x}" for octet in self.mac)
        return [
            "link set lo up",
            f"link set {self.ifname} address {mac}",
            f"link set {self.ifname} addrgenmode none",
            f"link set {self.ifname} up",
            f"addr add {self.ipv4}/24 dev {self.ifname}",
            f"addr add {self.ipv6}/64 dev {self.ifname} nodad",
            f"addr add {self.link_local}/64 dev {self.ifname} nodad",
        ]


@dataclass
class Lab:
    """Hosts joined by a bridge that lives in its own namespace."""

    bridge_netns: str
    hosts: list[Host]

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the lab."""
        return [self.bridge_netns, *(host.netns for host in self.hosts)]

    def set_port(self, host: Host, up: bool) -> None:
        """Set the bridge-side end of ``host``'s veth up or down (``eth0`` loses carrier)."""
        ip("link", "set", host.port, "up" if up else "down", netns=self.bridge_netns)

    def destroy(self) -> None:
        """Delete all of the lab's namespaces (and with them its interfaces)."""
        delete_namespaces(self.namespaces)


def create_lab(count: int = 2) -> Lab:
    """Build a lab of ``count`` hosts numbered 1..count; on failure nothing is left behind."""
    bridge = _new_name("br")
    hosts = [Host(netns=_new_name(f"h{n}"), number=n, port=f"p{n}") for n in range(1, count + 1)]
    lab = Lab(bridge_netns=bridge, hosts=hosts)
    try:
        ip(batch=[f"netns add {name}" for name in lab.namespaces])
        bridge_commands = [
            "link set lo up",
            "link add br0 type bridge mcast_snooping 0",
            "link set br0 up",
        ]
        for host in hosts:
            bridge_commands += [
                f"link add {host.port} type veth peer name {host.ifname} netns {host.netns}",
                f"link set {host.port} master br0",
                f"link set {host.port} up",
            ]
        ip(netns=bridge, batch=bridge_commands)
        for host in hosts:
            ip(netns=host.netns, batch=host.setup_commands())
    except BaseException:
        lab.destroy()
        raise
    return lab


ETH_P_ALL = 0x0003


def open_capture(host: Host, ethertype: int = ETH_P_ALL) -> socket.socket:
    """A non-blocking AF_PACKET socket receiving the frames on ``host``'s ``eth0``."""

    def create() -> socket.socket:
        sock = socket.socket(
            socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.htons(ethertype)
        )
        sock.bind((host.ifname, ethertype))
        return sock

    return run_in_netns(host.netns, create)


async def next_frame(sock: socket.socket, predicate: Callable[[bytes], bool]) -> bytes:
    """Wait for the next frame on a capture socket that satisfies ``predicate``."""
    while True:
        try:
            frame = sock.recv(65535)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        if predicate(frame):
            return frame
