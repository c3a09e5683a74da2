"""Invariants over random inputs: the table holds, and clusters converge after faults heal."""

from ipaddress import ip_address

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from vrrpkit import (
    TRANSITIONS,
    AddVips,
    Advertisement,
    RemoveVips,
    Router,
    RouterConfig,
    State,
    StateChanged,
    Tracker,
    master_down_interval,
)
from vrrpkit.core.addresses import Address
from vrrpkit.testing import Impairment, Simulation

GROUP = ip_address("224.0.0.18")
TABLE = {(t.source, t.cause.value, t.target) for t in TRANSITIONS}

inputs = st.one_of(
    st.tuples(st.just("start")),
    st.tuples(st.just("timer")),
    st.tuples(
        st.just("advert"),
        st.integers(0, 255),
        st.sampled_from(["192.0.2.1", "192.0.2.9", "192.0.2.200"]),
    ),
    st.tuples(st.just("garbage"), st.binary(max_size=40)),
    st.tuples(st.just("tracker"), st.sampled_from(["fault", "weight"]), st.booleans()),
    st.tuples(st.just("interface"), st.booleans()),
    st.tuples(st.just("shutdown")),
    st.tuples(st.just("wait"), st.floats(0, 10)),
)


@settings(max_examples=300, deadline=None)
@given(priority=st.sampled_from([1, 100, 254, 255]), steps=st.lists(inputs, max_size=40))
def test_every_input_in_every_state_lands_in_a_valid_state_through_the_table(
    priority: int, steps: list[tuple[object, ...]]
) -> None:
    router = Router(
        RouterConfig(
            name="r",
            vrid=1,
            priority=priority,
            address="192.0.2.5",
            vips=["192.0.2.100"],
            trackers=[Tracker("fault", init_fail=False), Tracker("weight", weight=-50)],
        )
    )
    now = 0.0
    # Every deadline due by the last timer step ran then; any set since is at least then.
    handled_until = 0.0
    vips: set[object] = set()
    for step in steps:
        kind = step[0]
        if kind == "start":
            if router.state not in (State.INIT, State.STOPPED):
                continue
            actions = router.start(now)
        elif kind == "timer":
            deadline = router.next_deadline()
            if deadline is None:
                continue
            now = handled_until = max(now, deadline)
            actions = router.handle_timer(now)
        elif kind == "advert":
            adv = Advertisement(
                version=3,
                vrid=1,
                priority=step[1],
                interval=1.0,  # type: ignore[arg-type]
                addresses=["192.0.2.100"],
            )
            src = ip_address(step[2])
            actions = router.receive_packet(
                adv.encode(src=src, dst=GROUP), src=src, dst=GROUP, ttl=255, now=now
            )
        elif kind == "garbage":
            actions = router.receive_packet(
                step[1],
                src=ip_address("192.0.2.9"),  # type: ignore[arg-type]
                dst=GROUP,
                ttl=255,
                now=now,
            )
        elif kind == "tracker":
            actions = router.tracker_result(step[1], step[2], now)  # type: ignore[arg-type]
        elif kind == "interface":
            actions = router.interface_changed(step[1], now)  # type: ignore[arg-type]
        elif kind == "shutdown":
            actions = router.shutdown(now)
        else:
            now += step[1]  # type: ignore[operator]
            continue
        for action in actions:
            if isinstance(action, StateChanged):
                assert (action.old, action.reason, action.new) in TABLE
            elif isinstance(action, AddVips):
                vips.update(action.addresses)
            elif isinstance(action, RemoveVips):
                vips.difference_update(action.addresses)
        assert isinstance(router.state, State)
        assert bool(vips) == (router.state is State.MASTER)
        assert 1 <= router.effective_priority <= 255
        deadline = router.next_deadline()
        if router.state in (State.BACKUP, State.MASTER):
            assert deadline is not None and deadline >= handled_until
        if router.state in (State.FAULT, State.STOPPED, State.INIT):
            assert deadline is None


