"""TransportHub: the real transports shared by every instance of one process.

keepalived opens one socket per interface and family and dispatches packets by VRID; a hub
does the same for :class:`~vrrpkit.Instance` objects: one raw socket per (namespace,
interface, family, source, mode), read by one task that hands each packet to the instance of
its VRID; one netlink address manager and one link monitor per namespace, with the link
events fanned out; one gratuitous ARP/NA sender per interface.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from vrrpkit.core.addresses import Address
from vrrpkit.core.errors import ConfigError
from vrrpkit.runtime.mailbox import Mailbox
from vrrpkit.transports.base import (
    AddressManager,
    AdvertSocket,
    Announcer,
    LazyAdvertSocket,
    LinkChange,
    LinkMonitor,
    PacketHandler,
    ReceivedPacket,
    TransportError,
)

if TYPE_CHECKING:
    from vrrpkit.transports.clock import PreciseClock
    from vrrpkit.transports.uring import Series

__all__ = ["TransportHub"]

logger = logging.getLogger("vrrpkit.hub")

#: Seconds between a link monitor's failure and listening (and reading link states) again.
LINK_RETRY_DELAY = 1.0

_SocketKey = tuple[str | None, str, int, Address | None, bool]


class _SharedSocket:
    """One real socket and the per-VRID ports reading from it."""

    def __init__(
        self, sock: LazyAdvertSocket, reopen: Callable[[], Awaitable[LazyAdvertSocket]]
    ) -> None:
        self.sock = sock
        self.ports: dict[int, _Port] = {}
        self.unknown_vrid = 0
        self._reopen = reopen
        self._renewing = anyio.Lock()
        # The socket is read lazily only while every port's instance is content with it.
        self._eager: set[_Port] = set()

    def want_lazy(self, port: _Port, lazy: bool) -> bool:
        if lazy:
            self._eager.discard(port)
        else:
            self._eager.add(port)
        return self.sock.set_lazy(not self._eager)

    def forget(self, port: _Port) -> None:
        self._eager.discard(port)
        self.sock.set_lazy(bool(self.ports) and not self._eager)

    async def read(self) -> None:
        while True:
            sock = self.sock
            try:
                await sock.deliver(self.dispatch)
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                pass
            except TransportError as exc:
                logger.error("shared socket receive failed: %s", exc)
                await anyio.sleep(0.1)
                continue
            if self.sock is sock:
                return  # closed for good
            # else: replaced by renew(); read the fresh one

    async def renew(self, ifindex: int) -> None:
        """Reopen the socket if it is bound to an older interface than ``ifindex``."""
        async with self._renewing:
            if self.sock.ifindex == ifindex:
                return  # another instance on this socket renewed it already
            fresh = await self._reopen()
            fresh.set_lazy(not self._eager)
            stale, self.sock = self.sock, fresh
            logger.info("shared socket reopened on interface index %d", fresh.ifindex)
            await stale.aclose()

    async def renew_source(self, gone: Address, avoid: Collection[Address] = ()) -> None:
        """Reopen the socket on the interface's current address if it still sends from
        ``gone`` (an address no longer on the interface); kept if the address it would
        take is ``gone`` again or one to ``avoid`` (a VIP)."""
        async with self._renewing:
            if self.sock.local_address != gone:
                return  # another instance on this socket renewed it already
            fresh = await self._reopen()
            if fresh.local_address == gone or fresh.local_address in avoid:
                await fresh.aclose()
                return
            fresh.set_lazy(not self._eager)
            stale, self.sock = self.sock, fresh
            logger.info("shared socket reopened from %s", fresh.local_address)
            await stale.aclose()

    async def aclose(self) -> None:
        await self.sock.aclose()

    def dispatch(self, packets: list[ReceivedPacket]) -> None:
        ports = self.ports
        by_port: dict[_Port, list[ReceivedPacket]] = {}
        for packet in packets:
            data = packet.data
            port = ports.get(data[1]) if len(data) > 1 else None
            if port is None:
                self.unknown_vrid += 1  # keepalived drops unknown VRIDs uncounted per VRID
            else:
                by_port.setdefault(port, []).append(packet)
        for port, batch in by_port.items():
            port.put(batch)


def _nothing() -> None:
    pass


class _Port:
    """An :class:`AdvertSocket` view of a shared socket for one VRID."""

    def __init__(self, shared: _SharedSocket, vrid: int) -> None:
        self._shared = shared
        self._vrid = vrid
        self.mailbox: Mailbox[ReceivedPacket] = Mailbox(1000)
        self._handler: PacketHandler | None = None

    @property
    def local_address(self) -> Address:
        return self._shared.sock.local_address

    @property
    def ifindex(self) -> int:
        return self._shared.sock.ifindex

    def put(self, packets: list[ReceivedPacket]) -> None:
        handler = self._handler
        if handler is not None:
            try:
                handler(packets)
            except Exception:
                # One instance's failure must not cost the others sharing the socket their
                # packets.
                logger.exception("VRID %d: handling received packets failed", self._vrid)
        else:
            for packet in packets:
                self.mailbox.put(packet)

    async def receive(self) -> ReceivedPacket:
        return (await self.receive_batch())[0]

    async def receive_batch(self) -> list[ReceivedPacket]:
        return await self.mailbox.get_all()

    def attach(self, handler: PacketHandler) -> None:
        """Hand every packet for this VRID to ``handler`` from now on, until closed."""
        self._handler = handler
        queued = self.mailbox.take_all()
        if queued:
            handler(queued)

    async def deliver(self, handler: PacketHandler) -> None:
        if self._handler is not None:
            raise anyio.BusyResourceError("receiving from")
        self.attach(handler)
        try:
            await self.mailbox.wait_closed()
        finally:
            self._handler = None

    async def send(self, data: bytes, dst: Address) -> None:
        await self._shared.sock.send(data, dst)

    async def renew(self, ifindex: int) -> None:
        """Reopen the shared socket for an interface that came back as ``ifindex``."""
        await self._shared.renew(ifindex)

    async def renew_source(self, gone: Address, avoid: Collection[Address] = ()) -> None:
        """Reopen the shared socket if it sends from ``gone``, an address now removed."""
        await self._shared.renew_source(gone, avoid)

    def send_nowait(self, data: bytes, dst: Address) -> None:
        self._shared.sock.send_nowait(data, dst)

    def send_repeatedly(
        self,
        key: int,
        packets: Sequence[tuple[bytes, Address]],
        first: float,
        interval: float,
        rounds: int,
        relative: bool = False,
    ) -> Series | None:
        """The shared socket's :meth:`RawAdvertSocket.send_repeatedly`."""
        send = getattr(self._shared.sock, "send_repeatedly", None)
        if not callable(send):
            return None
        series: Series | None = send(key, packets, first, interval, rounds, relative)
        return series

    def set_lazy(self, lazy: bool) -> bool:
        """Ask for lazy reading; the shared socket is lazy while all its ports ask for it.

        Returns whether the shared socket is read lazily now.
        """
        return self._shared.want_lazy(self, lazy)

    def poll(self) -> None:
        """Hand what the shared socket has received to every port's instance, now."""
        self._shared.sock.poll()

    def watch_silence(
        self,
        vrid: int,
        deadline: float | None,
        interval: float | None,
        wake: Callable[[], None],
    ) -> bool:
        """The shared socket's :meth:`RawAdvertSocket.watch_silence` for this port's VRID."""
        watch = getattr(self._shared.sock, "watch_silence", None)
        return bool(callable(watch) and watch(self._vrid, deadline, interval, wake))

    async def aclose(self) -> None:
        self._handler = None
        self.mailbox.close()
        if self._shared.ports.get(self._vrid) is self:
            del self._shared.ports[self._vrid]
            self.watch_silence(self._vrid, None, None, _nothing)  # the kernel's timer too
        self._shared.forget(self)
        await anyio.lowlevel.checkpoint()


