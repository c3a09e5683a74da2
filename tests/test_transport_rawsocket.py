"""Raw protocol-112 sockets between namespaces: multicast and unicast, IPv4 and IPv6."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import anyio
import pytest
from netns import Lab, next_frame, open_capture, opened
from vectors import with_checksum

from vrrpkit.transports import (
    VRRP_GROUP_V4,
    VRRP_GROUP_V6,
    RawAdvertSocket,
    ReceivedPacket,
    TransportError,
    absorber,
    run_in_netns,
)

pytestmark = [pytest.mark.anyio, pytest.mark.netns]

# Only a guard against a hang; no test asserts anything about timing.
GUARD = 10


def advert(
    vip: IPv4Address | IPv6Address, *, priority: int = 150, checksum: int = 0, vrid: int = 51
) -> bytes:
    """A VRRPv3 advertisement (VRID 51 unless told) with one address and the given checksum
    field."""
    return struct.pack("!BBBBHH", 0x31, vrid, priority, 1, 100, checksum) + vip.packed


def group_of(ip_version: int) -> IPv4Address | IPv6Address:
    """The VRRP multicast group of the family."""
    return VRRP_GROUP_V4 if ip_version == 4 else VRRP_GROUP_V6


def vip_of(ip_version: int) -> IPv4Address | IPv6Address:
    """A documentation VIP of the family."""
    return IPv4Address("192.0.2.100") if ip_version == 4 else IPv6Address("2001:db8::100")


async def test_ipv4_multicast(lab: Lab) -> None:
    h1, h2 = lab.hosts
    data = advert(IPv4Address("192.0.2.100"))
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        assert sender.local_address == h1.ipv4
        with anyio.fail_after(GUARD):
            await sender.send(data, VRRP_GROUP_V4)
            packet = await receiver.receive()
    assert packet == ReceivedPacket(
        data=data, src=h1.ipv4, dst=VRRP_GROUP_V4, ttl=255, ifindex=h2.ifindex()
    )


async def test_ipv4_unicast_to_a_socket_without_multicast(lab: Lab) -> None:
    h1, h2 = lab.hosts
    data = advert(IPv4Address("192.0.2.100"))
    async with opened(h1, 4) as sender, opened(h2, 4, multicast=False) as receiver:
        with anyio.fail_after(GUARD):
            await sender.send(data, h2.ipv4)
            packet = await receiver.receive()
    assert (packet.data, packet.src, packet.dst, packet.ttl) == (data, h1.ipv4, h2.ipv4, 255)


async def test_ipv4_configured_source(lab: Lab) -> None:
    h1, h2 = lab.hosts
    extra = IPv4Address("198.51.100.1")
    h1.ip("addr", "add", f"{extra}/24", "dev", h1.ifname)
    async with opened(h1, 4, source=extra) as sender, opened(h2, 4) as receiver:
        with anyio.fail_after(GUARD):
            await sender.send(b"x" * 8, VRRP_GROUP_V4)
            packet = await receiver.receive()
    assert packet.src == extra


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_wire_format(lab: Lab, ip_version: int) -> None:
    """TOS/traffic class 0xc0, TTL/hop limit 255 and protocol 112 as seen on the wire."""
    h1, h2 = lab.hosts
    capture = open_capture(h2)
    data = advert(IPv4Address("192.0.2.100"))
    try:
        async with opened(h1, ip_version) as sender:
            group = group_of(ip_version)
            ethertype = b"\x08\x00" if ip_version == 4 else b"\x86\xdd"
            await sender.send(data, group)
            with anyio.fail_after(GUARD):
                frame = await next_frame(
                    capture, lambda f: f[12:14] == ethertype and _proto(f) == 112
                )
    finally:
        capture.close()
    ip_header = frame[14:]
    if ip_version == 4:
        assert ip_header[1] == 0xC0
        assert ip_header[8] == 255
        assert IPv4Address(ip_header[16:20]) == group
    else:
        first_word = struct.unpack_from("!I", ip_header)[0]
        assert (first_word >> 20) & 0xFF == 0xC0
        assert ip_header[7] == 255
        assert IPv6Address(ip_header[24:40]) == group


def _proto(frame: bytes) -> int:
    """The IP protocol / next header of an Ethernet frame carrying IPv4 or IPv6."""
    return frame[14 + 9] if frame[12:14] == b"\x08\x00" else frame[14 + 6]


@pytest.mark.parametrize("sent_checksum", [0, 0xDEAD])
async def test_ipv6_multicast_and_kernel_checksum(lab: Lab, sent_checksum: int) -> None:
    h1, h2 = lab.hosts
    data = advert(IPv6Address("2001:db8::100"), checksum=sent_checksum)
    async with opened(h1, 6) as sender, opened(h2, 6) as receiver:
        assert sender.local_address == h1.link_local
        with anyio.fail_after(GUARD):
            await sender.send(data, VRRP_GROUP_V6)
            packet = await receiver.receive()
    # The kernel (IPV6_CHECKSUM at offset 6) replaced whatever the sender put there.
    expected = with_checksum(data, h1.link_local, VRRP_GROUP_V6)
    assert packet == ReceivedPacket(
        data=expected, src=h1.link_local, dst=VRRP_GROUP_V6, ttl=255, ifindex=h2.ifindex()
    )


async def test_ipv6_unicast_global_source_and_hop_limit(lab: Lab) -> None:
    h1, h2 = lab.hosts
    data = advert(IPv6Address("2001:db8::100"))
    async with opened(h2, 6, multicast=False) as receiver:
        async with opened(h1, 6, source=h1.ipv6) as sender:
            with anyio.fail_after(GUARD):
                await sender.send(data, h2.ipv6)
                packet = await receiver.receive()
        assert (packet.src, packet.dst, packet.ttl) == (h1.ipv6, h2.ipv6, 255)
        assert packet.data == with_checksum(data, h1.ipv6, h2.ipv6)

        async with opened(h1, 6, source=h1.ipv6, unicast_ttl=64) as sender:
            with anyio.fail_after(GUARD):
                await sender.send(data, h2.ipv6)
                packet = await receiver.receive()
        assert packet.ttl == 64


async def test_ipv6_unicast_to_link_local(lab: Lab) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 6) as sender, opened(h2, 6) as receiver:
        with anyio.fail_after(GUARD):
            await sender.send(advert(IPv6Address("2001:db8::100")), h2.link_local)
            packet = await receiver.receive()
    assert (packet.src, packet.dst, packet.ttl) == (h1.link_local, h2.link_local, 255)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_own_multicast_is_not_looped_back(lab: Lab, ip_version: int) -> None:
    h1, h2 = lab.hosts
    group = group_of(ip_version)
    async with opened(h1, ip_version) as first, opened(h2, ip_version) as second:
        with anyio.fail_after(GUARD):
            await first.send(advert(IPv4Address("192.0.2.1")), group)
            await second.send(advert(IPv4Address("192.0.2.2")), group)
            packet = await first.receive()
    # Had the first packet looped back, it would have been queued before the second one.
    assert packet.src == second.local_address


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_batch_drains_every_queued_packet(lab: Lab, ip_version: int) -> None:
    h1, h2 = lab.hosts
    group = group_of(ip_version)
    sent = [advert(IPv4Address("192.0.2.100"), priority=p) for p in range(1, 21)]
    received: list[int] = []
    async with opened(h1, ip_version) as sender, opened(h2, ip_version) as receiver:
        for data in sent:
            await sender.send(data, group)
        with anyio.fail_after(GUARD):
            while len(received) < len(sent):
                batch = await receiver.receive_batch()
                assert batch
                received += [packet.data[2] for packet in batch]
    assert received == list(range(1, 21))


async def test_discarding_drops_what_was_queued_and_keeps_what_comes_after(lab: Lab) -> None:
    h1, h2 = lab.hosts
    old, new = (advert(IPv4Address("192.0.2.100"), priority=p) for p in (1, 2))
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        for _ in range(5):
            await sender.send(old, VRRP_GROUP_V4)
        await anyio.sleep(0.05)  # delivered over the veth pair by now
        receiver.discard_queued()
        await sender.send(new, VRRP_GROUP_V4)
        with anyio.fail_after(GUARD):
            batch = await receiver.receive_batch()
    assert [packet.data for packet in batch] == [new]


async def test_close_wakes_a_blocked_receiver(lab: Lab) -> None:
    (h1, _) = lab.hosts
    sock = await RawAdvertSocket.open(h1.ifname, 4, netns=h1.netns)
    outcome: list[BaseException] = []

    async def receive(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await sock.receive()
        except anyio.ClosedResourceError as exc:
            outcome.append(exc)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(receive)
            await sock.aclose()
    assert len(outcome) == 1
    with pytest.raises(anyio.ClosedResourceError):
        await sock.send(b"x" * 8, VRRP_GROUP_V4)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_icmp_errors_from_a_silent_peer_are_harmless(
    make_lab: Callable[[int], Lab], ip_version: int
) -> None:
    """A unicast peer without a VRRP socket answers with ICMP errors; they break nothing."""
    h1, h2, h3 = make_lab(3).hosts
    silent = h3.ipv4 if ip_version == 4 else h3.ipv6
    source = {"source": h1.ipv6} if ip_version == 6 else {}
    peer_source = {"source": h2.ipv6} if ip_version == 6 else {}
    async with (
        opened(h1, ip_version, **source) as sender,
        opened(h2, ip_version, **peer_source) as peer,
    ):
        for _ in range(3):
            await sender.send(b"\x31" * 8, silent)
        capture = open_capture(h1)
        try:
            await sender.send(b"\x31" * 8, silent)
            with anyio.fail_after(GUARD):
                await next_frame(capture, _is_icmp_error)
        finally:
            capture.close()
        with anyio.fail_after(GUARD):
            await sender.send(b"\x31" * 8, peer.local_address)
            assert (await peer.receive()).src == sender.local_address
            await peer.send(b"\x31" * 8, sender.local_address)
            assert (await sender.receive()).src == peer.local_address


def _is_icmp_error(frame: bytes) -> bool:
    """Whether the frame is an ICMP destination unreachable or ICMPv6 parameter problem."""
    if frame[12:14] == b"\x08\x00":
        return frame[14 + 9] == 1 and frame[14 + 20] == 3  # destination unreachable
    return frame[12:14] == b"\x86\xdd" and frame[14 + 6] == 58 and frame[14 + 40] == 4


async def test_bad_ipv6_checksum_is_dropped_by_the_kernel(lab: Lab) -> None:
    h1, h2 = lab.hosts

    def plain_socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, h1.ifindex())
        return sock

    bad = advert(IPv6Address("2001:db8::bad"), checksum=0xDEAD)
    good = advert(IPv6Address("2001:db8::600d"))
    plain = run_in_netns(h1.netns, plain_socket)
    try:
        async with opened(h1, 6) as sender, opened(h2, 6) as receiver:
            plain.sendto(bad, (str(VRRP_GROUP_V6), 0, 0, h1.ifindex()))
            await sender.send(good, VRRP_GROUP_V6)
            with anyio.fail_after(GUARD):
                packet = await receiver.receive()
    finally:
        plain.close()
    assert packet.data[8:] == good[8:]


async def test_open_errors(lab: Lab) -> None:
    (h1, _) = lab.hosts
    with pytest.raises(TransportError):
        await RawAdvertSocket.open("nosuch0", 4, netns=h1.netns)
    with pytest.raises(TransportError):
        await RawAdvertSocket.open(h1.ifname, 4, netns=f"{h1.netns}-missing")
    with pytest.raises(TransportError, match="link-local"):
        await RawAdvertSocket.open("lo", 6, netns=h1.netns)
    with pytest.raises(ValueError):
        await RawAdvertSocket.open(h1.ifname, 4, source=h1.ipv6, netns=h1.netns)


async def test_send_errors_are_typed(lab: Lab) -> None:
    (h1, _) = lab.hosts
    async with opened(h1, 4) as sock:
        with pytest.raises(TransportError):
            await sock.send(b"x" * 8, VRRP_GROUP_V6)
        h1.ip("link", "set", h1.ifname, "down")
        with pytest.raises(TransportError) as caught:
            await sock.send(b"x" * 8, VRRP_GROUP_V4)
    assert caught.value.errno is not None


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_received_packets_carry_the_kernel_arrival_time_on_the_monotonic_clock(
    lab: Lab, ip_version: int
) -> None:
    import time

    h1, h2 = lab.hosts
    vip, group = vip_of(ip_version), group_of(ip_version)
    async with opened(h1, ip_version) as sender, opened(h2, ip_version) as receiver:
        before = time.monotonic()
        with anyio.fail_after(GUARD):
            await sender.send(advert(vip), group)
            packet = await receiver.receive()
        after = time.monotonic()
    assert packet.timestamp is not None
    assert before - 0.001 <= packet.timestamp <= after + 0.001


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_packets_read_after_a_wall_clock_step_carry_no_arrival_time(
    lab: Lab, ip_version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their kernel stamps (wall clock) would move by the step: they count as read now."""
    import time

    h1, h2 = lab.hosts
    vip, group = vip_of(ip_version), group_of(ip_version)
    wall = time.time
    async with opened(h1, ip_version) as sender, opened(h2, ip_version) as receiver:
        with anyio.fail_after(GUARD):
            await sender.send(advert(vip), group)
            assert (await receiver.receive()).timestamp is not None
            monkeypatch.setattr(time, "time", lambda: wall() + 1.0)  # stepped 1 s forward
            await sender.send(advert(vip), group)
            assert (await receiver.receive()).timestamp is None
            await sender.send(advert(vip), group)
            assert (await receiver.receive()).timestamp is not None  # steady again


