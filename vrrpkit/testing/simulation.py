"""A deterministic cluster simulator: real core routers on a virtual clock and a fake segment.

The routers are the same :class:`vrrpkit.core.router.Router` objects the runtime drives; the
segment carries their encoded bytes, with seeded loss, delay, jitter, duplication, reordering
and partitions. Time only moves when events run, so a simulated day takes seconds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import attrs

from vrrpkit.core.actions import (
    Action,
    AddVips,
    AnnounceVips,
    GroupStateChanged,
    PacketDropped,
    RemoveVips,
    SendAdvertisement,
    SplitBrain,
    StateChanged,
)
from vrrpkit.core.addresses import Address, multicast_group
from vrrpkit.core.config import RouterConfig
from vrrpkit.core.counters import Counters
from vrrpkit.core.errors import ConfigError
from vrrpkit.core.group import SyncGroup
from vrrpkit.core.packet import Advertisement
from vrrpkit.core.router import Router
from vrrpkit.core.states import State
from vrrpkit.core.tracking import Tracker

__all__ = ["Impairment", "RouterHandle", "Simulation", "TransitionRecord"]

_TIMER = 0
_DELIVER = 1
_CALL = 2

#: A packet on the wire: ``(data, src, dst, ttl)``.
_Packet = tuple[bytes, Address, Address, int]


class TransitionRecord(NamedTuple):
    """One state change as the simulator saw it: ``(time, router, old, new, reason)``."""

    time: float
    router: str
    old: State
    new: State
    reason: str


def _probability(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attribute.name} must be a probability 0..1, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0 seconds, got {value!r}")


@attrs.frozen(kw_only=True)
class Impairment:
    """How the segment mistreats packets (all random draws come from the seeded generator).

    ``delay`` is added to every packet, plus a uniform ``0..jitter``; ``loss`` drops,
    ``duplicate`` sends a second copy, ``reorder`` holds a packet back by up to
    ``reorder_delay`` seconds so that later ones overtake it.
    """

    loss: float = attrs.field(default=0.0, validator=_probability)
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    reorder: float = attrs.field(default=0.0, validator=_probability)
    reorder_delay: float = attrs.field(default=0.05, validator=_non_negative)

    @property
    def is_perfect(self) -> bool:
        """Whether packets arrive at once, exactly once and in order."""
        return not (self.loss or self.delay or self.jitter or self.duplicate or self.reorder)

    def delays(self, rng: random.Random) -> list[float]:
        """How long each copy of one packet takes: none if lost, two if duplicated."""
        if self.loss and rng.random() < self.loss:
            return []
        copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
        delays = []
        for _ in range(copies):
            delay = self.delay
            if self.jitter:
                delay += rng.uniform(0.0, self.jitter)
            if self.reorder and rng.random() < self.reorder:
                delay += rng.uniform(0.0, self.reorder_delay)
            delays.append(delay)
        return delays


class RouterHandle:
    """A simulated router as tests see it: its state, priority, counters and VIPs."""

    def __init__(self, sim: Simulation, router: Router) -> None:
        self._sim = sim
        self.router = router
        #: Virtual addresses currently on this router's simulated interface.
        self.vips: set[Address] = set()
        #: Gratuitous ARP/NA messages sent so far.
        self.announcements = 0
        #: Split-brain events seen so far, as the core reported them.
        self.split_brains: list[SplitBrain] = []
        self.running = False
        self.crashed = False
        self.link_up = True
        self._generation = 0
        self._scheduled: float | None = None
        self._wire: dict[Address, tuple[Advertisement, bytes]] = {}

    @property
    def name(self) -> str:
        """The router's name."""
        return self.router.name

    @property
    def config(self) -> RouterConfig:
        """The router's configuration."""
        return self.router.config

    @property
    def state(self) -> State:
        """The router's state; STOPPED while crashed."""
        return State.STOPPED if self.crashed else self.router.state

    @property
    def effective_priority(self) -> int:
        """The router's effective priority."""
        return self.router.effective_priority

    @property
    def counters(self) -> Counters:
        """A copy of the router's counters."""
        return self.router.counters

    @property
    def master_address(self) -> Address | None:
        """The master this router last heard (or itself)."""
        return self.router.master_address

    def __repr__(self) -> str:
        return f"<RouterHandle {self.name} {self.state} prio={self.effective_priority}>"


