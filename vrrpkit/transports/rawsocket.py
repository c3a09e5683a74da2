"""Raw IP protocol 112 sockets (IPv4 and IPv6, multicast and unicast) on anyio.

One :class:`RawAdvertSocket` serves one interface and one address family:

- it is bound to the device (``SO_BINDTODEVICE``), joins the VRRP group on that interface
  only (``IP_MULTICAST_ALL=0``), does not loop its own multicast back, and sends with
  TTL/hop limit 255 and TOS/traffic class 0xc0;
- it is *not* bound to an address, because a raw socket bound to an address only receives
  packets addressed to it, which would drop the group's traffic. The source address is set
  per packet through ``IP_PKTINFO``/``IPV6_PKTINFO`` instead, so it is always
  :attr:`RawAdvertSocket.local_address`;
- IPv6 sockets set ``IPV6_CHECKSUM`` at offset 6: the kernel fills in the VRRPv3 checksum
  (pseudo-header included) of every packet sent, whatever the caller put in those two
  bytes, and silently drops received packets whose checksum is wrong. IPv4 has no such
  option: the caller computes the checksum.

Received IPv4 packets arrive with their IP header, which supplies TTL, source and
destination and is then stripped. For IPv6 they come from ``IPV6_HOPLIMIT`` and
``IPV6_PKTINFO`` ancillary data.

Lazy reading (:meth:`RawAdvertSocket.set_lazy`): a second socket on the same interface with
a kernel filter accepting priority-0 adverts only wakes the process for those; the others
wait in a large receive buffer until :meth:`RawAdvertSocket.poll`. Each packet carries its
kernel receive time, so handling it late changes no timer. Where the process may load eBPF
programs, a lazy socket's master adverts that repeat the last one read do not even wait
there: the kernel counts them (:mod:`vrrpkit.transports.absorber`) and :meth:`poll` hands
them over rebuilt. Where it also has eBPF timers, the kernel can time a master's silence
(:meth:`RawAdvertSocket.watch_silence`): the backup then needs no alarm of its own, and no
second socket either (what is not a repeat, a resignation included, is read as it comes).
"""

from __future__ import annotations

import builtins
import collections
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import AsyncResource

from vrrpkit.transports.absorber import RepeatAbsorber
from vrrpkit.transports.base import IPAddress, PacketHandler, ReceivedPacket, TransportError
from vrrpkit.transports.bpf import attach_filter, priority_zero_filter
from vrrpkit.transports.netlink import interface_addresses_blocking
from vrrpkit.transports.netns import call_in_netns, run_in_netns
from vrrpkit.transports.readiness import ReadableWatch
from vrrpkit.transports.sockio import close_socket, interface_index, send_nonblocking
from vrrpkit.transports.uring import Series, TimedMessage, TimedSends

__all__ = [
    "VRRP_GROUP_V4",
    "VRRP_GROUP_V6",
    "VRRP_PROTOCOL",
    "RawAdvertSocket",
    "interface_index",
]

logger = logging.getLogger(__name__)

VRRP_PROTOCOL = 112
VRRP_GROUP_V4 = IPv4Address("224.0.0.18")
VRRP_GROUP_V6 = IPv6Address("ff02::12")

# Linux values that Python's socket module does not export on every supported version.
_IP_PKTINFO = 8
_IP_MULTICAST_ALL = 49
_WATCH_MARGIN = 0.001  # seconds the kernel's timer runs short of a watched interval, at least
_IPV6_MULTICAST_ALL = 29
_SIOCGIFINDEX = 0x8933
_TOS = 0xC0
_MULTICAST_TTL = 255
# version and header length, TOS, total length, identification, flags and fragment offset,
# TTL, protocol, checksum, source, destination
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_DONT_FRAGMENT = 0x4000  # as the kernel sets it on the main socket's (path MTU discovery)
_MAX_PACKET = 65535
_MAX_BATCH = 256
_IPV6_CHECKSUM_OFFSET = 6
_SO_RCVBUFFORCE = 33
# A lazily read socket holds up to a Master_Down_Interval of adverts of up to 255 VRIDs
# (about 1000 packets of 1-2 KiB kernel memory each).
_LAZY_RCVBUF = 4 << 20
# Kernel receive timestamps (struct timespec on CLOCK_REALTIME): timers then start from when
# the advert arrived, not from when Python got round to it.
_SO_TIMESTAMPNS = 35
_ANC_TIME = socket.CMSG_SPACE(16)
# How far the wall clock may move against CLOCK_MONOTONIC between two batches before their
# receive times are no longer trusted (a step; NTP slews 0.5 ms a second at the most).
_CLOCK_STEP = 0.01
_SOL_SOCKET = int(socket.SOL_SOCKET)
_IPPROTO_IPV6 = int(socket.IPPROTO_IPV6)
_IPV6_HOPLIMIT = int(socket.IPV6_HOPLIMIT)
_IPV6_PKTINFO = int(socket.IPV6_PKTINFO)
_unpack_pktinfo6 = struct.Struct("@16sI").unpack_from
_MSG_TRUNC = int(socket.MSG_TRUNC)
_unpack_timespec = struct.Struct("@qq").unpack_from
_unpack_int = struct.Struct("@i").unpack_from
# IPv4 needs only the receive time: the IP header has the addresses and TTL, and the socket
# is bound to its interface (so no IP_PKTINFO on receive; sends still pass it per packet).
_ANC_V4 = _ANC_TIME
_ANC_V6 = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4) + _ANC_TIME


