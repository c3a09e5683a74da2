"""The I/O Protocols the runtime is written against, and the values they exchange.

Transports deal in bytes and :mod:`ipaddress` objects only; they know nothing of VRRP's rules.
The real implementations live next to this module (:mod:`.rawsocket`, :mod:`.netlink`,
:mod:`.garp`, :mod:`.process`, :mod:`.clock`); :mod:`vrrpkit.testing` provides fakes.

Every async method is anyio-native: it works under asyncio and trio alike.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Protocol, TypeAlias

import attrs

from vrrpkit.core.errors import VrrpError

__all__ = [
    "AddressManager",
    "AddressRemoved",
    "AdvertSocket",
    "Alarm",
    "Announcer",
    "Clock",
    "DirectAdvertSocket",
    "IPAddress",
    "IPInterface",
    "LazyAdvertSocket",
    "LinkChange",
    "LinkEvent",
    "LinkMonitor",
    "PacketHandler",
    "ProcessResult",
    "ProcessRunner",
    "ReceivedPacket",
    "TransportError",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPInterface: TypeAlias = IPv4Interface | IPv6Interface


class TransportError(VrrpError):
    """An I/O operation failed (socket, netlink, namespace); ``errno`` is set when known."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


@attrs.frozen
class ReceivedPacket:
    """One IP protocol 112 packet as received.

    ``data`` is the VRRP message with any IPv4 header removed; ``src``/``dst`` come from the IP
    header (IPv6 addresses carry no scope; ``ifindex`` says where it arrived); ``ttl`` is the
    IPv4 TTL or the IPv6 hop limit. ``timestamp`` is when the kernel received it, on
    CLOCK_MONOTONIC (``time.monotonic()``), if the transport knows. ``repeats`` > 1: it
    stands for that many identical packets (the kernel counted them), the last of which
    arrived at ``timestamp``. ``timed``: the transport vouches that no gap among them, nor
    since the packet of this VRID handed over before them, reached the receiver's down
    interval (the kernel timed it), so no down timer can have run out before this packet.
    """

    data: bytes
    src: IPAddress
    dst: IPAddress
    ttl: int
    ifindex: int
    timestamp: float | None = attrs.field(default=None, eq=False)
    repeats: int = attrs.field(default=1, eq=False)
    timed: bool = attrs.field(default=False, eq=False)


@attrs.frozen
class LinkEvent:
    """An interface became usable (``up``: IFF_UP and IFF_RUNNING) or stopped being usable.

    A deleted interface is reported as ``up=False``.
    """

    ifname: str
    up: bool


@attrs.frozen
class AddressRemoved:
    """An address was removed from an interface (by anyone: an instance's own removals
    are reported too)."""

    ifname: str
    address: IPAddress


#: What a :class:`LinkMonitor` reports.
LinkChange: TypeAlias = LinkEvent | AddressRemoved


@attrs.frozen
class ProcessResult:
    """How one program run ended.

    ``returncode`` is None when the program never started (``error`` says why) and negative
    when a signal ended it. ``timed_out`` means the runner killed it after the timeout.
    """

    argv: tuple[str, ...]
    returncode: int | None
    timed_out: bool = False
    error: str | None = None
    pid: int | None = None

    @property
    def ok(self) -> bool:
        """True if the program ran, exited with status 0 and did not time out."""
        return self.returncode == 0 and not self.timed_out and self.error is None


class AdvertSocket(Protocol):
    """A raw IP protocol 112 endpoint on one interface and one address family.

    It receives multicast (if joined) and unicast packets arriving on the interface, and sends
    from :attr:`local_address`. ``send`` and the receive methods raise :class:`TransportError`
    on I/O errors; the receive methods raise :class:`anyio.ClosedResourceError` once the
    socket is closed. Only one task may receive at a time.
    """

    @property
    def local_address(self) -> IPAddress:
        """The source address of every packet sent (use it for checksums and tie-breaks)."""
        ...

    @property
    def ifindex(self) -> int:
        """Index of the interface the socket is bound to."""
        ...

    async def receive(self) -> ReceivedPacket:
        """Wait for and return the next packet."""
        ...

    async def receive_batch(self) -> builtins.list[ReceivedPacket]:
        """Wait for packets, then return every packet already queued (never an empty list)."""
        ...

    async def send(self, data: bytes, dst: IPAddress) -> None:
        """Send ``data`` as the payload of one packet to ``dst`` (a group or a unicast peer)."""
        ...

    async def aclose(self) -> None:
        """Close the socket, waking a task blocked in a receive method."""
        ...


