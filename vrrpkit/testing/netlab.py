"""A real-network lab on one Linux machine: hosts in network namespaces joined by a bridge.

Needs root and iproute2. Each host is a namespace whose ``eth0`` is one end of a veth pair;
the other ends sit on a bridge in a namespace of its own, so nothing touches the caller's
namespace. Only documentation addresses are used: host ``n`` gets 192.0.2.n/24,
2001:db8::n/64 and fe80::n/64, MAC 02:00:00:00:01:n. Namespace names carry a per-process
prefix, and :class:`NetLab` deletes them on exit, whatever happened.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any

import attrs

__all__ = [
    "LabError",
    "LabHost",
    "NetLab",
    "delete_namespaces",
    "lab_unavailable_reason",
    "list_namespaces",
    "remove_stale_namespaces",
    "run_ip",
]

_counter = itertools.count()


class LabError(RuntimeError):
    """An ``ip`` command failed while building or changing a lab."""


def run_ip(*args: str, netns: str | None = None, batch: Sequence[str] | None = None) -> str:
    """Run ``ip [-n netns] args`` (or a batch of commands) and return its output."""
    argv = ["ip"] + (["-n", netns] if netns else []) + list(args)
    stdin = None
    if batch is not None:
        argv += ["-b", "-"]
        stdin = "\n".join(batch) + "\n"
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def delete_namespaces(names: Sequence[str]) -> None:
    """Delete network namespaces, ignoring ones already gone."""
    if names:
        subprocess.run(
            ["ip", "-force", "-b", "-"],
            capture_output=True,
            text=True,
            check=False,
            input="".join(f"netns del {name}\n" for name in names),
        )


def lab_unavailable_reason(probe: str | None = None) -> str | None:
    """Why a lab cannot be built here (not root, no ``ip``), or None if it can.

    With ``probe`` (a namespace name), also create and delete that namespace to be sure.
    """
    if os.geteuid() != 0:
        return "a network-namespace lab needs root"
    if shutil.which("ip") is None:
        return "a network-namespace lab needs the ip command (iproute2)"
    if probe is not None:
        try:
            run_ip("netns", "add", probe)
        except LabError as exc:
            return f"cannot create network namespaces: {exc}"
        finally:
            delete_namespaces([probe])
    return None


def list_namespaces() -> list[str]:
    """The names of the network namespaces that exist now."""
    if shutil.which("ip") is None:
        return []
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def remove_stale_namespaces(tag: str, own_prefix: str) -> None:
    """Delete namespaces named ``<tag><pid hex>-...`` whose process is gone (killed mid-run).

    Namespaces starting with ``own_prefix`` (this process's) are left alone.
    """
    pattern = re.compile(rf"{re.escape(tag)}([0-9a-f]+)-\d+-[a-z0-9-]+")
    stale = []
    for name in list_namespaces():
        match = pattern.fullmatch(name)
        if match is None or name.startswith(own_prefix):
            continue
        if not os.path.exists(f"/proc/{int(match.group(1), 16)}"):
            stale.append(name)
    delete_namespaces(stale)


@attrs.frozen
class LabHost:
    """One host of the lab: a namespace with ``eth0`` on the bridge."""

    netns: str
    number: int
    port: str
    ifname: str = "eth0"

    @property
    def ipv4(self) -> IPv4Address:
        """The host's IPv4 address (192.0.2.n)."""
        return IPv4Address(f"192.0.2.{self.number}")

    @property
    def ipv6(self) -> IPv6Address:
        """The host's global IPv6 address (2001:db8::n)."""
        return IPv6Address(f"2001:db8::{self.number}")

    @property
    def link_local(self) -> IPv6Address:
        """The host's link-local address (fe80::n)."""
        return IPv6Address(f"fe80::{self.number}")

    @property
    def mac(self) -> bytes:
        """The MAC address of ``eth0``."""
        return bytes([0x02, 0, 0, 0, 0x01, self.number])

    def ip(self, *args: str) -> str:
        """Run ``ip ARGS`` inside this host's namespace and return its output."""
        return run_ip(*args, netns=self.netns)

    def _link(self) -> dict[str, Any]:
        links: list[dict[str, Any]] = json.loads(self.ip("-j", "link", "show", self.ifname))
        return links[0]

    def ifindex(self) -> int:
        """The index of ``eth0``."""
        return int(self._link()["ifindex"])

    def link_flags(self) -> list[str]:
        """The flags ``ip link`` shows for ``eth0`` (UP, LOWER_UP...)."""
        return list(self._link()["flags"])

    def addresses(self) -> list[dict[str, Any]]:
        """The kernel's entries for the addresses on ``eth0`` now (``ip -j addr``)."""
        links: list[dict[str, Any]] = json.loads(self.ip("-j", "addr", "show", self.ifname))
        entries: list[dict[str, Any]] = links[0]["addr_info"]
        return entries

    def holds(self, address: str) -> bool:
        """Whether ``address`` is on ``eth0`` now."""
        return any(entry.get("local") == address for entry in self.addresses())


class NetLab:
    """``with NetLab(3) as lab:`` builds hosts 1..3 on one bridge and always deletes them."""

    #: The class of :attr:`hosts`; a subclass may give its hosts more methods.
    host_class: type[LabHost] = LabHost

    def __init__(self, count: int = 2, *, prefix: str | None = None) -> None:
        if not 1 <= count <= 250:
            raise ValueError(f"a lab has 1..250 hosts, not {count}")
        #: Every namespace name starts with this (per process and lab, so runs never collide).
        self.prefix = prefix or f"vkl{os.getpid():x}-{next(_counter)}"
        self.bridge_netns = f"{self.prefix}-br"
        self.hosts = [
            self.host_class(f"{self.prefix}-h{n}", n, f"p{n}") for n in range(1, count + 1)
        ]

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the lab."""
        return [self.bridge_netns, *(h.netns for h in self.hosts)]

    def create(self) -> None:
        """Build the namespaces, the bridge and the veth pairs (removing them on failure)."""
        try:
            run_ip(batch=[f"netns add {name}" for name in self.namespaces])
            commands = [
                "link set lo up",
                "link add br0 type bridge mcast_snooping 0",
                "link set br0 up",
            ]
            for host in self.hosts:
                commands += [
                    f"link add {host.port} type veth peer name {host.ifname} netns {host.netns}",
                    f"link set {host.port} master br0",
                    f"link set {host.port} up",
                ]
            run_ip(netns=self.bridge_netns, batch=commands)
            for host in self.hosts:
                mac = ":".join(f"{octet:02x}" for octet in host.mac)
                run_ip(
                    netns=host.netns,
                    batch=[
                        "link set lo up",
                        f"link set {host.ifname} address {mac}",
                        f"link set {host.ifname} addrgenmode none",
                        f"link set {host.ifname} up",
                        f"addr add {host.ipv4}/24 dev {host.ifname}",
                        f"addr add {host.ipv6}/64 dev {host.ifname} nodad",
                        f"addr add {host.link_local}/64 dev {host.ifname} nodad",
                    ],
                )
        except BaseException:
            self.destroy()
            raise

    def set_port(self, host: LabHost, up: bool) -> None:
        """Cut (or restore) the cable of ``host``: its ``eth0`` loses carrier."""
        run_ip("link", "set", host.port, "up" if up else "down", netns=self.bridge_netns)

    def destroy(self) -> None:
        """Delete every namespace of the lab (missing ones are ignored)."""
        delete_namespaces(self.namespaces)

    def __enter__(self) -> NetLab:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
