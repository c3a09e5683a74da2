"""Gratuitous ARP and unsolicited NA: frame layout, and frames captured on another host."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import anyio
import attrs
import pytest
from netns import Host, Lab, next_frame, open_capture
from vectors import internet_checksum

from vrrpkit.transports import GarpSender, TransportError
from vrrpkit.transports.garp import (
    ALL_NODES,
    BROADCAST_MAC,
    build_gratuitous_arp,
    build_unsolicited_na,
    format_mac,
    icmpv6_checksum,
    parse_mac,
)
from vrrpkit.transports.netns import run_in_netns

# Only a guard against a hang; no test asserts anything about timing.
GUARD = 10

MAC = bytes.fromhex("020000000199")
VIP4 = IPv4Address("192.0.2.100")
VIP6 = IPv6Address("2001:db8::100")


def parse_arp(frame: bytes) -> dict[str, object]:
    """The Ethernet and ARP fields of a frame."""
    (htype, ptype, hlen, plen, op, sha, spa, tha, tpa) = struct.unpack_from(
        "!HHBBH6s4s6s4s", frame, 14
    )
    return {
        "eth_dst": frame[0:6],
        "eth_src": frame[6:12],
        "ethertype": frame[12:14],
        "htype": htype,
        "ptype": ptype,
        "hlen": hlen,
        "plen": plen,
        "op": op,
        "sha": sha,
        "spa": IPv4Address(spa),
        "tha": tha,
        "tpa": IPv4Address(tpa),
    }


def parse_na(frame: bytes) -> dict[str, object]:
    """The Ethernet, IPv6 and ICMPv6 NA fields of a frame, and whether its checksum holds."""
    ip = frame[14:54]
    icmp = frame[54:]
    payload_len, next_header, hop_limit = struct.unpack_from("!HBB", ip, 4)
    src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(icmp), 58)
    return {
        "eth_dst": frame[0:6],
        "eth_src": frame[6:12],
        "ethertype": frame[12:14],
        "version": ip[0] >> 4,
        "payload_len": payload_len,
        "next_header": next_header,
        "hop_limit": hop_limit,
        "src": src,
        "dst": dst,
        "type": icmp[0],
        "code": icmp[1],
        "checksum_ok": internet_checksum(pseudo + icmp) == 0,
        "flags": icmp[4],
        "target": IPv6Address(icmp[8:24]),
        "option": icmp[24:],
    }


def test_gratuitous_arp_frame() -> None:
    frame = build_gratuitous_arp(VIP4, MAC)
    assert len(frame) == 42
    assert parse_arp(frame) == {
        "eth_dst": BROADCAST_MAC,
        "eth_src": MAC,
        "ethertype": b"\x08\x06",
        "htype": 1,
        "ptype": 0x0800,
        "hlen": 6,
        "plen": 4,
        "op": 1,
        "sha": MAC,
        "spa": VIP4,
        "tha": BROADCAST_MAC,
        "tpa": VIP4,
    }


@pytest.mark.parametrize("router", [False, True])
def test_unsolicited_na_frame(router: bool) -> None:
    frame = build_unsolicited_na(VIP6, MAC, router=router)
    assert len(frame) == 14 + 40 + 32
    fields = parse_na(frame)
    assert fields == {
        "eth_dst": bytes.fromhex("333300000001"),
        "eth_src": MAC,
        "ethertype": b"\x86\xdd",
        "version": 6,
        "payload_len": 32,
        "next_header": 58,
        "hop_limit": 255,
        "src": VIP6,
        "dst": ALL_NODES,
        "type": 136,
        "code": 0,
        "checksum_ok": True,
        "flags": 0xA0 if router else 0x20,
        "target": VIP6,
        "option": b"\x02\x01" + MAC,
    }


def test_checksum_matches_a_hand_computed_value() -> None:
    # Sum of the words of pseudo-header and message, folded and complemented by hand.
    message = bytes.fromhex("88000000") + bytes(4)
    src, dst = IPv6Address("fe80::1"), IPv6Address("ff02::1")
    words = 0xFE80 + 0x0001 + 0xFF02 + 0x0001 + 8 + 58 + 0x8800
    folded = (words & 0xFFFF) + (words >> 16)
    assert icmpv6_checksum(src, dst, message) == ~folded & 0xFFFF


def test_mac_helpers_and_bad_input() -> None:
    assert parse_mac("02:00:00:00:01:99") == MAC
    assert format_mac(MAC) == "02:00:00:00:01:99"
    with pytest.raises(ValueError):
        parse_mac("02:00:00:00:01")
    with pytest.raises(ValueError):
        build_gratuitous_arp(VIP4, b"\x00" * 5)
    with pytest.raises(ValueError):
        build_unsolicited_na(VIP6, b"\x00" * 7)


async def announced(
    sender: GarpSender,
    address: IPv4Address | IPv6Address,
    capture: socket.socket,
    wanted: Callable[[bytes], bool],
) -> bytes:
    """Announce ``address`` until ``capture`` sees the frame (``wanted``) and return it.

    Sent again every 0.2 s: one frame on a lab created a moment before went missing once in
    CI (an announcement is a single frame; an instance sends them in bursts).
    """
    with anyio.fail_after(GUARD):
        while True:
            await sender.announce(address)
            with anyio.move_on_after(0.2):
                return await next_frame(capture, wanted)


@pytest.mark.anyio
@pytest.mark.netns
async def test_gratuitous_arp_is_received(lab: Lab) -> None:
    h1, h2 = lab.hosts
    capture = open_capture(h2)
    try:
        async with await GarpSender.open(h1.ifname, netns=h1.netns) as sender:
            assert sender.mac == h1.mac
            frame = await announced(
                sender,
                VIP4,
                capture,
                lambda f: f[12:14] == b"\x08\x06" and f[28:32] == VIP4.packed,
            )
    finally:
        capture.close()
    fields = parse_arp(frame)
    assert (fields["eth_dst"], fields["eth_src"], fields["op"]) == (BROADCAST_MAC, h1.mac, 1)
    assert (fields["sha"], fields["spa"], fields["tpa"]) == (h1.mac, VIP4, VIP4)
    assert fields["tha"] == BROADCAST_MAC


@pytest.mark.anyio
@pytest.mark.netns
async def test_unsolicited_na_is_received(lab: Lab) -> None:
    h1, h2 = lab.hosts
    capture = open_capture(h2)
    try:
        async with await GarpSender.open(h1.ifname, netns=h1.netns) as sender:
            frame = await announced(
                sender, VIP6, capture, lambda f: f[12:14] == b"\x86\xdd" and f[14 + 40] == 136
            )
    finally:
        capture.close()
    fields = parse_na(frame)
    assert (fields["src"], fields["dst"], fields["hop_limit"]) == (VIP6, ALL_NODES, 255)
    assert (fields["eth_src"], fields["target"]) == (h1.mac, VIP6)
    assert fields["checksum_ok"] is True
    assert fields["flags"] == 0x20
    assert fields["option"] == b"\x02\x01" + h1.mac


@pytest.mark.anyio
@pytest.mark.netns
async def test_sender_errors_are_typed(lab: Lab) -> None:
    h1 = lab.hosts[0]
    with pytest.raises(TransportError):
        await GarpSender.open("nosuch0", netns=h1.netns)
    async with await GarpSender.open(h1.ifname, netns=h1.netns) as sender:
        h1.ip("link", "set", h1.ifname, "down")
        with pytest.raises(TransportError):
            await sender.announce(VIP4)


def forward_ipv6(host: Host) -> None:
    def write() -> None:
        with open(f"/proc/sys/net/ipv6/conf/{host.ifname}/forwarding", "w") as sysctl:
            sysctl.write("1")

    run_in_netns(host.netns, write)


def is_announcement_of(address: IPv4Address | IPv6Address) -> Callable[[bytes], bool]:
    """Whether a captured frame is the gratuitous ARP or the NA for ``address``."""
    if isinstance(address, IPv4Address):
        return lambda f: f[12:14] == b"\x08\x06" and f[28:32] == address.packed
    return lambda f: f[12:14] == b"\x86\xdd" and f[14 + 40] == 136


async def announcement_seen_by_h2(
    lab: Lab, address: IPv4Address | IPv6Address, prepare: Callable[[], None]
) -> tuple[GarpSender, bytes]:
    """Open a sender on h1, call ``prepare``, announce ``address`` until h2 has the frame."""
    h1, h2 = lab.hosts
    capture = open_capture(h2)
    try:
        async with await GarpSender.open(h1.ifname, netns=h1.netns) as sender:
            prepare()
            frame = await announced(sender, address, capture, is_announcement_of(address))
    finally:
        capture.close()
    return sender, frame


@pytest.mark.anyio
@pytest.mark.netns
async def test_unsolicited_na_has_the_router_flag_while_the_interface_forwards_ipv6(
    lab: Lab,
) -> None:
    # Set after opening: read at each announcement.
    _, frame = await announcement_seen_by_h2(lab, VIP6, lambda: forward_ipv6(lab.hosts[0]))
    assert parse_na(frame)["flags"] == 0x80 | 0x20  # Router and Override


@pytest.mark.anyio
@pytest.mark.netns
async def test_announcements_come_from_the_mac_the_interface_has_now(lab: Lab) -> None:
    h1 = lab.hosts[0]

    def change_mac() -> None:
        h1.ip("link", "set", h1.ifname, "address", format_mac(MAC))

    sender, frame = await announcement_seen_by_h2(lab, VIP4, change_mac)
    assert sender.mac == MAC
    fields = parse_arp(frame)
    assert fields["eth_src"] == fields["sha"] == MAC


def create_veth_pair(host: Host) -> None:
    """vka and vkb in ``host``'s namespace, up: what vka sends, vkb receives."""
    host.ip("link", "add", "vka", "type", "veth", "peer", "name", "vkb")
    for ifname in ("vka", "vkb"):
        host.ip("link", "set", ifname, "up")