@pytest.fixture
def no_kernel_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a kernel without eBPF timers: the repeat filter loads without its watchdog."""
    monkeypatch.setattr(absorber, "_btf", lambda: (b"not btf", 1, 3, 7, 9))


@pytest.mark.usefixtures("no_kernel_timers")
@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_lazy_socket_wakes_only_for_priority_zero_and_keeps_the_order(
    lab: Lab, ip_version: int
) -> None:
    h1, h2 = lab.hosts
    vip, group = vip_of(ip_version), group_of(ip_version)
    batches: list[list[int]] = []

    def handler(batch: list[ReceivedPacket]) -> None:
        batches.append([packet.data[2] for packet in batch])

    async def delivered(count: int) -> None:
        with anyio.fail_after(GUARD):
            while len(batches) < count:
                await anyio.sleep(0.001)

    async with (
        opened(h1, ip_version) as sender,
        opened(h2, ip_version) as receiver,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(receiver.deliver, handler)
        assert receiver.set_lazy(True) and receiver.lazy
        for priority in (100, 101):
            await sender.send(advert(vip, priority=priority), group)
        await anyio.sleep(0.1)  # the event loop runs; the socket must not call us
        assert batches == []
        await sender.send(advert(vip, priority=0), group)
        await delivered(1)  # the resignation wakes us, after what came before it
        await sender.send(advert(vip, priority=102), group)
        await anyio.sleep(0.1)
        assert len(batches) == 1
        receiver.poll()  # a backup's timer is due: it reads what waits
        assert not receiver.set_lazy(False)
        await sender.send(advert(vip, priority=103), group)
        await delivered(3)  # eager again: woken by an ordinary advert
        tg.cancel_scope.cancel()
    assert batches == [[100, 101, 0], [102], [103]]


@asynccontextmanager
async def lazy_receiver(
    lab: Lab, ip_version: int
) -> AsyncIterator[tuple[RawAdvertSocket, RawAdvertSocket, list[list[ReceivedPacket]]]]:
    """A sender on h1 and a lazy receiver on h2 (with the repeat filter) and its batches."""
    h1, h2 = lab.hosts
    batches: list[list[ReceivedPacket]] = []
    async with (
        opened(h1, ip_version) as sender,
        opened(h2, ip_version) as receiver,
        anyio.create_task_group() as tg,
    ):
        assert receiver.absorbing  # root may load eBPF programs
        tg.start_soon(receiver.deliver, batches.append)
        assert receiver.set_lazy(True)
        yield sender, receiver, batches
        tg.cancel_scope.cancel()


async def sent_and_polled(
    sender: RawAdvertSocket, receiver: RawAdvertSocket, adverts: list[bytes]
) -> None:
    """Send ``adverts`` a millisecond apart, let them arrive, then poll the receiver."""
    group = group_of(receiver.local_address.version)
    for data in adverts:
        await sender.send(data, group)
        await anyio.sleep(0.001)
    await anyio.sleep(0.05)
    receiver.poll()


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_lazy_socket_hands_over_repeats_of_the_last_advert_with_the_last_arrival_time(
    lab: Lab, ip_version: int
) -> None:
    import time

    vip = vip_of(ip_version)
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        await sent_and_polled(sender, receiver, [advert(vip)])
        before = time.monotonic()
        await sent_and_polled(sender, receiver, [advert(vip)] * 5)
    (first,), (earliest, latest) = batches
    # Counted by the kernel, not queued: the first at its arrival time, then one packet
    # standing for the other four at the last arrival time.
    assert (earliest.repeats, latest.repeats) == (1, 4)
    for repeat in (earliest, latest):
        assert (repeat.data, repeat.src, repeat.ttl) == (first.data, first.src, 255)
    assert earliest.timestamp is not None and latest.timestamp is not None
    assert before < earliest.timestamp < latest.timestamp


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_changed_advert_comes_through_in_order_after_the_repeats(
    lab: Lab, ip_version: int
) -> None:
    vip = vip_of(ip_version)
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        await sent_and_polled(sender, receiver, [advert(vip, priority=100)])
        await sent_and_polled(sender, receiver, [advert(vip, priority=100)] * 3 + [advert(vip)])
        # Armed with the changed advert now: the old one is not a repeat any more.
        await sent_and_polled(sender, receiver, [advert(vip, priority=100)])
    assert [[(packet.data[2], packet.repeats) for packet in batch] for batch in batches] == [
        [(100, 1)],
        [(100, 1), (100, 2), (150, 1)],
        [(100, 1)],
    ]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_turning_eager_hands_over_the_absorbed_repeats_before_the_next_packet(
    lab: Lab, ip_version: int
) -> None:
    vip = vip_of(ip_version)
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        await sent_and_polled(sender, receiver, [advert(vip, priority=100)])
        await sent_and_polled(sender, receiver, [])
        for _ in range(2):
            await sender.send(advert(vip, priority=100), group_of(ip_version))
        await anyio.sleep(0.05)
        receiver.set_lazy(False)
        await sender.send(advert(vip, priority=101), group_of(ip_version))
        with anyio.fail_after(GUARD):
            while len(batches) < 2:
                await anyio.sleep(0.001)
    assert [[(packet.data[2], packet.repeats) for packet in batch] for batch in batches] == [
        [(100, 1)],
        [(100, 1), (100, 1), (101, 1)],
    ]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_resignation_is_handed_over_after_the_repeats_absorbed_before_it(
    lab: Lab, ip_version: int
) -> None:
    vip = vip_of(ip_version)
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        await sent_and_polled(sender, receiver, [advert(vip, priority=100)])
        for _ in range(3):
            await sender.send(advert(vip, priority=100), group_of(ip_version))
            await anyio.sleep(0.001)
        await sender.send(advert(vip, priority=0), group_of(ip_version))  # wakes at once
        with anyio.fail_after(GUARD):
            while len(batches) < 2:
                await anyio.sleep(0.001)
    assert [(packet.data[2], packet.repeats) for packet in batches[1]] == [
        (100, 1),
        (100, 2),
        (0, 1),
    ]


# -- the kernel timing a master's silence (eBPF timers) ---------------------------------------

SILENCE = 0.05  # the down interval the tests have the kernel time


def shape(batch: list[ReceivedPacket]) -> list[tuple[int, int, bool]]:
    """Priority, repeats and timed of each packet of a batch."""
    return [(packet.data[2], packet.repeats, packet.timed) for packet in batch]


@asynccontextmanager
async def watched_receiver(
    lab: Lab, ip_version: int
) -> AsyncIterator[tuple[RawAdvertSocket, RawAdvertSocket, list[Any]]]:
    """A lazy receiver on h2 with the kernel timing VRID 51's silence, confirmed running.

    Yields the sender on h1, the receiver, and what happened in order: each batch handed
    over, and ``"wake"`` for each silence reported. Once the test adds ``"break"``, the
    handler raises after recording each batch (a bug in it).
    """
    h1, h2 = lab.hosts
    events: list[Any] = []
    group, data = group_of(ip_version), advert(vip_of(ip_version))

    def wake() -> None:
        events.append("wake")

    def record(batch: list[ReceivedPacket]) -> None:
        events.append(batch)
        if "break" in events:
            raise RuntimeError("a bug in the handler")

    async with (
        opened(h1, ip_version) as sender,
        opened(h2, ip_version) as receiver,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(receiver.deliver, record)
        assert receiver.set_lazy(True)
        await sender.send(data, group)
        await until(lambda: len(events) == 1)  # not a repeat: handed over at once
        first = events[0][0].timestamp
        assert not receiver.watch_silence(51, first + SILENCE, SILENCE, wake)
        await repeated(sender, receiver, data, 3)
        last = events[-1][-1].timestamp
        assert receiver.watch_silence(51, last + SILENCE, SILENCE, wake)
        events.clear()
        yield sender, receiver, events
        receiver.watch_silence(51, None, None, wake)  # closing would wake us too
        tg.cancel_scope.cancel()


async def repeated(
    sender: RawAdvertSocket, receiver: RawAdvertSocket, data: bytes, count: int
) -> None:
    """Send ``count`` copies of ``data`` back to back, let them arrive (well within SILENCE),
    then poll the receiver."""
    for _ in range(count):
        await sender.send(data, group_of(receiver.local_address.version))
    await anyio.sleep(0.005)
    receiver.poll()


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(GUARD):
        while not condition():
            await anyio.sleep(0.001)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_with_kernel_timers_a_lazy_socket_hands_over_at_once_what_is_not_a_repeat(
    lab: Lab, ip_version: int
) -> None:
    vip, group = vip_of(ip_version), group_of(ip_version)
    async with lazy_receiver(lab, ip_version) as (sender, _, batches):
        await sender.send(advert(vip, priority=100), group)
        await until(lambda: len(batches) == 1)
        await sender.send(advert(vip, priority=100), group)  # a repeat: counted
        await sender.send(advert(vip, priority=101), group)  # not: read at once, after it
        await until(lambda: len(batches) == 2)
    assert [shape(batch) for batch in batches] == [
        [(100, 1, False)],
        [(100, 1, False), (101, 1, False)],
    ]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_with_kernel_timers_every_resignation_wakes_a_lazy_socket_at_once(
    lab: Lab, ip_version: int
) -> None:
    # A priority-0 advert is never armed: the one repeating it is not absorbed either.
    vip, group = vip_of(ip_version), group_of(ip_version)
    async with lazy_receiver(lab, ip_version) as (sender, _, batches):
        for count, priority in enumerate((100, 0, 0), start=1):
            await sender.send(advert(vip, priority=priority), group)
            await until(lambda: len(batches) == count)  # noqa: B023 (awaited at once)
    assert [shape(batch) for batch in batches] == [
        [(100, 1, False)],
        [(0, 1, False)],
        [(0, 1, False)],
    ]


def open_sockets() -> int:
    """How many sockets this process has open."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed
            count += os.readlink(fd).startswith("socket:")
    return count