PacketHandler: TypeAlias = Callable[[builtins.list[ReceivedPacket]], None]


class DirectAdvertSocket(AdvertSocket, Protocol):
    """An :class:`AdvertSocket` that can also hand packets over without a task switch.

    The runtime uses these two methods when a socket has them (the real raw socket and the
    hub's views do), so that receiving an advert and answering a timer cost a function
    call instead of a task wake-up; other sockets are driven through the async methods.
    """

    def send_nowait(self, data: bytes, dst: IPAddress) -> None:
        """Send like :meth:`AdvertSocket.send`, without waiting (TransportError if refused)."""
        ...

    async def deliver(self, handler: PacketHandler) -> None:
        """Call ``handler(batch)`` for every batch of packets received, until cancelled.

        Returns (without raising) once the socket is closed. ``handler`` runs synchronously
        in the event loop and must not block.
        """
        ...


class LazyAdvertSocket(DirectAdvertSocket, Protocol):
    """A :class:`DirectAdvertSocket` that a backup may read in batches, when it needs to.

    While lazy, the socket calls the :meth:`~DirectAdvertSocket.deliver` handler at once only
    for priority-0 adverts (a master resigning); the rest wait until :meth:`poll`. The
    runtime reads lazily while not MASTER and polls before every other input, so that the
    protocol sees everything in the order it happened (packets carry their receive time).
    """

    def set_lazy(self, lazy: bool) -> bool:
        """Read lazily (``True``) or wake for every packet; return whether now lazy."""
        ...

    def poll(self) -> None:
        """Hand everything received so far to the deliver handler, now."""
        ...


class AddressManager(Protocol):
    """Adds and removes addresses on interfaces; add and remove are idempotent.

    ``prefixlen`` defaults to the full length (32 or 128). IPv6 addresses are added without
    duplicate address detection. A missing interface raises :class:`TransportError`.
    """

    async def add(self, ifname: str, address: IPAddress, prefixlen: int | None = None) -> bool:
        """Add the address; return False if it was already present."""
        ...

    async def remove(self, ifname: str, address: IPAddress, prefixlen: int | None = None) -> bool:
        """Remove the address (any prefix length if None); return False if it was absent."""
        ...

    async def list(self, ifname: str) -> builtins.list[IPInterface]:
        """Return the addresses currently on the interface."""
        ...

    async def aclose(self) -> None:
        """Release the manager's resources."""
        ...


class LinkMonitor(Protocol):
    """Reports interfaces becoming usable or unusable.

    Iterating yields a :class:`LinkEvent` each time an interface's state changes (not for
    every kernel notification), and may yield an :class:`AddressRemoved` when an address
    goes (a monitor that does not is fine: instances then do not notice a VIP removed by
    someone else); iteration ends when the monitor is closed. Only one task may iterate at
    a time.
    """

    def __aiter__(self) -> AsyncIterator[LinkChange]:
        """Return the iterator of state changes."""
        ...

    async def is_up(self, ifname: str) -> bool:
        """Return the interface's current state (False if it does not exist)."""
        ...

    async def aclose(self) -> None:
        """Stop monitoring; a running iteration ends."""
        ...


class Announcer(Protocol):
    """Sends gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6)."""

    async def announce(self, address: IPAddress) -> None:
        """Send one announcement for ``address`` from the interface's MAC address."""
        ...

    async def aclose(self) -> None:
        """Close the underlying socket."""
        ...


class ProcessRunner(Protocol):
    """Runs external programs (track scripts, notify programs) without a shell."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        group: str | None = None,
    ) -> ProcessResult:
        """Run ``argv`` to completion or until ``timeout`` seconds; never raises for failures.

        ``user``/``group`` (names) run it with those credentials, as keepalived's
        ``script_user``; None keeps ours.
        """
        ...


class Clock(Protocol):
    """The runtime's source of time, in float seconds on a monotonic scale."""

    def now(self) -> float:
        """Return the current time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class Alarm(Protocol):
    """One re-armable timer on a :class:`Clock`: the runtime's protocol timers.

    :meth:`set` is synchronous, so a protocol step can move the deadline without waking a
    task; :meth:`run` calls ``callback()`` when the clock reaches the deadline that was set
    (once per :meth:`set`; it may also call it early, the callback checks the time).
    """

    def set(self, deadline: float | None) -> None:
        """Ring at ``deadline`` (clock seconds) instead of any earlier setting; None disarms."""
        ...

    async def run(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time the alarm rings, until cancelled."""
        ...

    def close(self) -> None:
        """Release the alarm's resources (after :meth:`run` has returned)."""
        ...
