"""Fake transports for running :class:`vrrpkit.Instance` on a virtual clock and network.

Each fake implements one Protocol of :mod:`vrrpkit.transports.base` and records what it was
asked to do, so tests can assert on the order of effects. They work under asyncio and trio.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import functools
import heapq
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from typing import Any

import anyio

from vrrpkit.core.addresses import Address, to_address
from vrrpkit.core.errors import ConfigError
from vrrpkit.runtime.mailbox import Mailbox
from vrrpkit.testing.simulation import Impairment
from vrrpkit.transports.base import (
    AddressRemoved,
    IPInterface,
    LinkChange,
    LinkEvent,
    ProcessResult,
    ReceivedPacket,
    TransportError,
)

__all__ = [
    "FakeAddressManager",
    "FakeAdvertSocket",
    "FakeAnnouncer",
    "FakeClock",
    "FakeTimer",
    "FakeLinkMonitor",
    "FakeNetwork",
    "FakeRunner",
]


class FakeClock:
    """A manual clock: time moves only when a test calls :meth:`advance`.

    Sleepers wake in deadline order, each at exactly its deadline, and every woken task runs
    until it blocks again before the clock moves on — so a run is deterministic.
    """

    #: Marks a stand-in: an Instance given one refuses to open real transports.
    vrrpkit_fake = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._seq = 0
        # Sleepers' events to set and timers' callbacks to call, in deadline order.
        self._sleepers: list[tuple[float, int, Callable[[], object]]] = []

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Block until :meth:`advance` brings the time to ``deadline``."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._seq += 1
        heapq.heappush(self._sleepers, (deadline, self._seq, event.set))
        await event.wait()

    def call_at(self, deadline: float, callback: Callable[[], object]) -> FakeTimer:
        """Call ``callback()`` when :meth:`advance` reaches ``deadline`` (unless cancelled).

        What the runtime's timeouts (checks, callbacks) run on, so that they follow this
        clock like the protocol's timers.
        """
        timer = FakeTimer(callback)
        self._seq += 1
        heapq.heappush(self._sleepers, (deadline, self._seq, timer.fire))
        return timer

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper at its own deadline."""
        await self.advance_to(self._now + seconds)

    async def advance_to(self, target: float) -> None:
        """Move time forward to ``target`` (never backwards)."""
        await _all_tasks_blocked()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _seq, wake = heapq.heappop(self._sleepers)
            if deadline > self._now:
                self._now = deadline
            wake()
            await _all_tasks_blocked()
        self._now = max(self._now, target)
        await _all_tasks_blocked()


class FakeTimer:
    """A callback :meth:`FakeClock.call_at` will call; :meth:`cancel` withdraws it."""

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        """Do not call the callback (if it has not been called yet)."""
        self._callback = None

    def fire(self) -> None:
        """Call the callback now, once (the clock does, at the deadline)."""
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


