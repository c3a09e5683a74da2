"""Received adverts go through keepalived's checks; garbage is counted, never raised.

Router.receive_packets (a batch, as a lazily reading backup hands it over) gives what its
packets gave one by one.
"""

from ipaddress import ip_address

import attrs
import pytest

from vrrpkit import (
    AUTH_PASS,
    Advertisement,
    PacketDropped,
    Router,
    RouterConfig,
    State,
    StateChanged,
    Tracker,
)
from vrrpkit.core.addresses import Address

SRC = ip_address("192.0.2.9")
GROUP = ip_address("224.0.0.18")
MDI = 3.609375  # 3 x 1 s + skew for priority 100


@attrs.frozen
class Packet:
    """A received packet as the transports hand it over."""

    data: bytes
    src: Address = SRC
    dst: Address | None = GROUP
    ttl: int = 255
    timestamp: float | None = None
    repeats: int = 1
    timed: bool = False


def backup(**options: object) -> Router:
    config = RouterConfig(
        name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"], **options
    )  # type: ignore[arg-type]
    router = Router(config)
    router.start(0.0)
    assert router.state is State.BACKUP
    return router


def advert(**fields: object) -> Advertisement:
    values: dict[str, object] = {
        "version": 3,
        "vrid": 1,
        "priority": 200,
        "interval": 1.0,
        "addresses": ["192.0.2.100"],
    }
    values.update(fields)
    return Advertisement(**values)  # type: ignore[arg-type]


def wire(adv: Advertisement) -> bytes:
    return adv.encode(src=SRC, dst=GROUP)


