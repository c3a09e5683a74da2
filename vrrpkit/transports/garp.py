"""Gratuitous ARP and unsolicited neighbour advertisement frames, and their sender.

The frame builders are pure functions returning complete Ethernet frames. The sender writes
them on an ``AF_PACKET`` socket, the only way to choose the source MAC address. For the NA
this means building the IPv6 header and the ICMPv6 checksum by hand.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import anyio
import anyio.lowlevel
from anyio.abc import AsyncResource

from vrrpkit.transports.base import IPAddress, TransportError
from vrrpkit.transports.netns import call_in_netns
from vrrpkit.transports.rawsocket import interface_index
from vrrpkit.transports.sockio import close_socket, send_nonblocking

__all__ = [
    "ALL_NODES",
    "BROADCAST_MAC",
    "ETH_P_ARP",
    "ETH_P_IPV6",
    "GarpSender",
    "build_gratuitous_arp",
    "build_unsolicited_na",
    "format_mac",
    "icmpv6_checksum",
    "internet_checksum",
    "multicast_mac",
    "parse_mac",
]

logger = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = IPv6Address("ff02::1")

_ARP_REQUEST = 1
_ICMPV6 = 58
_NEIGHBOR_ADVERTISEMENT = 136
_NA_ROUTER = 0x80
_NA_OVERRIDE = 0x20
_OPTION_TARGET_LLADDR = 2
_SIOCGIFHWADDR = 0x8927


def parse_mac(text: str) -> bytes:
    """Parse ``"02:00:5e:00:01:01"`` into 6 bytes; ValueError if malformed."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(part) in (1, 2) for part in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(part, 16) for part in parts)


def format_mac(mac: bytes) -> str:
    """Format 6 bytes as ``"02:00:5e:00:01:01"``."""
    return ":".join(f"{octet:02x}" for octet in mac)


def multicast_mac(group: IPv6Address) -> bytes:
    """Return the Ethernet address of an IPv6 multicast group (33:33 + low 32 bits)."""
    return b"\x33\x33" + group.packed[12:]


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")


def build_gratuitous_arp(address: IPv4Address, mac: bytes) -> bytes:
    """Return a gratuitous ARP frame announcing that ``address`` is at ``mac``.

    It is an ARP request (as keepalived, FRR and holo send) broadcast from ``mac``, with
    sender and target protocol address both ``address`` and a broadcast target MAC.
    """
    _check_mac(mac)
    ethernet = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        1,  # Ethernet
        0x0800,
        6,
        4,
        _ARP_REQUEST,
        mac,
        address.packed,
        BROADCAST_MAC,
        address.packed,
    )
    return ethernet + arp