async def test_with_kernel_timers_resignations_need_no_second_socket(lab: Lab) -> None:
    # The resignation comes through the socket itself: each advert is delivered once.
    _, h2 = lab.hosts
    before = open_sockets()
    async with opened(h2, 4) as receiver:
        assert receiver.set_lazy(True)
        assert open_sockets() - before == 1


@pytest.mark.usefixtures("no_kernel_timers")
async def test_without_kernel_timers_a_second_socket_wakes_for_resignations(lab: Lab) -> None:
    _, h2 = lab.hosts
    before = open_sockets()
    async with opened(h2, 4) as receiver:
        assert receiver.set_lazy(True)
        assert open_sockets() - before == 2


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_the_kernel_times_a_silence_only_once_two_repeats_came_after_the_watch_began(
    lab: Lab, ip_version: int
) -> None:
    group, data = group_of(ip_version), advert(vip_of(ip_version))
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        await sender.send(data, group)
        await until(lambda: len(batches) == 1)
        first = batches[0][0].timestamp
        assert first is not None
        assert not receiver.watch_silence(51, first + SILENCE, SILENCE, lambda: None)
        await repeated(sender, receiver, data, 1)
        last = batches[-1][-1].timestamp
        assert last is not None
        assert not receiver.watch_silence(51, last + SILENCE, SILENCE, lambda: None)
        await repeated(sender, receiver, data, 1)
        last = batches[-1][-1].timestamp
        assert last is not None
        assert not receiver.watch_silence(51, last + 2 * SILENCE, SILENCE, lambda: None)
        assert receiver.watch_silence(51, last + SILENCE, SILENCE, lambda: None)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_repeats_the_kernel_timed_come_as_one_timed_packet(lab: Lab, ip_version: int) -> None:
    data = advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        await repeated(sender, receiver, data, 5)
    assert [shape(batch) for batch in events] == [[(150, 5, True)]]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_repeats_coming_more_often_than_the_interval_keep_the_silence_from_being_reported(
    lab: Lab, ip_version: int
) -> None:
    group, data = group_of(ip_version), advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        for _ in range(10):
            await sender.send(data, group)
            await anyio.sleep(SILENCE / 3)
        assert "wake" not in events
        receiver.poll()
    assert [shape(batch) for batch in events] == [[(150, 10, True)]]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_silence_hands_over_what_came_before_it_then_wakes(
    lab: Lab, ip_version: int
) -> None:
    group, data = group_of(ip_version), advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, _, events):
        for _ in range(2):
            await sender.send(data, group)
        await until(lambda: "wake" in events)
        await anyio.sleep(2 * SILENCE)
    (batch, woken) = events  # woken once, and only after the silence
    assert shape(batch) == [(150, 2, True)] and woken == "wake"


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_silence_is_reported_no_sooner_than_a_millisecond_short_of_the_interval(
    lab: Lab, ip_version: int
) -> None:
    import time

    data = advert(vip_of(ip_version))
    woken_at: list[float] = []
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        await repeated(sender, receiver, data, 1)
        last = events[0][0].timestamp
        assert last is not None
        receiver.watch_silence(
            51, last + SILENCE, SILENCE, lambda: woken_at.append(time.monotonic())
        )
        await until(lambda: bool(woken_at))
    # The kernel's timer runs a margin short (its softirq may be late; the caller checks
    # its own deadline when woken).
    assert woken_at[0] >= last + SILENCE - 0.001


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_repeats_after_a_silence_are_not_timed(lab: Lab, ip_version: int) -> None:
    data = advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        await until(lambda: "wake" in events)
        await repeated(sender, receiver, data, 3)
    assert events[0] == "wake"
    assert [shape(batch) for batch in events[1:]] == [[(150, 1, False), (150, 2, False)]]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_changed_advert_ends_the_timed_stretch(lab: Lab, ip_version: int) -> None:
    vip, group = vip_of(ip_version), group_of(ip_version)
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        await sender.send(advert(vip), group)
        await sender.send(advert(vip, priority=160), group)
        await until(lambda: len(events) == 1)
        last = events[0][-1].timestamp
        assert last is not None
        # Armed with the new advert: its silence is not timed until its repeats come.
        assert not receiver.watch_silence(51, last + SILENCE, SILENCE, lambda: None)
    assert shape(events[0]) == [(150, 1, True), (160, 1, False)]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_caller_that_stops_the_watch_is_not_woken(lab: Lab, ip_version: int) -> None:
    async with watched_receiver(lab, ip_version) as (_, receiver, events):
        receiver.watch_silence(51, None, None, lambda: None)
        await anyio.sleep(3 * SILENCE)
    assert events == []


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_turning_eager_still_wakes_a_caller_that_counted_on_the_kernel(
    lab: Lab, ip_version: int
) -> None:
    # It has no alarm of its own: another instance on a shared socket turned it eager.
    async with watched_receiver(lab, ip_version) as (_, receiver, events):
        receiver.set_lazy(False)
        await until(lambda: "wake" in events)
        assert not receiver.watch_silence(51, 1.0, SILENCE, lambda: None)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_repeats_timed_before_the_socket_turned_eager_stay_timed(
    lab: Lab, ip_version: int
) -> None:
    # Another instance on a shared socket became MASTER before these were handed over:
    # they spanned more than the interval, but the kernel timed every gap.
    vip, group = vip_of(ip_version), group_of(ip_version)
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        for _ in range(5):
            await sender.send(advert(vip), group)
            await anyio.sleep(SILENCE / 3)
        receiver.set_lazy(False)
        await sender.send(advert(vip, priority=160), group)
        await until(lambda: len(events) == 1)
    assert shape(events[0]) == [(150, 5, True), (160, 1, False)]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_silence_report_the_ring_buffer_had_no_room_for_leaves_nothing_timed(
    lab: Lab, ip_version: int
) -> None:
    import time

    group, data = group_of(ip_version), advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        receiver.watch_silence(51, 0.0, 0.001, lambda: events.append("wake"))
        # The event loop stands still while the timer runs out 1500 times (the ring holds
        # 1024 reports): some are lost, so no stretch can be vouched for.
        for _ in range(1500):
            sender.send_nowait(data, group)
            time.sleep(0.0015)
        await until(lambda: "wake" in events)
        receiver.poll()
    batches = [event for event in events if event != "wake"]
    assert sum(packet.repeats for batch in batches for packet in batch) == 1500
    assert not any(packet.timed for batch in batches for packet in batch)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_silence_wakes_even_when_handling_what_came_before_it_raises(
    lab: Lab, ip_version: int
) -> None:
    group, data = group_of(ip_version), advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, _, events):
        events.append("break")
        await sender.send(data, group)
        await until(lambda: "wake" in events)
    assert shape(events[1]) == [(150, 1, True)] and events[2] == "wake"


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_repeats_after_the_caller_stopped_the_watch_are_not_timed(
    lab: Lab, ip_version: int
) -> None:
    # Its down timer changed (a preemption to come, say): the kernel's interval is not its own.
    data = advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        receiver.watch_silence(51, None, None, lambda: None)
        await repeated(sender, receiver, data, 2)
    assert [shape(batch) for batch in events] == [[(150, 1, False), (150, 1, False)]]


