"""Failover takes exactly the time the RFC 5798 / RFC 3768 formulas give."""

import itertools

import pytest

from vrrpkit import Router, RouterConfig, SendAdvertisement, State, master_down_interval, skew_time
from vrrpkit.testing import Simulation

US = 1e-6


def two_routers(version: int = 3, interval: float = 1.0) -> Simulation:
    sim = Simulation(seed=1)
    sim.add_router(
        "a",
        vrid=51,
        priority=200,
        address="192.0.2.1",
        vips=["192.0.2.100"],
        interval=interval,
        version=version,
    )
    sim.add_router(
        "b",
        vrid=51,
        priority=100,
        address="192.0.2.2",
        vips=["192.0.2.100"],
        interval=interval,
        version=version,
    )
    return sim


def became_master(sim: Simulation, name: str) -> float:
    return next(t.time for t in sim.transitions if t.router == name and t.new is State.MASTER)


def test_v3_skew_is_truncated_to_microseconds_like_keepalived() -> None:
    assert skew_time(3, 100, 0.1) == pytest.approx(0.060937, abs=US / 10)


def test_v2_skew_ignores_the_interval() -> None:
    assert skew_time(2, 100, 1.0) == skew_time(2, 100, 5.0) == pytest.approx(0.609375)


def test_master_down_interval_matches_keepalived_lab_theory() -> None:
    assert master_down_interval(2, 100, 1.0) == pytest.approx(3.609375)
    assert master_down_interval(3, 100, 0.1) == pytest.approx(0.360937)


def test_first_master_is_elected_after_its_own_master_down_interval() -> None:
    sim = two_routers()
    sim.run_for(10)
    assert became_master(sim, "a") == pytest.approx(master_down_interval(3, 200, 1.0), abs=US)
    assert sim["b"].state is State.BACKUP


@pytest.mark.parametrize(("version", "interval"), [(3, 1.0), (3, 0.1), (3, 0.01), (2, 1.0)])
def test_crashed_master_is_replaced_exactly_one_master_down_interval_after_its_last_advert(
    version: int, interval: float
) -> None:
    sim = two_routers(version, interval)
    sim.run_for(5)
    first = became_master(sim, "a")
    sim.crash("a")
    crash_time = sim.now
    sim.run_until(lambda: sim["b"].state is State.MASTER, timeout=10)
    sent = int((crash_time - first) / interval + 1e-9)
    last_advert = first + sent * interval
    expected = last_advert + master_down_interval(version, 100, interval)
    assert became_master(sim, "b") == pytest.approx(expected, abs=US)


@pytest.mark.parametrize(("version", "interval"), [(3, 1.0), (3, 0.1), (2, 1.0)])
def test_gracefully_stopped_master_is_replaced_after_skew_time(
    version: int, interval: float
) -> None:
    sim = two_routers(version, interval)
    sim.run_for(5)
    sim.stop("a")
    stop_time = sim.now
    sim.run_until(lambda: sim["b"].state is State.MASTER, timeout=10)
    assert became_master(sim, "b") == pytest.approx(
        stop_time + skew_time(version, 100, interval), abs=US
    )


def test_v3_backup_uses_the_masters_advertised_interval() -> None:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=200, address="192.0.2.1", interval=0.5)
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2", interval=2.0)
    sim.run_for(20)
    assert sim["a"].state is State.MASTER
    assert sim["b"].router.master_adver_interval == 0.5
    sim.crash("a")
    crash = sim.now
    sim.run_until(lambda: sim["b"].state is State.MASTER, timeout=20)
    takeover = became_master(sim, "b")
    assert takeover - crash <= master_down_interval(3, 100, 0.5) + US


def test_no_jitter_means_the_same_timeline_for_every_seed() -> None:
    def timeline(seed: int) -> list[tuple[float, str, State]]:
        sim = Simulation(seed=seed)
        for i, prio in enumerate((150, 100, 50), start=1):
            sim.add_router(f"r{i}", vrid=7, priority=prio, address=f"192.0.2.{i}")
        sim.run_for(5)
        sim.crash("r1")
        sim.run_for(10)
        return [(t.time, t.router, t.new) for t in sim.transitions]

    assert timeline(1) == timeline(2)


def advert_times(until: float, **options: object) -> list[float]:
    """When a lone router sends adverts, driving its timers as a runtime would."""
    router = Router(
        RouterConfig(name="a", vrid=51, priority=200, address="192.0.2.1", **options)  # type: ignore[arg-type]
    )
    router.start(0.0)
    times: list[float] = []
    while (deadline := router.next_deadline()) is not None and deadline <= until:
        actions = router.handle_timer(deadline)
        times += [deadline for a in actions if isinstance(a, SendAdvertisement)]
    return times


def test_aligned_master_sends_on_multiples_of_its_interval() -> None:
    first, *rest = advert_times(2.0, interval=0.1, align_adverts=True)
    assert first == pytest.approx(master_down_interval(3, 200, 0.1), abs=US)
    assert 0 < rest[0] - first <= 0.1
    assert all(abs(t / 0.1 - round(t / 0.1)) < 1e-6 for t in rest)
    assert all(b - a == pytest.approx(0.1, abs=US) for a, b in itertools.pairwise(rest))


def test_unaligned_master_sends_an_interval_after_its_previous_advert() -> None:
    times = advert_times(2.0, interval=0.1)
    assert times[0] == pytest.approx(master_down_interval(3, 200, 0.1), abs=US)
    assert all(b - a == pytest.approx(0.1, abs=US) for a, b in itertools.pairwise(times))
