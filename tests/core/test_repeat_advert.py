"""Router.repeat_advert and adverts_repeated: a steady master's adverts sent by someone else.

A runtime may hand a master's repeats to the kernel's timers; the router must then count
them and keep its schedule as if it had sent each itself.
"""

import pytest

from vrrpkit.core.router import RepeatedAdvert, Router, RouterError
from vrrpkit.testing import Simulation


def pair() -> Simulation:
    """Router "a" (priority 150) is master at interval 1 s; "b" (100) is its backup."""
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=150, address="192.0.2.1", vips=["192.0.2.100"])
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2", vips=["192.0.2.100"])
    sim.run_for(10)
    return sim


def master_and_its_repeat() -> tuple[Router, RepeatedAdvert]:
    """The pair's master and the advert it would have repeated."""
    router = pair()["a"].router
    repeated = router.repeat_advert()
    assert repeated is not None
    return router, repeated


def test_a_master_repeats_its_current_advert_from_its_next_deadline() -> None:
    router, repeated = master_and_its_repeat()
    assert repeated.due == router.next_deadline()
    assert repeated.interval == 1.0
    assert repeated.action.advertisement.priority == 150


def test_a_backup_has_no_advert_to_repeat() -> None:
    sim = pair()
    assert sim["b"].router.repeat_advert() is None


def test_repeats_sent_elsewhere_are_counted_and_move_the_next_advert_on() -> None:
    router, repeated = master_and_its_repeat()
    sent = router.counters.advert_sent
    router.adverts_repeated(3)
    assert router.counters.advert_sent == sent + 3
    assert router.next_deadline() == pytest.approx(repeated.due + 3 * repeated.interval)


def test_the_router_sends_the_advert_after_the_repeats_on_their_schedule() -> None:
    router, repeated = master_and_its_repeat()
    router.adverts_repeated(2)
    due = repeated.due + 2 * repeated.interval
    actions = router.handle_timer(due)
    assert [type(a).__name__ for a in actions] == ["SendAdvertisement"]
    assert router.next_deadline() == pytest.approx(due + repeated.interval)


def test_repeats_timed_each_from_the_one_before_move_the_next_advert_to_when_it_is_due() -> None:
    # A sender that timed each repeat from the previous one drifts from the grid: it says
    # when the next one was due, and the router's own next advert follows on from there.
    router, repeated = master_and_its_repeat()
    sent = router.counters.advert_sent
    next_due = repeated.due + 3 * repeated.interval + 0.25
    router.adverts_repeated(3, next_due)
    assert router.counters.advert_sent == sent + 3
    assert router.next_deadline() == next_due


def test_no_repeats_yet_but_a_next_due_moves_the_next_advert() -> None:
    router, repeated = master_and_its_repeat()
    sent = router.counters.advert_sent
    router.adverts_repeated(0, repeated.due + 0.1)
    assert router.counters.advert_sent == sent
    assert router.next_deadline() == repeated.due + 0.1


def test_no_repeats_change_nothing() -> None:
    sim = pair()
    router = sim["a"].router
    before = (router.counters.advert_sent, router.next_deadline())
    router.adverts_repeated(0)
    assert (router.counters.advert_sent, router.next_deadline()) == before


def test_repeats_reported_to_a_backup_are_refused() -> None:
    sim = pair()
    with pytest.raises(RouterError):
        sim["b"].router.adverts_repeated(1)


def test_a_masters_deadline_besides_its_adverts_leaves_the_adverts_out() -> None:
    sim = pair()
    router = sim["a"].router
    other = router.next_deadline(adverts=False)
    assert other is None or other > router.next_deadline()  # type: ignore[operator]


def test_a_backups_deadline_besides_adverts_is_its_down_timer() -> None:
    sim = pair()
    router = sim["b"].router
    assert router.next_deadline(adverts=False) == router.next_deadline()


def test_a_masters_other_timers_run_without_its_advert_when_adverts_are_left_out() -> None:
    # A runtime whose repeats go out on their own runs a gratuitous ARP round without
    # taking them back: the router sends nothing and keeps its advert schedule.
    sim = Simulation()
    sim.add_router("a", vrid=1, priority=150, address="192.0.2.1", vips=["192.0.2.100"])
    sim.run_for(3.5)  # MASTER at about 3 s; its second ARP round is due 5 s later
    router = sim["a"].router
    due = router.next_deadline()
    garp = router.next_deadline(adverts=False)
    assert due is not None and garp is not None and garp > due
    actions = router.handle_timer(garp, adverts=False)
    assert [type(a).__name__ for a in actions] == ["AnnounceVips"]
    assert router.next_deadline() == due
    assert router.next_deadline(adverts=False) is None