def test_valid_advert_is_counted_and_resets_the_down_timer() -> None:
    router = backup()
    router.receive_packet(wire(advert()), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.advert_rcvd == 1
    assert router.master_address == SRC
    assert router.next_deadline() == pytest.approx(1.0 + 3.609375)


def test_ttl_other_than_255_is_dropped_and_counted() -> None:
    router = backup()
    actions = router.receive_packet(wire(advert()), src=SRC, dst=GROUP, ttl=64, now=1.0)
    assert router.counters.ip_ttl_err == 1
    assert router.counters.advert_rcvd == 0
    assert isinstance(actions[0], PacketDropped) and actions[0].counter == "ip_ttl_err"


def test_a_wrong_ttl_is_counted_before_a_bad_checksum_as_keepalived_checks() -> None:
    router = backup()
    data = bytearray(wire(advert()))
    data[6] ^= 0xFF  # the checksum
    router.receive_packet(bytes(data), src=SRC, dst=GROUP, ttl=64, now=1.0)
    assert (router.counters.ip_ttl_err, router.counters.chk_err) == (1, 0)


def test_a_short_packet_is_counted_before_a_wrong_ttl_as_keepalived_checks() -> None:
    router = backup()
    router.receive_packet(wire(advert())[:-2], src=SRC, dst=GROUP, ttl=64, now=1.0)
    assert (router.counters.packet_len_err, router.counters.ip_ttl_err) == (1, 0)


def test_a_wrong_password_is_counted_before_a_bad_checksum_as_keepalived_checks() -> None:
    router = backup(version=2, auth_type=AUTH_PASS, auth_data=b"secret")
    data = bytearray(wire(advert(version=2, auth_type=AUTH_PASS, auth_data=b"guess")))
    data[6] ^= 0xFF  # the checksum
    router.receive_packet(bytes(data), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert (router.counters.auth_failure, router.counters.chk_err) == (1, 0)


def test_a_version_mismatch_is_counted_before_a_bad_checksum_as_keepalived_checks() -> None:
    router = backup()
    data = bytearray(wire(advert(version=2, auth_data=b"")))
    data[6] ^= 0xFF
    router.receive_packet(bytes(data), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert (router.counters.vers_err, router.counters.chk_err) == (1, 0)


def test_another_vrids_packet_with_a_wrong_ttl_counts_no_ttl_error_of_ours() -> None:
    router = backup()
    router.receive_packet(wire(advert(vrid=2)), src=SRC, dst=GROUP, ttl=64, now=1.0)
    assert router.counters.ip_ttl_err == 0


def test_unicast_mode_accepts_any_ttl() -> None:
    router = backup(unicast_peers=["192.0.2.9"])
    peer = ip_address("192.0.2.1")
    router.receive_packet(advert().encode(src=SRC, dst=peer), src=SRC, dst=peer, ttl=64, now=1)
    assert router.counters.advert_rcvd == 1


def test_unicast_source_check_drops_adverts_from_strangers() -> None:
    router = backup(unicast_peers=["192.0.2.7"], check_unicast_src=True)
    peer = ip_address("192.0.2.1")
    router.receive_packet(advert().encode(src=SRC, dst=peer), src=SRC, dst=peer, ttl=64, now=1)
    assert router.counters.unknown_source == 1
    assert router.master_address is None


def test_a_unicast_peer_given_with_an_ipv6_zone_is_recognised() -> None:
    config = RouterConfig(
        name="r", vrid=1, priority=100, address="fe80::1%eth0", vips=["2001:db8::100"],
        unicast_peers=["fe80::2%eth0"], check_unicast_src=True,
    )  # fmt: skip
    router = Router(config)
    router.start(0.0)
    peer, own = ip_address("fe80::2"), ip_address("fe80::1")  # as received: no zone
    data = advert(addresses=["2001:db8::100"]).encode(src=peer, dst=own)
    router.receive_packet(data, src=peer, dst=own, ttl=64, now=1.0)
    assert router.counters.unknown_source == 0 and router.master_address == peer


def test_multicast_advert_is_dropped_in_unicast_mode() -> None:
    router = backup(unicast_peers=["192.0.2.9"])
    router.receive_packet(wire(advert()), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.addr_list_err == 1
    assert router.counters.advert_rcvd == 0


def test_bad_checksum_is_counted_as_chk_err() -> None:
    router = backup()
    data = bytearray(wire(advert()))
    data[6] ^= 0xFF
    router.receive_packet(bytes(data), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.chk_err == 1


def test_truncated_packet_is_counted_as_packet_len_err() -> None:
    router = backup()
    router.receive_packet(wire(advert())[:7], src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.packet_len_err == 1


def test_other_vrid_is_dropped() -> None:
    router = backup()
    router.receive_packet(wire(advert(vrid=2)), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.vrid_err == 1


def test_version_mismatch_is_dropped() -> None:
    router = backup()
    router.receive_packet(
        wire(advert(version=2, auth_data=b"")), src=SRC, dst=GROUP, ttl=255, now=1.0
    )
    assert router.counters.vers_err == 1


def test_v2_password_mismatch_is_an_auth_failure() -> None:
    router = backup(version=2, auth_type=AUTH_PASS, auth_data=b"secret")
    wrong = advert(version=2, auth_type=AUTH_PASS, auth_data=b"guess")
    router.receive_packet(wire(wrong), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.auth_failure == 1
    right = advert(version=2, auth_type=AUTH_PASS, auth_data=b"secret")
    router.receive_packet(wire(right), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.advert_rcvd == 1


def test_v2_auth_type_mismatch_is_counted() -> None:
    router = backup(version=2)
    router.receive_packet(
        wire(advert(version=2, auth_type=AUTH_PASS, auth_data=b"x")),
        src=SRC,
        dst=GROUP,
        ttl=255,
        now=1.0,
    )
    assert router.counters.authtype_mismatch == 1


def test_v2_interval_mismatch_is_dropped_and_counted_unlike_keepalived() -> None:
    router = backup(version=2)
    router.receive_packet(
        wire(advert(version=2, interval=2.0)), src=SRC, dst=GROUP, ttl=255, now=1.0
    )
    assert router.counters.advert_interval_err == 1
    assert router.master_address is None


def test_v3_interval_mismatch_is_accepted_and_learned() -> None:
    router = backup()
    router.receive_packet(wire(advert(interval=0.5)), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.advert_rcvd == 1
    assert router.master_adver_interval == 0.5


def test_address_list_mismatch_is_counted_but_still_processed() -> None:
    router = backup()
    router.receive_packet(
        wire(advert(addresses=["192.0.2.200"])), src=SRC, dst=GROUP, ttl=255, now=1.0
    )
    assert router.counters.addr_list_err == 1
    assert router.master_address == SRC


def test_an_address_listed_twice_is_an_address_count_mismatch() -> None:
    router = backup()
    doubled = advert(addresses=["192.0.2.100", "192.0.2.100"])
    router.receive_packet(wire(doubled), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert (router.counters.addr_list_err, router.counters.advert_rcvd) == (1, 1)


def test_priority_zero_is_counted_and_shortens_the_down_timer_to_skew_time() -> None:
    router = backup()
    router.receive_packet(wire(advert(priority=0)), src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.counters.pri_zero_rcvd == 1
    assert router.next_deadline() == pytest.approx(1.0 + 0.609375)


def test_invalid_packet_does_not_reset_the_down_timer() -> None:
    router = backup()
    deadline = router.next_deadline()
    router.receive_packet(b"\x00" * 20, src=SRC, dst=GROUP, ttl=255, now=1.0)
    assert router.next_deadline() == deadline


def test_packets_are_ignored_before_start_and_in_fault() -> None:
    router = Router(RouterConfig(name="r", vrid=1, priority=100, address="192.0.2.1"))
    assert router.receive_packet(b"junk", src=SRC, dst=GROUP, ttl=255, now=0.0) == []
    router.start(0.0)
    router.interface_changed(False, 0.0)
    assert router.receive_packet(b"junk", src=SRC, dst=GROUP, ttl=255, now=0.0) == []
    assert router.counters.packet_len_err == 0


def test_repeated_identical_advert_is_processed_like_the_first() -> None:
    router = backup()
    data = wire(advert())
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=1.0)
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=2.0)
    assert router.counters.advert_rcvd == 2
    assert router.next_deadline() == pytest.approx(2.0 + 3.609375)


def test_corrupted_repeat_of_a_good_advert_is_still_dropped() -> None:
    router = backup()
    data = wire(advert())
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=1.0)
    corrupted = bytearray(data)
    corrupted[6] ^= 0xFF
    router.receive_packet(bytes(corrupted), src=SRC, dst=GROUP, ttl=255, now=2.0)
    assert router.counters.chk_err == 1
    assert router.counters.advert_rcvd == 1


def test_same_bytes_from_another_source_are_checked_for_that_source() -> None:
    router = backup()
    data = wire(advert())
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=1.0)
    # The checksum covers the source address (pseudo-header): from elsewhere it fails.
    other = ip_address("192.0.2.8")
    router.receive_packet(data, src=other, dst=GROUP, ttl=255, now=2.0)
    assert router.counters.chk_err == 1


def test_repeat_of_an_accepted_advert_with_another_ttl_is_still_dropped() -> None:
    router = backup()
    data = wire(advert())
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=1.0)
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=254, now=2.0)
    assert router.counters.ip_ttl_err == 1
    assert router.counters.advert_rcvd == 1


def test_repeat_of_an_accepted_advert_to_a_unicast_destination_is_still_dropped() -> None:
    # VRRPv2's checksum leaves out the addresses, so the same bytes pass to any destination.
    router = backup(version=2)
    data = wire(advert(version=2))
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=1.0)
    router.receive_packet(data, src=SRC, dst=ip_address("192.0.2.1"), ttl=255, now=2.0)
    assert router.counters.addr_list_err == 1
    assert router.counters.advert_rcvd == 1


def test_repeat_of_an_accepted_advert_is_judged_on_the_current_priority() -> None:
    router = backup(trackers=[Tracker("app", weight=-60, init_fail=True)])
    assert router.effective_priority == 40
    data = wire(advert(priority=50))
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=1.0)
    router.tracker_result("app", True, 1.5)  # back to 100: a priority-50 master is preempted
    deadline = router.next_deadline()
    router.receive_packet(data, src=SRC, dst=GROUP, ttl=255, now=2.0)
    assert router.counters.advert_rcvd == 2
    assert router.next_deadline() == deadline  # discarded: the down timer runs on


# -- batches ---------------------------------------------------------------------------


def test_every_packet_of_a_batch_is_counted() -> None:
    router = backup()
    router.receive_packets([Packet(wire(advert())), Packet(wire(advert()))], now=1.0)
    assert router.counters.advert_rcvd == 2
    assert router.next_deadline() == pytest.approx(1.0 + MDI)


def test_packets_of_another_vrid_are_skipped_without_counting() -> None:
    router = backup()
    router.receive_packets([Packet(wire(advert(vrid=2)))], now=1.0)
    assert router.counters.advert_rcvd == 0
    assert router.counters.vrid_err == 0


def test_a_receive_time_within_the_window_starts_the_down_timer() -> None:
    router = backup()
    router.receive_packets([Packet(wire(advert()), timestamp=0.75)], now=1.0, since=0.5)
    assert router.next_deadline() == pytest.approx(0.75 + MDI)


@pytest.mark.parametrize("stamp", [0.25, 1.5, None], ids=["too old", "in the future", "none"])
def test_a_receive_time_outside_the_window_counts_as_now(stamp: float | None) -> None:
    router = backup()
    router.receive_packets([Packet(wire(advert()), timestamp=stamp)], now=1.0, since=0.5)
    assert router.next_deadline() == pytest.approx(1.0 + MDI)


def test_receive_times_are_ignored_without_a_window() -> None:
    router = backup()
    router.receive_packets([Packet(wire(advert()), timestamp=0.75)], now=1.0)
    assert router.next_deadline() == pytest.approx(1.0 + MDI)


def test_a_timer_that_ran_out_before_a_packet_arrived_is_handled_before_it() -> None:
    router = backup()
    router.receive_packet(wire(advert()), src=SRC, dst=GROUP, ttl=255, now=1.0)
    # Read late: the master went quiet for longer than the down interval, then came back.
    late = Packet(wire(advert()), timestamp=1.0 + MDI + 0.5)
    actions = router.receive_packets([late], now=1.0 + MDI + 1.0, since=0.0)
    changes = [(a.old, a.new) for a in actions if isinstance(a, StateChanged)]
    assert changes == [(State.BACKUP, State.MASTER), (State.MASTER, State.BACKUP)]
    assert router.state is State.BACKUP


def test_a_repeat_is_judged_on_the_current_priority() -> None:
    router = backup(trackers=[Tracker("app", weight=-60, init_fail=True)])
    router.receive_packets([Packet(wire(advert(priority=50)))], now=1.0)  # 50 >= 40: accepted
    router.tracker_result("app", True, 1.5)  # back to 100: a priority-50 master is preempted
    deadline = router.next_deadline()
    router.receive_packets([Packet(wire(advert(priority=50)))], now=2.0)
    assert router.counters.advert_rcvd == 2
    assert router.next_deadline() == deadline  # discarded: the down timer runs on


def test_a_repeat_after_another_accepted_advert_relearns_the_masters_interval() -> None:
    router = backup(preempt=False)
    other = ip_address("192.0.2.8")
    slow = Advertisement(version=3, vrid=1, priority=50, interval=2.0, addresses=["192.0.2.100"])
    router.receive_packets([Packet(wire(advert()))], now=1.0)
    # nopreempt: a lower priority is accepted too, and its interval learnt
    router.receive_packets([Packet(slow.encode(src=other, dst=GROUP), src=other)], now=2.0)
    router.receive_packets([Packet(wire(advert()))], now=3.0)
    assert router.master_adver_interval == 1.0
    assert router.next_deadline() == pytest.approx(3.0 + MDI)


def test_a_packet_standing_for_repeats_counts_them_all_and_is_handled_as_the_last() -> None:
    router = backup()
    router.receive_packets([Packet(wire(advert()), timestamp=1.0)], now=1.0, since=0.0)
    counted = Packet(wire(advert()), timestamp=3.0, repeats=2)
    assert router.receive_packets([counted], now=3.5, since=0.0) == []
    assert router.counters.advert_rcvd == 3
    assert router.next_deadline() == pytest.approx(3.0 + MDI)


def test_counted_repeats_do_not_hide_a_silence_longer_than_the_down_timer() -> None:
    # Only the last receive time is known: a gap the router cannot rule out is a takeover.
    router = backup()
    router.receive_packets([Packet(wire(advert()), timestamp=1.0)], now=1.0, since=0.0)
    counted = Packet(wire(advert()), timestamp=1.0 + MDI + 1.0, repeats=4)
    router.receive_packets([counted], now=7.0, since=0.0)
    assert router.counters.become_master == 1  # at 1 + MDI; back to BACKUP for the advert
    assert router.state is State.BACKUP


def test_repeats_the_transport_timed_keep_the_down_timer_going_however_long_they_span() -> None:
    # The kernel restarted a timer at each of them: no gap reached the down interval.
    router = backup()
    router.receive_packets([Packet(wire(advert()), timestamp=1.0)], now=1.0, since=0.0)
    timed = Packet(wire(advert()), timestamp=1.0 + 10 * MDI, repeats=40, timed=True)
    assert router.receive_packets([timed], now=1.0 + 10 * MDI + 0.5, since=0.0) == []
    assert router.counters.become_master == 0 and router.counters.advert_rcvd == 41
    assert router.next_deadline() == pytest.approx(1.0 + 11 * MDI)


def test_a_dropped_packet_standing_for_repeats_counts_once() -> None:
    router = backup()
    bad = Packet(wire(advert()), ttl=64, timestamp=1.0, repeats=5)
    router.receive_packets([bad], now=1.0, since=0.0)
    assert router.counters.ip_ttl_err == 1 and router.counters.advert_rcvd == 0