class _SharedLinks:
    """One link monitor whose events are copied to every subscriber."""

    def __init__(self, monitor: LinkMonitor) -> None:
        self.monitor = monitor
        self.views: set[_LinkView] = set()

    async def read(self) -> None:
        try:
            while True:
                try:
                    async for event in self.monitor:
                        for view in list(self.views):
                            view.deliver(event)
                    return
                except TransportError as exc:
                    # Each instance hears of it through its view (and reads its links'
                    # states again); the hub, whose task group holds the application's
                    # code, carries on listening.
                    logger.error("link monitor failed (listening again): %s", exc)
                    for view in list(self.views):
                        view.deliver(exc)
                    await anyio.sleep(LINK_RETRY_DELAY)
        finally:
            for view in list(self.views):
                view.mailbox.close()


class _LinkView:
    """A :class:`LinkMonitor` view of a shared monitor."""

    def __init__(self, shared: _SharedLinks) -> None:
        self._shared = shared
        self.mailbox: Mailbox[LinkChange | TransportError] = Mailbox(10_000)
        self._handler: Callable[[LinkChange | TransportError], None] | None = None
        shared.views.add(self)

    def attach(self, handler: Callable[[LinkChange | TransportError], None]) -> bool:
        """Have the hub's reading task call ``handler`` with each event or failure (those
        queued so far first) instead of queueing them for iteration: an instance then needs
        no task of its own to wait for link events, which are rare. True once attached."""
        self._handler = handler
        for item in self.mailbox.take_all():
            self.deliver(item)
        return True

    def deliver(self, item: LinkChange | TransportError) -> None:
        """Hand ``item`` to the attached handler, or queue it."""
        handler = self._handler
        if handler is None:
            self.mailbox.put(item)
            return
        try:
            handler(item)
        except Exception:  # one subscriber's bug must not stop the others' events
            logger.exception("link event handler failed (carrying on)")

    async def is_up(self, ifname: str) -> bool:
        return await self._shared.monitor.is_up(ifname)

    def __aiter__(self) -> AsyncIterator[LinkChange]:
        return link_events(self.mailbox)

    async def aclose(self) -> None:
        self._shared.views.discard(self)
        self._handler = None
        self.mailbox.close()
        await anyio.lowlevel.checkpoint()


