"""The simulator itself: seeded impairments, partitions and scripted scenarios."""

import subprocess
import sys
import zlib
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from vrrpkit import ConfigError, State, Tracker
from vrrpkit.testing import Impairment, Simulation


def cluster(seed: int, **impairment: float) -> Simulation:
    sim = Simulation(seed=seed, impairment=Impairment(**impairment))
    for i, prio in enumerate((200, 150, 100), start=1):
        sim.add_router(
            f"r{i}",
            vrid=1,
            priority=prio,
            address=f"192.0.2.{i}",
            vips=["192.0.2.100"],
            interval=0.1,
        )
    return sim


def timeline(sim: Simulation) -> list[tuple[float, str, State]]:
    return [(t.time, t.router, t.new) for t in sim.transitions]


def test_same_seed_gives_the_same_run_under_every_impairment() -> None:
    runs = []
    for _ in range(2):
        sim = cluster(7, loss=0.3, jitter=0.05, duplicate=0.1, reorder=0.1)
        sim.run_for(30)
        runs.append((timeline(sim), sim["r2"].counters))
    assert runs[0] == runs[1]


def test_different_seeds_give_different_runs_under_loss() -> None:
    a, b = cluster(1, loss=0.5), cluster(2, loss=0.5)
    a.run_for(30)
    b.run_for(30)
    assert timeline(a) != timeline(b)


def test_heavy_loss_causes_spurious_takeovers_that_resolve() -> None:
    sim = cluster(3, loss=0.8)
    sim.run_for(60)
    assert sum(1 for t in sim.transitions if t.new is State.MASTER) > 1
    sim.impair(loss=0.0)
    sim.run_for(1)
    assert sim.masters() == ["r1"]


def test_duplicated_packets_are_received_twice() -> None:
    sim = cluster(4, duplicate=1.0)
    sim.run_for(10)
    assert sim["r2"].counters.advert_rcvd > 1.5 * sim["r1"].counters.advert_sent - 5


def test_delay_postpones_delivery() -> None:
    sim = Simulation(impairment=Impairment(delay=0.5))
    sim.add_router("a", vrid=1, priority=200, address="192.0.2.1")
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2")
    sim.run_for(10)
    sim.crash("a")
    crash = sim.now
    sim.run_until(lambda: sim.masters() == ["b"], timeout=10)
    # b's takeover at 3.609375 s crossed a's first advert (late by 0.5 s); a answered b's
    # advert on arrival at 4.109375 s, so a's last advert left at 9.109375 s and reached b
    # 0.5 s later, restarting its down timer.
    assert sim.now == pytest.approx(9.109375 + 0.5 + 3.609375, abs=1e-6)
    assert sim.now > crash


def test_partition_with_unlisted_routers_puts_them_together() -> None:
    sim = cluster(5)
    sim.run_for(5)
    sim.partition(["r1"])
    sim.run_for(5)
    assert sorted(sim.masters()) == ["r1", "r2"]


def test_router_cannot_be_in_two_partitions() -> None:
    sim = cluster(6)
    with pytest.raises(ConfigError, match="two partitions"):
        sim.partition(["r1"], ["r1", "r2"])


def test_call_at_runs_scripted_events_at_their_virtual_time() -> None:
    sim = cluster(8)
    sim.call_at(2.0, lambda: sim.crash("r1"))
    sim.run_for(5)
    assert sim["r1"].state is State.STOPPED and sim["r1"].crashed
    assert sim.masters() == ["r2"]


def test_run_until_reports_a_timeout_as_false() -> None:
    sim = cluster(9)
    assert sim.run_until(lambda: sim.masters() == ["r3"], timeout=5) is False
    assert sim.now == pytest.approx(5.0)


def test_unicast_peers_reach_only_their_peers() -> None:
    sim = Simulation()
    sim.add_router(
        "a",
        vrid=1,
        priority=200,
        address="2001:db8::1",
        vips=["2001:db8::100"],
        unicast_peers=["2001:db8::2"],
    )
    sim.add_router(
        "b",
        vrid=1,
        priority=100,
        address="2001:db8::2",
        vips=["2001:db8::100"],
        unicast_peers=["2001:db8::1"],
    )
    sim.add_router("c", vrid=1, priority=50, address="2001:db8::3", vips=["2001:db8::100"])
    sim.run_for(10)
    assert sim["b"].state is State.BACKUP
    assert sim["c"].counters.advert_rcvd == 0  # multicast listener hears no unicast
    assert sim["b"].counters.ip_ttl_err == 0  # hop limit 64 accepted in unicast mode


