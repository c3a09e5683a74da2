"""Router.repeat_down_interval: when a master's repeats alone keep a backup's down timer going.

A runtime may hand the timing of a master's silence to the kernel only while this holds.
"""

import pytest

from vrrpkit import master_down_interval
from vrrpkit.testing import Simulation


def pair(backup_priority: int, **backup_options: object) -> Simulation:
    """Router "a" (priority 150) is master; "b" runs beside it as a backup."""
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=150, address="192.0.2.1", vips=["192.0.2.100"])
    sim.run_for(5)
    sim.add_router(
        "b",
        vrid=1,
        priority=backup_priority,
        address="192.0.2.2",
        vips=["192.0.2.100"],
        **backup_options,  # type: ignore[arg-type]
    )
    sim.run_for(0.5)
    return sim


def test_a_backup_behind_a_better_master_is_kept_down_by_its_repeats() -> None:
    sim = pair(100)
    assert sim["b"].router.repeat_down_interval() == pytest.approx(
        master_down_interval(3, 100, 1.0)
    )


def test_a_master_has_no_down_timer_to_follow() -> None:
    sim = pair(100)
    assert sim["a"].router.repeat_down_interval() is None


def test_a_preempting_backup_does_not_follow_a_worse_masters_repeats() -> None:
    sim = pair(200)
    assert sim["b"].router.repeat_down_interval() is None


def test_a_nopreempt_backup_follows_a_worse_masters_repeats() -> None:
    sim = pair(200, preempt=False)
    assert sim["b"].router.repeat_down_interval() == pytest.approx(
        master_down_interval(3, 200, 1.0)
    )


def test_a_preemption_delay_is_not_a_steady_state() -> None:
    sim = pair(200, preempt_delay=30.0)
    assert sim["b"].router.repeat_down_interval() is None


def test_a_resignation_being_waited_out_is_not_followed() -> None:
    sim = pair(100)
    sim.stop("a")
    sim.run_for(0.01)
    assert sim["b"].router.repeat_down_interval() is None
