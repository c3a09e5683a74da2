"""Split brain is first-class: a master hearing another master says so, and it resolves."""

from vrrpkit import State
from vrrpkit.testing import Simulation


def split() -> Simulation:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=200, address="192.0.2.1", vips=["192.0.2.100"])
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2", vips=["192.0.2.100"])
    sim.run_for(5)
    sim.partition(["a"], ["b"])
    # Heal just after a's advert (a sends at x.21875 s), so b's advert crosses first.
    sim.run_for(10.3)
    assert sorted(sim.masters()) == ["a", "b"]
    return sim


def test_partition_makes_two_masters() -> None:
    split()


def test_after_healing_the_higher_priority_master_stays_and_reports_the_split() -> None:
    sim = split()
    sim.heal()
    sim.run_for(3)
    assert sim.masters() == ["a"]
    kept = sim["a"].split_brains
    yielded = sim["b"].split_brains
    assert kept and not kept[0].yielded and str(kept[0].peer) == "192.0.2.2"
    assert yielded and yielded[0].yielded and yielded[0].peer_priority == 200


def test_master_answers_a_lower_priority_advert_at_once_and_reannounces_vips() -> None:
    sim = split()
    announced = sim["a"].announcements
    sent = sim["a"].counters.advert_sent
    sim.heal()
    sim.run_until(lambda: sim["a"].split_brains != [], timeout=3)
    assert sim["a"].counters.advert_sent == sent + 1
    assert sim["a"].announcements > announced


def test_rfc5798_mode_discards_lower_priority_adverts_silently() -> None:
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=200, address="192.0.2.1", lower_prio_advert=False)
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2")
    sim.run_for(5)
    sim.partition(["a"], ["b"])
    sim.run_for(10.3)
    sim.heal()
    sent = sim["a"].counters.advert_sent
    sim.run_for(0.6)  # b advertises at x.828125 s, a next at x+1.21875 s
    assert sim["a"].counters.advert_rcvd == 1
    assert sim["a"].counters.advert_sent == sent
    sim.run_for(3)
    assert sim.masters() == ["a"]


def test_split_brain_counter_counts_other_masters_heard() -> None:
    sim = split()
    sim.heal()
    sim.run_for(3)
    assert sim["a"].counters.split_brain >= 1
    assert sim["b"].state is State.BACKUP
