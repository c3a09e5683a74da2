"""Trackers: keepalived's weight arithmetic, fall/rise counters and FAULT."""

import pytest

from vrrpkit import (
    ConfigError,
    FallRise,
    Router,
    RouterConfig,
    State,
    StateChanged,
    Tracker,
    effective_priority,
    skew_time,
)
from vrrpkit.core.tracking import tracker_contribution, tracker_faults
from vrrpkit.testing import Simulation


def run(tracker: Tracker, results: list[bool]) -> list[bool | None]:
    counter = FallRise.initial(tracker)
    seen = []
    for ok in results:
        counter = counter.record(ok)
        seen.append(counter.up)
    return seen


def test_one_result_decides_the_first_state() -> None:
    assert run(Tracker("t", fall=3, rise=3), [True]) == [True]
    assert run(Tracker("t", fall=3, rise=3), [False]) == [False]


def test_init_fail_starts_failed_and_needs_rise_successes() -> None:
    tracker = Tracker("t", rise=3, init_fail=True)
    assert FallRise.initial(tracker).up is False
    assert run(tracker, [True, True, True]) == [False, False, True]


def test_fall_needs_consecutive_failures() -> None:
    tracker = Tracker("t", fall=3, rise=1)
    assert run(tracker, [True, False, False, True, False, False, False]) == [
        True,
        True,
        True,
        True,
        True,
        True,
        False,
    ]


def test_rise_needs_consecutive_successes() -> None:
    tracker = Tracker("t", fall=1, rise=2)
    assert run(tracker, [False, True, False, True, True]) == [False, False, False, False, True]


def test_positive_weight_is_added_while_ok() -> None:
    tracker = Tracker("t", weight=20)
    assert tracker_contribution(tracker, True) == 20
    assert tracker_contribution(tracker, False) == 0


def test_negative_weight_is_added_while_failing() -> None:
    tracker = Tracker("t", weight=-20)
    assert tracker_contribution(tracker, True) == 0
    assert tracker_contribution(tracker, False) == -20


def test_reverse_flips_the_sign_of_the_contribution() -> None:
    assert tracker_contribution(Tracker("t", weight=20, reverse=True), True) == -20
    assert tracker_contribution(Tracker("t", weight=-20, reverse=True), False) == 20


def test_no_result_yet_contributes_nothing() -> None:
    assert tracker_contribution(Tracker("t", weight=-20), None) == 0


def test_weight_zero_fails_into_fault_and_reverse_faults_when_ok() -> None:
    assert tracker_faults(Tracker("t"), False)
    assert not tracker_faults(Tracker("t"), True)
    assert tracker_faults(Tracker("t", reverse=True), True)
    assert tracker_faults(Tracker("t"), None)


def test_effective_priority_is_clamped_to_1_254() -> None:
    assert effective_priority(100, [200]) == 254
    assert effective_priority(100, [-200]) == 1


def test_owner_priority_is_never_changed() -> None:
    assert effective_priority(255, [-100]) == 255


def test_weight_254_is_rewritten_to_253_like_keepalived() -> None:
    assert Tracker("t", weight=254).weight == 253
    assert Tracker("t", weight=-254).weight == -253


@pytest.mark.parametrize("weight", [255, -255, 1000])
def test_weight_out_of_range_is_a_clear_config_error(weight: int) -> None:
    with pytest.raises(ConfigError, match="weight"):
        Tracker("t", weight=weight)


@pytest.mark.parametrize("field", ["fall", "rise"])
def test_fall_and_rise_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Tracker("t", **{field: 0})  # type: ignore[arg-type]


def tracked() -> Simulation:
    """Router "a" (priority 150, VIP 192.0.2.100) whose tracker "chk" (weight -60) is up
    and falls after two failures."""
    sim = Simulation()
    sim.add_router(
        "a",
        vrid=1,
        priority=150,
        address="192.0.2.1",
        vips=["192.0.2.100"],
        trackers=[Tracker("chk", weight=-60, fall=2, rise=2)],
    )
    sim.tracker_result("a", "chk", True)
    return sim


def test_failing_weighted_tracker_moves_the_vip_to_the_backup() -> None:
    sim = tracked()
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2", vips=["192.0.2.100"])
    sim.run_for(10)
    assert sim.masters() == ["a"]
    sim.tracker_result("a", "chk", False)
    assert sim["a"].effective_priority == 150
    sim.tracker_result("a", "chk", False)
    assert sim["a"].effective_priority == 90
    assert sim.run_until(lambda: sim.masters() == ["b"], timeout=10)
    assert sim["b"].vips and not sim["a"].vips


