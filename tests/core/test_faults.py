"""FAULT: interface down or weight-0 tracker failing, and shutdown."""

import pytest

from vrrpkit import RemoveVips, Router, RouterConfig, SendAdvertisement, State, Tracker
from vrrpkit.testing import Simulation


def pair() -> Simulation:
    sim = Simulation()
    sim.add_router(
        "a",
        vrid=1,
        priority=200,
        address="192.0.2.1",
        vips=["192.0.2.100"],
        trackers=[Tracker("app")],
    )
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2", vips=["192.0.2.100"])
    sim.tracker_result("a", "app", True)
    sim.run_for(10)
    return sim


def test_master_whose_interface_goes_down_enters_fault_and_drops_its_vips() -> None:
    sim = pair()
    sim.interface("a", up=False)
    assert sim["a"].state is State.FAULT
    assert not sim["a"].vips
    assert sim.run_until(lambda: sim.masters() == ["b"], timeout=10)


def test_master_failing_a_weight_zero_tracker_resigns_with_priority_zero() -> None:
    sim = pair()
    sim.tracker_result("a", "app", False)
    assert sim["a"].state is State.FAULT
    assert sim["a"].counters.pri_zero_sent == 1
    fault_time = sim.now
    sim.run_until(lambda: sim.masters() == ["b"], timeout=10)
    assert sim.now - fault_time < 1.0  # skew time, not a Master_Down_Interval


def test_router_leaving_fault_goes_to_backup_and_preempts_back() -> None:
    sim = pair()
    sim.tracker_result("a", "app", False)
    sim.run_for(5)
    sim.tracker_result("a", "app", True)
    assert sim["a"].state is State.BACKUP
    assert sim.run_until(lambda: sim.masters() == ["a"], timeout=10)


def test_router_in_fault_ignores_adverts_and_sends_none() -> None:
    sim = pair()
    sim.interface("b", up=False)
    received = sim["b"].counters.advert_rcvd
    sim.run_for(10)
    assert sim["b"].state is State.FAULT
    assert sim["b"].counters.advert_rcvd == received


def test_interface_back_up_returns_to_backup() -> None:
    sim = pair()
    sim.interface("b", up=False)
    sim.interface("b", up=True)
    assert sim["b"].state is State.BACKUP


def test_owner_leaving_a_startup_fault_goes_straight_to_master() -> None:
    sim = Simulation()
    sim.add_router(
        "o", vrid=1, priority=255, address="192.0.2.1", trackers=[Tracker("app", init_fail=True)]
    )
    assert sim["o"].state is State.FAULT
    sim.tracker_result("o", "app", True)
    assert [t.reason for t in sim.transitions][-1] == "fault_cleared_as_owner"
    assert sim["o"].state is State.MASTER


def test_owner_leaving_a_fault_it_fell_into_goes_backup_first() -> None:
    """keepalived's down_instance sets wantstate FAULT; try_up_instance then goes BACKUP,
    and only an owner that still wants MASTER (at startup) goes straight to MASTER."""
    sim = Simulation()
    sim.add_router("o", vrid=1, priority=255, address="192.0.2.1")
    sim.run_for(1)
    sim.interface("o", up=False)
    sim.interface("o", up=True)
    assert sim["o"].state is State.BACKUP
    back = sim.now
    sim.run_until(lambda: sim["o"].state is State.MASTER, timeout=10)
    assert sim.now - back == pytest.approx(3 + 1 / 256)  # Master_Down_Interval at 255


def test_stop_of_a_master_sends_priority_zero_removes_vips_then_reports_stopped() -> None:
    sim = pair()
    sim.stop("a")
    assert sim["a"].state is State.STOPPED
    assert not sim["a"].vips
    assert sim["a"].counters.pri_zero_sent == 1
    assert sim.transitions[-1][1:] == ("a", State.MASTER, State.STOPPED, "shutdown")


def test_crash_leaves_the_vips_behind_and_restart_removes_them() -> None:
    sim = pair()
    sim.crash("a")
    assert sim["a"].vips
    sim.run_for(10)
    sim.start("a")
    assert sim["a"].state is State.FAULT  # its weight-0 tracker has no result yet
    assert not sim["a"].vips


def master_router() -> Router:
    router = Router(
        RouterConfig(name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"])
    )
    router.start(0.0)
    router.handle_timer(10.0)
    return router


def test_master_whose_source_address_is_gone_resigns_and_drops_its_vips() -> None:
    router = master_router()
    actions = router.source_changed(False, 11.0)
    assert router.state is State.FAULT and router.faults == {"source_address"}
    sent = [a for a in actions if isinstance(a, SendAdvertisement)]
    assert [a.advertisement.priority for a in sent] == [0]
    assert any(isinstance(a, RemoveVips) for a in actions)


def test_router_whose_source_address_is_back_leaves_fault_for_backup() -> None:
    router = master_router()
    router.source_changed(False, 11.0)
    router.source_changed(True, 12.0)
    assert router.state is State.BACKUP and router.faults == frozenset()


def test_a_restarted_router_takes_its_source_address_for_there_again() -> None:
    router = master_router()
    router.source_changed(False, 11.0)
    router.shutdown(12.0)
    router.start(13.0)
    assert router.state is State.BACKUP and router.faults == frozenset()


def test_a_backup_back_from_fault_learns_its_masters_interval_again() -> None:
    """keepalived resets Master_Adver_Interval on leaving FAULT and takes it again from the
    master's next advert: the same bytes as before the fault, learnt again all the same."""
    from ipaddress import ip_address

    from vrrpkit import Advertisement

    src, group = ip_address("192.0.2.9"), ip_address("224.0.0.18")
    config = RouterConfig(
        name="b", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"], interval=0.1
    )
    router = Router(config)
    router.start(0.0)
    data = Advertisement(
        version=3, vrid=1, priority=200, interval=1.0, addresses=["192.0.2.100"]
    ).encode(src=src, dst=group)
    for now in (0.05, 1.05):  # the same address objects each time, as the transports'
        router.receive_packet(data, src=src, dst=group, ttl=255, now=now)
    router.interface_changed(False, 1.8)
    router.interface_changed(True, 1.9)
    router.receive_packet(data, src=src, dst=group, ttl=255, now=2.05)
    assert router.master_adver_interval == 1.0
    assert router.next_deadline() == pytest.approx(2.05 + 3 * 1.0 + (256 - 100) / 256 * 1.0)
