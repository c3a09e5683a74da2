"""What each implementation puts on the wire in unicast mode, and that the other accepts it.

keepalived sends IPv6 unicast adverts with hop limit 64 (the kernel's default: it does not
set IPV6_UNICAST_HOPS), not the 255 of multicast; a receiver must not apply the TTL/hop
limit check in unicast mode, and vrrpkit does not. Both use their global source address and
the actual unicast destination in the VRRPv3 checksum's pseudo-header (keepalived would log
"Setting unicast VRRPv3 checksum to old version" for the multicast group instead).
"""

from __future__ import annotations

import select
import socket
import time
from ipaddress import IPv4Address, IPv6Address

import pytest
from interop_support import (
    HIGH,
    LOW,
    V3_UNICAST_IPV4,
    V3_UNICAST_IPV6,
    MakePair,
    Node,
    Variant,
    params,
)
from netns import open_capture

pytestmark = pytest.mark.netns

VRRP = 112


def adverts_from(sock: socket.socket, source: str, count: int, timeout: float) -> list[int]:
    """The TTLs / hop limits of the next ``count`` VRRP adverts from ``source``."""
    found: list[int] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(found)} adverts from {source} captured"
        select.select([sock], [], [], remaining)
        try:
            frame = sock.recv(65535)
        except BlockingIOError:
            continue
        ethertype = int.from_bytes(frame[12:14], "big")
        ip = frame[14:]
        if ethertype == 0x0800 and ip[9] == VRRP and str(IPv4Address(ip[12:16])) == source:
            found.append(ip[8])
        elif ethertype == 0x86DD and ip[6] == VRRP and str(IPv6Address(ip[8:24])) == source:
            found.append(ip[7])
    return found


def capture_hop_limits(receiver: Node, sender: Node, variant: Variant) -> list[int]:
    sock = open_capture(receiver.host)
    try:
        return adverts_from(sock, variant.address(sender.host), 3, variant.timeout)
    finally:
        sock.close()


@pytest.mark.parametrize("variant", params([V3_UNICAST_IPV4, V3_UNICAST_IPV6]))
def test_unicast_adverts_are_accepted_whatever_their_ttl(
    interop: MakePair, variant: Variant
) -> None:
    k, v, io = interop(variant, keepalived=(1, HIGH), vrrpkit=(2, LOW))
    io.start(master=k, backup=v)
    keepalived_ttls = capture_hop_limits(v, k, variant)
    k.stop()
    io.wait_master(v)
    vrrpkit_ttls = capture_hop_limits(k, v, variant)
    k.start()  # as BACKUP, keepalived hears vrrpkit's adverts until its down timer expires
    io.wait_master(k)
    io.assert_no_receive_errors()

    # keepalived: IPv4 unicast keeps TTL 255, IPv6 unicast goes out with hop limit 64.
    assert set(keepalived_ttls) == {255 if variant.family == 4 else 64}
    # vrrpkit sends 255 in every mode; keepalived accepts any TTL from a unicast peer.
    assert set(vrrpkit_ttls) == {255}
    assert v.counters()["ip_ttl_err"] == 0
