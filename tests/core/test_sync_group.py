"""Sync groups: all-or-nothing MASTER, fall-back and FAULT propagate to every member."""

import pytest

from vrrpkit import ConfigError, State, Tracker
from vrrpkit.core.group import SyncGroup
from vrrpkit.testing import Simulation


def two_hosts() -> Simulation:
    """Host 1 (priority 200) and host 2 (100), each with an outside and an inside router."""
    sim = Simulation()
    for host, prio in ((1, 200), (2, 100)):
        sim.add_router(
            f"out{host}",
            vrid=1,
            priority=prio,
            address=f"192.0.2.{host}",
            vips=["192.0.2.100"],
            start=False,
            trackers=[Tracker("uplink", weight=0)] if host == 1 else (),
        )
        sim.add_router(
            f"in{host}",
            vrid=2,
            priority=prio,
            address=f"198.51.100.{host}",
            vips=["198.51.100.100"],
            start=False,
        )
        sim.add_group(f"g{host}", [f"out{host}", f"in{host}"])
    sim.tracker_result("out1", "uplink", True)
    sim.run_for(10)
    return sim


def test_group_members_become_master_together() -> None:
    sim = two_hosts()
    assert sorted(sim.masters()) == ["in1", "out1"]
    assert sim["in1"].vips and sim["out1"].vips


def test_member_fault_pulls_the_whole_group_into_fault() -> None:
    sim = two_hosts()
    sim.tracker_result("out1", "uplink", False)
    assert sim["out1"].state is State.FAULT
    assert sim["in1"].state is State.FAULT
    assert not sim["in1"].vips
    assert sim.run_until(lambda: sorted(sim.masters()) == ["in2", "out2"], timeout=10)


def test_group_comes_back_only_when_no_member_is_faulty() -> None:
    sim = two_hosts()
    sim.tracker_result("out1", "uplink", False)
    sim.run_for(5)
    sim.tracker_result("out1", "uplink", True)
    assert sim["in1"].state is State.BACKUP
    assert sim.run_until(lambda: sorted(sim.masters()) == ["in1", "out1"], timeout=10)


def test_member_falling_back_to_backup_pulls_the_other_members() -> None:
    sim = two_hosts()
    sim.add_router("rival", vrid=1, priority=250, address="192.0.2.3", vips=["192.0.2.100"])
    sim.run_for(10)
    assert sim["out1"].state is State.BACKUP
    assert sim["in1"].state is State.BACKUP
    assert any(t.router == "in1" and t.reason == "sync_group_backup" for t in sim.transitions)


def test_member_does_not_become_master_alone_while_its_peer_member_hears_a_master() -> None:
    sim = two_hosts()
    sim.partition(["out1", "in1", "in2"], ["out2"])
    sim.crash("out1")
    sim.run_for(10)
    # out2 no longer hears a master on its segment, but in2 still hears in1: g2 waits.
    assert sim["out2"].state is State.BACKUP
    assert sim["out2"].router.wantstate is State.MASTER


def test_group_transitions_are_reported_after_member_transitions() -> None:
    sim = two_hosts()
    names = [(t.router, t.new) for t in sim.group_transitions]
    assert ("g1", State.MASTER) in names
    assert ("g2", State.BACKUP) in names


def one_host() -> tuple[Simulation, SyncGroup]:
    """One host whose outside and inside routers, alone on their segments, are MASTER."""
    sim = Simulation()
    sim.add_router("out", vrid=1, priority=200, address="192.0.2.1", start=False)
    sim.add_router("in", vrid=2, priority=200, address="198.51.100.1", start=False)
    group = sim.add_group("g", ["out", "in"])
    sim.run_for(10)
    return sim, group


def test_stopping_the_whole_group_takes_no_member_through_fault() -> None:
    sim, group = one_host()
    group.begin_stop()
    sim.stop("out")
    sim.stop("in")
    assert [t.new for t in sim.transitions[-2:]] == [State.STOPPED, State.STOPPED]
    assert all(t.new is not State.FAULT for t in sim.transitions)
    assert (sim.group_transitions[-1].old, group.state) == (State.MASTER, State.STOPPED)