async def watched_vrids(
    sender: RawAdvertSocket,
    receiver: RawAdvertSocket,
    batches: list[list[ReceivedPacket]],
    silences: dict[int, float],
    woken: list[tuple[int, float]],
) -> tuple[dict[int, bool], dict[int, float]]:
    """Have the kernel time the silence of each VRID of ``silences``: an advert of each, the
    watch, then two repeats of each, all back to back. Each wake-up appends the VRID and
    when. Returns whether the socket vouches for each VRID's timing, and its last repeat's
    receive time."""
    import time

    group, vip = group_of(receiver.local_address.version), vip_of(receiver.local_address.version)
    data = {vrid: advert(vip, vrid=vrid) for vrid in silences}
    for message in data.values():
        await sender.send(message, group)
    await until(lambda: sum(len(batch) for batch in batches) == len(data))
    last: dict[int, float] = {}

    def watch(vrid: int) -> bool:
        for batch in batches:
            for packet in batch:
                if packet.timestamp is not None:
                    last[packet.data[1]] = packet.timestamp
        silence = silences[vrid]
        return receiver.watch_silence(
            vrid, last[vrid] + silence, silence, lambda: woken.append((vrid, time.monotonic()))
        )

    def counted() -> int:
        receiver.poll()
        return sum(packet.repeats for batch in batches for packet in batch)

    for vrid in silences:
        watch(vrid)
    for _ in range(2):
        for message in data.values():
            await sender.send(message, group)
    await until(lambda: counted() == 3 * len(data))
    return {vrid: watch(vrid) for vrid in silences}, last