def _primary_address(ifindex: int, ip_version: int) -> IPAddress:
    """Return the primary IPv4 address or the IPv6 link-local of the interface.

    Addresses still under duplicate address detection come last: the kernel refuses to send
    from them.
    """
    candidates = [
        record
        for record in interface_addresses_blocking(ifindex)
        if record.primary
        and record.interface.version == ip_version
        and (ip_version == 4 or record.interface.ip.is_link_local)
    ]
    if not candidates:
        kind = "IPv4 address" if ip_version == 4 else "IPv6 link-local address"
        raise TransportError(f"interface {ifindex} has no {kind}", errno=errno.EADDRNOTAVAIL)
    candidates.sort(key=lambda record: not record.usable)
    return candidates[0].interface.ip


_new = object.__new__
(
    _set_data,
    _set_src,
    _set_dst,
    _set_ttl,
    _set_ifindex,
    _set_timestamp,
    _set_repeats,
    _set_timed,
) = (
    ReceivedPacket.__dict__[name].__set__
    for name in ("data", "src", "dst", "ttl", "ifindex", "timestamp", "repeats", "timed")
)


def _received(
    data: bytes,
    src: IPAddress,
    dst: IPAddress,
    ttl: int,
    ifindex: int,
    stamp: float | None,
    repeats: int = 1,
    timed: bool = False,
) -> ReceivedPacket:
    """ReceivedPacket(...) from values already checked, at half the cost of its __init__.

    Every received advert makes one; the slots are set directly (the class is frozen, so
    its __init__ goes through object.__setattr__ for each field).
    """
    packet: ReceivedPacket = _new(ReceivedPacket)
    _set_data(packet, data)
    _set_src(packet, src)
    _set_dst(packet, dst)
    _set_ttl(packet, ttl)
    _set_ifindex(packet, ifindex)
    _set_timestamp(packet, stamp)
    _set_repeats(packet, repeats)
    _set_timed(packet, timed)
    return packet


def _strip_scope(text: str) -> str:
    return text.partition("%")[0]


