"""Preemption as keepalived does it: preempt, nopreempt and preempt_delay."""

import pytest

from vrrpkit import State, master_down_interval
from vrrpkit.testing import Simulation


def cluster(**backup_options: object) -> Simulation:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"])
    sim.run_for(10)
    sim.add_router(
        "b", vrid=1, priority=200, address="192.0.2.2", vips=["192.0.2.100"], **backup_options
    )  # type: ignore[arg-type]
    return sim


def test_preempting_backup_takes_over_one_master_down_interval_after_it_starts() -> None:
    sim = cluster()
    start = sim.now
    sim.run_until(lambda: sim["b"].state is State.MASTER, timeout=10)
    takeover = next(t.time for t in sim.transitions if t.router == "b" and t.new is State.MASTER)
    # Lower-priority adverts are discarded without resetting the down timer (RFC 5798 6.4.2).
    assert takeover == pytest.approx(start + master_down_interval(3, 200, 1.0), abs=1e-6)


def test_nopreempt_backup_never_takes_over_a_live_lower_priority_master() -> None:
    sim = cluster(preempt=False)
    sim.run_for(60)
    assert sim.masters() == ["a"]


def test_nopreempt_backup_still_takes_over_when_the_master_dies() -> None:
    sim = cluster(preempt=False)
    sim.run_for(5)
    sim.crash("a")
    assert sim.run_until(lambda: sim.masters() == ["b"], timeout=10)


def test_nopreempt_does_not_stop_a_master_from_yielding_to_a_higher_priority() -> None:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=100, address="192.0.2.1", preempt=False)
    sim.add_router("b", vrid=1, priority=200, address="192.0.2.2", preempt=False, start=False)
    sim.run_for(10)
    sim.partition(["a"], ["b"])
    sim.start("b")
    sim.run_for(10)
    assert sorted(sim.masters()) == ["a", "b"]
    sim.heal()
    sim.run_for(3)
    assert sim.masters() == ["b"]


def test_preempt_delay_keeps_the_lower_priority_master_until_it_expires() -> None:
    sim = cluster(preempt_delay=20.0)
    start = sim.now
    sim.run_for(15)
    assert sim.masters() == ["a"]
    sim.run_until(lambda: sim.masters() == ["b"], timeout=30)
    takeover = next(t.time for t in sim.transitions if t.router == "b" and t.new is State.MASTER)
    # The first lower-priority advert (at once) starts the delay; the last advert accepted
    # before it ran out restarts the down timer.
    assert start + 20.0 <= takeover <= start + 20.0 + master_down_interval(3, 200, 1.0) + 1e-6


def test_preempt_delay_has_no_effect_when_no_master_is_heard() -> None:
    sim = Simulation()
    sim.add_router("b", vrid=1, priority=200, address="192.0.2.2", preempt_delay=60.0)
    sim.run_for(5)
    assert sim.masters() == ["b"]


def test_owner_ignores_nopreempt_and_takes_over_at_start() -> None:
    sim = cluster()
    sim.add_router("owner", vrid=1, priority=255, address="192.0.2.3", preempt=False)
    sim.run_for(5)
    assert sim.masters() == ["owner"]