chaos = st.lists(
    st.one_of(
        st.tuples(st.just("partition"), st.lists(st.integers(0, 3), min_size=4, max_size=4)),
        st.tuples(st.just("heal")),
        st.tuples(st.just("impair"), st.floats(0, 0.5), st.floats(0, 0.3)),
        st.tuples(st.just("stop"), st.integers(0, 3)),
        st.tuples(st.just("start"), st.integers(0, 3)),
        st.tuples(st.just("run"), st.floats(0.01, 8)),
    ),
    max_size=15,
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    priorities=st.lists(st.integers(1, 254), min_size=4, max_size=4),
    steps=chaos,
)
def test_after_faults_heal_one_master_down_interval_leaves_exactly_one_master_with_the_vips(
    seed: int, priorities: list[int], steps: list[tuple[object, ...]]
) -> None:
    sim = Simulation(seed=seed)
    names = [f"r{i}" for i in range(4)]
    for i, (name, prio) in enumerate(zip(names, priorities, strict=True)):
        sim.add_router(
            name,
            vrid=9,
            priority=prio,
            address=f"192.0.2.{i + 1}",
            vips=["192.0.2.100"],
            interval=0.5,
        )
    for step in steps:
        if step[0] == "partition":
            groups: dict[int, list[str]] = {}
            for name, part in zip(names, step[1], strict=True):  # type: ignore[call-overload]
                groups.setdefault(part, []).append(name)
            sim.partition(*groups.values())
        elif step[0] == "heal":
            sim.heal()
        elif step[0] == "impair":
            sim.impair(loss=step[1], jitter=step[2])
        elif step[0] == "stop":
            sim.stop(names[step[1]])  # type: ignore[index]
        elif step[0] == "start":
            if not sim[names[step[1]]].running:  # type: ignore[index]
                sim.start(names[step[1]])  # type: ignore[index]
        else:
            sim.run_for(step[1])  # type: ignore[arg-type]
    sim.impair(Impairment())
    sim.heal()
    sim.run_for(0.3)  # let packets still in flight land
    sim.run_for(master_down_interval(3, 1, 0.5))
    running = [h for h in sim.routers.values() if h.running]
    masters = [h for h in running if h.state is State.MASTER]
    if running:
        assert len(masters) == 1, [(h.name, h.state) for h in running]
    for handle in sim.routers.values():
        assert bool(handle.vips) == (handle.state is State.MASTER)


@attrs.frozen
class Received:
    """A received packet as the transports hand it over."""

    data: bytes
    src: Address
    dst: Address | None
    ttl: int
    timestamp: float | None = None


# One object per peer, as the transports hand them out.
PEER_A, PEER_B = ip_address("192.0.2.9"), ip_address("192.0.2.200")
ONE_VIP, TWO_VIPS = ("192.0.2.100",), ("192.0.2.100", "192.0.2.101")
# A few adverts (priority, source, TTL, interval, addresses), so that a run repeats them
# often and interleaves them with everything that may change how a repeat must be taken.
ADVERTS = [
    (200, PEER_A, 255, 1.0, ONE_VIP),
    (50, PEER_A, 255, 1.0, ONE_VIP),
    (100, PEER_A, 255, 1.0, ONE_VIP),
    (150, PEER_B, 255, 2.0, ONE_VIP),
    (50, PEER_B, 255, 2.0, ONE_VIP),
    (0, PEER_A, 255, 1.0, ONE_VIP),
    (200, PEER_A, 254, 1.0, ONE_VIP),
    (200, PEER_B, 255, 1.0, TWO_VIPS),
]
advert_inputs = st.one_of(
    st.tuples(st.just("advert"), st.sampled_from(ADVERTS)),
    st.tuples(st.just("timer")),
    st.tuples(st.just("tracker"), st.booleans()),
    st.tuples(st.just("wait"), st.floats(0, 5)),
)


@settings(max_examples=500, deadline=None)
@given(
    steps=st.lists(advert_inputs, max_size=60),
    preempt=st.booleans(),
    preempt_delay=st.sampled_from([0.0, 2.0]),
)
def test_repeated_adverts_give_what_freshly_decoded_ones_give(
    steps: list[tuple[object, ...]], preempt: bool, preempt_delay: float
) -> None:
    # receive_packets takes a short path for the advert a backup keeps hearing and
    # receive_packet remembers what it decoded and checked; receive() with a fresh decode
    # does every step: they must never tell apart.
    def make() -> Router:
        router = Router(
            RouterConfig(
                name="r",
                vrid=1,
                priority=100,
                address="192.0.2.5",
                vips=["192.0.2.100"],
                preempt=preempt,
                preempt_delay=preempt_delay,
                trackers=[Tracker("weight", weight=-60)],
            )
        )
        router.start(0.0)
        return router

    remembering, fresh = make(), make()
    now = 0.0
    for step in steps:
        kind = step[0]
        if kind == "advert":
            priority, src, ttl, interval, addresses = step[1]  # type: ignore[misc]
            data = Advertisement(
                version=3,
                vrid=1,
                priority=priority,  # type: ignore[arg-type]
                interval=interval,  # type: ignore[arg-type]
                addresses=addresses,  # type: ignore[arg-type]
            ).encode(src=src, dst=GROUP)
            packet = Received(data, src, GROUP, ttl)  # type: ignore[arg-type]
            got = remembering.receive_packets([packet], now=now)
            adv = Advertisement.decode(data, src=src, dst=GROUP)
            want = fresh.receive(adv, src=src, dst=GROUP, ttl=ttl, now=now)  # type: ignore[arg-type]
        elif kind == "timer":
            deadline = fresh.next_deadline()
            if deadline is None:
                continue
            now = max(now, deadline)
            got, want = remembering.handle_timer(now), fresh.handle_timer(now)
        elif kind == "tracker":
            got = remembering.tracker_result("weight", step[1], now)  # type: ignore[arg-type]
            want = fresh.tracker_result("weight", step[1], now)  # type: ignore[arg-type]
        else:
            now += step[1]  # type: ignore[operator]
            continue
        assert got == want
        assert remembering.state is fresh.state
        assert remembering.next_deadline() == fresh.next_deadline()
        assert remembering.counters == fresh.counters
        assert remembering.master_address == fresh.master_address
