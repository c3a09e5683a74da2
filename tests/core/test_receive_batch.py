"""Router.receive_packets: a batch read late gives what its packets gave one by one."""

from ipaddress import ip_address

import attrs
import pytest

from vrrpkit import Advertisement, Router, RouterConfig, State, StateChanged, Tracker
from vrrpkit.core.addresses import Address

SRC = ip_address("192.0.2.9")
GROUP = ip_address("224.0.0.18")
MDI = 3.609375  # 3 x 1 s + skew for priority 100


@attrs.frozen
class Packet:
    data: bytes
    src: Address = SRC
    dst: Address | None = GROUP
    ttl: int = 255
    timestamp: float | None = None


def backup() -> Router:
    router = Router(
        RouterConfig(name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"])
    )
    router.start(0.0)
    return router


def advert(vrid: int = 1, priority: int = 200) -> bytes:
    adv = Advertisement(
        version=3, vrid=vrid, priority=priority, interval=1.0, addresses=["192.0.2.100"]
    )
    return adv.encode(src=SRC, dst=GROUP)


def test_every_packet_of_a_batch_is_counted() -> None:
    router = backup()
    router.receive_packets([Packet(advert()), Packet(advert())], now=1.0)
    assert router.counters.advert_rcvd == 2
    assert router.next_deadline() == pytest.approx(1.0 + MDI)


def test_packets_of_another_vrid_are_skipped_without_counting() -> None:
    router = backup()
    router.receive_packets([Packet(advert(vrid=2))], now=1.0)
    assert router.counters.advert_rcvd == 0
    assert router.counters.vrid_err == 0


def test_a_receive_time_within_the_window_starts_the_down_timer() -> None:
    router = backup()
    router.receive_packets([Packet(advert(), timestamp=0.75)], now=1.0, since=0.5)
    assert router.next_deadline() == pytest.approx(0.75 + MDI)


@pytest.mark.parametrize("stamp", [0.25, 1.5, None], ids=["too old", "in the future", "none"])
def test_a_receive_time_outside_the_window_counts_as_now(stamp: float | None) -> None:
    router = backup()
    router.receive_packets([Packet(advert(), timestamp=stamp)], now=1.0, since=0.5)
    assert router.next_deadline() == pytest.approx(1.0 + MDI)


def test_receive_times_are_ignored_without_a_window() -> None:
    router = backup()
    router.receive_packets([Packet(advert(), timestamp=0.75)], now=1.0)
    assert router.next_deadline() == pytest.approx(1.0 + MDI)


def test_a_timer_that_ran_out_before_a_packet_arrived_is_handled_before_it() -> None:
    router = backup()
    router.receive_packet(advert(), src=SRC, dst=GROUP, ttl=255, now=1.0)
    # Read late: the master went quiet for longer than the down interval, then came back.
    late = Packet(advert(), timestamp=1.0 + MDI + 0.5)
    actions = router.receive_packets([late], now=1.0 + MDI + 1.0, since=0.0)
    changes = [(a.old, a.new) for a in actions if isinstance(a, StateChanged)]
    assert changes == [(State.BACKUP, State.MASTER), (State.MASTER, State.BACKUP)]
    assert router.state is State.BACKUP


def test_a_repeat_is_judged_on_the_current_priority() -> None:
    router = Router(
        RouterConfig(
            name="r",
            vrid=1,
            priority=100,
            address="192.0.2.1",
            vips=["192.0.2.100"],
            trackers=[Tracker("app", weight=-60, init_fail=True)],
        )
    )
    router.start(0.0)
    router.receive_packets([Packet(advert(priority=50))], now=1.0)  # 50 >= 40: accepted
    router.tracker_result("app", True, 1.5)  # back to 100: a priority-50 master is preempted
    deadline = router.next_deadline()
    router.receive_packets([Packet(advert(priority=50))], now=2.0)
    assert router.counters.advert_rcvd == 2
    assert router.next_deadline() == deadline  # discarded: the down timer runs on


def test_a_repeat_after_another_accepted_advert_relearns_the_masters_interval() -> None:
    router = Router(
        RouterConfig(
            name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"], preempt=False
        )
    )
    router.start(0.0)
    other = ip_address("192.0.2.8")
    slow = Advertisement(version=3, vrid=1, priority=50, interval=2.0, addresses=["192.0.2.100"])
    router.receive_packets([Packet(advert())], now=1.0)
    # nopreempt: a lower priority is accepted too, and its interval learnt
    router.receive_packets([Packet(slow.encode(src=other, dst=GROUP), src=other)], now=2.0)
    router.receive_packets([Packet(advert())], now=3.0)
    assert router.master_adver_interval == 1.0
    assert router.next_deadline() == pytest.approx(3.0 + MDI)