def reported_in_time(
    woken: list[tuple[int, float]], silences: dict[int, float], last: dict[int, float]
) -> bool:
    """Whether each wake-up came after its VRID's silence, less the margin the kernel times
    short of it (1 ms, or 1 %), and well before the next VRID's (0.1 s later or more)."""
    return all(
        -max(0.001, silences[vrid] / 100) <= at - last[vrid] - silences[vrid] < 0.09
        for vrid, at in woken
    )


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_each_vrid_is_reported_after_its_own_silence_the_earliest_first(
    lab: Lab, ip_version: int
) -> None:
    silences = {51: 0.3, 52: 0.1, 53: 0.2}
    woken: list[tuple[int, float]] = []
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        timed, last = await watched_vrids(sender, receiver, batches, silences, woken)
        await until(lambda: len(woken) == 3)
        reported = list(woken)  # closing the socket wakes every watcher again
    assert timed == {51: True, 52: True, 53: True}
    assert [vrid for vrid, _ in reported] == [52, 53, 51]
    assert reported_in_time(reported, silences, last)


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_the_kernel_times_the_silence_of_every_vrid_of_a_burst_of_255(
    lab: Lab, ip_version: int
) -> None:
    # One timer per socket: a timer per VRID had to be allocated in the softirq of the
    # packet, and the kernel refused that to the last VRIDs of a burst. Each VRID's silence
    # a millisecond longer than the one before: the timer is set 255 times in a row.
    silences = {vrid: 0.2 + vrid / 1000 for vrid in range(1, 256)}
    woken: list[tuple[int, float]] = []
    async with lazy_receiver(lab, ip_version) as (sender, receiver, batches):
        timed, last = await watched_vrids(sender, receiver, batches, silences, woken)
        await until(lambda: len(woken) == 255)
        reported = list(woken)
    assert [vrid for vrid, vouched in timed.items() if not vouched] == []
    assert sorted(vrid for vrid, _ in reported) == list(range(1, 256))
    assert all(
        at - last[vrid] >= silences[vrid] - max(0.001, silences[vrid] / 100)
        for vrid, at in reported
    )


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_closing_hands_over_what_the_kernel_counted_and_wakes_the_watchers(
    lab: Lab, ip_version: int
) -> None:
    group, data = group_of(ip_version), advert(vip_of(ip_version))
    async with watched_receiver(lab, ip_version) as (sender, receiver, events):
        for _ in range(3):
            await sender.send(data, group)
        await anyio.sleep(0.005)
        await receiver.aclose()  # an interface that came back under a new index, say
        assert [shape(event) if event != "wake" else event for event in events] == [
            [(150, 3, True)],
            "wake",
        ]


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_a_batch_that_turns_the_socket_eager_leaves_the_next_rounds_unarmed(
    lab: Lab, ip_version: int
) -> None:
    # The first batch makes an instance MASTER; an advert of another VRID read in the next
    # round must not be armed: the socket, eager now, would never hand its repeats over.
    vip, group = vip_of(ip_version), group_of(ip_version)
    other = struct.pack("!BBBBHH", 0x31, 52, 150, 1, 100, 0) + vip.packed
    h1, h2 = lab.hosts
    batches: list[list[ReceivedPacket]] = []
    async with (
        opened(h1, ip_version) as sender,
        opened(h2, ip_version) as receiver,
        anyio.create_task_group() as tg,
    ):

        def handler(batch: list[ReceivedPacket]) -> None:
            batches.append(batch)
            if len(batches) == 1:
                receiver.set_lazy(False)
                sender.send_nowait(other, group)  # there for the next round

        tg.start_soon(receiver.deliver, handler)
        assert receiver.set_lazy(True)
        await sender.send(advert(vip), group)
        await until(lambda: len(batches) == 2)
        for _ in range(2):
            await sender.send(other, group)
        await until(lambda: sum(map(len, batches)) == 4)
        tg.cancel_scope.cancel()
    assert [packet.data[1] for batch in batches for packet in batch] == [51, 52, 52, 52]


async def test_a_closed_socket_watches_nothing_and_does_not_raise(lab: Lab) -> None:
    async with opened(lab.hosts[1], 4) as sock:
        pass
    assert not sock.watch_silence(51, 1.0, SILENCE, lambda: None)
    assert not sock.watch_silence(51, None, None, lambda: None)


async def test_no_kernel_filter_with_vrrpkit_no_ebpf(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRRPKIT_NO_EBPF", "1")
    async with opened(lab.hosts[0], 4) as sock:
        assert not sock.absorbing