def test_member_stopped_on_its_own_pulls_the_other_members_into_fault() -> None:
    sim, group = one_host()
    sim.stop("out")
    assert sim["in"].state is State.FAULT
    assert group.state is State.FAULT


def test_a_member_restarted_first_waits_for_the_others_to_start_before_taking_over() -> None:
    sim, group = one_host()
    group.begin_stop()
    sim.stop("out")
    sim.stop("in")
    sim.start("out")  # "in" is still starting (its interface is slow to read, say)
    sim.run_for(10)
    assert sim["out"].state is State.BACKUP and sim["in"].state is State.STOPPED
    sim.start("in")
    assert sim.run_until(lambda: sorted(sim.masters()) == ["in", "out"], timeout=10)


def test_a_stopped_router_wants_nothing() -> None:
    sim, _group = one_host()
    sim.stop("out")
    assert sim["out"].router.wantstate is State.STOPPED


def test_a_refused_sync_group_leaves_none_of_its_members_bound() -> None:
    sim = Simulation()
    for name, vrid in (("x", 1), ("y", 2), ("z", 3)):
        sim.add_router(name, vrid=vrid, priority=100, address="192.0.2.1", start=False)
    sim.add_group("g1", ["y", "z"], start=False)
    with pytest.raises(ConfigError, match="already in sync group 'g1'"):
        SyncGroup("g2", [sim["x"].router, sim["y"].router])
    SyncGroup("g3", [sim["x"].router])  # x is still free


def test_a_group_of_owners_starts_master_without_passing_through_backup() -> None:
    sim = Simulation()
    sim.add_router("out", vrid=1, priority=255, address="192.0.2.1", start=False)
    sim.add_router("in", vrid=2, priority=255, address="198.51.100.1", start=False)
    group = sim.add_group("g", ["out", "in"])
    assert sorted(sim.masters()) == ["in", "out"]
    assert [t.new for t in sim.transitions] == [State.MASTER, State.MASTER]
    assert [(t.old, t.new) for t in sim.group_transitions] == [(State.INIT, State.MASTER)]
    assert group.state is State.MASTER


def test_a_group_of_owners_with_a_member_starting_in_fault_ends_in_fault() -> None:
    sim = Simulation()
    sim.add_router("out", vrid=1, priority=255, address="192.0.2.1", start=False)
    sim.add_router(
        "in",
        vrid=2,
        priority=255,
        address="198.51.100.1",
        start=False,
        trackers=[Tracker("uplink", weight=0)],
    )
    sim.tracker_result("in", "uplink", False)
    group = sim.add_group("g", ["out", "in"])
    assert sim["out"].state is State.FAULT and sim["in"].state is State.FAULT
    assert group.state is State.FAULT and not sim["out"].vips


def owners() -> tuple[Simulation, SyncGroup]:
    sim = Simulation()
    sim.add_router("out", vrid=1, priority=255, address="192.0.2.1", start=False)
    sim.add_router("in", vrid=2, priority=255, address="198.51.100.1", start=False)
    return sim, sim.add_group("g", ["out", "in"])


def test_an_owner_member_started_again_is_master_with_its_group() -> None:
    """keepalived's group leaving FAULT takes every owner member to MASTER together."""
    sim, group = owners()
    sim.stop("in")
    sim.run_for(1)
    sim.start("in")
    assert group.state is State.MASTER
    assert sim["in"].state is State.MASTER and sim["out"].state is State.MASTER


def test_a_member_started_while_its_group_is_in_fault_starts_in_fault() -> None:
    """keepalived starts a member in its group's state (vrrp_init_state), not BACKUP."""
    sim = two_hosts()
    sim.stop("in2")
    sim.interface("out2", up=False)
    sim.start("in2")
    starts = [(t.old, t.new) for t in sim.transitions if t.router == "in2"][-1:]
    assert starts == [(State.STOPPED, State.FAULT)]