async def link_events(
    mailbox: Mailbox[LinkChange | TransportError],
) -> AsyncIterator[LinkChange]:
    """The events of ``mailbox`` as they come, raising a failure queued among them."""
    async with contextlib.aclosing(mailbox.iterate()) as items:
        async for item in items:
            if isinstance(item, TransportError):
                raise item
            yield item


class _Unclosable:
    """Hands a shared transport to an instance without letting the instance close it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()


class TransportHub:
    """Real transports shared by many instances: ``async with TransportHub() as hub``.

    Pass it as ``Instance(..., hub=hub)``; the instance then takes its socket, netlink
    managers and announcer from the hub. Closing the hub closes them all.
    """

    def __init__(self) -> None:
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()
        self._sockets: dict[_SocketKey, _SharedSocket] = {}
        self._addresses: dict[str | None, AddressManager] = {}
        self._links: dict[str | None, _SharedLinks] = {}
        self._announcers: dict[tuple[str | None, str], Announcer] = {}
        self._lock: anyio.Lock | None = None
        self._clock: PreciseClock | None = None

    async def __aenter__(self) -> TransportHub:
        from vrrpkit.transports.clock import PreciseClock, TimerQueue

        await self._stack.__aenter__()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._lock = anyio.Lock()
        timers = TimerQueue.create()
        if timers is not None:
            self._stack.callback(timers.close)
            self._tg.start_soon(timers.run)
        self._clock = PreciseClock(timers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)
        self._tg = None

    def _require(self) -> tuple[anyio.abc.TaskGroup, anyio.Lock]:
        if self._tg is None or self._lock is None:
            raise ConfigError("use the hub inside `async with TransportHub() as hub:`")
        return self._tg, self._lock

    @property
    def clock(self) -> PreciseClock:
        """The precise clock whose alarms share one timer (instances use it by default).

        Instances on one timer send their adverts in the same wake-ups of the process,
        as keepalived's do.
        """
        if self._clock is None:
            raise ConfigError("use the hub inside `async with TransportHub() as hub:`")
        return self._clock

    @property
    def sockets(self) -> int:
        """How many real advert sockets are open."""
        return len(self._sockets)

    async def advert_socket(
        self,
        ifname: str,
        family: int,
        *,
        vrid: int,
        source: Address | None,
        multicast: bool,
        netns: str | None,
    ) -> AdvertSocket:
        """A socket view for ``vrid`` on the shared socket of ``ifname``/``family``."""
        tg, lock = self._require()
        key: _SocketKey = (netns, ifname, family, source, multicast)
        async with lock:
            shared = self._sockets.get(key)
            if shared is None:
                from vrrpkit.transports.rawsocket import RawAdvertSocket

                async def reopen() -> LazyAdvertSocket:
                    return await RawAdvertSocket.open(
                        ifname,
                        4 if family == 4 else 6,
                        source=source,
                        multicast=multicast,
                        netns=netns,
                    )

                shared = self._sockets[key] = _SharedSocket(await reopen(), reopen)
                self._stack.push_async_callback(shared.aclose)
                tg.start_soon(shared.read)
            if vrid in shared.ports:
                raise ConfigError(f"VRID {vrid} is already used on {ifname} (IPv{family})")
            port = shared.ports[vrid] = _Port(shared, vrid)
            shared.want_lazy(port, False)
            return port

    async def address_manager(self, netns: str | None) -> AddressManager:
        """The namespace's shared netlink address manager."""
        _tg, lock = self._require()
        async with lock:
            manager = self._addresses.get(netns)
            if manager is None:
                from vrrpkit.transports.netlink import NetlinkAddressManager

                manager = await NetlinkAddressManager.open(netns=netns)
                self._stack.push_async_callback(manager.aclose)
                self._addresses[netns] = manager
            return _Unclosable(manager)

    async def link_monitor(self, netns: str | None) -> LinkMonitor:
        """A view of the namespace's shared link monitor."""
        tg, lock = self._require()
        async with lock:
            shared = self._links.get(netns)
            if shared is None:
                from vrrpkit.transports.netlink import NetlinkLinkMonitor

                monitor = await NetlinkLinkMonitor.open(netns=netns)
                self._stack.push_async_callback(monitor.aclose)
                shared = self._links[netns] = _SharedLinks(monitor)
                tg.start_soon(shared.read)
            return _LinkView(shared)

    async def announcer(self, ifname: str, netns: str | None) -> Announcer:
        """The interface's shared gratuitous ARP / NA sender."""
        _tg, lock = self._require()
        async with lock:
            sender = self._announcers.get((netns, ifname))
            if sender is None:
                from vrrpkit.transports.garp import GarpSender

                sender = await GarpSender.open(ifname, netns=netns)
                self._stack.push_async_callback(sender.aclose)
                self._announcers[(netns, ifname)] = sender
            return _Unclosable(sender)
