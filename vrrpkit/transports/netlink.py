"""Addresses and link state through rtnetlink, on any anyio backend.

pyroute2 0.9 drives its sockets with asyncio, so its ``IPRoute``/``AsyncIPRoute`` cannot run
on trio (and the sync ``IPRoute`` cannot run inside a running asyncio loop). This module uses
pyroute2 only to encode and decode rtnetlink messages (``ifaddrmsg``, its ``nlmsg`` and
``Marshal``; link messages with only the fields read here) and owns the ``AF_NETLINK``
sockets itself: non-blocking, woken through :func:`anyio.wait_readable`, so no thread and
no foreign event loop is involved. Sockets are created inside the requested network
namespace and keep it for life.
"""

from __future__ import annotations

# First: it defers pyroute2's package __init__ before anything imports pyroute2.
import vrrpkit.transports.pyroute2_light  # noqa: F401  # isort: skip

# isort: split

import builtins
import collections
import errno
import itertools
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import AsyncResource
from pyroute2.netlink import (
    NETLINK_EXT_ACK,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    nlmsg,
)
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
)
from pyroute2.netlink.rtnl.ifaddrmsg import (
    IFA_F_DADFAILED,
    IFA_F_NODAD,
    IFA_F_SECONDARY,
    IFA_F_TENTATIVE,
    ifaddrmsg,
)

from vrrpkit.transports.base import (
    AddressRemoved,
    IPAddress,
    IPInterface,
    LinkChange,
    LinkEvent,
    TransportError,
)
from vrrpkit.transports.netns import call_in_netns
from vrrpkit.transports.sockio import interface_index

__all__ = [
    "AddressRecord",
    "NetlinkAddressManager",
    "NetlinkError",
    "NetlinkLinkMonitor",
    "added_addresses",
    "interface_addresses_blocking",
    "open_address_watch",
]

logger = logging.getLogger(__name__)

# The kernel fills dump datagrams up to 32 KiB (netlink's max_recvmsg_len cap) and sends
# notifications one message each. (A channel reads each datagram at its own size instead.)
_RECV_BUFFER = 64 * 1024
_DUMP_RETRIES = 5
# add_nowait() requests awaiting collection at most: each answer holds about 0.8 KiB of the
# socket's receive buffer (212 KiB by default) until it is read.
_MAX_UNANSWERED = 128
_NLMSG_HEADER = struct.Struct("=IH")  # nlmsg_len, nlmsg_type
_ADDED_ADDRESSES = frozenset({RTM_NEWADDR})
_ANSWER_FORGOTTEN = 60.0  # seconds after which an uncollected answer is given up
# struct nlmsghdr after its length: type, flags, sequence number.
_HEADER_FIELDS = struct.Struct("=HHI")


# linux/if.h
IFF_UP, IFF_RUNNING = 0x1, 0x40


class _LinkMessage(nlmsg):  # type: ignore[misc]
    """``struct ifinfomsg`` with the only attribute read here, the interface's name.

    pyroute2's own ``ifinfmsg`` decodes every link attribute of every link kind: importing
    it loads its plugins and pyroute2.config, which imports multiprocessing (0.9 MB of
    resident memory measured, a thirtieth of a running process) to tell up from down.
    """

    prefix = "IFLA_"
    fields = (
        ("family", "B"),
        ("__align", "x"),
        ("ifi_type", "H"),
        ("index", "i"),
        ("flags", "I"),
        ("change", "I"),
    )
    nla_map = (
        ("IFLA_UNSPEC", "none"),
        ("IFLA_ADDRESS", "hex"),
        ("IFLA_BROADCAST", "hex"),
        ("IFLA_IFNAME", "asciiz"),
    )


class NetlinkError(TransportError):
    """The kernel refused a netlink request; ``errno`` holds its error code."""