class Simulation:
    """A virtual clock and a simulated multicast segment carrying real routers' packets.

    Everything random comes from ``random.Random(seed)``, so a run repeats exactly.
    """

    def __init__(self, seed: int = 0, *, impairment: Impairment | None = None) -> None:
        self.seed = seed
        self._random = random.Random(seed)
        self._now = 0.0
        self._seq = 0
        self._queue: list[tuple[float, int, int, Any]] = []
        self._handles: dict[str, RouterHandle] = {}
        self._groups: dict[str, SyncGroup] = {}
        self._component: dict[str, int] = {}
        self._impairment = impairment or Impairment()
        self._perfect = self._impairment.is_perfect
        self._listeners: dict[tuple[int, int], list[RouterHandle]] = {}
        self._unicast_listeners: dict[tuple[Address, int], list[RouterHandle]] = {}
        #: Every state change, in order: ``(time, router, old, new, reason)``.
        self.transitions: list[TransitionRecord] = []
        #: Sync-group state changes: ``(time, group, old, new, reason)``.
        self.group_transitions: list[TransitionRecord] = []
        #: Packets put on the wire so far (copies to each receiver not counted).
        self.packets_sent = 0
        #: Received packets the routers dropped (their counters say why).
        self.drops = 0

    # -- building the cluster --------------------------------------------------------------

    @property
    def now(self) -> float:
        """The virtual time in seconds."""
        return self._now

    @property
    def routers(self) -> dict[str, RouterHandle]:
        """The routers by name."""
        return dict(self._handles)

    def __getitem__(self, name: str) -> RouterHandle:
        return self._handle(name)

    def add_router(
        self,
        name: str,
        *,
        vrid: int,
        priority: int,
        address: str | Address,
        vips: Iterable[str | Address] = (),
        interval: float = 1.0,
        version: int = 3,
        preempt: bool = True,
        preempt_delay: float = 0.0,
        trackers: Iterable[Tracker] = (),
        start: bool = True,
        **options: Any,
    ) -> RouterHandle:
        """Add a router (and start it now unless ``start=False``).

        ``options`` are further :class:`vrrpkit.core.config.RouterConfig` fields, for example
        ``unicast_peers``, ``down_timer_adverts`` or ``lower_prio_advert``.
        """
        if name in self._handles:
            raise ConfigError(f"a router named {name!r} already exists")
        config = RouterConfig(
            name=name,
            vrid=vrid,
            priority=priority,
            address=address,
            vips=tuple(vips),
            interval=interval,
            version=version,
            preempt=preempt,
            preempt_delay=preempt_delay,
            trackers=tuple(trackers),
            **options,
        )
        handle = RouterHandle(self, Router(config))
        self._handles[name] = handle
        self._listeners.setdefault((config.address.version, vrid), []).append(handle)
        self._unicast_listeners.setdefault((config.address, vrid), []).append(handle)
        if start:
            self.start(name)
        return handle

    def add_group(self, name: str, members: Sequence[str], *, start: bool = True) -> SyncGroup:
        """Tie routers (added with ``start=False``) into a sync group, then start them."""
        handles = [self._handle(m) for m in members]
        if any(h.running for h in handles):
            raise ConfigError("add sync-group members with start=False, then the group")
        group = SyncGroup(name, [h.router for h in handles])
        self._groups[name] = group
        if start:
            for member in members:
                self.start(member)
        return group

    # -- running ---------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        """Advance the virtual clock by ``seconds``, running every event on the way."""
        end = self._now + seconds
        queue = self._queue
        while queue and queue[0][0] <= end:
            self._step()
        self._now = end

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Run until ``predicate()`` is true (True) or ``timeout`` seconds pass (False)."""
        if predicate():
            return True
        end = self._now + timeout
        queue = self._queue
        while queue and queue[0][0] <= end:
            self._step()
            if (not queue or queue[0][0] != self._now) and predicate():
                return True
        self._now = end
        return predicate()

    def call_at(self, time: float, callback: Callable[[], object]) -> None:
        """Run ``callback()`` at virtual ``time`` (for scripted scenarios)."""
        self._push(max(time, self._now), _CALL, callback)

    # -- faults and operations -------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Kill a router silently: no priority 0, and its VIPs stay on its interface.

        Its router forgets everything at once (state, counters, tracker results), as the dead
        process did, and is INIT inside until :meth:`start` (:attr:`RouterHandle.state` says
        STOPPED). keepalived runs a whole sync group in one process, so a member cannot die
        alone there; here the group's other members go on, and see a member that is not
        running: they neither drive it nor count it as ready for MASTER, so the group cannot
        become MASTER again until it restarts.
        """
        handle = self._handle(name)
        handle.running = False
        handle.crashed = True
        handle.router.reset()
        handle._generation += 1
        handle._scheduled = None

    def stop(self, name: str) -> None:
        """Stop a router gracefully (a MASTER sends priority 0 and removes its VIPs)."""
        handle = self._handle(name)
        if not handle.running:
            return
        self._perform(handle.router.shutdown(self._now))
        handle.running = False

    def start(self, name: str) -> None:
        """Start a router that was added with ``start=False``, stopped or crashed.

        It reads its link first: with the link down it starts in FAULT, as keepalived does.
        """
        handle = self._handle(name)
        if handle.running:
            raise ConfigError(f"router {name!r} is already running")
        handle.crashed = False
        handle.running = True
        router = handle.router
        actions = router.interface_changed(handle.link_up, self._now)
        self._perform(actions + router.start(self._now))

    def tracker_result(self, name: str, tracker: str, ok: bool) -> None:
        """Feed one result of router ``name``'s tracker ``tracker``."""
        handle = self._handle(name)
        if handle.running:
            self._perform(handle.router.tracker_result(tracker, ok, self._now))

    def interface(self, name: str, up: bool) -> None:
        """Take router ``name``'s interface down or up (down: it neither sends nor hears)."""
        handle = self._handle(name)
        # The link changes before the router acts on it: the priority-0 advert of a master
        # whose cable is out cannot leave, and an owner's MASTER advert on coming back does.
        handle.link_up = bool(up)
        if handle.running:
            self._perform(handle.router.interface_changed(up, self._now))

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the segment: routers hear only those in their own group.

        Routers not named in any group form one more group together. A packet gets through
        only if its sender and receiver are on the same side both when it leaves and when it
        arrives: a partition stops packets already in flight, and :meth:`heal` does not bring
        back those sent while the segment was split (the cut lost them).
        """
        component: dict[str, int] = {}
        for index, names in enumerate(groups, start=1):
            for name in names:
                self._handle(name)
                if name in component:
                    raise ConfigError(f"router {name!r} is in two partitions")
                component[name] = index
        self._component = component

    def heal(self) -> None:
        """Join every partition again."""
        self._component = {}

    def impair(self, impairment: Impairment | None = None, **fields: Any) -> None:
        """Change how the segment treats packets from now on (``sim.impair(loss=0.1)``)."""
        self._impairment = impairment if impairment is not None else Impairment(**fields)
        self._perfect = self._impairment.is_perfect

    def masters(self, vrid: int | None = None) -> list[str]:
        """Names of the running routers in MASTER (for ``vrid``, if given)."""
        return [
            h.name
            for h in self._handles.values()
            if h.running
            and h.router.state is State.MASTER
            and (vrid is None or h.config.vrid == vrid)
        ]

    # -- the event loop --------------------------------------------------------------------

    def _push(self, time: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (time, self._seq, kind, payload))

    def _step(self) -> None:
        time, _seq, kind, payload = heapq.heappop(self._queue)
        self._now = time
        if kind == _DELIVER:
            sender, handle, (data, src, dst, ttl) = payload
            if handle.running and handle.link_up and not self._apart(sender, handle):
                self._perform(
                    handle.router.receive_packet(data, src=src, dst=dst, ttl=ttl, now=time), handle
                )
        elif kind == _TIMER:
            handle, generation = payload
            if generation == handle._generation and handle.running:
                handle._scheduled = None
                self._perform(handle.router.handle_timer(time), handle)
        else:
            payload()

    def _perform(self, actions: list[Action], handle: RouterHandle | None = None) -> None:
        handles = self._handles
        for action in actions:
            if isinstance(action, GroupStateChanged):
                self.group_transitions.append(
                    TransitionRecord(self._now, action.group, action.old, action.new, action.reason)
                )
                continue
            target = handles[action.instance]
            if not target.running:
                continue  # a router that is not running neither sends nor touches its interface
            if isinstance(action, SendAdvertisement):
                self._transmit(target, action.advertisement)
            elif isinstance(action, StateChanged):
                self.transitions.append(
                    TransitionRecord(
                        self._now, action.instance, action.old, action.new, action.reason
                    )
                )
            elif isinstance(action, AddVips):
                target.vips.update(action.addresses)
            elif isinstance(action, RemoveVips):
                target.vips.difference_update(action.addresses)
            elif isinstance(action, AnnounceVips):
                target.announcements += len(action.addresses) * action.repeat
            elif isinstance(action, SplitBrain):
                target.split_brains.append(action)
            elif isinstance(action, PacketDropped):
                self.drops += 1
        if handle is not None and handle.router._group is None:
            self._reschedule(handle)
        else:
            self._reschedule_all()

    def _reschedule_all(self) -> None:
        for group in self._groups.values():
            pending = group.take_actions()
            if pending:
                self._perform(pending, None)
                return
        for handle in self._handles.values():
            self._reschedule(handle)

    def _reschedule(self, handle: RouterHandle) -> None:
        if not handle.running:
            return
        deadline = handle.router.next_deadline()
        if deadline != handle._scheduled:
            handle._generation += 1
            handle._scheduled = deadline
            if deadline is not None:
                self._push(deadline, _TIMER, (handle, handle._generation))

    def _transmit(self, sender: RouterHandle, adv: Advertisement) -> None:
        if not sender.link_up:
            return
        config = sender.config
        src = config.address
        self.packets_sent += 1
        if config.unicast_peers:
            # keepalived sends IPv6 unicast with the default hop limit 64 (lab facts).
            ttl = 255 if src.version == 4 else 64
            for peer in config.unicast_peers:
                # Like the multicast listeners, only the routers of the advert's VRID on that
                # address get it: keepalived's dispatcher drops other VRIDs before any
                # instance counts them.
                for receiver in self._unicast_listeners.get((peer, adv.vrid), ()):
                    if receiver is not sender:
                        data = self._wire(sender, adv, peer)
                        self._send(sender, receiver, (data, src, peer, ttl))
            return
        dst = multicast_group(src)
        data = self._wire(sender, adv, dst)
        for receiver in self._listeners[(src.version, adv.vrid)]:
            if receiver is not sender:
                self._send(sender, receiver, (data, src, dst, 255))

    def _wire(self, sender: RouterHandle, adv: Advertisement, dst: Address) -> bytes:
        # Routers reuse one Advertisement object per priority, so an identity check spares
        # re-encoding (and re-hashing) the same advert every interval.
        cache = sender._wire
        hit = cache.get(dst)
        if hit is not None and hit[0] is adv:
            return hit[1]
        data = adv.encode(src=sender.config.address, dst=dst, checksum=sender.config.checksum)
        cache[dst] = (adv, data)
        return data

    def _send(self, sender: RouterHandle, receiver: RouterHandle, packet: _Packet) -> None:
        if self._apart(sender, receiver):
            return
        payload = (sender, receiver, packet)
        if self._perfect:
            self._push(self._now, _DELIVER, payload)
            return
        for delay in self._impairment.delays(self._random):
            self._push(self._now + delay, _DELIVER, payload)

    def _apart(self, sender: RouterHandle, receiver: RouterHandle) -> bool:
        components = self._component
        return bool(components) and components.get(sender.name, 0) != components.get(
            receiver.name, 0
        )

    def _handle(self, name: str) -> RouterHandle:
        try:
            return self._handles[name]
        except KeyError:
            raise ConfigError(f"no router named {name!r}") from None
