"""Elections: highest priority wins, ties go to the higher address, owners take over at once."""

from vrrpkit import State
from vrrpkit.testing import Simulation


def test_highest_priority_becomes_master_and_holds_the_vips() -> None:
    sim = Simulation()
    for i, prio in enumerate((100, 200, 150), start=1):
        sim.add_router(f"r{i}", vrid=1, priority=prio, address=f"192.0.2.{i}", vips=["192.0.2.100"])
    sim.run_for(10)
    assert sim.masters() == ["r2"]
    assert {str(v) for v in sim["r2"].vips} == {"192.0.2.100"}
    assert not sim["r1"].vips and not sim["r3"].vips


def test_equal_priority_tie_is_won_by_the_higher_source_address() -> None:
    sim = Simulation()
    sim.add_router("low", vrid=1, priority=100, address="192.0.2.9")
    sim.add_router("high", vrid=1, priority=100, address="192.0.2.10")
    sim.run_for(10)
    assert sim.masters() == ["high"]


def test_tie_break_compares_ipv6_addresses_as_unsigned_integers() -> None:
    sim = Simulation()
    sim.add_router("low", vrid=1, priority=100, address="fe80::1", vips=["2001:db8::1"])
    sim.add_router("high", vrid=1, priority=100, address="fe80::ff00", vips=["2001:db8::1"])
    sim.run_for(10)
    assert sim.masters() == ["high"]


def test_address_owner_becomes_master_at_start_without_waiting() -> None:
    sim = Simulation()
    sim.add_router("backup", vrid=1, priority=100, address="192.0.2.2")
    sim.add_router("owner", vrid=1, priority=255, address="192.0.2.1")
    assert sim["owner"].state is State.MASTER
    sim.run_for(10)
    assert sim.masters() == ["owner"]


def test_startup_transitions_report_init_to_backup_then_master() -> None:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=100, address="192.0.2.1")
    sim.run_for(5)
    assert [(t.old, t.new, t.reason) for t in sim.transitions] == [
        (State.INIT, State.BACKUP, "startup"),
        (State.BACKUP, State.MASTER, "master_down_timer"),
    ]


def test_different_vrids_on_one_segment_elect_independently() -> None:
    sim = Simulation()
    sim.add_router("a1", vrid=1, priority=200, address="192.0.2.1")
    sim.add_router("b1", vrid=1, priority=100, address="192.0.2.2")
    sim.add_router("a2", vrid=2, priority=100, address="192.0.2.1")
    sim.add_router("b2", vrid=2, priority=200, address="192.0.2.2")
    sim.run_for(10)
    assert sorted(sim.masters()) == ["a1", "b2"]


def test_higher_priority_router_joining_later_preempts_the_master() -> None:
    sim = Simulation()
    sim.add_router("old", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"])
    sim.run_for(10)
    sim.add_router("new", vrid=1, priority=200, address="192.0.2.2", vips=["192.0.2.100"])
    sim.run_for(10)
    assert sim.masters() == ["new"]
    assert not sim["old"].vips
    assert sim.transitions[-1][1:] == ("old", State.MASTER, State.BACKUP, "higher_priority_advert")


def test_master_sends_its_advert_before_adding_vips_and_announcing_them() -> None:
    from vrrpkit import AddVips, AnnounceVips, Router, RouterConfig, SendAdvertisement, StateChanged

    router = Router(
        RouterConfig(name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"])
    )
    router.start(0.0)
    deadline = router.next_deadline()
    assert deadline is not None
    actions = router.handle_timer(deadline)
    assert [type(a) for a in actions] == [SendAdvertisement, AddVips, AnnounceVips, StateChanged]
    announce = actions[2]
    assert isinstance(announce, AnnounceVips) and announce.repeat == 5
