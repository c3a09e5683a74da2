"""Instance: one VRRP virtual router running inside an anyio application.

The instance owns a core :class:`~vrrpkit.core.router.Router` and pumps its transports into
it: received packets, timer deadlines, tracker results and link changes go in; the actions
that come out are performed in order (advert, addresses, gratuitous ARP/NA) and state changes
are handed to callbacks and notify programs on a separate task, so a slow callback never
delays the protocol.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from typing import Any, TypeAlias, cast

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from vrrpkit.core.actions import (
    Action,
    AddVips,
    AnnounceVips,
    PacketDropped,
    RemoveVips,
    SendAdvertisement,
    SplitBrain,
    StateChanged,
)
from vrrpkit.core.addresses import Address, multicast_group, to_address, to_addresses
from vrrpkit.core.config import RouterConfig
from vrrpkit.core.counters import Counters
from vrrpkit.core.errors import ConfigError, VrrpError
from vrrpkit.core.packet import Advertisement
from vrrpkit.core.router import NO_SOURCE_FAULT, Router, RouterError
from vrrpkit.core.states import State
from vrrpkit.core.tracking import Tracker
from vrrpkit.core.transitions import Cause
from vrrpkit.runtime.callbacks import Callback, CallbackRegistry, StateCallbacks, timeout_seconds
from vrrpkit.runtime.cancellation import is_stray_cancellation
from vrrpkit.runtime.hosting import Hosted
from vrrpkit.runtime.hub import LINK_RETRY_DELAY, TransportHub
from vrrpkit.runtime.mailbox import Mailbox
from vrrpkit.runtime.notify import NotifyScripts
from vrrpkit.runtime.timeouts import move_on_after
from vrrpkit.runtime.trackers import CheckTracker, InterfaceTracker, ScriptTracker, TrackerSpec
from vrrpkit.transports.base import (
    AddressManager,
    AddressRemoved,
    AdvertSocket,
    Alarm,
    Announcer,
    Clock,
    LinkChange,
    LinkMonitor,
    ProcessRunner,
    ReceivedPacket,
    TransportError,
)
from vrrpkit.transports.uring import RoundsSent, Series

__all__ = ["Event", "Instance", "TransportFailure"]

logger = logging.getLogger("vrrpkit.instance")

#: Seconds before trying again what failed outside the protocol's own timers: reading the
#: links after a link monitor failure, opening a socket on a re-created interface, removing
#: a VIP while not MASTER.
RETRY_DELAY = LINK_RETRY_DELAY


@attrs.frozen
class TransportFailure:
    """A transport operation failed; the instance logged it and carried on (or went FAULT)."""

    instance: str
    operation: str
    error: str


Event: TypeAlias = StateChanged | SplitBrain | TransportFailure


@attrs.frozen
class _RetryVips:
    """Effect: add the VIPs a refused request left out (once per advert interval as MASTER)."""


@attrs.frozen
class _ForGroup:
    """Effect: hand a sync group's state change on, after this member's own effects.

    The member's callbacks reach it in order: ``deliver()`` tells the group this member
    has performed what came before the change; ``delivered()`` waits until the group has
    delivered it, so that the member's later changes come after it (keepalived writes
    both, in transition order, to its notify FIFO).
    """

    deliver: Callable[[], None]
    delivered: Callable[[], Awaitable[None]]


@attrs.frozen
class _VipsAdded:
    """Effect: collect the answers to VIP additions already sent (``None``: not sent yet)."""

    tickets: tuple[tuple[IPv4Interface | IPv6Interface, int | None], ...]


_Effect: TypeAlias = Action | _RetryVips | _ForGroup | _VipsAdded
# A start held in FAULT only until its weight-0 trackers' first results: keepalived runs no
# FAULT notify for it, and no callback runs here either.
_UNANNOUNCED = Cause.STARTUP_AWAITING.value
# RawAdvertSocket.watch_silence(vrid, deadline, interval, wake) -> whether it times the silence.
_SilenceWatch: TypeAlias = Callable[[int, float | None, float | None, Callable[[], None]], bool]
_RepeatSender: TypeAlias = Callable[
    [int, Sequence[tuple[bytes, Address]], float, float, int, bool], Series | None
]

#: The most adverts a MASTER queues on the kernel's timers at a time (see ``send_ahead``),
#: and the fewest worth queueing.
MAX_SENT_AHEAD = 100
MIN_SENT_AHEAD = 4


def _vip(value: Any) -> IPv4Interface | IPv6Interface:
    """A VIP with its prefix: ``"192.0.2.10"`` (full length) or ``"192.0.2.10/24"``."""
    if isinstance(value, (IPv4Interface, IPv6Interface)):
        return value
    try:
        return ip_interface(value)
    except ValueError as exc:
        raise ConfigError(f"not a virtual IP address: {value!r}") from exc


class Instance(StateCallbacks, Hosted):
    """One virtual router on one interface, embedded in an anyio program.

    Use it as ``async with Instance(...) as inst:`` or run it with ``await inst.run()`` under
    a task group (``await tg.start(inst.run)`` waits until it has started). Leaving the
    ``async with`` block for any reason, an exception included, stops it gracefully: a MASTER
    sends priority 0 and removes its addresses, so a backup takes over within skew time.

    Track scripts and notify programs run as ``script_user``/``script_group`` when given
    (keepalived's ``script_user``), else with our own credentials.

    Transports default to the real ones (raw socket, netlink, AF_PACKET, subprocesses, a
    precise monotonic clock); pass fakes from :mod:`vrrpkit.testing` to test on a virtual
    clock.
    Further keyword ``options`` are :class:`vrrpkit.RouterConfig` fields (for example
    ``down_timer_adverts``, ``garp_repeat``, ``lower_prio_advert``).
    """

    def __init__(
        self,
        name: str,
        *,
        interface: str,
        vrid: int,
        priority: int,
        vips: Iterable[Any],
        interval: float = 1.0,
        version: int = 3,
        preempt: bool = True,
        preempt_delay: float = 0.0,
        unicast_peers: Iterable[Any] = (),
        source: Any = None,
        trackers: Iterable[TrackerSpec] = (),
        notify: Sequence[str] | None = None,
        notify_master: Sequence[str] | None = None,
        notify_backup: Sequence[str] | None = None,
        notify_fault: Sequence[str] | None = None,
        notify_stop: Sequence[str] | None = None,
        notify_timeout: float = 10.0,
        script_user: str | None = None,
        script_group: str | None = None,
        callback_timeout: float | None = 10.0,
        shutdown_timeout: float = 10.0,
        send_ahead: float = 2.0,
        clock: Clock | None = None,
        socket: AdvertSocket | None = None,
        addresses: AddressManager | None = None,
        links: LinkMonitor | None = None,
        announcer: Announcer | None = None,
        runner: ProcessRunner | None = None,
        netns: str | None = None,
        hub: TransportHub | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(interface, str) or not interface:
            raise ConfigError(f"interface must be a non-empty string, got {interface!r}")
        if (
            isinstance(send_ahead, bool)
            or not isinstance(send_ahead, (int, float))
            or not 0 <= send_ahead < math.inf
        ):
            raise ConfigError(f"send_ahead must be seconds >= 0, got {send_ahead!r}")
        self._send_ahead = float(send_ahead)
        self._vips = tuple(_vip(v) for v in vips)
        self._source = to_address(source) if source is not None else None
        peers = to_addresses(unicast_peers)
        self._specs = tuple(trackers)
        tracked = [s.ifname for s in self._specs if isinstance(s, InterfaceTracker)]
        if interface in tracked:
            # keepalived ignores it ("since own interface"): the instance's own interface
            # already puts it in FAULT when down, and a weight on it would only skew priority.
            raise ConfigError(
                f"instance {name!r}: InterfaceTracker({interface!r}) tracks the instance's "
                "own interface, which always puts it in FAULT when down"
            )
        self._tracked_links = frozenset(tracked)
        #: Our interface, then each tracked one: the links whose state the router follows.
        self._link_names = tuple(dict.fromkeys([interface, *tracked]))
        for spec in self._specs:
            if not isinstance(spec, (Tracker, CheckTracker, ScriptTracker, InterfaceTracker)):
                raise ConfigError(f"not a tracker: {spec!r}")
        family = self._family(peers)
        # Until the socket knows our real source address, a placeholder of the right family
        # lets the whole configuration be validated now, where the user wrote it.
        placeholder = to_address("192.0.2.0" if family == 4 else "fe80::")
        self._config = RouterConfig(
            name=name,
            vrid=vrid,
            priority=priority,
            address=self._source or placeholder,
            vips=tuple(v.ip for v in self._vips),
            interval=interval,
            version=version,
            preempt=preempt,
            preempt_delay=preempt_delay,
            trackers=tuple(
                spec if isinstance(spec, Tracker) else spec.tracker for spec in self._specs
            ),
            unicast_peers=peers,
            **options,
        )
        self.interface = interface
        self._notify = NotifyScripts(
            notify=notify,
            master=notify_master,
            backup=notify_backup,
            fault=notify_fault,
            stop=notify_stop,
        )
        self._notify_timeout = timeout_seconds("notify_timeout", notify_timeout)
        self._script_user = script_user
        self._script_group = script_group
        self._shutdown_timeout = timeout_seconds("shutdown_timeout", shutdown_timeout)
        self._callbacks = CallbackRegistry(timeout=callback_timeout, owner=name)
        given = {"socket": socket, "addresses": addresses, "links": links, "announcer": announcer}
        fakes = any(getattr(t, "vrrpkit_fake", False) for t in (clock, runner, *given.values()))
        if hub is None and fakes:
            missing = [name for name, transport in given.items() if transport is None]
            if runner is None and (
                any(isinstance(t, ScriptTracker) for t in self._specs)
                or any((notify, notify_master, notify_backup, notify_fault, notify_stop))
            ):
                missing.append("runner")  # the real one would run the programs named
            if missing:
                # A test that left one out would act on the host's real interfaces.
                raise ConfigError(
                    f"instance {name!r} is given fakes but no {', '.join(missing)}: the "
                    "real ones would act on this host's interfaces; pass fakes for them too"
                )
        self._given_fakes = fakes  # (a sync group's notify programs need a fake runner too)
        self._clock = clock
        self._socket = socket
        self._addresses = addresses
        self._links = links
        self._announcer = announcer
        self._runner = runner
        self._netns = netns
        self._hub = hub
        self._owns_socket = False
        # Transports the caller gave, which outlive a run: what they queued while no run
        # read them is dropped when the next one starts (see _discard_stale).
        self._supplied = tuple(t for t in (socket, links) if t is not None)
        self._renewing: anyio.Lock | None = None
        self._following_source = False  # _follow_source runs
        self._router = Router(self._config)
        self._alarm: Alarm | None = None
        self._armed: float | None = None
        # Lazy reading (see LazyAdvertSocket): asked of the socket while not MASTER; then
        # _poll fetches what arrived before each other input, so the order holds.
        self._lazy_asked: bool | None = None
        self._poll: Callable[[], None] | None = None
        # While lazy, the socket may let the kernel time a master's silence (no alarm then).
        self._watch_silence: _SilenceWatch | None = None
        self._kernel_timed = False  # the socket said yes: no alarm of our own now
        # VIP removals queued or under way: an addition may not overtake one of them.
        self._removals_pending = 0
        self._effects_scope: anyio.CancelScope | None = None
        self._started = False  # the router has been started by run() and not yet stopped
        self._effects: Mailbox[_Effect] = Mailbox(1 << 62)
        self._retry_queued = False
        self._send_now: Callable[[bytes, Address], None] | None = None
        # A MASTER's coming adverts queued on the kernel's timers (the socket's
        # send_repeatedly), and when to queue more.
        self._send_repeatedly: _RepeatSender | None = None
        self._repeat: Series | None = None
        self._repeat_refill = 0.0
        # After a series failed, the router sends on its own timer (and meets the error on
        # its own path, once per advert) until then.
        self._repeat_held_until = -math.inf
        self._wire: dict[
            int, tuple[Advertisement, RouterConfig, tuple[tuple[Address, bytes], ...]]
        ] = {}
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()
        self._stop_requested = anyio.Event()
        # Opening the transports and reading the links, before the router starts: a stop()
        # meanwhile ends the run there (a netlink that never answers must not hold it).
        self._opening: anyio.CancelScope | None = None
        self._run_ended = False  # a run has ended: a stop() from then on was for it
        self._effects_served = False  # a run's effects task serves the mailbox
        self._effects_batch: list[_Effect] = []  # the effects being performed
        self._shutting_down = False  # this run's shutdown has begun
        self._marker_wait: anyio.CancelScope | None = None  # waiting for the group
        self._dispatch_scope: anyio.CancelScope | None = None
        #: The running instance's task group (None outside run), and the retries waiting
        #: there (see _retry_later).
        self._tasks: anyio.abc.TaskGroup | None = None
        self._retries: set[str] = set()
        # A hub's link events, handed over by its reading task, waiting for _drain_links.
        self._link_backlog: list[LinkChange | TransportError] = []
        self._draining_links = False
        #: Names of in-thread checks whose thread is still running.
        self._checks_in_threads: set[str] = set()
        self._running = False
        self._vips_held: set[Address] = set()
        # VIPs whose addition is sent or planned but not answered yet, and those of them
        # someone else removed meanwhile (the kernel's answer and its address notifications
        # come on different sockets, so the removal may be read first).
        self._vips_adding: set[Address] = set()
        self._vips_lost: set[Address] = set()
        self._notify_failures = 0
        self._transport_failures = 0
        self._last_transition: float | None = None
        self._group_hook: Callable[[Instance, list[Action]], None] | None = None
        self._monotonic = False
        self._changes: MemoryObjectSendStream[StateChanged | SplitBrain | _ForGroup] | None = None

    def _family(self, peers: tuple[Address, ...]) -> int:
        for candidate in (self._source, *(v.ip for v in self._vips), *peers):
            if candidate is not None:
                return candidate.version
        return 4

    # -- public views ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The instance's name."""
        return self._config.name

    @property
    def config(self) -> RouterConfig:
        """The core configuration (its address is the real source once running)."""
        return self._router.config

    @property
    def state(self) -> State:
        """The current state of the protocol.

        It changes as soon as the protocol does; the VIPs follow on the effects task, and the
        callbacks after them, so wait for a callback to know the addresses have moved.
        """
        return self._router.state

    @property
    def effective_priority(self) -> int:
        """The effective priority (base plus tracker weights)."""
        return self._router.effective_priority

    @property
    def counters(self) -> Counters:
        """A copy of the protocol counters."""
        self._catch_up()
        self._settle_sends()
        return self._router.counters

    @property
    def router(self) -> Router:
        """The core router (read its properties; drive it only through the instance)."""
        return self._router

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot: state, priorities, trackers, master, counters."""
        self._catch_up()
        self._settle_sends()
        router, cfg = self._router, self._router.config
        states = router.tracker_states
        contributions = router.tracker_contributions()
        return {
            "name": self.name,
            "interface": self.interface,
            "vrid": cfg.vrid,
            "version": cfg.version,
            "state": router.state.value,
            "wantstate": router.wantstate.value,
            "base_priority": cfg.priority,
            "effective_priority": router.effective_priority,
            "address": str(cfg.address),
            "master_address": None if router.master_address is None else str(router.master_address),
            "master_priority": router.master_priority,
            "interval": cfg.interval,
            "master_adver_interval": router.master_adver_interval,
            "preempt": cfg.preempt,
            "preempt_delay": cfg.preempt_delay,
            "unicast_peers": [str(p) for p in cfg.unicast_peers],
            "vips": [str(v) for v in self._vips],
            "vips_held": sorted(str(v) for v in self._vips_held),
            "faults": sorted(router.faults),
            "trackers": {
                t.name: {
                    "weight": t.weight,
                    "ok": states[t.name],
                    "contribution": contributions[t.name],
                }
                for t in cfg.trackers
            },
            "last_transition": self._last_transition,
            "receive_mode": self._receive_mode(),
            "send_mode": "timer" if self._repeat is None else "kernel-timed",
            "counters": router.counters.as_dict(),
            "callback_errors": self._callbacks.errors,
            "callback_timeouts": self._callbacks.timeouts,
            "notify_failures": self._notify_failures,
            "transport_failures": self._transport_failures,
        }

    def _receive_mode(self) -> str:
        if self._poll is None:
            return "eager"  # every advert handled as it comes
        # "lazy": read when the down timer is due; "kernel-timed": the kernel times the
        # master's silence and wakes us only when it lasts (docs/instance.md).
        return "kernel-timed" if self._kernel_timed else "lazy"

    # -- callbacks and events --------------------------------------------------------------

    def on_split_brain(self, callback: Callback) -> Callback:
        """Call ``callback(report: SplitBrain)`` when a MASTER hears another master.

        ``report.yielded`` False is keepalived's MASTER_RX_LOWER_PRI: a lower-priority router
        also believes it is master (typically a healed partition), and we answered with an
        advert and gratuitous ARPs; True means we stepped down to a higher priority.
        """
        return self._callbacks.add_split_brain(callback)

    async def events(self, buffer: int = 256) -> AsyncIterator[Event]:
        """Iterate over state changes, split-brain reports and transport failures.

        Each iteration has its own buffer; a reader that falls ``buffer`` events behind loses
        the newest ones (logged). The iteration ends when the instance's run ends; one begun
        while no run is going (before the first, or between two) follows the next run.
        """
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            self._subscribers.discard(send)

    def _publish(self, event: Event) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                logger.warning("%s: an events() reader is too slow; dropped %s", self.name, event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)

    # -- inputs from the application ---------------------------------------------------------

    async def tracker_result(self, name: str, ok: bool) -> None:
        """Feed one result of tracker ``name`` (for plain :class:`vrrpkit.Tracker` values)."""
        self._track(name, ok)
        await anyio.lowlevel.checkpoint()

    def stop(self) -> None:
        """Stop gracefully: a MASTER sends priority 0 now; ``run`` returns once cleaned up.

        Asked before the first ``run`` has started, the request waits for it: ``run`` then
        starts and stops at once. Asked after a run has ended, it does nothing: it was for
        that run (an ``async with`` block's exit after an explicit stop, say), and the next
        run is not stopped by it.

        The priority-0 advert leaves from this call (it is one non-blocking send), so the
        backup's skew timer starts without waiting for the instance's tasks to wind down;
        address removal and STOP callbacks follow on the instance's own tasks.
        """
        if not self._running and (self._run_ended or self._router.state is State.STOPPED):
            return  # the run is over (stopped already, by us or anyone): nothing to stop
        self._stop_requested.set()
        if self._opening is not None:
            self._opening.cancel()
        if self._started and self._router.state is not State.STOPPED:
            self._shutdown()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Instance] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until :meth:`stop` or cancellation, then stop gracefully."""
        if self._running:
            raise VrrpError(f"instance {self.name!r} is already running")
        self._running = True
        try:
            async with contextlib.AsyncExitStack() as stack:
                with anyio.CancelScope() as opening:
                    self._opening = opening
                    await self._open_transports(stack)
                    self._callbacks.clock = self._clock
                    self._discard_stale()
                    links = await self._link_states()
                self._opening = None
                if opening.cancelled_caught:
                    # Stopped before the router started: nothing to undo. (Reported started,
                    # so that a TaskGroup.start() waiting for it returns, as after a stop.)
                    task_status.started(self)
                    return
                await self._run_open(task_status, links)
        finally:
            self._opening = None
            self._running = False
            self._run_ended = True
            # A stop() asked before this run started was for it (run() saw it at once); one
            # from now on is for the next run.
            self._stop_requested = anyio.Event()
            for send in list(self._subscribers):
                send.close()
            self._subscribers.clear()

    async def _run_open(
        self, task_status: anyio.abc.TaskStatus[Instance], links: dict[str, bool]
    ) -> None:
        self._shutting_down = False
        self._renewing = None  # a lock belongs to one event loop: this run makes its own
        # Link changes the hub handed over after the last run ended (its own VIP removals at
        # stop, say) are that run's.
        self._link_backlog.clear()
        self._draining_links = self._following_source = False
        self._repeat_held_until = -math.inf
        # A hub's socket may have outlived its interface (deleted and created again while no
        # instance of ours ran on it): renewed now, as on a link-up, or held in FAULT until.
        stale = (
            links[self.interface]
            and not self._owns_socket
            and not await self._renew_socket_if_stale()
        )
        if stale:
            links[self.interface] = False
        changes_send, changes_receive = anyio.create_memory_object_stream[
            StateChanged | SplitBrain | _ForGroup
        ](math.inf)  # every change reaches the callbacks, however slow one is: keepalived
        # runs every notify too
        self._changes = changes_send
        if self._effects.closed:  # a previous run's; a group may already have queued work
            self._effects = Mailbox(1 << 62)
            self._removals_pending = 0  # whatever the old mailbox held is gone with it
        # What a previous run left: its retry marker went with its mailbox, its socket's
        # reading mode with its socket.
        self._retry_queued = False
        self._lazy_asked = None
        self._poll = None
        self._watch_silence = None
        dispatcher_done = anyio.Event()
        effects_done = anyio.Event()
        assert self._clock is not None
        from vrrpkit.transports.clock import alarm_for

        self._alarm = alarm_for(self._clock)
        self._armed = None
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._dispatch, changes_receive, dispatcher_done)
                outer.start_soon(self._run_effects, effects_done)
                self._effects_served = True
                try:
                    async with anyio.create_task_group() as tg:
                        self._tasks = tg
                        self._start(links)
                        if stale:
                            self._retry_later("links", self._reread_links)
                        self._started = True
                        # A hub's alarms and sockets call us without a task of our own.
                        attach_alarm = getattr(self._alarm, "attach", None)
                        if not (callable(attach_alarm) and attach_alarm(self._on_alarm)):
                            tg.start_soon(self._alarm.run, self._on_alarm)
                        attach_socket = getattr(self._socket, "attach", None)
                        if callable(attach_socket) and not self._owns_socket:
                            attach_socket(self._on_packets)
                        else:
                            tg.start_soon(self._receive_loop)
                        attach_links = getattr(self._links, "attach", None)
                        if not (callable(attach_links) and attach_links(self._on_link_item)):
                            tg.start_soon(self._link_loop)
                        for spec in self._specs:
                            if isinstance(spec, (CheckTracker, ScriptTracker)):
                                tg.start_soon(self._periodic_tracker, spec)
                        task_status.started(self)
                        await self._stop_requested.wait()
                        tg.cancel_scope.cancel()
                finally:
                    self._tasks = None
                    self._retries.clear()
                    self._link_backlog.clear()  # a next run has a view of its own
                    # Stopping, the member's own callbacks no longer wait for its group's
                    # (a slow group callback would use up this shutdown's time).
                    self._shutting_down = True
                    if self._marker_wait is not None:
                        self._marker_wait.cancel()
                    with (
                        anyio.CancelScope(shield=True),
                        anyio.move_on_after(self._shutdown_timeout) as deadline,
                    ):
                        self._shutdown()
                        self._effects.close()
                        await effects_done.wait()
                        # If the effects task was cancelled with us, perform what it left.
                        for effect in self._effects.take_all():
                            await self._perform_effect(effect)
                        changes_send.close()
                        await dispatcher_done.wait()
                        # If the dispatcher was cancelled with us, deliver what it left.
                        while True:
                            try:
                                change = changes_receive.receive_nowait()
                            except (
                                anyio.WouldBlock,
                                anyio.EndOfStream,
                                anyio.ClosedResourceError,
                            ):
                                break
                            await self._deliver(change)
                        changes_receive.close()
                    if deadline.cancelled_caught:
                        logger.error(
                            "%s: shutdown took over %s s; abandoning what is left",
                            self.name,
                            self._shutdown_timeout,
                        )
                        dropped: list[object] = [
                            *self._effects_batch,  # (markers passed already pass once)
                            *self._effects.take_all(),
                        ]
                        changes_send.close()
                        while True:
                            try:
                                dropped.append(changes_receive.receive_nowait())
                            except (
                                anyio.WouldBlock,
                                anyio.EndOfStream,
                                anyio.ClosedResourceError,
                            ):
                                break
                        # A sync group waits for this member's markers before delivering
                        # its own changes: the group must not wait for them for good.
                        for item in dropped:
                            if isinstance(item, _ForGroup):
                                item.deliver()
                        # The effect and the callback in progress are cancelled (a notify
                        # program's process group is killed), and the callbacks still
                        # queued are dropped: run() returns now.
                        for scope in (self._effects_scope, self._dispatch_scope):
                            if scope is not None:
                                scope.cancel()
                        outer.cancel_scope.cancel()
        finally:
            changes_receive.close()
            self._started = self._effects_served = False
            self._alarm.close()
            self._alarm = None

    async def _open_transports(self, stack: contextlib.AsyncExitStack) -> None:
        # Imported here so that a program using only fakes never touches raw sockets.
        from vrrpkit.transports.clock import PreciseClock

        if self._clock is None:
            self._clock = self._default_clock()
        # Kernel receive timestamps are on CLOCK_MONOTONIC: usable only with that clock.
        self._monotonic = isinstance(self._clock, PreciseClock)
        family = self._config.address.version
        multicast = not self._config.unicast_peers
        hub = self._hub
        if self._socket is None:
            if hub is not None:
                self._socket = await hub.advert_socket(
                    self.interface,
                    family,
                    vrid=self._config.vrid,
                    source=self._source,
                    multicast=multicast,
                    netns=self._netns,
                )
            else:
                self._socket = await self._open_raw_socket()
                self._owns_socket = True
            # A next run opens its own: the stack closes this one (callbacks run last first).
            stack.callback(self._forget_socket)
            stack.push_async_callback(self._close_socket)
        if self._addresses is None:
            if hub is not None:
                self._addresses = await hub.address_manager(self._netns)
            else:
                from vrrpkit.transports.netlink import NetlinkAddressManager

                self._addresses = await NetlinkAddressManager.open(netns=self._netns)
            stack.callback(setattr, self, "_addresses", None)
            stack.push_async_callback(self._addresses.aclose)
        if self._links is None:
            if hub is not None:
                self._links = await hub.link_monitor(self._netns)
            else:
                from vrrpkit.transports.netlink import NetlinkLinkMonitor

                self._links = await NetlinkLinkMonitor.open(netns=self._netns)
            stack.callback(setattr, self, "_links", None)
            stack.push_async_callback(self._links.aclose)
        if self._announcer is None:
            if hub is not None:
                self._announcer = await hub.announcer(self.interface, self._netns)
            else:
                from vrrpkit.transports.garp import GarpSender

                self._announcer = await GarpSender.open(self.interface, netns=self._netns)
            stack.callback(setattr, self, "_announcer", None)
            stack.push_async_callback(self._announcer.aclose)
        if self._runner is None:
            from vrrpkit.transports.process import SubprocessRunner

            self._runner = SubprocessRunner()
        self._adopt_local_address()

    def _discard_stale(self) -> None:
        """Drop adverts and link events a supplied socket or link monitor queued while no
        run read them: a run begins with the links' states and hears adverts from now on
        (a priority-0 advert from minutes ago is no reason for a takeover)."""
        for transport in self._supplied:
            discard = getattr(transport, "discard_queued", None)
            if callable(discard):
                discard()

    async def _open_raw_socket(self) -> AdvertSocket:
        from vrrpkit.transports.rawsocket import RawAdvertSocket

        return await RawAdvertSocket.open(
            self.interface,
            4 if self._config.address.version == 4 else 6,
            source=self._source,
            multicast=not self._config.unicast_peers,
            netns=self._netns,
        )

    def _forget_socket(self) -> None:
        self._take_back()
        self._socket = None
        self._owns_socket = False
        self._send_now = None
        self._send_repeatedly = None

    async def _close_socket(self) -> None:
        if self._socket is not None:
            await self._socket.aclose()

    async def _renew_socket_if_stale(self) -> bool:
        """Reopen our raw socket if the interface came back as a new one (new ifindex).

        A raw socket stays bound to the interface it was opened on; after the interface is
        deleted and created again it would neither send nor receive, and the instance would
        become a MASTER nobody hears. Returns False if the socket is stale and could not be
        reopened (the interface has no usable address yet, say).
        """
        if self._renewing is None:
            self._renewing = anyio.Lock()
        # One renewal at a time: a link event and a retry of the link states may both find
        # the socket stale, and two fresh sockets would be opened, one of them leaked.
        async with self._renewing:
            return await self._renew_stale_socket()

    async def _renew_stale_socket(self) -> bool:
        sock = self._socket
        renew_shared = getattr(sock, "renew", None)
        if sock is None or not (self._owns_socket or callable(renew_shared)):
            return True
        lookup = getattr(self._addresses, "ifindex", None)
        if lookup is None:
            return True
        try:
            current = await lookup(self.interface)
            if current == sock.ifindex:
                # A hub's socket may have been renewed by another instance on it: its
                # address may be new to us all the same.
                self._adopt_local_address()
                return True
            if not self._owns_socket:
                assert callable(renew_shared)
                await renew_shared(current)  # a hub's socket: the hub reopens it for all
                self._adopt_local_address()
                return True
            fresh = await self._open_raw_socket()
        except TransportError as exc:
            self._transport_failed("reopen socket", exc)
            return False
        self._take_back()
        self._socket = fresh
        self._send_now = self._direct_send(fresh)
        self._send_repeatedly = self._repeat_sender(fresh)
        self._lazy_asked = None  # ask the fresh socket on the next step
        self._adopt_local_address()
        logger.info(
            "%s: %s is a new interface (index %d); socket reopened",
            self.name,
            self.interface,
            current,
        )
        await sock.aclose()
        return True

    def _adopt_local_address(self) -> None:
        """Use the socket's source address in the adverts (and their v3 checksums)."""
        assert self._socket is not None
        local = self._socket.local_address
        if local != self._router.config.address:
            self._take_back()  # the queued adverts carry the old address
            # The router object stays the same (a sync group holds it), in whatever state: an
            # interface created again may bring another address (an IPv6 link-local from a
            # new random MAC).
            self._router.change_address(local)

    # -- the pump ----------------------------------------------------------------------------

    async def _link_states(self) -> dict[str, bool]:
        """Whether our interface and each tracked one is up, read before anything starts."""
        assert self._links is not None
        return {name: await self._links.is_up(name) for name in self._link_names}

    def _start(self, links: dict[str, bool]) -> None:
        self._send_now = self._direct_send(self._socket)
        self._send_repeatedly = self._repeat_sender(self._socket)
        now = self._now()
        # Up too: a previous run may have left the router thinking its interface down.
        self._router.interface_changed(links[self.interface], now)
        for ifname in self._link_names:
            if ifname in self._tracked_links:
                self._router.tracker_result(ifname, links[ifname], now)
        self._vips_held.clear()
        self._vips_adding.clear()
        self._vips_lost.clear()
        self._perform_now(self._router.start(now))
        self._rearm()

    @staticmethod
    def _direct_send(sock: AdvertSocket | None) -> Callable[[bytes, Address], None] | None:
        send_nowait = getattr(sock, "send_nowait", None)
        return send_nowait if callable(send_nowait) else None

    def _repeat_sender(self, sock: AdvertSocket | None) -> _RepeatSender | None:
        # The kernel's timers run on CLOCK_MONOTONIC: our deadlines must be on it too.
        send = getattr(sock, "send_repeatedly", None)
        if not (callable(send) and self._monotonic):
            return None
        return cast(_RepeatSender, send)

    def _repeat_sends(self) -> float | None:
        """Queue a steady MASTER's coming adverts on the kernel's timers; when to queue more.

        A Python process pays a wake-up per advert it times itself; queued, the kernel sends
        them on their deadlines and we wake only to queue the next ones, or for an input
        (which takes them back first: _take_back).
        """
        if self._repeat is None:
            # A master advertises its configured interval (RFC 5798 §6.4.3). Checked first:
            # at 1 s, with the default send_ahead, this is what every advert stops at.
            interval = self._router.config.interval
            rounds = self._repeat_rounds(interval)
            if rounds < MIN_SENT_AHEAD:
                # Topping up a queue of two or three adverts costs about what timing them
                # does (measured with 255 instances at 1 s).
                return None
            send = self._send_repeatedly
            repeated = self._router.repeat_advert()
            # A sync group's members are left out: the group changes a member's router from
            # another member's input, which would overtake adverts queued in the kernel.
            if send is None or repeated is None or self._group_hook is not None:
                return None
            if self._now() < self._repeat_held_until:
                return None
            packets = [(data, dst) for dst, data in self._wire_packets(repeated.action)]
            # The router's own schedule: on its grid with align_adverts, else each advert an
            # interval after the previous one (RFC 5798 §6.4.3, keepalived).
            relative = not self._router.config.align_adverts
            series = send(
                self._router.config.vrid, packets, repeated.due, interval, rounds, relative
            )
            if series is None:
                # Refused (the kernel took no entry, its ring is out of room): timed by us for
                # a while, not asked again at every advert.
                self._repeat_held_until = self._now() + max(self._send_ahead, 1.0)
                return None
            self._repeat = series
            self._set_refill(series, rounds)
        return self._repeat_refill

    def _repeat_rounds(self, interval: float) -> int:
        # send_ahead bounds how long the kernel goes on advertising for a process whose event
        # loop no longer runs (hung, or stopped): a hang fails over after it and the backup's
        # Master_Down_Interval, a shorter stall (a garbage collection) costs nothing.
        return min(MAX_SENT_AHEAD, math.floor(self._send_ahead / interval + 1e-9))

    def _set_refill(self, series: Series, rounds: int) -> None:
        # Wake when a quarter of the adverts queued are left (two at least): a late wake-up
        # (a busy event loop) still finds adverts queued, and the next ones follow the last.
        # Each refill costs a wake-up and some 0.4 ms: fewer of them is most of what one
        # master's adverts cost beyond the kernel's. (A stopped process sends nothing: the
        # kernel completes the timeouts in one of its threads, stopped with the rest.)
        left = max(2, rounds // 4)
        self._repeat_refill = series.next_deadline - left * series.interval

    def _go_on_repeating(self) -> bool:
        """At an alarm while the kernel sends: run the router's other timers and top the
        queue up, leaving the queued adverts where they are; False if the queue must be
        taken back first (it failed or ran dry, or an input took it)."""
        series = self._repeat
        assert series is not None
        now = self._now()
        if series.next_deadline <= now:
            return False  # the queue ran dry: start afresh
        router = self._router
        other = router.next_deadline(adverts=False)
        if other is not None and other <= now:
            # A MASTER's other timers are its gratuitous ARP rounds, which change no advert.
            # Taking the queue back for them would restart it from a guess of when the next
            # advert was due (RoundsSent.next_due): an early or late advert at each round.
            self._count_sent(series.collect())
            if series.failed or self._repeat is not series:
                return False
            self._perform_now(router.handle_timer(now, adverts=False))
            if self._repeat is not series or now < self._repeat_refill:
                return self._rearmed(series)
        if not self._extend_repeats(series, now):
            return False
        return self._rearmed(series)

    def _rearmed(self, series: Series) -> bool:
        # What was performed may have taken the queue back (then the caller starts afresh).
        if self._repeat is not series:
            return False
        self._rearm()
        return True

    def _extend_repeats(self, series: Series, now: float) -> bool:
        """Count what the kernel sent and queue the next adverts behind the last; False if
        the series failed."""
        self._count_sent(series.collect())
        interval = series.interval
        rounds = self._repeat_rounds(interval)
        # Top the queue up to ``rounds`` adverts ahead of now, never more.
        left = math.ceil((series.next_deadline - now) / interval - 1e-9)
        if series.failed or rounds < MIN_SENT_AHEAD or not series.extend(max(1, rounds - left)):
            return False
        self._set_refill(series, rounds)
        return True

    def _take_back(self) -> None:
        """End the adverts still queued in the kernel and count those it sent.

        Done before the router sees any input: it must know what went before it decides.
        """
        series = self._repeat
        if series is not None:
            self._repeat = None
            self._count_sent(series.end())
            if series.failed:
                # Its error is reported; the router sends the next adverts itself (and meets
                # the error, and whatever it means, on its own path) for a while.
                self._repeat_held_until = self._now() + max(self._send_ahead, 1.0)

    def _count_sent(self, sent: RoundsSent) -> None:
        if sent.rounds or sent.next_due is not None:
            try:
                self._router.adverts_repeated(sent.rounds, sent.next_due)
            except RouterError:
                logger.exception(
                    "%s: %d adverts sent by the kernel not counted", self.name, sent.rounds
                )
        if sent.error is not None:
            message = f"{self.interface}: advert sent by the kernel: {os.strerror(sent.error)}"
            self._send_failed("send advert", TransportError(message, errno=sent.error))
        if sent.unsettled:
            logger.error(
                "%s: adverts queued in the kernel did not settle; sending on our own timer",
                self.name,
            )
            self._send_repeatedly = None

    def _settle_sends(self) -> None:
        # Counters read while the kernel sends: count what it has sent so far.
        if self._repeat is not None:
            self._count_sent(self._repeat.collect())

    def _step(self, step: Callable[[float], list[Action]]) -> None:
        """Feed one input to the router and perform what comes out."""
        self._take_back()
        try:
            self._catch_up()
            self._perform_now(step(self._now()))
        finally:
            # Even when the input is refused (a tracker name that does not exist): the
            # adverts taken back from the kernel must be timed again.
            self._rearm()

    def _track(self, name: str, ok: bool) -> None:
        """Feed one tracker result to the router."""
        router = self._router
        if self._repeat is not None and not router.tracker_would_flip(name, ok):
            # Only a fall/rise count moves: the router decides nothing, so the adverts queued
            # in the kernel stay. Taking them back would restart them from a guess of when
            # the next was due (RoundsSent.next_due): an advert early or late per check.
            actions = router.tracker_result(name, ok, self._now())
            if not actions:
                return
            self._take_back()
            self._perform_now(actions)
            self._rearm()
            return
        self._step(functools.partial(router.tracker_result, name, ok))

    def _catch_up(self) -> None:
        """Hand the router the packets a lazily read socket holds, before anything newer."""
        poll = self._poll
        if poll is not None:
            try:
                poll()
            except Exception:
                # A bug in handling one packet must not cost the timer or input that follows.
                logger.exception("%s: reading queued packets failed (carrying on)", self.name)

    def _read_lazily(self, lazy: bool) -> None:
        # A backup's adverts only move its down timer, which they can do late (they carry
        # their receive time): reading them when the timer is due instead of as they come
        # saves a wake-up per burst. A MASTER must see a better advert at once.
        self._lazy_asked = lazy
        if self._watch_silence is not None and not lazy:
            self._watch_silence(self._router.config.vrid, None, None, self._on_alarm)
        set_lazy = getattr(self._socket, "set_lazy", None)
        poll = getattr(self._socket, "poll", None)
        if not (callable(set_lazy) and callable(poll) and self._monotonic):
            # Late reading needs receive times on our clock (the real one) to be exact.
            self._poll = self._watch_silence = None
            return
        set_lazy(lazy)
        # A hub's socket may stay eager for another instance and turn lazy later: poll
        # whenever we asked, it costs one empty read when nothing waits.
        self._poll = poll if lazy else None
        watch = getattr(self._socket, "watch_silence", None)
        self._watch_silence = watch if lazy and callable(watch) else None

    def _now(self) -> float:
        if self._clock is None:
            # A tracker result fed before the first run: the clock that run will use.
            self._clock = self._default_clock()
        return self._clock.now()

    def _default_clock(self) -> Clock:
        from vrrpkit.transports.clock import PreciseClock

        return PreciseClock() if self._hub is None else self._hub.clock

    def _rearm(self) -> None:
        """After each input: read lazily unless MASTER, and set the alarm for the deadline."""
        router = self._router
        lazy = router.state is not State.MASTER
        if lazy is not self._lazy_asked:
            self._read_lazily(lazy)
        if not lazy and self._send_repeatedly is not None and self._vips_complete():
            refill = self._repeat_sends()
            if refill is not None:
                other = router.next_deadline(adverts=False)
                wake = refill if other is None else min(refill, other)
                if wake != self._armed:
                    self._armed = wake
                    if self._alarm is not None:
                        self._alarm.set(wake)
                return
        deadline = router.next_deadline()
        watch = self._watch_silence
        if watch is not None:
            # A backup whose down timer follows its master's repeats: where the kernel counts
            # them it can also time the silence, and wake us only when the master stops (or
            # something else comes). No alarm, no wake-up per Master_Down_Interval.
            interval = router.repeat_down_interval()
            self._kernel_timed = watch(router.config.vrid, deadline, interval, self._on_alarm)
            if self._kernel_timed:
                if self._armed is not None and self._alarm is not None:
                    self._armed = None
                    self._alarm.set(None)
                return
        else:
            self._kernel_timed = False
        if deadline is None:
            return
        armed = self._armed
        # Read eagerly, every accepted advert pushes a backup's deadline later, and moving
        # the alarm for each would cost more than the rest of the receive path: it rings at
        # the old deadline and is set again from there. Read lazily, the adverts come in rare
        # batches: following the deadline then costs little and saves a wake-up.
        if armed is None or deadline < armed or (self._poll is not None and deadline != armed):
            self._armed = deadline
            if self._alarm is not None:
                self._alarm.set(deadline)

    def _vips_complete(self) -> bool:
        # A MASTER missing an address retries it at each advert (_on_alarm): no queueing.
        return len(self._vips_held) == len(self._vips)

    def _on_alarm(self) -> None:
        self._armed = None
        if self._repeat is not None and self._go_on_repeating():
            return
        self._take_back()
        self._catch_up()
        router = self._router
        now = self._now()
        due = router.next_deadline()
        if due is not None and due <= now:
            self._perform_now(router.handle_timer(now))
            if (
                router.state is State.MASTER
                and not self._vips_complete()
                and not self._retry_queued
            ):
                # A refused VIP (interface busy, address conflict) is retried once per
                # advert interval while we are MASTER.
                self._retry_queued = True
                self._effects.put(_RetryVips())
        self._rearm()

    async def _receive_loop(self) -> None:
        while True:
            sock = self._socket
            assert sock is not None
            deliver = getattr(sock, "deliver", None)
            try:
                if callable(deliver):
                    await deliver(self._on_packets)
                else:
                    self._on_packets(await sock.receive_batch())
                    continue
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                pass
            except TransportError as exc:
                self._transport_failed("receive", exc)
                await anyio.sleep(0.1)
                continue
            if self._socket is sock:
                return  # closed for good
            # else: replaced by a fresh socket (the interface came back)

    def _on_packets(self, packets: list[ReceivedPacket]) -> None:
        if self._repeat is not None:
            # A socket of our own hears every VRID on the link: the router skips the others'
            # adverts, and they need not cost our queued adverts.
            vrid = self._router.config.vrid
            if not any(len(p.data) < 2 or p.data[1] == vrid for p in packets):
                return
            self._take_back()
        router = self._router
        now = self._now()
        since = None
        if self._monotonic:
            # keepalived's timers start when it reads the packet, microseconds after arrival;
            # ours would start a Python wake-up later (or, read lazily, a Master_Down_Interval
            # later) without the kernel's receive time. A receive time further back than a
            # lazy read can be comes from a wall-clock step (the stamps are CLOCK_REALTIME).
            cfg = router.config
            interval = max(cfg.interval, router.master_adver_interval)
            since = now - 1.0 - (cfg.down_timer_adverts + 1) * interval
        actions = router.receive_packets(packets, now=now, since=since)
        if actions:
            self._perform_now(actions)
        self._rearm()

    async def _link_loop(self) -> None:
        assert self._links is not None and self._clock is not None
        while True:
            try:
                async for change in self._links:
                    await self._link_change(change)
                return
            except TransportError as exc:
                self._link_monitor_failed(exc)
                await self._clock.sleep_until(self._clock.now() + RETRY_DELAY)  # then listen again

    def _link_monitor_failed(self, exc: TransportError) -> None:
        # Netlink trouble must not end the instance: report it, and read the links' states
        # afresh a moment later (events may have been lost meanwhile).
        self._transport_failed("link monitor", exc)
        self._retry_later("links", self._reread_links)

    def _on_link_item(self, item: LinkChange | TransportError) -> None:
        """A hub's link event or link monitor failure, called from the hub's reading task.

        Handled in order by a task started only while some wait: link events are rare,
        and a task waiting for them costs each instance some kilobytes.
        """
        self._link_backlog.append(item)
        if not self._draining_links and self._spawn(self._drain_links):
            self._draining_links = True

    async def _drain_links(self) -> None:
        try:
            while self._link_backlog:
                item = self._link_backlog.pop(0)
                if isinstance(item, TransportError):
                    self._link_monitor_failed(item)  # the hub listens again on its own
                else:
                    await self._link_change(item)
        finally:
            self._draining_links = False

    async def _link_change(self, change: LinkChange) -> None:
        if isinstance(change, AddressRemoved):
            self._address_removed(change)
        else:
            await self._link_changed(change.ifname, change.up)

    def _address_removed(self, change: AddressRemoved) -> None:
        """Someone removed an address from an interface (our own removals come too)."""
        if change.ifname != self.interface:
            return
        if change.address == self._router.config.address:
            # keepalived's NO_SOURCE_IP comes from this notification; a backup sends
            # nothing whose failure would tell it otherwise.
            self._look_for_source()
            return
        if self._router.state is not State.MASTER:
            return
        if change.address in self._vips_adding:
            self._vips_lost.add(change.address)  # its answer decides (_collect_vips)
        elif change.address in self._vips_held:
            self._vips_removed_by_someone_else(change.address)

    def _vips_removed_by_someone_else(self, address: Address) -> None:
        # keepalived goes BACKUP for a moment (priority 0, then takes over again after the
        # skew); the VIP is put back in place here, with no failover on the way. (The
        # effects task adds it only if still MASTER then: an interface going down takes its
        # IPv6 addresses with it, and its own event follows.)
        logger.warning(
            "%s: %s was removed from %s by someone else; adding it again",
            self.name,
            address,
            self.interface,
        )
        self._vips_held.discard(address)
        self._queue_vip_retry()

    def _queue_vip_retry(self) -> None:
        if not self._retry_queued:
            self._retry_queued = True
            self._effects.put(_RetryVips())

    async def _link_changed(self, ifname: str, up: bool) -> None:
        if ifname == self.interface:
            logger.info("%s: interface %s is %s", self.name, ifname, "up" if up else "down")
            if up and not await self._renew_socket_if_stale():
                # Up, but no socket can be opened on it yet (an address comes later): held in
                # FAULT, as keepalived holds an instance without a source address, and tried
                # again until it opens.
                up = False
                self._retry_later("links", self._reread_links)
            self._step(functools.partial(self._router.interface_changed, up))
        if ifname in self._tracked_links:
            self._track(ifname, up)

    async def _reread_links(self) -> None:
        assert self._links is not None
        for ifname in self._link_names:
            try:
                up = await self._links.is_up(ifname)
            except TransportError as exc:
                self._transport_failed("link state query", exc)
                self._retry_later("links", self._reread_links)
                continue
            await self._link_changed(ifname, up)

    def _spawn(self, function: Callable[..., Coroutine[Any, Any, None]], *args: object) -> bool:
        """Start ``function(*args)`` among the run's tasks; False if the run is stopping.

        A task started in a cancelled task group may be cancelled before its first step:
        its ``finally`` would never run (nor clear the flag that says it runs), and its
        coroutine would go unawaited.
        """
        tasks = self._tasks
        if tasks is None or tasks.cancel_scope.cancel_called:
            return False
        tasks.start_soon(function, *args)
        return True

    def _retry_later(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once RETRY_DELAY from now, unless a retry of ``what`` already waits."""
        if what not in self._retries and self._spawn(self._retry, what, action):
            self._retries.add(what)

    async def _retry(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        assert self._clock is not None
        try:
            await self._clock.sleep_until(self._clock.now() + RETRY_DELAY)
        finally:
            self._retries.discard(what)
        await action()

    async def _periodic_tracker(self, spec: CheckTracker | ScriptTracker) -> None:
        assert self._clock is not None
        clock = self._clock
        next_run = clock.now()
        while True:
            await clock.sleep_until(next_run)
            started = clock.now()
            ok = await self._run_check(spec)
            self._track(spec.name, ok)
            # keepalived starts the next run an interval after the previous start; a run that
            # overran the interval makes it skip the missed slots ("expect idle").
            next_run = started + spec.interval
            if next_run <= clock.now():
                missed = math.floor((clock.now() - started) / spec.interval)
                next_run = started + (missed + 1) * spec.interval

    async def _run_check(self, spec: CheckTracker | ScriptTracker) -> bool:
        timeout = spec.effective_timeout
        if isinstance(spec, ScriptTracker):
            assert self._runner is not None
            result = await self._runner.run(
                spec.argv,
                timeout=timeout,
                user=spec.user or self._script_user,
                group=spec.group or self._script_group,
            )
            if result.error is not None:
                logger.warning(
                    "%s: track script %s cannot run: %s", self.name, spec.name, result.error
                )
            return result.ok
        ok = False
        # A thread's work takes real time, and so does its timeout; a check on the event
        # loop times out on the instance's clock (virtual in tests).
        with move_on_after(None if spec.in_thread else self._clock, timeout) as scope:
            try:
                if spec.in_thread:
                    value = await self._check_in_thread(spec)
                else:
                    value = spec.check()
                if inspect.isawaitable(value):
                    value = await value
                ok = bool(value)
            except Exception:
                logger.exception("%s: check %s raised (counts as a failure)", self.name, spec.name)
                ok = False
            except anyio.get_cancelled_exc_class() as exc:
                if not is_stray_cancellation(exc, scope):
                    raise
                logger.error(
                    "%s: check %s raised CancelledError without being cancelled "
                    "(counts as a failure)",
                    self.name,
                    spec.name,
                )
                ok = False
        if scope.cancelled_caught:
            logger.warning(
                "%s: check %s timed out after %s s (counts as a failure)",
                self.name,
                spec.name,
                timeout,
            )
        return ok

    async def _check_in_thread(self, spec: CheckTracker) -> object:
        # A thread cannot be cancelled: one that outlived its timeout is left to finish, and
        # the check fails until it has, rather than piling up a thread per interval.
        if spec.name in self._checks_in_threads:
            logger.warning(
                "%s: check %s still running from an earlier interval (counts as a failure)",
                self.name,
                spec.name,
            )
            return False
        self._checks_in_threads.add(spec.name)
        # A thread of our own, not anyio's worker pool: a check that never returns must not
        # hold the process at exit (the pool's threads are joined then; daemons are not).
        token = anyio.lowlevel.current_token()
        done = anyio.Event()
        outcome: list[object] = []
        failure: list[Exception] = []

        def call() -> None:
            try:
                outcome.append(spec.check())
            except Exception as exc:
                failure.append(exc)
            finally:
                self._checks_in_threads.discard(spec.name)
                with contextlib.suppress(Exception):  # the event loop may be gone by now
                    anyio.from_thread.run_sync(done.set, token=token)

        try:
            threading.Thread(target=call, name=f"vrrpkit check {spec.name}", daemon=True).start()
        except RuntimeError:
            # No thread to be had now (a resource limit): this run fails, the next tries again.
            self._checks_in_threads.discard(spec.name)
            raise
        await done.wait()
        if failure:
            raise failure[0]
        return outcome[0] if outcome else False

    def _shutdown(self) -> None:
        if not self._stop_kernel_sender():
            self._take_back()
            if self._router.state is not State.STOPPED:
                self._perform_now(self._router.shutdown(self._now()))
        # A MASTER's shutdown removes its addresses; this covers a failed removal too.
        self._removals_pending += 1
        self._effects.put(RemoveVips(self.name, ()))

    def _stop_kernel_sender(self) -> bool:
        """Stop a MASTER whose adverts the kernel sends: priority 0 goes before the kernel has
        settled the adverts cancelled. False if none were queued, or if some may still go
        out (the caller then takes them back first, as before any input)."""
        series = self._repeat
        if series is None or self._router.state is not State.MASTER or not series.halt():
            return False
        # Settling waits for the submitting thread to wake and complete the cancelled entries
        # (0.2-0.5 ms on the VM of docs/benchmarks.md): the backup's skew timer need not.
        self._repeat = None
        self._count_sent(series.collect())
        actions = self._router.shutdown(self._now())
        self._perform_now(actions)
        late = series.end()
        if late.rounds:
            # A timeout ran out while the cancel looked for it: its advert may have followed
            # priority 0 and restarted the backup's down timer. Priority 0 again sets it right.
            logger.info("%s: an advert queued in the kernel went out as we stopped", self.name)
            for action in actions:
                if isinstance(action, SendAdvertisement) and self._send_now is not None:
                    self._send(action, self._send_now)
        # The router has stopped: only an error or entries left unsettled are reported.
        self._count_sent(attrs.evolve(late, rounds=0, next_due=None))
        return True

    # -- membership of a sync group ----------------------------------------------------------
    # The whole interface vrrpkit.Group uses. A group changes a member's router from another
    # member's input, in that input's step (keepalived's vrrp_sync_group).

    @property
    def _in_group(self) -> bool:
        return self._group_hook is not None

    @property
    def _script_credentials(self) -> tuple[str | None, str | None]:
        """The user and group this instance's programs run as."""
        return self._script_user, self._script_group

    @property
    def _script_runner(self) -> ProcessRunner | None:
        """The runner of this instance's programs (None until ``run`` has opened one)."""
        return self._runner

    def _join_group(self, hook: Callable[[Instance, list[Action]], None]) -> None:
        """Call ``hook(self, actions)`` after performing each step's actions.

        Adverts queued in the kernel would overtake what the group forces on this member: a
        running member takes its queue back, and times its adverts itself from now on.
        """
        self._group_hook = hook
        self._take_back()
        if self._started:
            self._rearm()

    def _perform_forced(self, actions: list[Action]) -> None:
        """Perform what the group forced on this member, through its own transports."""
        self._perform_now(actions)

    def _group_step_done(self) -> None:
        """The group's step is over: set the alarm for whatever the router now awaits."""
        self._rearm()

    def _after_own_effects(self, marker: _ForGroup) -> bool:
        """Queue ``marker`` behind this member's effects; False if none run (a stopped
        member's mailbox is closed and would drop it; one not started has no task on it)."""
        if self._effects.closed or not self._effects_served:
            return False
        self._effects.put(marker)
        return True

    # -- performing actions ------------------------------------------------------------------

    def _perform_now(self, actions: list[Action]) -> None:
        """Perform a step's actions: adverts at once, everything else in order, later.

        Sending is a non-blocking system call, done here so that the advert leaves within
        microseconds of the timer; addresses, announcements and callbacks need awaiting and
        go, in the order the router gave them, to the effects task (so callbacks still run
        after the addresses they announce are in place, as keepalived's notifies do).
        """
        for action in actions:
            if isinstance(action, SendAdvertisement) and self._send_now is not None:
                self._send(action, self._send_now)
            elif isinstance(action, AddVips):
                plan = self._plan_vips(action.addresses, send_now=self._removals_pending == 0)
                self._effects.put(plan)
            elif isinstance(action, PacketDropped):
                logger.debug(
                    "%s: dropped a packet from %s: %s (%s)",
                    action.instance,
                    action.source,
                    action.detail,
                    action.counter,
                )
            else:
                if isinstance(action, StateChanged):
                    self._last_transition = self._now()
                    logger.info(
                        "%s: %s -> %s (%s, priority %d)",
                        action.instance,
                        action.old,
                        action.new,
                        action.reason,
                        action.priority,
                    )
                elif isinstance(action, SplitBrain):
                    self._log_split_brain(action)
                elif isinstance(action, RemoveVips):
                    self._removals_pending += 1
                self._effects.put(action)
        if self._group_hook is not None:
            self._group_hook(self, actions)

    def _log_split_brain(self, action: SplitBrain) -> None:
        if action.yielded:
            logger.info(
                "%s: yielding to master %s (priority %d, ours %d)",
                action.instance,
                action.peer,
                action.peer_priority,
                action.our_priority,
            )
        else:
            logger.warning(
                "%s: another master %s with lower priority %d (ours %d): answering",
                action.instance,
                action.peer,
                action.peer_priority,
                action.our_priority,
            )

    async def _run_effects(self, done: anyio.Event) -> None:
        try:
            while True:
                try:
                    effects = await self._effects.get_all()
                except anyio.ClosedResourceError:
                    return
                with anyio.CancelScope(shield=True) as scope:
                    # Effects finish even when we are cancelled; only a shutdown that ran
                    # out of time cancels this scope (a transport that never answers).
                    self._effects_scope = scope
                    self._effects_batch = effects  # what an abandoned shutdown drops too
                    for effect in effects:
                        await self._perform_effect(effect)
                self._effects_scope = None
                self._effects_batch = []
        finally:
            done.set()

    async def _perform_effect(self, effect: _Effect) -> None:
        if isinstance(effect, SendAdvertisement):
            await self._send_async(effect)
        elif isinstance(effect, _VipsAdded):  # AddVips arrives planned (_perform_now)
            await self._collect_vips(effect)
        elif isinstance(effect, RemoveVips):
            # An empty removal is the shutdown's sweep of whatever is still held.
            try:
                await self._remove_vips(effect.addresses or tuple(self._vips_held))
            finally:
                self._removals_pending -= 1
        elif isinstance(effect, AnnounceVips):
            await self._announce(effect)
        elif isinstance(effect, (StateChanged, SplitBrain)):
            if isinstance(effect, StateChanged) and effect.new is State.STOPPED:
                # STOP callbacks come after the VIPs are gone, including one whose earlier
                # removal failed (the shutdown's sweep would come after the callbacks).
                await self._remove_vips(tuple(self._vips_held))
            self._publish(effect)
            if not (isinstance(effect, StateChanged) and effect.reason == _UNANNOUNCED):
                self._queue_for_callbacks(effect)
        elif isinstance(effect, _RetryVips):
            self._retry_queued = False
            if self._router.state is State.MASTER:
                missing = tuple(v.ip for v in self._vips if v.ip not in self._vips_held)
                await self._add_vips(missing, retry=True)
        elif isinstance(effect, _ForGroup):
            # Behind this member's callbacks and notifies, as keepalived's group notifies are.
            self._queue_for_callbacks(effect)

    def _queue_for_callbacks(self, event: StateChanged | SplitBrain | _ForGroup) -> None:
        try:
            if self._changes is None:
                raise anyio.ClosedResourceError
            self._changes.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            if isinstance(event, _ForGroup):
                event.deliver()  # the group must not wait for callbacks that will not run
                return
            logger.error("%s: callback queue unavailable; %s not delivered", self.name, event)

    def _wire_packets(self, action: SendAdvertisement) -> tuple[tuple[Address, bytes], ...]:
        """The advert's bytes for each destination, encoded (and checksummed) once.

        The router hands out one Advertisement object per priority: a MASTER sends the same
        bytes every interval.
        """
        adv = action.advertisement
        cfg = self._router.config
        entry = self._wire.get(id(adv))
        if entry is None or entry[0] is not adv or entry[1] is not cfg:
            src = cfg.address
            packets = tuple(
                (dst, adv.encode(src=src, dst=dst, checksum=cfg.checksum))
                for dst in cfg.unicast_peers or (multicast_group(src),)
            )
            if len(self._wire) >= 8:
                self._wire.clear()
            entry = self._wire[id(adv)] = (adv, cfg, packets)
        return entry[2]

    def _send(self, action: SendAdvertisement, send: Callable[[bytes, Address], None]) -> None:
        for dst, data in self._wire_packets(action):
            try:
                send(data, dst)
            except TransportError as exc:
                self._send_failed(f"send advert to {dst}", exc)
            except anyio.ClosedResourceError:
                return  # the socket is being replaced or closed: this advert is lost

    async def _send_async(self, action: SendAdvertisement) -> None:
        assert self._socket is not None
        for dst, data in self._wire_packets(action):
            try:
                await self._socket.send(data, dst)
            except TransportError as exc:
                self._send_failed(f"send advert to {dst}", exc)
            except anyio.ClosedResourceError:
                return

    async def _add_vips(self, addresses: tuple[Address, ...], retry: bool = False) -> None:
        await self._collect_vips(self._plan_vips(addresses, send_now=False), retry=retry)

    def _plan_vips(self, addresses: tuple[Address, ...], *, send_now: bool) -> _VipsAdded:
        """The VIP additions to make; with ``send_now``, already sent where possible.

        keepalived adds its VIPs within a fraction of a millisecond of its first advert as
        MASTER; waking the effects task first would cost about a millisecond more, so a new
        master sends them right behind the advert and only the answers wait. Never while a
        removal is queued (an addition must not overtake it): the caller decides.
        """
        add_nowait = getattr(self._addresses, "add_nowait", None) if send_now else None
        tickets: list[tuple[IPv4Interface | IPv6Interface, int | None]] = []
        for vip in self._vips:
            if vip.ip not in addresses:
                continue
            ticket = None
            if callable(add_nowait):
                try:
                    ticket = add_nowait(self.interface, vip.ip, vip.network.prefixlen)
                except (TransportError, anyio.ClosedResourceError):
                    ticket = None  # the effects task tries again with add() and reports
            tickets.append((vip, ticket))
            self._vips_adding.add(vip.ip)
        return _VipsAdded(tuple(tickets))

    async def _collect_vips(self, effect: _VipsAdded, retry: bool = False) -> None:
        """Add the VIPs not sent yet and collect the answers of those that were."""
        assert self._addresses is not None
        for vip, ticket in effect.tickets:
            try:
                if ticket is None:
                    await self._addresses.add(self.interface, vip.ip, vip.network.prefixlen)
                else:
                    await self._addresses.add_result(ticket)  # type: ignore[attr-defined]
            except TransportError as exc:
                self._vips_lost.discard(vip.ip)  # not added: nothing was lost meanwhile
                if not retry:
                    self._transport_failed(f"add {vip}", exc)
                continue
            finally:
                self._vips_adding.discard(vip.ip)
            if vip.ip in self._vips_lost:
                self._vips_lost.discard(vip.ip)
                self._vips_removed_by_someone_else(vip.ip)
                continue
            self._vips_held.add(vip.ip)
            if retry:
                logger.info("%s: added %s on retry", self.name, vip)

    async def _remove_vips(self, addresses: tuple[Address, ...]) -> None:
        assert self._addresses is not None
        failed = False
        for vip in self._vips:
            if vip.ip in addresses:
                try:
                    await self._addresses.remove(self.interface, vip.ip, vip.network.prefixlen)
                    self._vips_held.discard(vip.ip)
                except TransportError as exc:
                    if exc.errno == errno.ENODEV:
                        # The interface is gone, and its addresses with it.
                        self._vips_held.discard(vip.ip)
                        continue
                    self._transport_failed(f"remove {vip}", exc)
                    failed = True
        if failed:
            # A VIP left behind while another node holds it too: keep trying.
            self._retry_later("removal", self._remove_held_vips)

    async def _remove_held_vips(self) -> None:
        if self._router.state is not State.MASTER and self._vips_held:
            self._removals_pending += 1
            self._effects.put(RemoveVips(self.name, tuple(self._vips_held)))

    async def _announce(self, action: AnnounceVips) -> None:
        assert self._announcer is not None
        for _ in range(action.repeat):
            for vip in action.addresses:
                try:
                    await self._announcer.announce(vip)
                except TransportError as exc:
                    self._transport_failed(f"announce {vip}", exc)
                    return

    def _send_failed(self, operation: str, exc: TransportError) -> None:
        """An advert could not leave: reported, and its source address looked for."""
        self._transport_failed(operation, exc)
        self._look_for_source()

    def _look_for_source(self) -> None:
        if not self._following_source and self._spawn(self._follow_source):
            self._following_source = True

    async def _follow_source(self) -> None:
        """Put the router in FAULT while its source address is gone from the interface, as
        keepalived does (NO_SOURCE_IP), and out of it once the address is back.

        Without it, a MASTER whose address was removed keeps its VIPs while its adverts
        cannot leave, and the backup takes over beside it: two holders of every VIP.
        """
        assert self._clock is not None
        try:
            while True:
                present = await self._source_present()
                if (
                    present is False
                    and NO_SOURCE_FAULT in self._router.faults  # its VIPs are gone by now
                    and await self._take_new_source()
                ):
                    present = await self._source_present()
                if present is None and NO_SOURCE_FAULT not in self._router.faults:
                    return  # cannot tell (the interface is gone: its own fault says so)
                if present is not None and present is (NO_SOURCE_FAULT in self._router.faults):
                    if not present:
                        logger.error(
                            "%s: source address %s is gone from %s: FAULT until it is back",
                            self.name,
                            self._router.config.address,
                            self.interface,
                        )
                    self._step(functools.partial(self._router.source_changed, present))
                if present:
                    return
                await self._clock.sleep_until(self._clock.now() + RETRY_DELAY)
        finally:
            self._following_source = False

    async def _take_new_source(self) -> bool:
        """With no source configured, advertise from the interface's current address when
        ours is gone (keepalived takes another address of the interface, or the next one
        added: a renumbered interface, a link-local made anew). True if it changed."""
        if self._source is not None:
            return False
        if self._renewing is None:
            self._renewing = anyio.Lock()
        async with self._renewing:
            # Read under the lock: a renewal for a link-up may have replaced the socket (and
            # the address) while we waited for it.
            sock = self._socket
            old = self._router.config.address
            if sock is None:
                return False
            if sock.local_address != old:
                self._adopt_local_address()
                return True
            renew_shared = getattr(sock, "renew_source", None)
            try:
                if not self._owns_socket:
                    if not callable(renew_shared):
                        return False
                    await renew_shared(old, avoid=self._config.vips)  # a hub's: for all on it
                    self._adopt_local_address()
                    return self._router.config.address != old
                fresh = await self._open_raw_socket()
            except TransportError:
                return False  # no address to take yet
            if fresh.local_address == old or fresh.local_address in self._config.vips:
                await fresh.aclose()  # (a VIP left on the interface is no source of ours)
                return False
            self._take_back()
            self._socket = fresh
            self._send_now = self._direct_send(fresh)
            self._send_repeatedly = self._repeat_sender(fresh)
            self._lazy_asked = None
            self._adopt_local_address()
            logger.warning(
                "%s: source address %s is gone from %s; advertising from %s",
                self.name,
                old,
                self.interface,
                fresh.local_address,
            )
            await sock.aclose()
            return True

    async def _source_present(self) -> bool | None:
        """Whether the router's source address is on its interface (None: cannot tell)."""
        assert self._addresses is not None
        try:
            addresses = await self._addresses.list(self.interface)
        except TransportError:
            return None
        own = self._router.config.address
        return any(address.ip == own for address in addresses)

    def _transport_failed(self, operation: str, exc: BaseException) -> None:
        self._transport_failures += 1
        logger.error("%s: %s failed: %s", self.name, operation, exc)
        self._publish(TransportFailure(self.name, operation, str(exc)))

    # -- callbacks and notify programs -------------------------------------------------------

    async def _dispatch(
        self,
        changes: MemoryObjectReceiveStream[StateChanged | SplitBrain | _ForGroup],
        done: anyio.Event,
    ) -> None:
        try:
            async for change in changes:
                with anyio.CancelScope(shield=True) as scope:
                    # Callbacks finish even when we are cancelled; only a shutdown that ran
                    # out of time cancels this scope.
                    self._dispatch_scope = scope
                    await self._deliver(change)
                self._dispatch_scope = None
        finally:
            done.set()

    async def _deliver(self, change: StateChanged | SplitBrain | _ForGroup) -> None:
        if isinstance(change, _ForGroup):
            change.deliver()
            if not self._shutting_down:
                with anyio.CancelScope() as self._marker_wait:
                    await change.delivered()
                self._marker_wait = None
            return
        if isinstance(change, SplitBrain):
            await self._callbacks.deliver_split_brain(change)
            return
        await self._callbacks.deliver(change, change.new)
        if self._notify:
            await self._run_notifies("INSTANCE", self.name, change.new, change.priority)

    async def _run_notifies(self, kind: str, name: str, new: State, priority: int) -> None:
        assert self._runner is not None
        for argv in self._notify.commands(kind, name, new, priority):
            result = await self._runner.run(
                argv,
                timeout=self._notify_timeout,
                user=self._script_user,
                group=self._script_group,
            )
            if not result.ok:
                self._notify_failures += 1
                logger.warning(
                    "%s: notify %s failed: %s",
                    self.name,
                    argv[0],
                    result.error
                    or f"exit {result.returncode}" + (" (timed out)" if result.timed_out else ""),
                )

    def __repr__(self) -> str:
        return (
            f"<Instance {self.name} {self.interface} vrid={self._config.vrid} "
            f"{self.state} prio={self.effective_priority}>"
        )