def internet_checksum(data: bytes) -> int:
    """Return the 16-bit one's complement checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6_checksum(src: IPv6Address, dst: IPv6Address, message: bytes) -> int:
    """Return the ICMPv6 checksum of ``message`` (checksum field zeroed) with its pseudo-header."""
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(message), _ICMPV6)
    return internet_checksum(pseudo + message)


def build_unsolicited_na(address: IPv6Address, mac: bytes, *, router: bool = False) -> bytes:
    """Return an unsolicited neighbour advertisement frame for ``address`` at ``mac``.

    Sent from ``address`` to ff02::1 with hop limit 255, Override flag set (Router flag only
    if ``router``), Solicited flag clear, and a target link-layer address option.
    """
    _check_mac(mac)
    flags = _NA_OVERRIDE | (_NA_ROUTER if router else 0)
    option = struct.pack("!BB6s", _OPTION_TARGET_LLADDR, 1, mac)
    body = struct.pack("!B3x16s", flags, address.packed) + option
    unsummed = struct.pack("!BBH", _NEIGHBOR_ADVERTISEMENT, 0, 0) + body
    checksum = icmpv6_checksum(address, ALL_NODES, unsummed)
    icmp = struct.pack("!BBH", _NEIGHBOR_ADVERTISEMENT, 0, checksum) + body
    ipv6 = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(icmp),
        _ICMPV6,
        255,
        address.packed,
        ALL_NODES.packed,
    )
    ethernet = multicast_mac(ALL_NODES) + mac + struct.pack("!H", ETH_P_IPV6)
    return ethernet + ipv6 + icmp


def _hardware_address(sock: socket.socket, ifname: str) -> bytes:
    request = struct.pack("16s16x", ifname.encode())
    try:
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, request)
    except OSError as exc:
        raise TransportError(f"cannot read the MAC of {ifname!r}: {exc}", errno=exc.errno) from exc
    # struct ifreq: name[16], then sockaddr: family (2 bytes) and the address bytes.
    return reply[18:24]


def _open_forwarding(ifname: str) -> int:
    """A descriptor of the interface's IPv6 ``forwarding`` sysctl, or -1 (no IPv6 on it).

    Opened in the interface's namespace, the file goes on reading that namespace's value
    from any thread; it fails (ENOENT) once the interface is deleted.
    """
    try:
        return os.open(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return -1


class GarpSender(AsyncResource):
    """:class:`~vrrpkit.transports.base.Announcer` writing frames on an AF_PACKET socket.

    Frames carry :attr:`mac` (the interface's MAC, read again at each :meth:`announce`)
    unless a call passes another one, e.g. a virtual MAC.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        ifname: str,
        mac: bytes,
        netns: str | None = None,
        forwarding: int = -1,
    ) -> None:
        self._sock = sock
        self._ifname = ifname
        self._mac = mac
        self._netns = netns
        self._forwarding = forwarding
        self._closed = False

    @classmethod
    async def open(cls, ifname: str, *, netns: str | None = None) -> GarpSender:
        """Open a sender on ``ifname`` in ``netns`` (a name or path; None: the current one)."""

        def setup() -> GarpSender:
            try:
                # Protocol 0: this socket only sends, it never receives a frame.
                sock = socket.socket(
                    socket.AF_PACKET,
                    socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                    0,
                )
            except OSError as exc:
                raise TransportError(f"cannot open packet socket: {exc}", errno=exc.errno) from exc
            try:
                interface_index(sock, ifname)  # fails early if it does not exist
                mac = _hardware_address(sock, ifname)
            except BaseException:
                sock.close()
                raise
            forwarding = _open_forwarding(ifname)
            return cls(sock, ifname=ifname, mac=mac, netns=netns, forwarding=forwarding)

        return await call_in_netns(netns, setup)

    @property
    def mac(self) -> bytes:
        """The source MAC address used by default."""
        return self._mac

    @property
    def ifname(self) -> str:
        """Name of the interface frames are sent on."""
        return self._ifname

    async def announce(self, address: IPAddress) -> None:
        """Send a gratuitous ARP (IPv4) or an unsolicited NA (IPv6) for ``address``.

        From the interface's MAC as it is now (keepalived follows a changed or recreated
        interface's hardware address too); an NA has the Router flag when the interface
        forwards IPv6, as keepalived sets it: without it, hosts that route through the
        address would drop it as their router (RFC 4861 §7.2.5).
        """
        if self._closed:
            raise anyio.ClosedResourceError
        self._mac = _hardware_address(self._sock, self._ifname)
        if isinstance(address, IPv4Address):
            await self.send_gratuitous_arp(address)
        else:
            await self.send_unsolicited_na(address, router=await self._forwards_ipv6())

    async def _forwards_ipv6(self) -> bool:
        value = self._read_forwarding()
        if value is None:
            # Its interface was deleted (and maybe created again) since: open it anew. The
            # descriptor is let go before waiting: announcements run concurrently (a hub
            # shares one sender), and each must close only what it took.
            stale, self._forwarding = self._forwarding, -1
            if stale >= 0:
                os.close(stale)
            ifname = self._ifname
            fresh = await call_in_netns(self._netns, lambda: _open_forwarding(ifname))
            if self._forwarding < 0 and not self._closed:
                self._forwarding = fresh
            elif fresh >= 0:
                os.close(fresh)  # another announcement opened it meanwhile, or we closed
            value = self._read_forwarding()
        return bool(value)

    def _read_forwarding(self) -> bool | None:
        if self._forwarding < 0:
            return None
        try:
            return os.pread(self._forwarding, 8, 0).strip() not in (b"", b"0")
        except OSError:
            return None

    async def send_gratuitous_arp(self, address: IPv4Address, *, mac: bytes | None = None) -> None:
        """Send one gratuitous ARP for ``address`` from ``mac`` (default: :attr:`mac`)."""
        await self.send_frame(build_gratuitous_arp(address, mac or self._mac), ETH_P_ARP)

    async def send_unsolicited_na(
        self, address: IPv6Address, *, mac: bytes | None = None, router: bool = False
    ) -> None:
        """Send one unsolicited NA for ``address`` from ``mac`` (default: :attr:`mac`)."""
        frame = build_unsolicited_na(address, mac or self._mac, router=router)
        await self.send_frame(frame, ETH_P_IPV6)

    async def send_frame(self, frame: bytes, ethertype: int) -> None:
        """Send a complete Ethernet frame; TransportError on failure (e.g. link down)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise anyio.ClosedResourceError
        await send_nonblocking(
            self._sock,
            lambda: self._sock.sendto(frame, (self._ifname, ethertype)),
            f"{self._ifname}: cannot send frame",
        )

    async def aclose(self) -> None:
        """Close the packet socket."""
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        self._closed = True
        if self._forwarding >= 0:
            os.close(self._forwarding)
            self._forwarding = -1
        await close_socket(self._sock)