class _RouteMarshal(Marshal):  # type: ignore[misc]
    """pyroute2's parser for just the messages we exchange (links and addresses).

    pyroute2's own MarshalRtnl knows every rtnetlink family and imports them all (traffic
    control alone is some forty modules); links and addresses are all we ask for or watch.
    """

    msg_map: ClassVar[dict[int, type]] = {
        RTM_NEWLINK: _LinkMessage,
        RTM_DELLINK: _LinkMessage,
        RTM_GETLINK: _LinkMessage,
        RTM_NEWADDR: ifaddrmsg,
        RTM_DELADDR: ifaddrmsg,
        RTM_GETADDR: ifaddrmsg,
    }


def _only_types(data: bytes, types: frozenset[int]) -> bool:
    """Whether every netlink message in ``data`` is of one of ``types``."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = _NLMSG_HEADER.unpack_from(data, offset)
        if kind not in types or length < 16:
            return False
        offset += (length + 3) & ~3
    return offset > 0


class _Channel:
    """One non-blocking NETLINK_ROUTE socket and the request/reply exchange over it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._marshal = _RouteMarshal()
        self._seq = itertools.count(1)
        self._lock = anyio.Lock()
        # Datagrams are peeked at for their size, then read whole: a channel keeps no receive
        # buffer (each would be 64 KiB resident, and netlink traffic is rare: replies to
        # address changes and link events).
        self._probe = bytearray(1)
        self.closed = False
        # Requests sent by send_nowait() whose replies nobody has collected yet, and the
        # replies that another request's reading came across meanwhile.
        # (sequence number -> when it was sent, to forget those nobody came back for)
        self._unanswered: dict[int, float] = {}
        self._answers: dict[int, Any] = {}
        self._lost: set[int] = set()  # requests whose answers the kernel dropped (ENOBUFS)

    @staticmethod
    def create_socket(groups: int, rcvbuf: int | None = None) -> socket.socket:
        """Create the socket in the current thread's namespace (call via run_in_netns)."""
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            NETLINK_ROUTE,
        )
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if not groups:
                sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            sock.bind((0, groups))
        except BaseException:
            sock.close()
            raise
        return sock

    def receive_nowait(self, ignore: frozenset[int] = frozenset()) -> builtins.list[Any]:
        """Parse one queued datagram; raises BlockingIOError if none is queued.

        A datagram whose messages are all of the ``ignore`` types is not parsed (an empty
        list): parsing costs tens of microseconds a message.
        """
        size = self._sock.recv_into(self._probe, 0, socket.MSG_PEEK | socket.MSG_TRUNC)
        data = self._sock.recv(max(size, 1))
        if ignore and _only_types(data, ignore):
            return []
        return list(self._marshal.parse(data))

    def discard_queued(self) -> None:
        """Drop every datagram already queued on the socket."""
        while True:
            try:
                self._sock.recv_into(self._probe, 0, socket.MSG_TRUNC)
            except OSError as exc:
                # Anything but a repeated overrun ends the drain; receive() reports it.
                if exc.errno != errno.ENOBUFS:
                    return

    async def receive(self, ignore: frozenset[int] = frozenset()) -> builtins.list[Any]:
        """Wait for and parse the next datagram (see :meth:`receive_nowait`)."""
        while True:
            if self.closed:
                raise anyio.ClosedResourceError
            try:
                return self.receive_nowait(ignore)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)

    async def _send(self, data: bytes) -> None:
        while True:
            try:
                self._sock.send(data)
                return
            except BlockingIOError:
                await anyio.wait_writable(self._sock)

    def send_nowait(self, msg: bytes, msg_type: int, flags: int = 0) -> int | None:
        """Send an encoded request now, without waiting; its sequence number, or None.

        None means the socket could not take it at once (use :meth:`request`). The kernel
        handles an rtnetlink request within the send: the change is made when this returns.
        Collect the outcome with :meth:`answer`.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        seq = next(self._seq)
        try:
            self._sock.send(_encoded(msg, msg_type, NLM_F_ACK | flags, seq))
        except BlockingIOError:
            return None
        except OSError as exc:
            raise TransportError(f"netlink request failed: {exc}", errno=exc.errno) from exc
        self._unanswered[seq] = time.monotonic()
        return seq

    async def answer(self, seq: int) -> None:
        """Wait for the answer to a :meth:`send_nowait` request; NetlinkError if refused,
        TransportError (``ENOBUFS``) if the kernel dropped it."""
        try:
            await anyio.lowlevel.checkpoint()
            async with self._lock:
                while seq not in self._answers:
                    if seq in self._lost:
                        raise TransportError(
                            "netlink answer lost (receive buffer full)", errno=errno.ENOBUFS
                        )
                    for part in await self._receive_answers():
                        self._keep_answer(part)
                part = self._answers[seq]
        finally:
            # Collected, failed or cancelled: nothing of it may stay behind.
            self._unanswered.pop(seq, None)
            self._answers.pop(seq, None)
            self._lost.discard(seq)
        _raise_if_refused(part)

    async def _receive_answers(self) -> builtins.list[Any]:
        try:
            return await self.receive()
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self._answers_dropped()
                return []
            raise TransportError(f"netlink request failed: {exc}", errno=exc.errno) from exc

    def _answers_dropped(self) -> None:
        """The kernel dropped answers (ENOBUFS): which ones is unknown, so every request
        still waiting for one has lost it (its caller asks again another way).

        The queue is read empty now: until it has been, the kernel drops further answers
        without reporting it, and a request would wait for its answer for good.
        """
        while True:
            try:
                parts = self.receive_nowait()
            except OSError:  # empty (BlockingIOError), or anything else: stop reading
                break
            for part in parts:
                self._keep_answer(part)
        self._lost |= self._unanswered.keys() - self._answers.keys()

    def _keep_answer(self, part: Any) -> None:
        header = part["header"]
        seq = header["sequence_number"]
        if seq in self._unanswered and header["type"] == NLMSG_ERROR:
            self._answers[seq] = part

    async def request(
        self, msg: Any, msg_type: int, flags: int = 0, *, dump: bool = False
    ) -> builtins.list[Any]:
        """Send one request and return its reply messages; raise NetlinkError if refused."""
        await anyio.lowlevel.checkpoint()
        # Not derived from the flags: NLM_F_DUMP's bits overlap NLM_F_EXCL and NLM_F_REPLACE.
        flags |= NLM_F_DUMP if dump else NLM_F_ACK
        async with self._lock:
            seq = next(self._seq)
            if isinstance(msg, bytes):
                data = _encoded(msg, msg_type, flags, seq)
            else:
                msg["header"]["type"] = msg_type
                msg["header"]["flags"] = NLM_F_REQUEST | flags
                msg["header"]["sequence_number"] = seq
                msg.encode()
                data = bytes(msg.data)
            try:
                await self._send(data)
                replies: builtins.list[Any] = []
                while True:
                    for part in await self.receive():
                        header = part["header"]
                        if header["sequence_number"] != seq:
                            # An answer to a send_nowait(), kept for its caller; else a
                            # reply to a request whose caller was cancelled.
                            self._keep_answer(part)
                            continue
                        if header["type"] == NLMSG_ERROR:
                            _raise_if_refused(part)
                            return replies
                        if header["type"] == NLMSG_DONE:
                            return replies
                        replies.append(part)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._answers_dropped()
                raise TransportError(f"netlink request failed: {exc}", errno=exc.errno) from exc

    def waits(self, seq: int) -> bool:
        """Whether request ``seq`` of :meth:`send_nowait` still waits to be collected."""
        return seq in self._unanswered

    @property
    def outstanding(self) -> int:
        """Requests sent by :meth:`send_nowait` whose answers are not collected yet."""
        unanswered = self._unanswered
        if len(unanswered) >= _MAX_UNANSWERED:
            # Requests whose callers went away (a shutdown that gave up on them) would hold
            # their places for good: an answer comes within milliseconds or not at all.
            stale = time.monotonic() - _ANSWER_FORGOTTEN
            for seq in [seq for seq, sent in unanswered.items() if sent < stale]:
                del unanswered[seq]
                self._answers.pop(seq, None)
                self._lost.discard(seq)
        return len(unanswered)

    async def dump(self, msg_factory: Any, msg_type: int) -> builtins.list[Any]:
        """Run a dump request, repeating it if the kernel reports it was interrupted."""
        for _ in range(_DUMP_RETRIES):
            replies = await self.request(msg_factory(), msg_type, dump=True)
            if not any(part["header"]["flags"] & NLM_F_DUMP_INTR for part in replies):
                return replies
        raise TransportError("netlink dump kept being interrupted by concurrent changes")

    @property
    def socket(self) -> socket.socket:
        """The underlying AF_NETLINK socket."""
        return self._sock

    def close(self) -> None:
        """Close the socket, waking a task waiting on it."""
        if self.closed:
            return
        self.closed = True
        anyio.notify_closing(self._sock)
        self._sock.close()


def _encoded(msg: bytes, msg_type: int, flags: int, seq: int) -> bytes:
    """A message encoded before (see NetlinkAddressManager._address_request), ready to send.

    Only the header's type, flags and sequence number change between requests.
    """
    data = bytearray(msg)
    _HEADER_FIELDS.pack_into(data, 4, msg_type, NLM_F_REQUEST | flags, seq)
    return bytes(data)


def _raise_if_refused(part: Any) -> None:
    """Raise NetlinkError for an NLMSG_ERROR carrying an error (0 is an acknowledgement)."""
    code = -int(part["error"] or 0)
    if code:
        raise NetlinkError(_describe(part, code), errno=code)


def _describe(part: Any, code: int) -> str:
    detail = part["header"].get("error")
    text = str(detail) if detail is not None else ""
    return text or f"[Errno {code}] {errno.errorcode.get(code, '?')}"


def _ifname_request(ifname: str) -> Any:
    msg = _LinkMessage()
    msg["family"] = socket.AF_UNSPEC
    msg["attrs"] = [("IFLA_IFNAME", ifname)]
    return msg


def _link_state(part: Any) -> tuple[int, str, bool] | None:
    name = part.get_attr("IFLA_IFNAME")
    if name is None:
        return None
    flags = int(part["flags"])
    return int(part["index"]), str(name), bool(flags & IFF_UP and flags & IFF_RUNNING)


async def _open_channels(
    netns: str | None, *specs: tuple[int, int | None]
) -> builtins.list[_Channel]:
    """Open one channel per (multicast groups, receive buffer size) in ``netns``."""

    def create() -> builtins.list[socket.socket]:
        socks: builtins.list[socket.socket] = []
        try:
            for groups, rcvbuf in specs:
                socks.append(_Channel.create_socket(groups, rcvbuf))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks

    try:
        socks = await call_in_netns(netns, create)
    except OSError as exc:
        raise TransportError(f"cannot open netlink socket: {exc}", errno=exc.errno) from exc
    return [_Channel(sock) for sock in socks]


@attrs.frozen
class AddressRecord:
    """An address as the kernel lists it: interface index, address/prefix and IFA_F_* flags."""

    ifindex: int
    interface: IPInterface
    flags: int

    @property
    def primary(self) -> bool:
        """False for an IPv4 secondary address or an IPv6 temporary address."""
        return not self.flags & IFA_F_SECONDARY

    @property
    def usable(self) -> bool:
        """False while duplicate address detection runs or after it failed."""
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


def _address_dump_request() -> Any:
    msg = ifaddrmsg()
    msg["family"] = socket.AF_UNSPEC
    return msg


def _parse_address(part: Any) -> AddressRecord | None:
    if part["header"]["type"] not in (RTM_NEWADDR, RTM_DELADDR):
        return None
    prefixlen = int(part["prefixlen"])
    flags = int(part.get_attr("IFA_FLAGS") or part["flags"])
    interface: IPInterface
    if part["family"] == socket.AF_INET:
        # IFA_ADDRESS is the peer on point-to-point links; IFA_LOCAL is ours.
        text = part.get_attr("IFA_LOCAL") or part.get_attr("IFA_ADDRESS")
        interface = IPv4Interface((IPv4Address(text), prefixlen))
    elif part["family"] == socket.AF_INET6:
        interface = IPv6Interface((IPv6Address(part.get_attr("IFA_ADDRESS")), prefixlen))
    else:
        return None
    return AddressRecord(ifindex=int(part["index"]), interface=interface, flags=flags)


def interface_addresses_blocking(ifindex: int | None = None) -> builtins.list[AddressRecord]:
    """List the addresses of one interface (or all) in the calling thread's namespace.

    This blocks (briefly: the kernel answers at once); it is meant for setup code that runs
    on a thread, e.g. through :func:`~vrrpkit.transports.netns.run_in_netns`.
    """
    marshal = _RouteMarshal()
    for _ in range(_DUMP_RETRIES):
        request = _address_dump_request()
        request["header"]["type"] = RTM_GETADDR
        request["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        request["header"]["sequence_number"] = 1
        request.encode()
        records: builtins.list[AddressRecord] = []
        interrupted = False
        with socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        ) as sock:
            sock.bind((0, 0))
            sock.send(request.data)
            done = False
            while not done:
                for part in marshal.parse(sock.recv(_RECV_BUFFER)):
                    kind = part["header"]["type"]
                    if kind == NLMSG_ERROR and part["error"]:
                        code = -int(part["error"])
                        raise NetlinkError(_describe(part, code), errno=code)
                    if kind in (NLMSG_DONE, NLMSG_ERROR):
                        done = True
                        break
                    interrupted |= bool(part["header"]["flags"] & NLM_F_DUMP_INTR)
                    record = _parse_address(part)
                    if record is not None and ifindex in (None, record.ifindex):
                        records.append(record)
        if not interrupted:
            return records
    raise TransportError("netlink dump kept being interrupted by concurrent changes")


def open_address_watch() -> socket.socket:
    """A non-blocking netlink socket told of every address added or removed in the calling
    thread's namespace (call it through :func:`~vrrpkit.transports.netns.call_in_netns`);
    :func:`added_addresses` reads what it receives."""
    return _Channel.create_socket(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)


def added_addresses(data: bytes) -> builtins.list[AddressRecord]:
    """The addresses a datagram of an :func:`open_address_watch` socket reports added."""
    records = (
        _parse_address(part)
        for part in _RouteMarshal().parse(data)
        if part["header"]["type"] == RTM_NEWADDR
    )
    return [record for record in records if record is not None]


class NetlinkAddressManager(AsyncResource):
    """:class:`~vrrpkit.transports.base.AddressManager` over rtnetlink.

    Requests are serialised on one socket. IPv6 addresses get ``IFA_F_NODAD`` so they are
    usable at once, as keepalived does for its VIPs.
    """

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._requests: dict[tuple[int, IPAddress, int], bytes] = {}
        # What each add_nowait() ticket asked, to ask again if its answer is lost.
        self._tickets: dict[int, tuple[str, IPAddress, int]] = {}

    @classmethod
    async def open(cls, *, netns: str | None = None) -> NetlinkAddressManager:
        """Open a manager for the interfaces of ``netns`` (a name or path; None: our own)."""
        (channel,) = await _open_channels(netns, (0, None))
        return cls(channel)

    async def ifindex(self, ifname: str) -> int:
        """Return the index of interface ``ifname``; raise TransportError if it is missing."""
        self._check_open()
        try:
            # One ioctl on our netlink socket answers in its namespace, without the round
            # trip and the decoding of a full RTM_GETLINK reply (every VIP change asks).
            return interface_index(self._channel.socket, ifname)
        except TransportError as exc:
            if exc.errno in (errno.ENODEV, errno.EINVAL):
                raise
        try:
            replies = await self._channel.request(_ifname_request(ifname), RTM_GETLINK)
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.EINVAL, errno.ERANGE):
                raise TransportError(f"no interface {ifname!r}", errno=exc.errno) from exc
            raise
        for part in replies:
            if part["header"]["type"] == RTM_NEWLINK:
                return int(part["index"])
        raise TransportError(f"no interface {ifname!r}", errno=errno.ENODEV)

    def add_nowait(
        self, ifname: str, address: IPAddress, prefixlen: int | None = None
    ) -> int | None:
        """Add the address now, without waiting for the kernel's answer.

        A new master's VIP then follows its first advert by the time of one system call.
        Returns a ticket for :meth:`add_result`, or None if the request could not be sent
        at once (use :meth:`add` instead).
        """
        self._check_open()
        if len(self._tickets) >= _MAX_UNANSWERED:
            # Tickets nobody collected (their channel has given up on them) go too.
            self._tickets = {t: a for t, a in self._tickets.items() if self._channel.waits(t)}
        if self._channel.outstanding >= _MAX_UNANSWERED:
            # Each answer waits in the socket's receive buffer until collected: past a few
            # hundred (a takeover of that many VIPs at once) the kernel drops them.
            return None
        try:
            index = interface_index(self._channel.socket, ifname)
        except TransportError:
            return None
        length = _prefixlen(address, prefixlen)
        request = self._address_request(index, address, length)
        ticket = self._channel.send_nowait(request, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
        if ticket is not None:
            self._tickets[ticket] = (ifname, address, length)
        return ticket

    async def add_result(self, ticket: int) -> bool:
        """The outcome of :meth:`add_nowait`, as :meth:`add` returns it."""
        asked = self._tickets.pop(ticket, None)
        try:
            await self._channel.answer(ticket)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        except TransportError as exc:
            if exc.errno != errno.ENOBUFS or asked is None:
                raise
            # The kernel made the change when the request was sent; only its answer was
            # dropped. Asking again says whether the address is there (False: it is).
            return await self.add(*asked)
        return True

    def _check_open(self) -> None:
        if self._channel.closed:
            raise anyio.ClosedResourceError

    async def add(self, ifname: str, address: IPAddress, prefixlen: int | None = None) -> bool:
        """Add ``address/prefixlen`` to ``ifname``; return False if it was already there."""
        index = await self.ifindex(ifname)
        length = _prefixlen(address, prefixlen)
        request = self._address_request(index, address, length)
        try:
            await self._channel.request(request, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        logger.debug("added %s/%s to %s", address, length, ifname)
        return True

    def _address_request(self, index: int, address: IPAddress, prefixlen: int) -> bytes:
        """The encoded RTM_NEWADDR/DELADDR body for one address, made once and kept.

        pyroute2 takes about 0.1 ms (several times that on cold caches) to encode one; a
        new master should not spend it between its first advert and its VIP.
        """
        key = (index, address, prefixlen)
        data = self._requests.get(key)
        if data is None:
            msg = _address_message(index, address, prefixlen)
            msg["header"]["type"] = RTM_NEWADDR
            msg["header"]["flags"] = NLM_F_REQUEST
            msg["header"]["sequence_number"] = 0
            msg.encode()
            data = bytes(msg.data)
            if len(self._requests) >= 1024:
                self._requests.clear()
            self._requests[key] = data
        return data

    async def remove(self, ifname: str, address: IPAddress, prefixlen: int | None = None) -> bool:
        """Remove ``address`` from ``ifname``; return False if it was not there.

        With ``prefixlen``, only the address with that prefix length, in one request;
        without, whatever its prefix length (the interface's addresses are read first).
        """
        index = await self.ifindex(ifname)
        if prefixlen is not None:
            # Also readies the request a first takeover sends (instances remove their stale
            # VIPs at start).
            request = self._address_request(index, address, _prefixlen(address, prefixlen))
            try:
                await self._channel.request(request, RTM_DELADDR)
            except NetlinkError as exc:
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                    raise
                return False
            logger.debug("removed %s/%s from %s", address, prefixlen, ifname)
            return True
        removed = False
        for present in await self._list_index(index):
            if present.ip != address:
                continue
            request = self._address_request(index, address, present.network.prefixlen)
            try:
                await self._channel.request(request, RTM_DELADDR)
            except NetlinkError as exc:
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT):
                    raise
                continue
            removed = True
            logger.debug("removed %s from %s", present, ifname)
        return removed

    async def list(self, ifname: str) -> builtins.list[IPInterface]:
        """Return the addresses on ``ifname`` with their prefix lengths."""
        return await self._list_index(await self.ifindex(ifname))

    async def _list_index(self, index: int) -> builtins.list[IPInterface]:
        replies = await self._channel.dump(_address_dump_request, RTM_GETADDR)
        records = (_parse_address(part) for part in replies)
        return [record.interface for record in records if record and record.ifindex == index]

    async def aclose(self) -> None:
        """Close the netlink socket."""
        self._channel.close()
        await anyio.lowlevel.checkpoint()


def _prefixlen(address: IPAddress, prefixlen: int | None) -> int:
    if prefixlen is None:
        return address.max_prefixlen
    if not 0 <= prefixlen <= address.max_prefixlen:
        raise ValueError(f"prefix length {prefixlen} is invalid for {address}")
    return prefixlen


def _address_message(index: int, address: IPAddress, prefixlen: int) -> Any:
    msg = ifaddrmsg()
    msg["index"] = index
    msg["prefixlen"] = prefixlen
    if isinstance(address, IPv4Address):
        msg["family"] = socket.AF_INET
        msg["attrs"] = [("IFA_LOCAL", str(address)), ("IFA_ADDRESS", str(address))]
    else:
        msg["family"] = socket.AF_INET6
        msg["flags"] = IFA_F_NODAD
        msg["attrs"] = [("IFA_ADDRESS", str(address)), ("IFA_FLAGS", IFA_F_NODAD)]
    return msg


class NetlinkLinkMonitor(AsyncResource):
    """:class:`~vrrpkit.transports.base.LinkMonitor` over rtnetlink link notifications.

    An interface is up when both IFF_UP and IFF_RUNNING are set (keepalived's rule), so a
    lost carrier counts as down. The monitor starts from a snapshot of every interface and
    yields an event only when an interface's state differs from what it last reported; if
    the kernel drops notifications (ENOBUFS) it re-reads the snapshot and reports the
    differences.
    """

    def __init__(self, events: _Channel, queries: _Channel) -> None:
        self._events = events
        self._queries = queries
        self._links: dict[int, tuple[str, bool]] = {}
        self._pending: collections.deque[LinkChange] = collections.deque()
        # Notifications were lost and the snapshot that supersedes them is still to be read
        # (reading it may fail, and is then tried again at the next step).
        self._stale = False

    @classmethod
    async def open(
        cls, *, netns: str | None = None, rcvbuf: int = 1024 * 1024
    ) -> NetlinkLinkMonitor:
        """Start monitoring the interfaces of ``netns`` (a name or path; None: our own).

        ``rcvbuf`` is the notification socket's receive buffer size in bytes.
        """
        # Address removals too: an instance puts back a VIP someone else removed.
        groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
        events, queries = await _open_channels(netns, (groups, rcvbuf), (0, None))
        monitor = cls(events, queries)
        try:
            # Subscribed before the snapshot, so no change can fall between the two.
            monitor._links = await monitor._snapshot()
        except BaseException:
            events.close()
            queries.close()
            raise
        return monitor

    def __aiter__(self) -> AsyncIterator[LinkChange]:
        return self

    async def __anext__(self) -> LinkChange:
        while not self._pending:
            if self._stale:
                try:
                    await self._resync()
                except anyio.ClosedResourceError:
                    raise StopAsyncIteration from None
                except TransportError:
                    # What we last reported may be wrong by now, and the caller may have
                    # read the states meanwhile: the next snapshot reports every one.
                    self._links.clear()
                    raise
                self._stale = False
                continue
            try:
                # Added addresses come with the address group (a takeover adds its VIPs):
                # only removals matter here.
                parts = await self._events.receive(_ADDED_ADDRESSES)
            except anyio.ClosedResourceError:
                raise StopAsyncIteration from None
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise TransportError(f"link monitor failed: {exc}", errno=exc.errno) from exc
                logger.warning("link notifications were lost; re-reading interface states")
                # Notifications still queued predate the loss; the snapshot supersedes them.
                self._events.discard_queued()
                self._stale = True
                continue
            for part in parts:
                self._handle(part)
        return self._pending.popleft()

    def _handle(self, part: Any) -> None:
        kind = part["header"]["type"]
        if kind == RTM_DELADDR:
            self._address_removed(part)
            return
        if kind not in (RTM_NEWLINK, RTM_DELLINK):
            return
        state = _link_state(part)
        if state is None:
            return
        index, name, up = state
        if kind == RTM_DELLINK:
            old = self._links.pop(index, None)
            if old is not None and old[1]:
                self._pending.append(LinkEvent(old[0], False))
            return
        self._update(index, name, up)

    def _address_removed(self, part: Any) -> None:
        record = _parse_address(part)
        link = None if record is None else self._links.get(record.ifindex)
        if record is not None and link is not None:
            self._pending.append(AddressRemoved(link[0], record.interface.ip))

    def _update(self, index: int, name: str, up: bool) -> None:
        old = self._links.get(index)
        self._links[index] = (name, up)
        if old is not None and old[0] != name:
            if old[1]:
                self._pending.append(LinkEvent(old[0], False))
            old = None
        if old is None or old[1] != up:
            self._pending.append(LinkEvent(name, up))

    async def _snapshot(self) -> dict[int, tuple[str, bool]]:
        def factory() -> Any:
            msg = _LinkMessage()
            msg["family"] = socket.AF_UNSPEC
            return msg

        links: dict[int, tuple[str, bool]] = {}
        for part in await self._queries.dump(factory, RTM_GETLINK):
            state = _link_state(part) if part["header"]["type"] == RTM_NEWLINK else None
            if state is not None:
                links[state[0]] = (state[1], state[2])
        return links

    async def _resync(self) -> None:
        fresh = await self._snapshot()
        for index in set(self._links) - set(fresh):
            name, up = self._links.pop(index)
            if up:
                self._pending.append(LinkEvent(name, False))
        for index, (name, up) in fresh.items():
            self._update(index, name, up)

    async def is_up(self, ifname: str) -> bool:
        """Ask the kernel whether ``ifname`` is up and running (False if it does not exist)."""
        try:
            replies = await self._queries.request(_ifname_request(ifname), RTM_GETLINK)
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.EINVAL, errno.ERANGE):
                return False
            raise
        for part in replies:
            state = _link_state(part) if part["header"]["type"] == RTM_NEWLINK else None
            if state is not None:
                return state[2]
        return False

    async def aclose(self) -> None:
        """Stop monitoring; a task iterating the monitor sees the iteration end."""
        self._events.close()
        self._queries.close()
        await anyio.lowlevel.checkpoint()