class RawAdvertSocket(AsyncResource):
    """:class:`~vrrpkit.transports.base.AdvertSocket` on a raw IP protocol 112 socket.

    Create it with :meth:`open`. Malformed or truncated packets are dropped with a debug log;
    they never raise.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        ifname: str,
        ifindex: int,
        local_address: IPAddress,
        urgent: socket.socket | None = None,
        absorber: RepeatAbsorber | None = None,
        netns: str | None = None,
        unicast_ttl: int = 255,
    ) -> None:
        self._sock = sock
        self._netns = netns
        self._unicast_ttl = unicast_ttl
        # IPv4: the send-only socket of the adverts the kernel sends (see _header_socket).
        self._headed: socket.socket | None = None
        self._headed_tried = not isinstance(local_address, IPv4Address)
        self._urgent = urgent
        self._absorber = absorber
        # Per VRID, the packet the absorber is armed with: its repeats are rebuilt from it.
        self._templates: dict[int, ReceivedPacket] = {}
        self._leftovers = False
        # Per VRID: when its armed advert last came (read or absorbed), and whom to wake
        # when the kernel reports its silence (watch_silence).
        self._last_arrival: dict[int, float] = {}
        self._last_offset: float | None = None  # see _stamp_offset
        self._wakes: dict[int, Callable[[], None]] = {}
        self._expiry_watch: ReadableWatch | None = None
        self._lazy = False
        self._handler: PacketHandler | None = None
        self._polling = False
        self._urgent_watch: ReadableWatch | None = None
        self._ifname = ifname
        self._ifindex = ifindex
        self._local = local_address
        self._ipv6 = isinstance(local_address, IPv6Address)
        self._queued: collections.deque[ReceivedPacket] = collections.deque()
        self._closed = False
        self._watch: ReadableWatch | None = None
        self._known: dict[bytes, IPAddress] = {}
        self._pairs: dict[bytes, tuple[IPAddress, IPAddress]] = {}
        self._sources: dict[str, IPv6Address] = {}
        # Per destination: sendmsg's address and control message, built once.
        self._targets: dict[IPAddress, tuple[object, builtins.list[tuple[int, int, bytes]]]] = {}
        # Adverts the kernel sends on its own timers (send_repeatedly), set up at first use.
        self._timed: TimedSends | None = None
        self._timed_tried = False

    @classmethod
    async def open(
        cls,
        ifname: str,
        ip_version: Literal[4, 6],
        *,
        source: IPAddress | None = None,
        group: IPAddress | None = None,
        multicast: bool = True,
        unicast_ttl: int = 255,
        netns: str | None = None,
    ) -> RawAdvertSocket:
        """Open a socket on ``ifname``.

        ``source`` defaults to the interface's primary IPv4 address or first IPv6 link-local
        address (TransportError if it has none). ``group`` defaults to 224.0.0.18/ff02::12
        and is joined unless ``multicast`` is False. ``unicast_ttl`` is the TTL/hop limit of
        unicast sends (multicast always uses 255). ``netns`` names the network namespace
        the interface lives in (None: the current one).
        """
        if ip_version not in (4, 6):
            raise ValueError(f"ip_version must be 4 or 6, not {ip_version!r}")
        if group is None:
            group = VRRP_GROUP_V4 if ip_version == 4 else VRRP_GROUP_V6
        for value in (source, group):
            if value is not None and value.version != ip_version:
                raise ValueError(f"{value} is not an IPv{ip_version} address")
        if not group.is_multicast:
            raise ValueError(f"{group} is not a multicast group")
        if not 1 <= unicast_ttl <= 255:
            raise ValueError(f"unicast_ttl must be within 1..255, not {unicast_ttl}")

        def setup() -> RawAdvertSocket:
            family = socket.AF_INET if ip_version == 4 else socket.AF_INET6
            try:
                sock = socket.socket(
                    family,
                    socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                    VRRP_PROTOCOL,
                )
            except OSError as exc:
                raise TransportError(f"cannot open raw socket: {exc}", errno=exc.errno) from exc
            try:
                ifindex = interface_index(sock, ifname)
                local = source if source is not None else _primary_address(ifindex, ip_version)
                _configure(sock, ifname, ifindex, ip_version, group if multicast else None)
                if ip_version == 4:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, unicast_ttl)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, unicast_ttl)
                _discard_queued(sock)
            except OSError as exc:
                sock.close()
                raise TransportError(
                    f"cannot set up raw socket on {ifname!r}: {exc}", errno=exc.errno
                ) from exc
            except BaseException:
                sock.close()
                raise
            absorber = _absorber_for(sock, ip_version)
            urgent = None
            if absorber is None or not absorber.watches:
                # With the kernel's watchdog a lazy socket is still read as packets come (only
                # repeats wait), and a resignation is never a repeat (see _arm): a second
                # socket would only cost each advert a second delivery.
                group_joined = group if multicast else None
                urgent = _open_urgent(family, ifname, ifindex, ip_version, group_joined)
            return cls(
                sock,
                ifname=ifname,
                ifindex=ifindex,
                local_address=local,
                urgent=urgent,
                absorber=absorber,
                netns=netns,
                unicast_ttl=unicast_ttl,
            )

        return await call_in_netns(netns, setup)

    @property
    def local_address(self) -> IPAddress:
        """The source address of every packet this socket sends."""
        return self._local

    @property
    def ifindex(self) -> int:
        """Index of the interface the socket is bound to."""
        return self._ifindex

    @property
    def ifname(self) -> str:
        """Name of the interface the socket is bound to."""
        return self._ifname

    async def receive(self) -> ReceivedPacket:
        """Wait for and return the next packet."""
        if not self._queued:
            self._queued.extend(await self.receive_batch())
        else:
            await anyio.lowlevel.checkpoint()
        return self._queued.popleft()

    async def receive_batch(self) -> builtins.list[ReceivedPacket]:
        """Wait until readable, then return every queued packet (at least one)."""
        if self._queued:
            await anyio.lowlevel.checkpoint()
            batch = list(self._queued)
            self._queued.clear()
            return batch
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            await anyio.wait_readable(self._sock)
            batch = self._drain()
            if batch:
                return batch

    def discard_queued(self) -> None:
        """Drop every packet received and not read yet (an instance run again on this
        socket hears adverts from its start on, not those queued while nothing ran)."""
        self._queued.clear()
        errors = 0
        while not self._closed and errors < _MAX_BATCH:
            try:
                self._sock.recv(1, socket.MSG_TRUNC)
            except BlockingIOError:
                return
            except OSError:
                errors += 1  # as in the receive loop, one bad read stops nothing

    def _datagrams(
        self, ancsize: int
    ) -> Iterator[tuple[bytes, builtins.list[tuple[int, int, bytes]], Any]]:
        """The queued datagrams, up to a batch (truncated ones dropped with a debug log)."""
        recvmsg = self._sock.recvmsg
        for _ in range(_MAX_BATCH):
            if self._closed:
                return
            try:
                data, ancdata, flags, address = recvmsg(_MAX_PACKET, ancsize)
            except BlockingIOError:
                return
            except OSError as exc:
                # Not expected (no IP_RECVERR, so ICMP errors are not queued), but one bad
                # read must not stop the receive loop.
                logger.debug("%s: receive error ignored: %s", self._ifname, exc)
                continue
            if flags & _MSG_TRUNC:
                logger.debug("%s: dropped a truncated packet", self._ifname)
                continue
            yield data, ancdata, address

    def _drain(self) -> builtins.list[ReceivedPacket]:
        # CLOCK_REALTIME (the receive times) to CLOCK_MONOTONIC, read once per batch.
        offset = self._stamp_offset()
        batch: builtins.list[ReceivedPacket] = []
        if self._ipv6:
            for data, ancdata, address in self._datagrams(_ANC_V6):
                parsed = self._parse_v6(data, ancdata, address, offset)
                if parsed is not None:
                    batch.append(parsed)
            return batch
        # IPv4, the common case, parsed inline: a lazy backup reads a few hundred adverts per
        # wake-up and this loop is most of what it does for each.
        append = batch.append
        pairs = self._pairs
        ifindex = self._ifindex
        for data, ancdata, _address in self._datagrams(_ANC_V4):
            size = len(data)
            if size < 20:
                logger.debug("%s: dropped a packet shorter than an IPv4 header", self._ifname)
                continue
            first = data[0]
            header_len = 20 if first == 0x45 else (first & 0x0F) * 4
            total_len = (data[2] << 8) | data[3]
            if first >> 4 != 4 or header_len < 20 or not header_len <= total_len <= size:
                logger.debug("%s: dropped a packet with a bad IPv4 header", self._ifname)
                continue
            stamp = None
            for level, kind, value in ancdata:
                if (
                    offset is not None
                    and level == _SOL_SOCKET
                    and kind == _SO_TIMESTAMPNS
                    and len(value) >= 16
                ):
                    seconds, nanoseconds = _unpack_timespec(value)
                    stamp = seconds + nanoseconds * 1e-9 + offset
            # Source and destination side by side in the header: one lookup for both.
            raw_pair = data[12:20]
            pair = pairs.get(raw_pair) or self._address_pair(raw_pair)
            append(_received(data[header_len:total_len], *pair, data[8], ifindex, stamp))
        return batch

    def _stamp_offset(self) -> float | None:
        """What turns this batch's receive times into ``time.monotonic()`` ones (None: drop
        them, the packets then count as read now).

        The wall clock may have been stepped since the packets came (a lazy reader's come
        up to a Master_Down_Interval before they are read): their stamps would then move
        by the step, and a backup could take over from a master it hears. A step shows as
        the offset moving since the last batch; NTP's slewing moves it by well under the
        threshold between two batches.
        """
        offset = time.monotonic() - time.time()
        last, self._last_offset = self._last_offset, offset
        if last is not None and abs(offset - last) > _CLOCK_STEP:
            logger.info("%s: the wall clock moved; these packets count as read now", self._ifname)
            return None
        return offset

    def _address_pair(self, raw: bytes) -> tuple[IPAddress, IPAddress]:
        found = self._pairs.get(raw)
        if found is None:
            if len(self._pairs) >= 4096:
                self._pairs.clear()
            found = self._pairs[raw] = (self._address(raw[:4]), self._address(raw[4:]))
        return found

    def _address(self, raw: bytes) -> IPAddress:
        # Adverts come from a handful of peers: one address object each, not two per packet.
        found = self._known.get(raw)
        if found is None:
            if len(self._known) >= 4096:
                self._known.clear()
            found = self._known[raw] = IPv4Address(raw) if len(raw) == 4 else IPv6Address(raw)
        return found

    async def deliver(self, handler: PacketHandler) -> None:
        """Call ``handler(batch)`` for each batch received, until cancelled or closed.

        The event loop calls the reading code directly when the socket is readable (see
        :class:`~vrrpkit.transports.readiness.ReadableWatch`): no task wakes per packet.
        """
        if self._queued:
            batch = list(self._queued)
            self._queued.clear()
            handler(batch)
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        if self._watch is not None:
            raise anyio.BusyResourceError("receiving from")
        self._handler = handler
        self._watch = ReadableWatch(self._sock.fileno(), self._readable, name=self._ifname)
        if self._lazy and not self._watchdog:
            self._watch.pause()
        if self._urgent is not None:
            self._urgent_watch = ReadableWatch(
                self._urgent.fileno(), self._urgent_readable, name=f"{self._ifname} urgent"
            )
        expiries = None if self._absorber is None else self._absorber.expiry_fd
        if expiries is not None:
            self._expiry_watch = ReadableWatch(
                expiries, self._silence_reported, name=f"{self._ifname} silence"
            )
        others = [watch for watch in (self._urgent_watch, self._expiry_watch) if watch is not None]
        try:
            if not others:
                await self._watch.run()
            else:
                async with anyio.create_task_group() as tg:
                    for watch in others:
                        tg.start_soon(watch.run)
                    await self._watch.run()
                    for watch in others:
                        watch.stop()
        finally:
            self._watch = self._urgent_watch = self._expiry_watch = None
            self._handler = None

    def _readable(self, rounds: int = 4, *, at_once: bool = False) -> None:
        handler = self._handler
        if handler is None or self._polling:
            return
        self._polling = True
        silent: builtins.list[int] = []
        try:
            # Adverts of many instances arrive in bursts: read again after handling a batch
            # (what came meanwhile) before going back to the event loop, a few times at most
            # so that timers and other sockets get their turn. ``at_once``: hand over all the
            # rounds read in one call instead.
            gathered: builtins.list[ReceivedPacket] = []
            absorbing = self._lazy and self._absorber is not None
            # The kernel's count comes first in every reading, the priority-0 wake-up's too:
            # a resignation handled before the repeats that preceded it would be undone by
            # them (each pushes the down timer a Master_Down_Interval later).
            repeats, silent = self._repeats() if absorbing or self._leftovers else ([], [])
            for _ in range(rounds):
                batch = self._drain()
                if not batch:
                    break
                if absorbing and self._lazy:
                    # (Handling the batch before may have turned the socket eager.)
                    self._arm(batch)
                if repeats:
                    # The rebuilt repeats carry the receive times the kernel kept: in order
                    # with the packets read, they are handed over at those times.
                    batch += repeats
                    batch.sort(key=_receive_time)
                    repeats = []
                if at_once:
                    gathered += batch
                else:
                    handler(batch)
            gathered += repeats
            if gathered:
                handler(gathered)
        finally:
            self._polling = False
            if silent:
                # Even if handling raised: an instance told of its master's silence has no
                # alarm of its own.
                self._wake(silent)

    def _repeats(self) -> tuple[builtins.list[ReceivedPacket], builtins.list[int]]:
        """The adverts the kernel absorbed since last time, rebuilt (see absorber.py), and
        the VRIDs whose silence the kernel reported since."""
        self._leftovers = False
        assert self._absorber is not None
        found: builtins.list[ReceivedPacket] = []
        templates, arrivals = self._templates, self._last_arrival
        stretches, silent = self._absorber.collect()
        for vrid, count, first_ns, last_ns, timed in stretches:
            template = templates.get(vrid)
            if template is None:
                continue
            data, src, dst, ttl, ifindex = (
                template.data,
                template.src,
                template.dst,
                template.ttl,
                template.ifindex,
            )
            last = arrivals[vrid] = last_ns / 1e9
            # Untimed, the first and the last at their receive times, the last standing for
            # all but the first: however long since the last reading, and whether or not an
            # instance reads this VRID, that is two objects. (The first starts a preemption
            # delay.) Timed by the kernel, they go up as one: no silence ran out among them.
            if not timed and count > 1 and 0 < first_ns < last_ns:
                found.append(_received(data, src, dst, ttl, ifindex, first_ns / 1e9))
                count -= 1
            found.append(_received(data, src, dst, ttl, ifindex, last, count, timed))
        return found, silent

    def _arm(self, packets: builtins.list[ReceivedPacket]) -> None:
        """Let the kernel absorb the repeats of the last advert read of each VRID."""
        assert self._absorber is not None
        # Never with a resignation (priority 0): each is read as it comes, which is what wakes
        # a lazy socket with the kernel's watchdog (it has no second socket).
        latest = {
            packet.data[1]: packet
            for packet in packets
            if len(packet.data) >= 8 and packet.data[2] != 0
        }
        arm, templates = self._absorber.arm, self._templates
        arrivals = self._last_arrival
        for vrid, packet in latest.items():
            data = packet.data
            if packet.timestamp is not None:
                arrivals[vrid] = packet.timestamp
            length = len(data) + (20 if packet.src.version == 4 else 0)
            # An IPv4 header with options would be longer: such packets are passed, never armed.
            if arm(
                vrid,
                length=length.to_bytes(2, "big"),
                ttl=packet.ttl,
                src=packet.src.packed,
                dst=packet.dst.packed,
                payload=data,
            ):
                templates[vrid] = packet

    @property
    def _watchdog(self) -> bool:
        return self._absorber is not None and self._absorber.watches

    def watch_silence(
        self,
        vrid: int,
        deadline: float | None,
        interval: float | None,
        wake: Callable[[], None],
    ) -> bool:
        """Let the kernel time ``vrid``'s silence for a lazy backup; True if the caller may
        drop its own alarm for ``deadline``.

        ``interval``: how far each repeat of the advert this socket last read for ``vrid``
        pushes the caller's down timer (due at ``deadline``); None stops the watch. Each repeat
        the kernel absorbs moves the VRID's deadline there and, when a deadline passes with no
        repeat, the socket hands over what came and then calls ``wake()``. False: no watchdog
        here, not lazy, the deadline does not follow that advert's last arrival, or the kernel
        has not been seen keeping it yet (the caller keeps its alarm and asks again after it
        rings).
        """
        absorber = self._absorber
        if absorber is None or not absorber.watches:
            return False
        if interval is None or deadline is None or not self._lazy:
            absorber.watch(vrid, 0)
            self._wakes.pop(vrid, None)
            return False
        self._wakes[vrid] = wake
        # A margin short of the interval: the kernel's timer softirq may run late, and a
        # repeat that came meanwhile would move the passed deadline unseen. Running out
        # early only costs a wake-up (the caller checks its own deadline) and the alarm
        # until two repeats.
        margin = max(_WATCH_MARGIN, interval / 100)
        absorber.watch(vrid, max(1, round((interval - margin) * 1e9)))
        last = self._last_arrival.get(vrid)
        return (
            last is not None and abs(last + interval - deadline) <= 1e-6 and absorber.watching(vrid)
        )

    def _silence_reported(self) -> None:
        # The ring buffer is read with the repeats, in a reading like poll()'s (which wakes
        # the silent VRIDs' instances after handing over what came before the silence).
        self._leftovers = True
        self._readable(rounds=16, at_once=True)

    def _wake(self, vrids: builtins.list[int]) -> None:
        for vrid in vrids:
            wake = self._wakes.get(vrid)
            if wake is not None:
                try:
                    wake()
                except Exception:
                    logger.exception("%s: VRID %d: handling silence failed", self._ifname, vrid)

    def _urgent_readable(self) -> None:
        # Only a wake-up call: the packet itself is read, in order, from the main socket.
        assert self._urgent is not None
        _discard_queued(self._urgent)
        self._readable()

    @property
    def absorbing(self) -> bool:
        """Whether the kernel counts a lazy socket's repeated adverts instead of queueing them."""
        return self._absorber is not None

    @property
    def lazy(self) -> bool:
        """Whether the socket is read lazily now (see :meth:`set_lazy`)."""
        return self._lazy

    def set_lazy(self, lazy: bool) -> bool:
        """Wake the handler only for priority-0 adverts (``True``) or for every packet.

        While lazy, the other packets wait in the kernel until :meth:`poll` is called (a
        backup polls when its timer is due: every packet has its receive time), except with
        the kernel's watchdog (see :meth:`watch_silence`): then only repeats wait, counted,
        and any other packet is handed over as it comes. Returns whether the socket is now
        lazy: False if it cannot filter (no second socket and no kernel watchdog).
        """
        lazy = lazy and (self._urgent is not None or self._watchdog)
        if lazy != self._lazy:
            self._lazy = lazy
            if not lazy and self._absorber is not None:
                # Read eagerly, every packet must come through the socket at once. What was
                # absorbed until now comes first, with the next packets read.
                self._absorber.disarm()
                # Deadlines already set still report their silence, and their instances
                # are woken then: one that counted on the kernel has no alarm of its own.
                self._leftovers = True
            watch = self._watch
            # With the kernel timing silences, a lazy socket is still read as packets come:
            # only repeats are absorbed, and what differs must not wait for a timer.
            if watch is not None and not self._watchdog:
                if lazy:
                    watch.pause()
                else:
                    watch.resume()
        return lazy

    def poll(self) -> None:
        """Hand what has been received so far to the :meth:`deliver` handler, now.

        Does nothing outside :meth:`deliver`, or when called from the handler itself.
        """
        if not self._closed:
            # A lazy socket is read only here: empty it. 16 rounds of up to 256 packets hold
            # a Master_Down_Interval of adverts from all 255 VRIDs several times over. One
            # call of the handler for all of them: each instance then handles its few adverts
            # in one go (and re-arms its timer once), not one per round.
            self._readable(rounds=16, at_once=True)

    def _parse_v6(
        self,
        data: bytes,
        ancdata: builtins.list[tuple[int, int, bytes]],
        address: tuple[str, int, int, int],
        offset: float | None,
    ) -> ReceivedPacket | None:
        hops: int | None = None
        dst: IPAddress | None = None
        ifindex = self._ifindex
        stamp = None
        for level, kind, value in ancdata:
            if level == _IPPROTO_IPV6:
                if kind == _IPV6_HOPLIMIT and len(value) >= 4:
                    hops = _unpack_int(value)[0]
                elif kind == _IPV6_PKTINFO and len(value) >= 20:
                    raw_dst, ifindex = _unpack_pktinfo6(value)
                    dst = self._address(raw_dst)
            elif (
                offset is not None
                and level == _SOL_SOCKET
                and kind == _SO_TIMESTAMPNS
                and len(value) >= 16
            ):
                seconds, nanoseconds = _unpack_timespec(value)
                stamp = seconds + nanoseconds / 1e9 + offset
        if hops is None or dst is None:
            logger.debug("%s: dropped a packet without hop limit or destination", self._ifname)
            return None
        src = self._sources.get(address[0])
        if src is None:
            try:
                src = IPv6Address(_strip_scope(address[0]))
            except ValueError:
                logger.debug("%s: dropped a packet from unparsable %r", self._ifname, address[0])
                return None
            if len(self._sources) >= 4096:
                self._sources.clear()
            self._sources[address[0]] = src
        return _received(data, src, dst, hops, ifindex, stamp)

    def _target(self, dst: IPAddress) -> tuple[object, builtins.list[tuple[int, int, bytes]]]:
        if dst.version != self._local.version:
            raise TransportError(f"cannot send to {dst} from {self._local}", errno=errno.EINVAL)
        if isinstance(dst, IPv6Address):
            scope = self._ifindex if dst.is_link_local or dst.is_multicast else 0
            target: object = (str(dst), 0, 0, scope)
            info = struct.pack("@16sI", self._local.packed, self._ifindex)
            control = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)]
        else:
            target = (str(dst), 0)
            info = struct.pack("@i4s4s", self._ifindex, self._local.packed, bytes(4))
            control = [(socket.IPPROTO_IP, _IP_PKTINFO, info)]
        if len(self._targets) < 1024:
            self._targets[dst] = (target, control)
        return target, control

    def send_nowait(self, data: bytes, dst: IPAddress) -> None:
        """Send ``data`` to ``dst`` now; TransportError if the kernel refuses or is full.

        A raw socket's send buffer only fills if the interface cannot transmit; the advert is
        then dropped, as keepalived's would be.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        found = self._targets.get(dst)
        target, control = found if found is not None else self._target(dst)
        try:
            self._sock.sendmsg([data], control, 0, target)  # type: ignore[arg-type]
        except OSError as exc:
            raise TransportError(
                f"{self._ifname}: cannot send to {dst}: {exc}", errno=exc.errno
            ) from exc

    def send_repeatedly(
        self,
        key: int,
        packets: Sequence[tuple[bytes, IPAddress]],
        first: float,
        interval: float,
        rounds: int,
        relative: bool = False,
    ) -> Series | None:
        """Have the kernel send ``packets`` (data, destination) at ``first`` and every
        ``interval`` after, ``rounds`` times (``CLOCK_MONOTONIC`` seconds); if ``relative``,
        each round ``interval`` after the previous one went out, not on a grid.

        Returns the :class:`~vrrpkit.transports.uring.Series`, to collect what went out,
        queue more rounds or end it (it still answers after the socket closed: closing ends
        it); None where the kernel cannot (no io_uring) or ``key`` (a VRID) has a series
        running. Nothing wakes the caller meanwhile.
        """
        if self._closed:
            return None
        timed = self._timed
        if timed is None:
            if self._timed_tried:
                return None
            self._timed_tried = True
            timed = self._timed = TimedSends.create()
            if timed is None:
                return None
        headed = self._header_socket()
        try:
            if headed is not None:
                messages = [self._headed_message(data, dst) for data, dst in packets]
            else:
                messages = [self._timed_message(data, dst) for data, dst in packets]
        except TransportError:
            return None
        fd = (headed or self._sock).fileno()
        return timed.start(key, fd, messages, first, interval, rounds, relative)

    def _header_socket(self) -> socket.socket | None:
        """IPv4: a send-only socket (``IPPROTO_RAW``) whose packets carry the IP header they
        are given, or None (IPv6, or refused).

        keepalived writes its adverts' IPv4 header too (``IP_HDRINCL``). The kernel then
        neither builds one per packet nor parses ``IP_PKTINFO``: a few per cent of what an
        advert costs. Opened on the first series (in the socket's namespace): a backup never
        needs it.
        """
        if self._headed_tried:
            return self._headed
        self._headed_tried = True
        try:
            self._headed = run_in_netns(self._netns, self._open_header_socket)
        except (OSError, TransportError, RuntimeError) as exc:  # RuntimeError: no thread
            logger.info("%s: IPv4 headers left to the kernel: %s", self._ifname, exc)
        return self._headed

    def _open_header_socket(self) -> socket.socket:
        sock = socket.socket(
            socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            socket.IPPROTO_RAW,
        )  # fmt: skip
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._ifname.encode())
            ip = socket.IPPROTO_IP
            sock.setsockopt(ip, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(ip, socket.IP_MULTICAST_IF, _mreqn(self._ifindex))
        except OSError:
            sock.close()
            raise
        return sock

    def _headed_message(self, data: bytes, dst: IPAddress) -> TimedMessage:
        """``data`` to ``dst`` behind the IPv4 header the main socket's sends get from the
        kernel (the kernel fills in the length, the identification and the checksum)."""
        if dst.version != 4:
            raise TransportError(f"cannot send to {dst} from {self._local}", errno=errno.EINVAL)
        ttl = _MULTICAST_TTL if dst.is_multicast else self._unicast_ttl
        header = _IPV4_HEADER.pack(
            0x45, _TOS, 0, 0, _DONT_FRAGMENT, ttl, VRRP_PROTOCOL, 0, self._local.packed, dst.packed
        )
        return TimedMessage(header + data, _sockaddr_in(dst))

    def _timed_message(self, data: bytes, dst: IPAddress) -> TimedMessage:
        target, control = self._targets.get(dst) or self._target(dst)
        if isinstance(dst, IPv6Address):
            assert isinstance(target, tuple)
            name = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, dst.packed, target[3])
        else:
            name = _sockaddr_in(dst)
        raw = b"".join(
            struct.pack("=Qii", socket.CMSG_LEN(len(body)), level, kind)
            + body.ljust(socket.CMSG_SPACE(len(body)) - socket.CMSG_LEN(0), b"\0")
            for level, kind, body in control
        )
        return TimedMessage(data, name, raw)

    async def send(self, data: bytes, dst: IPAddress) -> None:
        """Send ``data`` to ``dst`` from :attr:`local_address`; TransportError on failure."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise anyio.ClosedResourceError
        found = self._targets.get(dst)
        target, control = found if found is not None else self._target(dst)
        await send_nonblocking(
            self._sock,
            lambda: self._sock.sendmsg([data], control, 0, target),  # type: ignore[arg-type]
            f"{self._ifname}: cannot send to {dst}",
        )

    async def aclose(self) -> None:
        """Close the socket; a task blocked in a receive method gets ClosedResourceError.

        What the kernel counted is handed over first, and whoever counted on its timers
        (:meth:`watch_silence`) is woken after: they have no alarm of their own.
        """
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        if self._absorber is not None and self._handler is not None:
            self._leftovers = True
            try:
                self._readable(rounds=16, at_once=True)
            except Exception:  # the handler's: closing goes on, or the sockets would leak
                logger.exception("%s: handing over the last packets at close failed", self._ifname)
        wakes = list(self._wakes.items())
        self._wakes.clear()
        self._closed = True
        if self._timed is not None:
            self._timed.close()
            self._timed = None
        if self._watch is not None:
            self._watch.stop()
        if self._urgent_watch is not None:
            self._urgent_watch.stop()
        if self._expiry_watch is not None:
            self._expiry_watch.stop()
        if self._urgent is not None:
            self._urgent.close()
        if self._headed is not None:
            self._headed.close()
        if self._absorber is not None:
            self._absorber.close()
            self._absorber = None  # watch_silence() from a late closer does nothing
        for vrid, wake in wakes:
            try:
                wake()
            except Exception:
                logger.exception("%s: VRID %d: waking on close failed", self._ifname, vrid)
        await close_socket(self._sock)


def _discard_queued(sock: socket.socket) -> None:
    # Until SO_BINDTODEVICE took effect the socket accepted packets from every interface.
    while True:
        try:
            sock.recv(_MAX_PACKET)
        except OSError:
            return


def _receive_time(packet: ReceivedPacket) -> float:
    return packet.timestamp or 0.0


def _absorber_for(sock: socket.socket, ip_version: int) -> RepeatAbsorber | None:
    """The repeat-absorbing filter attached to ``sock``, or None where it cannot be.

    ``VRRPKIT_NO_EBPF=1`` in the environment turns it off (every advert is then read).
    """
    if os.environ.get("VRRPKIT_NO_EBPF", "") not in ("", "0"):
        return None
    absorber = RepeatAbsorber.create(ip_version)
    if absorber is not None:
        try:
            absorber.attach(sock.fileno())
        except OSError as exc:
            logger.debug("repeat filter not attached: %s", exc)
            absorber.close()
            return None
    return absorber


def _sockaddr_in(dst: IPAddress) -> bytes:
    """``struct sockaddr_in`` of IPv4 address ``dst`` (port 0), as ``sendmsg`` takes it."""
    return struct.pack("=HH4s8x", socket.AF_INET, 0, dst.packed)


def _mreqn(ifindex: int) -> bytes:
    """``struct ip_mreqn`` naming interface ``ifindex`` only (for ``IP_MULTICAST_IF``)."""
    return struct.pack("4s4si", bytes(4), bytes(4), ifindex)


def _open_urgent(
    family: int, ifname: str, ifindex: int, ip_version: int, group: IPAddress | None
) -> socket.socket | None:
    """The second socket that lets only priority-0 adverts through, or None if refused."""
    try:
        sock = socket.socket(
            family, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, VRRP_PROTOCOL
        )
    except OSError as exc:
        logger.debug("%s: no priority-0 socket, reading eagerly: %s", ifname, exc)
        return None
    try:
        attach_filter(sock, priority_zero_filter(ip_version))
        _configure(sock, ifname, ifindex, ip_version, group)
        _discard_queued(sock)
    except OSError as exc:
        sock.close()
        logger.debug("%s: no priority-0 socket, reading eagerly: %s", ifname, exc)
        return None
    return sock


def _configure(
    sock: socket.socket,
    ifname: str,
    ifindex: int,
    ip_version: int,
    group: IPAddress | None,
) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _LAZY_RCVBUF)
    except OSError:
        # Without CAP_NET_ADMIN the limit is net.core.rmem_max. A lazy backup needs room for
        # one interval's adverts of all its VRIDs; beyond that, dropped ones are not missed.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _LAZY_RCVBUF)
    if ip_version == 4:
        ip = socket.IPPROTO_IP
        sock.setsockopt(ip, _IP_MULTICAST_ALL, 0)
        sock.setsockopt(ip, socket.IP_MULTICAST_LOOP, 0)
        sock.setsockopt(ip, socket.IP_MULTICAST_TTL, _MULTICAST_TTL)
        sock.setsockopt(ip, socket.IP_TOS, _TOS)
        sock.setsockopt(ip, socket.IP_MULTICAST_IF, _mreqn(ifindex))
        if group is not None:
            mreqn = struct.pack("4s4si", group.packed, bytes(4), ifindex)
            sock.setsockopt(ip, socket.IP_ADD_MEMBERSHIP, mreqn)
        return
    ip6 = socket.IPPROTO_IPV6
    try:
        sock.setsockopt(ip6, _IPV6_MULTICAST_ALL, 0)
    except OSError:
        # Kernels before 4.20 lack the option; SO_BINDTODEVICE still limits reception.
        logger.debug("IPV6_MULTICAST_ALL is not supported")
    sock.setsockopt(ip6, socket.IPV6_MULTICAST_LOOP, 0)
    sock.setsockopt(ip6, socket.IPV6_MULTICAST_HOPS, _MULTICAST_TTL)
    sock.setsockopt(ip6, socket.IPV6_TCLASS, _TOS)
    sock.setsockopt(ip6, socket.IPV6_MULTICAST_IF, ifindex)
    sock.setsockopt(ip6, socket.IPV6_RECVHOPLIMIT, 1)
    sock.setsockopt(ip6, socket.IPV6_RECVPKTINFO, 1)
    sock.setsockopt(ip6, socket.IPV6_CHECKSUM, _IPV6_CHECKSUM_OFFSET)
    if group is not None:
        sock.setsockopt(ip6, socket.IPV6_JOIN_GROUP, group.packed + struct.pack("@I", ifindex))