def test_weighted_interface_tracker_lowers_priority_while_the_link_is_down() -> None:
    sim = Simulation()
    sim.add_router(
        "a", vrid=1, priority=150, address="192.0.2.1", trackers=[Tracker("uplink0", weight=-100)]
    )
    sim.tracker_result("a", "uplink0", False)
    assert sim["a"].effective_priority == 50
    sim.tracker_result("a", "uplink0", True)
    assert sim["a"].effective_priority == 150


def test_simulation_fixture_is_seeded_per_test(simulation: Simulation) -> None:
    assert simulation.now == 0.0 and simulation.seed != 0


def test_simulation_fixture_seed_follows_the_file_and_test_not_where_pytest_runs(
    simulation: Simulation,
) -> None:
    name = "test_simulation_fixture_seed_follows_the_file_and_test_not_where_pytest_runs"
    assert simulation.seed == zlib.crc32(f"test_simulation.py::{name}".encode())


def test_a_failing_simulation_test_reports_its_seed_and_runs_again_with_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_user.py").write_text(
        "def test_flaky(simulation):\n    assert False, f'ran with {simulation.seed}'\n"
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    seed = zlib.crc32(b"test_user.py::test_flaky")
    assert f"--simulation-seed={seed}" in first.stdout
    again = subprocess.run(
        [*command, "--simulation-seed=7"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "ran with 7" in again.stdout


def two_hosts_in_unicast() -> Simulation:
    """Two hosts in unicast mode, each running VRID 1 and 2 from its one address."""
    sim = Simulation()
    for vrid in (1, 2):
        for host, prio in ((1, 200), (2, 100)):
            add_host_router(sim, host, prio, vrid, unicast_peers=[f"192.0.2.{3 - host}"])
    sim.run_for(10)
    return sim


def add_host_router(sim: Simulation, host: int, priority: int, vrid: int, **options: Any) -> None:
    """Router ``h{host}v{vrid}`` on host ``host``'s one address, with VIP 192.0.2.10x."""
    sim.add_router(
        f"h{host}v{vrid}",
        vrid=vrid,
        priority=priority,
        address=f"192.0.2.{host}",
        vips=[f"192.0.2.{100 + vrid}"],
        **options,
    )


def test_unicast_adverts_reach_the_router_of_their_vrid_on_a_shared_address() -> None:
    sim = two_hosts_in_unicast()
    assert sorted(sim.masters()) == ["h1v1", "h1v2"]


def test_unicast_adverts_are_not_counted_as_wrong_vrid_by_other_routers_on_the_address() -> None:
    sim = two_hosts_in_unicast()
    # keepalived's dispatcher drops an unknown VRID before any instance counts it.
    assert all(handle.counters.vrid_err == 0 for handle in sim.routers.values())


def test_router_started_with_its_link_down_starts_in_fault() -> None:
    sim = Simulation()
    sim.add_router(
        "a", vrid=1, priority=200, address="192.0.2.1", vips=["192.0.2.100"], start=False
    )
    sim.interface("a", False)
    sim.start("a")
    sim.run_for(10)
    assert sim["a"].state is State.FAULT
    assert not sim["a"].vips


def test_router_restarted_after_a_crash_with_its_link_down_starts_in_fault() -> None:
    sim = cluster(10)
    sim.run_for(5)
    sim.crash("r2")
    sim.interface("r2", False)
    sim.start("r2")
    sim.run_for(10)
    assert sim["r2"].state is State.FAULT
    assert sim.masters() == ["r1"]


def test_owner_whose_link_comes_back_takes_over_after_its_down_interval() -> None:
    """Back through BACKUP, as keepalived's try_up_instance; the lower-priority master's
    adverts do not hold it (preemption), so it takes over when its down timer runs out."""
    sim = Simulation()
    sim.add_router("owner", vrid=1, priority=255, address="192.0.2.1", vips=["192.0.2.1"])
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2", vips=["192.0.2.1"])
    sim.run_for(5)
    sim.interface("owner", False)
    sim.run_for(10)
    sim.interface("owner", True)
    assert sim["owner"].state is State.BACKUP
    sim.run_for(3 + 1 / 256 + 0.001)
    assert sim.masters() == ["owner"]


def test_master_whose_link_goes_down_gets_no_priority_zero_advert_out() -> None:
    sim = cluster(11)
    sim.run_for(5)
    sim.interface("r1", False)
    sim.run_for(0)
    assert sim["r1"].counters.pri_zero_sent == 1
    assert sim["r2"].counters.pri_zero_rcvd == 0


def two_hosts_in_sync_groups() -> Simulation:
    """Hosts 1 (priority 200) and 2 (100), each a sync group of VRID 1 and 2.

    Every VRID 2 router has a weight-0 tracker ``check``, reporting OK.
    """
    sim = Simulation()
    for host, prio in ((1, 200), (2, 100)):
        for vrid in (1, 2):
            trackers = [Tracker("check", weight=0)] if vrid == 2 else []
            add_host_router(sim, host, prio, vrid, trackers=trackers, start=False)
        sim.add_group(f"g{host}", [f"h{host}v1", f"h{host}v2"])
        sim.tracker_result(f"h{host}v2", "check", True)
    sim.run_for(10)
    return sim


def test_crashed_group_member_sends_no_priority_zero_when_its_group_faults() -> None:
    sim = two_hosts_in_sync_groups()
    sim.crash("h1v1")
    sim.tracker_result("h1v2", "check", False)
    sim.run_for(0)
    assert sim["h2v1"].counters.pri_zero_rcvd == 0


def test_crashed_group_member_keeps_its_vips_when_its_group_faults() -> None:
    sim = two_hosts_in_sync_groups()
    sim.crash("h1v1")
    sim.tracker_result("h1v2", "check", False)
    assert sim["h1v1"].vips == {ip_address("192.0.2.101")}


def test_crashed_group_member_changes_no_state_when_its_group_faults() -> None:
    sim = two_hosts_in_sync_groups()
    sim.crash("h1v1")
    crash = sim.now
    sim.tracker_result("h1v2", "check", False)
    assert [t for t in sim.transitions if t.router == "h1v1" and t.time >= crash] == []


def test_crashed_group_member_holds_its_group_out_of_master_until_it_restarts() -> None:
    sim = two_hosts_in_sync_groups()
    sim.crash("h1v1")
    sim.tracker_result("h1v2", "check", False)
    sim.run_for(10)
    sim.tracker_result("h1v2", "check", True)
    sim.run_for(10)
    assert sorted(sim.masters()) == ["h2v1", "h2v2"]
    sim.start("h1v1")
    sim.run_for(10)
    assert sorted(sim.masters()) == ["h1v1", "h1v2"]


def delayed_pair() -> Simulation:
    """a (priority 200) is MASTER with adverts at 10.21875 s, 11.21875 s...; 0.8 s on the wire."""
    sim = Simulation(impairment=Impairment(delay=0.8))
    sim.add_router("a", vrid=1, priority=200, address="192.0.2.1")
    sim.add_router("b", vrid=1, priority=100, address="192.0.2.2")
    sim.run_for(10.5)
    return sim


def test_partition_drops_packets_already_in_flight() -> None:
    sim = delayed_pair()
    heard = sim["b"].counters.advert_rcvd
    sim.partition(["a"], ["b"])  # a's advert of 10.21875 s is due at 11.01875 s
    sim.run_for(0.8)
    assert sim["b"].counters.advert_rcvd == heard


def test_heal_does_not_deliver_packets_sent_during_the_partition() -> None:
    sim = delayed_pair()
    sim.partition(["a"], ["b"])
    sim.run_for(1.0)
    heard = sim["b"].counters.advert_rcvd
    sim.heal()  # a's advert of 11.21875 s is due at 12.01875 s
    sim.run_for(0.7)
    assert sim["b"].counters.advert_rcvd == heard
