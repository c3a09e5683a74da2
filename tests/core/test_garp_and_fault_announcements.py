"""Gratuitous ARP/NA a router asks for: periodic refreshes, and its own address in unicast."""

from vrrpkit import AnnounceVips, Router, RouterConfig, State


def master(**options: object) -> Router:
    router = Router(
        RouterConfig(
            name="r", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"], **options
        )  # type: ignore[arg-type]
    )
    router.start(0.0)
    router.handle_timer(10.0)
    assert router.state is State.MASTER
    return router


def announcements(actions: object) -> list[AnnounceVips]:
    return [a for a in actions if isinstance(a, AnnounceVips)]  # type: ignore[attr-defined]


def test_the_periodic_refresh_runs_without_a_burst_on_taking_over() -> None:
    router = master(garp_repeat=0, garp_refresh=10.0)
    assert router.next_deadline(adverts=False) == 20.0
    announced = announcements(router.handle_timer(20.0, adverts=False))
    assert [a.addresses for a in announced] == [router.config.vips]


def test_a_unicast_router_leaving_fault_announces_its_own_address() -> None:
    router = master(unicast_peers=["192.0.2.2"])
    router.interface_changed(False, 11.0)
    actions = router.interface_changed(True, 12.0)
    assert [a.addresses for a in announcements(actions)] == [(router.config.address,)]


def test_a_multicast_router_leaving_fault_announces_nothing() -> None:
    router = master()
    router.interface_changed(False, 11.0)
    assert announcements(router.interface_changed(True, 12.0)) == []