@pytest.mark.anyio
@pytest.mark.netns
async def test_router_flag_is_read_from_an_interface_created_again(lab: Lab) -> None:
    h1 = lab.hosts[0]
    sending, receiving = attrs.evolve(h1, ifname="vka"), attrs.evolve(h1, ifname="vkb")

    create_veth_pair(h1)
    async with await GarpSender.open("vka", netns=h1.netns) as sender:
        h1.ip("link", "del", "vka")
        create_veth_pair(h1)
        forward_ipv6(sending)
        capture = open_capture(receiving)
        try:
            frame = await announced(sender, VIP6, capture, is_announcement_of(VIP6))
        finally:
            capture.close()
    assert parse_na(frame)["flags"] == 0x80 | 0x20


@pytest.mark.anyio
@pytest.mark.netns
async def test_concurrent_announcements_after_the_interface_came_back_both_go(lab: Lab) -> None:
    """A hub shares one sender: both reopen the forwarding setting, neither fails."""
    h1 = lab.hosts[0]

    create_veth_pair(h1)
    async with await GarpSender.open("vka", netns=h1.netns) as sender:
        h1.ip("link", "del", "vka")
        create_veth_pair(h1)
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                for address in (VIP6, VIP6 + 1, VIP6 + 2):
                    tg.start_soon(sender.announce, address)
