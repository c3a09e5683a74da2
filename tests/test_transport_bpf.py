"""The priority-0 socket filter, run by the kernel on a datagram socket pair (no root needed)."""

from __future__ import annotations

import socket
import struct

import pytest

from vrrpkit.transports.bpf import attach_filter, priority_zero_filter


def vrrp(priority: int) -> bytes:
    return struct.pack("!BBBBHH", 0x31, 51, priority, 1, 100, 0) + bytes(4)


def ipv4_header(options: bytes = b"") -> bytes:
    """An IPv4 header (fields other than the version and length are irrelevant here)."""
    ihl = 5 + len(options) // 4
    return bytes([0x40 | ihl]) + bytes(19) + options


def passed(ip_version: int, datagrams: list[bytes]) -> list[bytes]:
    """The datagrams a socket with the filter attached lets through, in order."""
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with receiver, sender:
        attach_filter(receiver, priority_zero_filter(ip_version))
        receiver.setblocking(False)
        for datagram in datagrams:
            sender.send(datagram)
        out = []
        while True:
            try:
                out.append(receiver.recv(1000))
            except BlockingIOError:
                return out


def test_ipv6_filter_reads_the_priority_at_the_start_of_the_payload() -> None:
    # An IPv6 raw socket's filter sees the VRRP header first.
    assert passed(6, [vrrp(100), vrrp(0), vrrp(255), vrrp(0)]) == [vrrp(0), vrrp(0)]


@pytest.mark.parametrize("options", [b"", b"\x94\x04\x00\x00"], ids=["plain", "router-alert"])
def test_ipv4_filter_skips_the_ip_header_whatever_its_length(options: bytes) -> None:
    header = ipv4_header(options)
    datagrams = [header + vrrp(0), header + vrrp(1), header + vrrp(200)]
    assert passed(4, datagrams) == [header + vrrp(0)]


def test_a_packet_too_short_to_have_a_priority_is_dropped() -> None:
    assert passed(6, [b"\x31\x33"]) == []
    assert passed(4, [ipv4_header() + b"\x31"]) == []
