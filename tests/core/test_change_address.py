"""A running router takes a new source address (its interface came back with another one)."""

from ipaddress import ip_address

import pytest

from vrrpkit import Advertisement, ConfigError, Router, RouterConfig, State

PEER = ip_address("192.0.2.9")
GROUP = ip_address("224.0.0.18")


def master_at(address: str) -> Router:
    router = Router(
        RouterConfig(name="r", vrid=1, priority=100, address=address, vips=["192.0.2.100"])
    )
    router.start(0.0)
    router.handle_timer(10.0)
    assert router.state is State.MASTER
    return router


def equal_priority_advert_from_peer(router: Router, now: float) -> None:
    data = Advertisement(
        version=3, vrid=1, priority=100, interval=1.0, addresses=["192.0.2.100"]
    ).encode(src=PEER, dst=GROUP)
    router.receive_packet(data, src=PEER, dst=GROUP, ttl=255, now=now)


def test_a_master_with_the_lower_address_yields_a_tie() -> None:
    router = master_at("192.0.2.1")
    equal_priority_advert_from_peer(router, 10.5)
    assert router.state is State.BACKUP


def test_a_master_given_a_higher_address_while_running_wins_the_tie() -> None:
    router = master_at("192.0.2.1")
    router.change_address("192.0.2.10")
    equal_priority_advert_from_peer(router, 10.5)
    assert router.state is State.MASTER
    assert router.config.address == ip_address("192.0.2.10")


def test_an_address_of_another_family_is_refused_and_the_old_one_kept() -> None:
    router = master_at("192.0.2.1")
    with pytest.raises(ConfigError):
        router.change_address("fe80::1")
    assert router.config.address == ip_address("192.0.2.1")
    assert router.state is State.MASTER