async def _all_tasks_blocked() -> None:
    """Return once every other task waits for something (anyio.wait_all_tasks_blocked).

    anyio's asyncio version sleeps a real 0.1 s each time it finds a task that can run,
    which is nearly every time here (a woken sleeper runs): a virtual second cost about a
    real one. Under asyncio, yielding to the event loop until no other task is runnable
    gives the same guarantee at once.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # not asyncio (trio's version is exact and quick)
    if loop is None:
        await anyio.wait_all_tasks_blocked()
        return
    ready = getattr(loop, "_ready", None)  # the loop's callbacks due now (CPython's loops)
    if ready is None:
        await anyio.wait_all_tasks_blocked()  # another loop: anyio's patient way
        return
    this = asyncio.current_task()
    for _ in range(_YIELDS_BEFORE_FALLBACK):
        await asyncio.sleep(0)
        # Settled when no callback is due (a task's wake-up, a done-callback that wakes
        # one, is queued there before the task looks runnable) and every task waits.
        if not ready and all(
            _blocked(task) for task in asyncio.all_tasks(loop) if task is not this
        ):
            return
    await anyio.wait_all_tasks_blocked()  # something keeps running: anyio's patient way


# A task yielding to the loop without ever blocking (a busy loop of checkpoints) would keep
# the quick way going forever.
_YIELDS_BEFORE_FALLBACK = 10_000


def _blocked(task: asyncio.Task[object]) -> bool:
    # What anyio looks at: the future a task waits for, if any, and not yet done.
    waiter = getattr(task, "_fut_waiter", None)
    return task.done() or (waiter is not None and not waiter.done())


class FakeNetwork:
    """A simulated Ethernet segment joining :class:`FakeAdvertSocket` endpoints.

    Multicast reaches every other socket of the same family; unicast reaches the socket whose
    address is the destination. ``cut(address)`` isolates an endpoint (cable pulled),
    :meth:`partition` splits the segment, and :meth:`impair` makes it lose, duplicate,
    delay or reorder packets (as :class:`vrrpkit.testing.Impairment` says), drawing from a
    generator seeded with ``seed``. Delays need the ``clock`` the instances run on.
    """

    def __init__(self, clock: FakeClock | None = None, *, seed: int = 0) -> None:
        self._sockets: list[FakeAdvertSocket] = []
        self._cut: set[Address] = set()
        self._clock = clock
        self._random = random.Random(seed)
        self._impairment = Impairment()
        self._component: dict[Address, int] = {}
        #: Every packet sent: (src, dst, data), in order.
        self.sent: list[tuple[Address, Address, bytes]] = []

    def impair(self, impairment: Impairment | None = None, **fields: Any) -> None:
        """Change how the segment treats packets from now on (``net.impair(loss=0.1)``)."""
        chosen = impairment if impairment is not None else Impairment(**fields)
        if self._clock is None and (chosen.delay or chosen.jitter or chosen.reorder):
            raise ConfigError("delays need the clock: FakeNetwork(clock=...)")
        self._impairment = chosen

    def partition(self, *groups: Iterable[str | Address]) -> None:
        """Split the segment: endpoints hear only those in their own group (addresses).

        Endpoints named in no group form one more group together. A packet gets through
        only if sender and receiver are on the same side when it leaves and when it
        arrives; :meth:`heal` brings back none sent while the segment was split.
        """
        component: dict[Address, int] = {}
        for index, addresses in enumerate(groups, start=1):
            for address in addresses:
                ip = to_address(address)
                if ip in component:
                    raise ConfigError(f"{ip} is in two partitions")
                component[ip] = index
        self._component = component

    def heal(self) -> None:
        """Join every partition again."""
        self._component = {}

    def _apart(self, a: Address, b: Address) -> bool:
        component = self._component
        return bool(component) and component.get(a, 0) != component.get(b, 0)

    def socket(self, address: str | Address, *, ifindex: int = 1) -> FakeAdvertSocket:
        """A new endpoint with source ``address``."""
        sock = FakeAdvertSocket(self, to_address(address), ifindex)
        self._sockets.append(sock)
        return sock

    def cut(self, address: str | Address) -> None:
        """Isolate the endpoint with ``address``: it neither sends nor receives."""
        self._cut.add(to_address(address))

    def mend(self, address: str | Address) -> None:
        """Reconnect an endpoint isolated by :meth:`cut`."""
        self._cut.discard(to_address(address))

    def _deliver(self, sender: FakeAdvertSocket, data: bytes, dst: Address) -> None:
        src = sender.local_address
        self.sent.append((src, dst, data))
        if src in self._cut:
            return
        for sock in self._sockets:
            if sock is sender or sock.closed or sock.local_address in self._cut:
                continue
            if sock.local_address.version != src.version:
                continue
            if dst.is_multicast or dst == sock.local_address:
                if self._apart(src, sock.local_address):
                    continue
                ttl = 255 if dst.is_multicast or src.version == 4 else 64
                self._carry(sock, ReceivedPacket(data, src, dst, ttl, sock.ifindex))

    def _carry(self, sock: FakeAdvertSocket, packet: ReceivedPacket) -> None:
        impairment = self._impairment
        if impairment.is_perfect:
            sock._queue(packet)
            return
        for delay in impairment.delays(self._random):
            if delay <= 0 or self._clock is None:
                sock._queue(packet)
            else:
                self._clock.call_at(
                    self._clock.now() + delay, functools.partial(self._arrive, sock, packet)
                )

    def _arrive(self, sock: FakeAdvertSocket, packet: ReceivedPacket) -> None:
        # A partition made, or a cable pulled, while the packet was on its way stops it too.
        if (
            not sock.closed
            and sock.local_address not in self._cut
            and not self._apart(packet.src, sock.local_address)
        ):
            sock._queue(packet)


class FakeAdvertSocket:
    """An :class:`~vrrpkit.transports.base.AdvertSocket` on a :class:`FakeNetwork`."""

    #: Marks a stand-in: an Instance given one refuses to open real transports.
    vrrpkit_fake = True

    def __init__(self, network: FakeNetwork, address: Address, ifindex: int) -> None:
        self._network = network
        self._address = address
        self._ifindex = ifindex
        self._mailbox: Mailbox[ReceivedPacket] = Mailbox(1000)
        self._pending: collections.deque[ReceivedPacket] = collections.deque()

    @property
    def closed(self) -> bool:
        """Whether the endpoint is closed."""
        return self._mailbox.closed

    @property
    def local_address(self) -> Address:
        """The source address of this endpoint."""
        return self._address

    @property
    def ifindex(self) -> int:
        """The fake interface index."""
        return self._ifindex

    def _queue(self, packet: ReceivedPacket) -> None:
        self._mailbox.put(packet)

    def discard_queued(self) -> None:
        """Drop the packets received and not read yet (what a run begins with, as the real
        socket's does: those came while nothing ran)."""
        self._pending.clear()
        self._mailbox.take_all()

    async def receive(self) -> ReceivedPacket:
        """The next packet."""
        if not self._pending:
            self._pending.extend(await self._mailbox.get_all())
        return self._pending.popleft()

    async def receive_batch(self) -> builtins.list[ReceivedPacket]:
        """Every queued packet (waits for at least one)."""
        if self._pending:
            packets = builtins.list(self._pending)
            self._pending.clear()
            return packets
        return await self._mailbox.get_all()

    async def send(self, data: bytes, dst: Address) -> None:
        """Put ``data`` on the segment."""
        if self.closed:
            raise TransportError("socket is closed")
        await anyio.lowlevel.checkpoint()
        self._network._deliver(self, data, dst)

    def send_nowait(self, data: bytes, dst: Address) -> None:
        """Put ``data`` on the segment now (receivers read it in their own tasks)."""
        if self.closed:
            raise TransportError("socket is closed")
        self._network._deliver(self, data, dst)

    async def aclose(self) -> None:
        """Close the endpoint; a blocked receive raises ``anyio.ClosedResourceError``."""
        self._mailbox.close()
        await anyio.lowlevel.checkpoint()


class FakeAddressManager:
    """An :class:`~vrrpkit.transports.base.AddressManager` over in-memory interfaces.

    ``log`` records ``("add"|"remove", ifname, address)`` in order. ``fail_add`` and
    ``fail_remove`` make adds and removals of the listed addresses (address objects or
    strings) raise :class:`TransportError` (as a refused netlink request).
    """

    #: Marks a stand-in: an Instance given one refuses to open real transports.
    vrrpkit_fake = True

    def __init__(self, interfaces: Sequence[str] = ("eth0",)) -> None:
        self.addresses: dict[str, set[IPInterface]] = {name: set() for name in interfaces}
        self.log: builtins.list[tuple[str, str, Address]] = []
        self.fail_add: set[Address | str] = set()
        self.fail_remove: set[Address | str] = set()

    def _iface(self, ifname: str) -> set[IPInterface]:
        try:
            return self.addresses[ifname]
        except KeyError:
            raise TransportError(f"no interface {ifname!r}") from None

    def holds(self, ifname: str, address: str | Address) -> bool:
        """Whether ``address`` is on ``ifname`` now."""
        ip = to_address(address)
        return any(i.ip == ip for i in self.addresses.get(ifname, ()))

    async def add(self, ifname: str, address: Address, prefixlen: int | None = None) -> bool:
        """Add ``address`` (idempotent)."""
        await anyio.lowlevel.checkpoint()
        iface = self._iface(ifname)
        if _listed(address, self.fail_add):
            raise TransportError(f"cannot add {address} to {ifname}")
        self.log.append(("add", ifname, address))
        plen = prefixlen if prefixlen is not None else address.max_prefixlen
        entry: IPv4Interface | IPv6Interface = ip_interface(f"{address}/{plen}")
        if any(i.ip == address for i in iface):
            return False
        iface.add(entry)
        return True

    async def remove(self, ifname: str, address: Address, prefixlen: int | None = None) -> bool:
        """Remove ``address`` (idempotent)."""
        await anyio.lowlevel.checkpoint()
        iface = self._iface(ifname)
        if _listed(address, self.fail_remove):
            raise TransportError(f"cannot remove {address} from {ifname}")
        self.log.append(("remove", ifname, address))
        present = {i for i in iface if i.ip == address}
        iface.difference_update(present)
        return bool(present)

    async def list(self, ifname: str) -> builtins.list[IPInterface]:
        """The addresses on ``ifname``."""
        await anyio.lowlevel.checkpoint()
        return sorted(self._iface(ifname), key=str)

    async def aclose(self) -> None:
        """Nothing to release."""


def _listed(address: Address, entries: set[Address | str]) -> bool:
    return any(to_address(entry) == address for entry in entries)


class FakeLinkMonitor:
    """A :class:`~vrrpkit.transports.base.LinkMonitor` driven by :meth:`set`."""

    #: Marks a stand-in: an Instance given one refuses to open real transports.
    vrrpkit_fake = True

    def __init__(self, up: Mapping[str, bool] | None = None) -> None:
        self._state: dict[str, bool] = dict(up or {})
        self._mailbox: Mailbox[LinkChange | TransportError] = Mailbox(10_000)
        self._reading = False

    def set(self, ifname: str, up: bool, *, report: bool = True) -> None:
        """Change an interface's state and report it (``report=False``: a lost event)."""
        if self._state.get(ifname, True) != up:
            self._state[ifname] = up
            if report:
                self._mailbox.put(LinkEvent(ifname, up))

    def address_removed(self, ifname: str, address: Address) -> None:
        """Report ``address`` removed from ``ifname`` (take it off the
        :class:`FakeAddressManager` too, as the kernel would have)."""
        self._mailbox.put(AddressRemoved(ifname, address))

    def fail(self, error: TransportError) -> None:
        """Make the iteration raise ``error`` (as netlink trouble does), after queued events."""
        self._mailbox.put(error)

    async def is_up(self, ifname: str) -> bool:
        """The interface's state (interfaces never mentioned are up)."""
        await anyio.lowlevel.checkpoint()
        return self._state.get(ifname, True)

    def discard_queued(self) -> None:
        """Drop the events reported and not read yet (a run begins with the states)."""
        self._mailbox.take_all()

    def __aiter__(self) -> AsyncIterator[LinkChange]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[LinkChange]:
        from vrrpkit.runtime.hub import link_events

        if self._reading:
            # One mailbox, one reader: a second would take the first one's events.
            raise ConfigError("a FakeLinkMonitor serves one instance at a time; give each its own")
        self._reading = True
        try:
            async for change in link_events(self._mailbox):
                yield change
        finally:
            self._reading = False

    async def aclose(self) -> None:
        """End the iteration."""
        self._mailbox.close()
        await anyio.lowlevel.checkpoint()


class FakeAnnouncer:
    """An :class:`~vrrpkit.transports.base.Announcer` that records each announcement."""

    #: Marks a stand-in: an Instance given one refuses to open real transports.
    vrrpkit_fake = True

    def __init__(self) -> None:
        self.announced: builtins.list[Address] = []

    async def announce(self, address: Address) -> None:
        """Record one gratuitous ARP / unsolicited NA."""
        await anyio.lowlevel.checkpoint()
        self.announced.append(address)

    async def aclose(self) -> None:
        """Nothing to release."""


class FakeRunner:
    """A :class:`~vrrpkit.transports.base.ProcessRunner` whose programs are Python functions.

    ``programs[argv[0]]`` is called with the argv and returns an exit code, or a
    :class:`~vrrpkit.transports.base.ProcessResult` for a run that timed out or was killed
    by a signal; one that raises counts as a program that could not run (as the real
    runner reports it), and a program not registered as a missing executable. ``calls``
    records every argv in order.
    """

    #: Marks a stand-in: an Instance given one refuses to open real transports.
    vrrpkit_fake = True

    def __init__(
        self, programs: Mapping[str, Callable[[Sequence[str]], int | ProcessResult]] | None = None
    ):
        self.programs: dict[str, Callable[[Sequence[str]], int | ProcessResult]] = dict(
            programs or {}
        )
        self.calls: builtins.list[tuple[str, ...]] = []
        #: The (user, group) each call asked for, in the same order.
        self.users: builtins.list[tuple[str | None, str | None]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        group: str | None = None,
    ) -> ProcessResult:
        """Run the registered function for ``argv[0]``."""
        await anyio.lowlevel.checkpoint()
        args = tuple(argv)
        self.calls.append(args)
        self.users.append((user, group))
        program = self.programs.get(args[0]) if args else None
        if program is None:
            return ProcessResult(args, None, error=f"no such program: {args[:1]}")
        try:
            outcome = program(args)
        except Exception as exc:  # a runner never raises for a program's failure
            return ProcessResult(args, None, error=f"{args[0]} raised {exc!r}")
        if isinstance(outcome, ProcessResult):
            return outcome
        return ProcessResult(args, outcome)