def test_weight_zero_tracker_without_result_starts_the_router_in_fault() -> None:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=100, address="192.0.2.1", trackers=[Tracker("chk")])
    assert sim["a"].state is State.FAULT
    sim.tracker_result("a", "chk", True)
    assert sim["a"].state is State.BACKUP


def test_priority_change_in_backup_shifts_the_down_timer_by_the_skew_change() -> None:
    sim = Simulation()
    sim.add_router(
        "b", vrid=1, priority=100, address="192.0.2.2", trackers=[Tracker("chk", weight=50)]
    )
    before = sim["b"].router.next_deadline()
    sim.tracker_result("b", "chk", True)
    after = sim["b"].router.next_deadline()
    assert before is not None and after is not None
    assert after - before == pytest.approx(skew_time(3, 150, 1.0) - skew_time(3, 100, 1.0))


def test_priority_change_is_not_advertised_until_the_next_advert() -> None:
    sim = Simulation()
    sim.add_router(
        "a", vrid=1, priority=150, address="192.0.2.1", trackers=[Tracker("chk", weight=-10)]
    )
    sim.run_for(5)
    sent = sim["a"].counters.advert_sent
    sim.tracker_result("a", "chk", False)
    assert sim["a"].counters.advert_sent == sent


def falling_twice() -> Simulation:
    """:func:`tracked`'s router "a", MASTER."""
    sim = tracked()
    sim.run_for(5)
    return sim


def test_a_result_that_only_moves_the_count_would_flip_nothing() -> None:
    router = falling_twice()["a"].router
    assert not router.tracker_would_flip("chk", True)
    assert not router.tracker_would_flip("chk", False)  # the first of two failures


def test_the_result_that_reaches_fall_would_flip_the_tracker() -> None:
    sim = falling_twice()
    sim.tracker_result("a", "chk", False)
    assert sim["a"].router.tracker_would_flip("chk", False)
    assert not sim["a"].router.tracker_would_flip("chk", True)


def test_an_unknown_tracker_would_flip_so_that_its_result_is_refused() -> None:
    assert falling_twice()["a"].router.tracker_would_flip("nope", True)


def started_awaiting(tracker: Tracker) -> tuple[Router, list[StateChanged]]:
    config = RouterConfig(
        name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"],
        trackers=[tracker],
    )  # fmt: skip
    router = Router(config)
    changes = [a for a in router.start(0.0) if isinstance(a, StateChanged)]
    return router, changes


def test_a_weight_zero_tracker_without_a_result_holds_the_start_in_an_unannounced_fault() -> None:
    """keepalived starts in FAULT while a weight-0 script has not answered, and sends no
    FAULT notify for it (vrrp_init_state: only with a fault flag set)."""
    router, changes = started_awaiting(Tracker("app"))
    assert router.state is State.FAULT
    assert [c.reason for c in changes] == ["startup_awaiting_trackers"]


def test_the_awaited_trackers_first_success_leaves_fault_for_backup() -> None:
    router, _ = started_awaiting(Tracker("app"))
    changes = [a for a in router.tracker_result("app", True, 0.1) if isinstance(a, StateChanged)]
    assert [(c.old, c.new) for c in changes] == [(State.FAULT, State.BACKUP)]


def test_the_awaited_trackers_first_failure_announces_the_fault_it_is_in() -> None:
    """keepalived's down_instance sends the FAULT notify then, in FAULT already."""
    router, _ = started_awaiting(Tracker("app"))
    changes = [a for a in router.tracker_result("app", False, 0.1) if isinstance(a, StateChanged)]
    assert [(c.old, c.new, c.reason) for c in changes] == [(State.FAULT, State.FAULT, "fault")]
    again = router.tracker_result("app", False, 0.2)
    assert not [a for a in again if isinstance(a, StateChanged)]


def test_a_tracker_started_failed_is_announced_at_start() -> None:
    _, changes = started_awaiting(Tracker("app", init_fail=True))
    assert [c.reason for c in changes] == ["startup_in_fault"]


def test_an_owner_whose_awaited_tracker_fails_first_comes_back_through_backup() -> None:
    """The announced FAULT is keepalived's down_instance: the owner then wants FAULT."""
    config = RouterConfig(
        name="o", vrid=1, priority=255, address="192.0.2.1", vips=["192.0.2.1"],
        trackers=[Tracker("app")],
    )  # fmt: skip
    router = Router(config)
    router.start(0.0)
    router.tracker_result("app", False, 0.1)
    router.tracker_result("app", True, 1.1)
    assert router.state is State.BACKUP
