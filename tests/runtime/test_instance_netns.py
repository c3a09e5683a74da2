"""vrrpkit.Instance on real interfaces: network namespaces, raw sockets, netlink, GARP."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from netns import Host, Lab, next_frame, open_capture

from vrrpkit import CheckTracker, ConfigError, Instance, ScriptTracker, State, StateChanged
from vrrpkit.transports import RawAdvertSocket, netns, uring

pytestmark = [pytest.mark.anyio, pytest.mark.netns]

VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"
FAST = 0.1  # VRRPv3 advert interval: Master_Down_Interval ~0.36 s


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (a guard against hangs, not a timing assertion)."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


@asynccontextmanager
async def hub_if(shared: bool) -> AsyncIterator[Any]:
    """A TransportHub for the instances to share if ``shared``, else None (own sockets)."""
    from vrrpkit.runtime.hub import TransportHub

    if not shared:
        yield None
        return
    async with TransportHub() as hub:
        yield hub


def holds(host: Host, vip: str) -> bool:
    return any(entry.get("local") == vip for entry in host.addresses())


def node(host: Host, name: str, priority: int, **kwargs: Any) -> Instance:
    kwargs.setdefault("vips", [VIP4])
    kwargs.setdefault("interval", FAST)
    return Instance(
        name, interface=host.ifname, vrid=51, priority=priority, netns=host.netns, **kwargs
    )


@asynccontextmanager
async def cluster(*instances: Instance) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for inst in instances:
            await tg.start(inst.run)
        try:
            yield
        finally:
            for inst in instances:
                inst.stop()


@asynccontextmanager
async def master_and_backup(
    lab: Lab, hub: Any = None, **options: Any
) -> AsyncIterator[tuple[Instance, Instance]]:
    """a on h1 (priority 200, on ``hub`` if given) as MASTER holding VIP4, b on h2 (100)."""
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200, hub=hub, **options), node(h2, "b", 100, **options)
    async with cluster(a, b):
        await eventually(lambda: a.state is State.MASTER and holds(h1, VIP4))
        yield a, b


async def test_election_puts_the_vip_on_the_master_only(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: a.state is State.MASTER and holds(h1, VIP4))
        assert b.state is State.BACKUP and not holds(h2, VIP4)
        assert str(a.config.address) == "192.0.2.1"
        await eventually(lambda: b.counters.advert_rcvd >= 3)
        assert b.router.master_address == h1.ipv4


def open_sockets() -> set[str]:
    """The sockets this process holds (``socket:[inode]``)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed by now
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:"):
                found.add(link)
    return found


async def test_an_instance_cancelled_while_it_opens_its_sockets_leaves_none_open(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket of another namespace is made on a thread of its own, which a cancel cannot
    # stop: the run must close what the thread hands back after the cancel.
    h1, _ = lab.hosts
    opening, go_on = threading.Event(), threading.Event()
    run_in_netns = netns.run_in_netns

    def held(name: str | None, fn: Callable[[], Any]) -> Any:
        def after_go_on() -> Any:
            opening.set()
            go_on.wait(10)
            return fn()

        return run_in_netns(name, after_go_on)

    monkeypatch.setattr(netns, "run_in_netns", held)
    before = open_sockets()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(node(h1, "a", 200).run))
            await anyio.to_thread.run_sync(opening.wait, 10)
            scope.cancel()
            go_on.set()
    assert open_sockets() == before


async def test_graceful_stop_moves_the_vip_to_the_backup(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(b):
        async with a:
            await eventually(lambda: a.state is State.MASTER and holds(h1, VIP4))
        assert not holds(h1, VIP4)
        await eventually(lambda: b.state is State.MASTER and holds(h2, VIP4))
        assert b.counters.pri_zero_rcvd == 1


async def test_an_instance_run_a_second_time_opens_fresh_transports(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(b):
        for _ in range(2):
            async with a:
                await eventually(lambda: a.state is State.MASTER and holds(h1, VIP4))
            assert not holds(h1, VIP4)
            await eventually(lambda: b.state is State.MASTER and holds(h2, VIP4))
        assert a.status()["transport_failures"] == 0


async def test_v3_ipv6_election_and_failover_with_link_local_sources(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a = node(h1, "a", 200, vips=[VIP6])
    b = node(h2, "b", 100, vips=[VIP6])
    async with cluster(b):
        async with a:
            await eventually(lambda: a.state is State.MASTER and holds(h1, VIP6))
            assert a.config.address == h1.link_local
            await eventually(lambda: b.counters.advert_rcvd >= 2)
        await eventually(lambda: b.state is State.MASTER and holds(h2, VIP6))
    assert b.counters.chk_err == 0 and b.counters.ip_ttl_err == 0


async def test_v2_ipv4_with_password_authentication(lab: Lab) -> None:
    h1, h2 = lab.hosts
    opts: dict[str, Any] = {"version": 2, "interval": 1.0, "auth_type": 1, "auth_data": b"s3cret"}
    a, b = node(h1, "a", 200, **opts), node(h2, "b", 100, **opts)
    async with cluster(a, b):
        await eventually(lambda: a.state is State.MASTER and b.counters.advert_rcvd >= 1)
        assert b.counters.auth_failure == 0
        assert b.state is State.BACKUP


async def test_v2_wrong_password_is_counted_and_both_become_master(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a = node(h1, "a", 200, version=2, interval=1.0, auth_type=1, auth_data=b"one")
    b = node(h2, "b", 100, version=2, interval=1.0, auth_type=1, auth_data=b"two")
    async with cluster(a, b):
        await eventually(lambda: b.counters.auth_failure >= 1)
        await eventually(lambda: b.state is State.MASTER)


async def test_unicast_peers_elect_without_multicast(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a = node(h1, "a", 200, unicast_peers=[str(h2.ipv4)])
    b = node(h2, "b", 100, unicast_peers=[str(h1.ipv4)])
    async with cluster(b):
        async with a:
            await eventually(lambda: a.state is State.MASTER and b.counters.advert_rcvd >= 2)
            assert b.state is State.BACKUP
        await eventually(lambda: b.state is State.MASTER and holds(h2, VIP4))


@pytest.mark.parametrize("shared", [False, True], ids=["own-transports", "hub"])
async def test_interface_down_puts_the_master_in_fault_and_removes_the_vip(
    lab: Lab, shared: bool
) -> None:
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    stack = contextlib.AsyncExitStack()
    hub = await stack.enter_async_context(TransportHub()) if shared else None
    a, b = node(h1, "a", 200, hub=hub), node(h2, "b", 100)
    vip_held_at_fault_callback: list[bool] = []
    a.on_fault(lambda event: vip_held_at_fault_callback.append(holds(h1, VIP4)))
    async with stack, cluster(a, b):
        await eventually(lambda: a.state is State.MASTER and holds(h1, VIP4))
        lab.set_port(h1, False)
        # inst.state changes at once; the VIP goes on the effects task, before the callbacks.
        await eventually(lambda: len(vip_held_at_fault_callback) == 1)
        assert a.state is State.FAULT and vip_held_at_fault_callback == [False]
        assert not holds(h1, VIP4)
        await eventually(lambda: b.state is State.MASTER and holds(h2, VIP4))
        lab.set_port(h1, True)
        await eventually(lambda: a.state is State.MASTER and not holds(h2, VIP4))


async def test_failing_track_script_lowers_priority_and_moves_the_vip(
    lab: Lab, tmp_path: Path
) -> None:
    h1, h2 = lab.hosts
    flag = tmp_path / "healthy"
    flag.touch()
    check = ScriptTracker(
        "chk", ["/bin/sh", "-c", f"test -e {flag}"], interval=0.1, weight=-150, fall=2, rise=2
    )
    a, b = node(h1, "a", 200, trackers=[check]), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: a.state is State.MASTER)
        flag.unlink()
        await eventually(lambda: a.effective_priority == 50)
        await eventually(
            lambda: b.state is State.MASTER and holds(h2, VIP4) and not holds(h1, VIP4)
        )
        flag.touch()
        await eventually(lambda: a.state is State.MASTER and holds(h1, VIP4))


async def test_new_master_sends_gratuitous_arps_for_the_vip(lab: Lab) -> None:
    h1, h2 = lab.hosts
    with contextlib.closing(open_capture(h2, 0x0806)) as capture:
        a = node(h1, "a", 200)
        async with cluster(a):
            with anyio.fail_after(10):
                frame = await next_frame(capture, lambda f: f[12:14] == b"\x08\x06")
        assert frame[0:6] == b"\xff" * 6
        assert frame[6:12] == h1.mac
        assert frame[28:32] == frame[38:42] == bytes([192, 0, 2, 100])


async def test_new_ipv6_master_sends_unsolicited_neighbour_advertisements(lab: Lab) -> None:
    h1, h2 = lab.hosts
    with contextlib.closing(open_capture(h2, 0x86DD)) as capture:
        a = node(h1, "a", 200, vips=[VIP6])
        async with cluster(a):
            with anyio.fail_after(10):
                frame = await next_frame(capture, lambda f: len(f) > 54 and f[54] == 136)
        assert frame[0:6] == bytes.fromhex("333300000001")
        assert frame[21] == 255  # hop limit


async def test_callbacks_and_notify_scripts_get_keepalived_arguments_in_order(
    lab: Lab, tmp_path: Path
) -> None:
    h1 = lab.hosts[0]
    log = tmp_path / "notify.log"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)
    a = node(h1, "a", 200, notify=[str(script)], notify_master=[str(script), "became-master"])
    seen: list[str] = []
    a.on_transition(lambda c: seen.append(f"{c.new} vip={holds(h1, VIP4)}"))
    async with a:
        await eventually(lambda: a.state is State.MASTER)
        await eventually(lambda: log.exists() and "MASTER" in log.read_text())
    assert seen == ["BACKUP vip=False", "MASTER vip=True", "STOPPED vip=False"]
    assert log.read_text().splitlines() == [
        "INSTANCE a BACKUP 200",
        "became-master",
        "INSTANCE a MASTER 200",
        "INSTANCE a STOP 200",
    ]


async def test_hard_kill_of_the_master_process_fails_over_and_leaves_the_vip_behind(
    lab: Lab,
) -> None:
    h1, h2 = lab.hosts
    b = node(h2, "b", 100)
    changes: list[StateChanged] = []
    b.on_transition(changes.append)
    script = Path(__file__).with_name("netns_node.py")
    args = {
        "name": "a",
        "interface": h1.ifname,
        "vrid": 51,
        "priority": 200,
        "vips": [VIP4],
        "interval": FAST,
        "netns": h1.netns,
    }
    async with cluster(b):
        process = subprocess.Popen(
            [sys.executable, str(script), json.dumps(args)],
            stdout=subprocess.PIPE,
            env={**os.environ},
        )
        try:
            assert process.stdout is not None
            line = await anyio.to_thread.run_sync(process.stdout.readline)
            assert line.strip() == b"started"
            await eventually(lambda: holds(h1, VIP4) and b.router.master_priority == 200)
            process.send_signal(signal.SIGKILL)
            await anyio.to_thread.run_sync(process.wait)
            await eventually(lambda: b.state is State.MASTER and holds(h2, VIP4))
            assert holds(h1, VIP4)  # keepalived too leaves it behind after SIGKILL
            assert b.counters.pri_zero_rcvd == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


async def test_many_instances_in_one_process_share_one_socket_per_interface_and_family(
    lab: Lab,
) -> None:
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    async with TransportHub() as hub1, TransportHub() as hub2:
        instances = []
        for vrid in range(1, 6):
            for host, hub, prio in (
                (h1, hub1, 200 if vrid % 2 else 100),
                (h2, hub2, 100 if vrid % 2 else 200),
            ):
                vips = [f"198.51.100.{vrid}"] if vrid != 5 else ["2001:db8::5"]
                instances.append(
                    Instance(
                        f"{host.number}-{vrid}",
                        interface=host.ifname,
                        vrid=vrid,
                        priority=prio,
                        vips=vips,
                        interval=FAST,
                        netns=host.netns,
                        hub=hub,
                    )
                )
        async with cluster(*instances):
            await eventually(lambda: sum(i.state is State.MASTER for i in instances) == 5)
            await eventually(
                lambda: all(
                    i.counters.advert_rcvd > 2 or i.state is State.MASTER for i in instances
                )
            )
            assert hub1.sockets == hub2.sockets == 2  # IPv4 and IPv6 on eth0
            masters = {i.name for i in instances if i.state is State.MASTER}
            assert masters == {"1-1", "2-2", "1-3", "2-4", "1-5"}
            assert holds(h1, "198.51.100.1") and holds(h2, "198.51.100.2")
            assert all(i.counters.vrid_err == 0 for i in instances)


async def test_interface_that_vanishes_puts_the_instance_in_fault_without_a_crash(
    lab: Lab,
) -> None:
    h1, h2 = lab.hosts
    async with master_and_backup(lab) as (a, b):
        h1.ip("link", "del", h1.ifname)
        await eventually(lambda: a.state is State.FAULT)
        await eventually(lambda: b.state is State.MASTER and holds(h2, VIP4))
        # The VIPs went with the interface: nothing left to remove, no retry every second.
        await eventually(lambda: a.status()["vips_held"] == [])
        failures = a.status()["transport_failures"]
        await anyio.sleep(2.5)
        assert a.status()["transport_failures"] == failures


@pytest.mark.parametrize("shared", [False, True], ids=["own-socket", "hub-socket"])
async def test_a_vip_someone_else_removes_from_the_master_is_put_back(
    lab: Lab, shared: bool
) -> None:
    h1, h2 = lab.hosts
    async with hub_if(shared) as hub, master_and_backup(lab, hub) as (a, b):
        h1.ip("addr", "del", f"{VIP4}/32", "dev", h1.ifname)
        await eventually(lambda: holds(h1, VIP4))
        assert a.state is State.MASTER and b.state is State.BACKUP
        assert a.counters.become_master == 1 and not holds(h2, VIP4)


async def test_a_source_address_fault_clears_when_its_interface_comes_back_with_it(
    lab: Lab,
) -> None:
    h1, _ = lab.hosts
    async with master_and_backup(lab) as (a, b):
        h1.ip("addr", "del", f"{h1.ipv4}/24", "dev", h1.ifname)
        await eventually(lambda: a.status()["faults"] == ["source_address"])
        h1.ip("link", "del", h1.ifname)  # gone while its address was: nothing to read
        await eventually(lambda: "interface" in a.status()["faults"])
        await anyio.sleep(1.5)  # past a check of the addresses while it is gone
        create_interface_again(lab, str(h1.ipv4))
        await eventually(lambda: a.state is State.MASTER and b.state is State.BACKUP)


async def test_an_instance_run_again_on_a_hub_takes_its_last_stop_for_nobody_elses(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """Its own VIP removals at stop reach it through the hub after the run ended."""
    from vrrpkit.runtime.hub import TransportHub

    h1, _ = lab.hosts
    async with TransportHub() as hub:
        a, other = pair(h1, 1, 100, hub=hub), pair(h1, 2, 100, hub=hub)
        async with cluster(other):  # keeps the hub's link monitor busy between a's runs
            async with cluster(a):
                await eventually(lambda: a.state is State.MASTER)
            await anyio.sleep(0.3)
            async with cluster(a):
                await eventually(lambda: a.state is State.MASTER)
                h1.ip("addr", "add", "198.51.100.77/32", "dev", h1.ifname)
                h1.ip("addr", "del", "198.51.100.77/32", "dev", h1.ifname)
                await anyio.sleep(0.3)
    assert "by someone else" not in caplog.text


@pytest.mark.parametrize("interval", [FAST, 1.0])
async def test_a_master_whose_source_address_is_removed_gives_up_its_vips_until_it_is_back(
    lab: Lab, interval: float
) -> None:
    """keepalived's NO_SOURCE_IP fault: a master whose adverts cannot leave holds no VIP."""
    h1, h2 = lab.hosts
    async with master_and_backup(lab, interval=interval) as (a, b):
        h1.ip("addr", "del", f"{h1.ipv4}/24", "dev", h1.ifname)
        await eventually(lambda: a.state is State.FAULT and b.state is State.MASTER)
        await eventually(lambda: holds(h2, VIP4) and not holds(h1, VIP4))
        assert a.status()["faults"] == ["source_address"]
        h1.ip("addr", "add", f"{h1.ipv4}/24", "dev", h1.ifname)
        await eventually(lambda: a.state is State.MASTER and b.state is State.BACKUP)
        await eventually(lambda: holds(h1, VIP4) and not holds(h2, VIP4))


@pytest.mark.parametrize("shared", [False, True], ids=["own-socket", "hub-socket"])
async def test_a_renumbered_interface_is_advertised_from_its_new_address(
    lab: Lab, shared: bool
) -> None:
    """With no source configured, keepalived takes the next address added to the interface
    (a DHCP renumbering); vrrpkit waited for the old one for good."""
    h1, h2 = lab.hosts
    async with hub_if(shared) as hub, master_and_backup(lab, hub) as (a, b):
        h1.ip("addr", "del", f"{h1.ipv4}/24", "dev", h1.ifname)
        await eventually(lambda: a.status()["faults"] == ["source_address"])
        h1.ip("addr", "add", "192.0.2.11/24", "dev", h1.ifname)
        await eventually(lambda: str(a.config.address) == "192.0.2.11")
        await eventually(lambda: a.state is State.MASTER and b.state is State.BACKUP)
        await eventually(lambda: str(b.router.master_address) == "192.0.2.11")
        await eventually(lambda: holds(h1, VIP4) and not holds(h2, VIP4))


@pytest.mark.parametrize("shared", [False, True], ids=["own-socket", "hub-socket"])
async def test_a_backup_whose_source_address_is_removed_is_in_fault_until_it_is_back(
    lab: Lab, shared: bool
) -> None:
    """A backup sends nothing to fail: the removal itself tells it, as it tells keepalived."""
    h1, h2 = lab.hosts
    async with hub_if(shared) as hub:
        a, b = node(h1, "a", 200), node(h2, "b", 100, hub=hub)
        async with cluster(a, b):
            await eventually(lambda: a.state is State.MASTER and b.state is State.BACKUP)
            h2.ip("addr", "del", f"{h2.ipv4}/24", "dev", h2.ifname)
            await eventually(lambda: b.state is State.FAULT)
            assert b.status()["faults"] == ["source_address"] and a.state is State.MASTER
            h2.ip("addr", "add", f"{h2.ipv4}/24", "dev", h2.ifname)
            await eventually(lambda: b.state is State.BACKUP)


@pytest.mark.parametrize("shared", [False, True], ids=["own-socket", "hub-socket"])
@pytest.mark.parametrize("comeback", ["addressed", "address-later", "new-address"])
async def test_interface_deleted_and_created_again_gets_a_fresh_socket(
    lab: Lab, shared: bool, comeback: str
) -> None:
    """Created again up before it has an address, it holds the instance in FAULT until then;
    created again with another address, the instance advertises from that one."""
    h1, h2 = lab.hosts
    async with hub_if(shared) as hub:
        a, b = node(h1, "a", 200, hub=hub), node(h2, "b", 100)
        await _recreate_interface_under(lab, a, b, comeback=comeback)


async def _recreate_interface_under(
    lab: Lab, a: Instance, b: Instance, *, comeback: str = "addressed"
) -> None:
    h1, h2 = lab.hosts
    address = "192.0.2.11" if comeback == "new-address" else str(h1.ipv4)
    async with cluster(a, b):
        await eventually(lambda: a.state is State.MASTER)
        h1.ip("link", "del", h1.ifname)
        await eventually(lambda: a.state is State.FAULT and b.state is State.MASTER)
        if comeback == "address-later":
            # Up first, addressed later: no socket can be opened meanwhile.
            create_interface_again(lab, None)
            await anyio.sleep(0.5)
            assert a.state is State.FAULT and not holds(h1, VIP4)
            h1.ip("addr", "add", f"{address}/24", "dev", h1.ifname)
        else:
            create_interface_again(lab, address)
        # Back with a new ifindex: a must be heard again, so b steps down to BACKUP.
        await eventually(lambda: a.state is State.MASTER and b.state is State.BACKUP)
        await eventually(lambda: holds(h1, VIP4) and not holds(h2, VIP4))
        received = b.counters.advert_rcvd
        await eventually(lambda: b.counters.advert_rcvd > received + 2)
        assert a.status()["address"] == b.status()["master_address"] == address


async def test_every_instance_on_a_hub_adopts_the_address_of_its_interface_created_again(
    lab: Lab,
) -> None:
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    async with TransportHub() as hub:
        ours = [pair(h1, vrid, 200, hub=hub) for vrid in (1, 2)]
        theirs = [pair(h2, vrid, 100) for vrid in (1, 2)]
        async with cluster(*ours, *theirs):
            await eventually(lambda: all(i.state is State.MASTER for i in ours))
            h1.ip("link", "del", h1.ifname)
            await eventually(lambda: all(i.state is State.MASTER for i in theirs))
            create_interface_again(lab, "192.0.2.11")
            await eventually(lambda: all(i.state is State.BACKUP for i in theirs))
            received = [i.counters.advert_rcvd for i in theirs]
            await eventually(
                lambda: all(
                    i.counters.advert_rcvd > n + 2 for i, n in zip(theirs, received, strict=True)
                )
            )
            addresses = {i.status()["address"] for i in ours}
            masters = {i.status()["master_address"] for i in theirs}
            assert addresses == masters == {"192.0.2.11"}


def create_interface_again(lab: Lab, address: str | None) -> None:
    """Create h1's deleted eth0 again (a new ifindex, its old MAC) and bring it up, with
    ``address`` (None: none yet)."""
    from netns import ip

    h1 = lab.hosts[0]
    ip(
        "link",
        "add",
        h1.port,
        "type",
        "veth",
        "peer",
        "name",
        h1.ifname,
        "netns",
        h1.netns,
        netns=lab.bridge_netns,
    )
    ip("link", "set", h1.port, "master", "br0", "up", netns=lab.bridge_netns)
    h1.ip("link", "set", h1.ifname, "address", ":".join(f"{octet:02x}" for octet in h1.mac))
    h1.ip("link", "set", h1.ifname, "addrgenmode", "none")
    if address is not None:
        h1.ip("addr", "add", f"{address}/24", "dev", h1.ifname)
    h1.ip("link", "set", h1.ifname, "up")


async def test_instance_started_on_a_hub_after_its_interface_was_created_again_hears_the_master(
    lab: Lab,
) -> None:
    """The hub's socket for the interface outlived the instance that opened it: the next
    instance must not inherit it bound to the deleted interface (a MASTER nobody hears)."""
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    master = node(h2, "master", 200)
    async with TransportHub() as hub, cluster(master):
        await eventually(lambda: master.state is State.MASTER)
        first = node(h1, "first", 100, hub=hub)
        async with cluster(first):
            await eventually(lambda: first.state is State.BACKUP)
        h1.ip("link", "del", h1.ifname)
        create_interface_again(lab, str(h1.ipv4))
        second = node(h1, "second", 100, hub=hub)
        async with cluster(second):
            await eventually(lambda: second.counters.advert_rcvd > 2)
            assert second.state is State.BACKUP and master.state is State.MASTER


def pair(host: Host, vrid: int, priority: int, **kwargs: Any) -> Instance:
    return Instance(
        f"{host.number}-{vrid}",
        interface=host.ifname,
        vrid=vrid,
        priority=priority,
        vips=[f"198.51.100.{vrid}"],
        interval=FAST,
        netns=host.netns,
        **kwargs,
    )


@asynccontextmanager
async def masters_and_hub_backups(lab: Lab) -> AsyncIterator[tuple[list[Instance], ...]]:
    """Three masters on h1 (own sockets), then their backups on h2 sharing a hub's socket."""
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    async with TransportHub() as hub:
        masters = [pair(h1, vrid, 200) for vrid in (1, 2, 3)]
        backups = [pair(h2, vrid, 100, hub=hub) for vrid in (1, 2, 3)]
        async with cluster(*masters):
            await eventually(lambda: all(i.state is State.MASTER for i in masters))
            async with cluster(*backups):
                # The backups read lazily: their counters catch up when asked.
                await eventually(lambda: all(b.counters.advert_rcvd >= 3 for b in backups))
                assert all(b.state is State.BACKUP for b in backups)
                yield masters, backups


@pytest.mark.parametrize("ebpf", [True, False], ids=["kernel-counted", "read"])
async def test_backups_sharing_a_hub_socket_take_over_when_their_masters_resign(
    lab: Lab, ebpf: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With eBPF the kernel counts the masters' repeats; without, every advert is read.
    if not ebpf:
        monkeypatch.setenv("VRRPKIT_NO_EBPF", "1")
    h2 = lab.hosts[1]
    reasons: list[str] = []
    async with masters_and_hub_backups(lab) as (masters, backups):
        for inst in backups:
            inst.on_master(lambda change: reasons.append(change.reason))
        # Let repeats arrive unread (counted by the kernel, where it can): the resignation
        # must win over the repeats that came before it.
        await anyio.sleep(FAST * 5)
        for inst in masters:
            inst.stop()
        await eventually(lambda: len(reasons) == 3)
        assert reasons == ["master_released"] * 3
        assert [b.counters.pri_zero_rcvd for b in backups] == [1, 1, 1]
        assert all(holds(h2, f"198.51.100.{vrid}") for vrid in (1, 2, 3))


@pytest.mark.parametrize("ebpf", [True, False], ids=["kernel-counted", "read"])
async def test_backups_sharing_a_hub_socket_take_over_from_silent_masters_and_hand_back(
    lab: Lab, ebpf: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not ebpf:
        monkeypatch.setenv("VRRPKIT_NO_EBPF", "1")
    h1, h2 = lab.hosts
    changes: list[tuple[str, str]] = []
    async with masters_and_hub_backups(lab) as (masters, backups):
        for inst in backups:
            inst.on_transition(lambda change: changes.append((change.new.value, change.reason)))
        lab.set_port(h1, False)  # the masters fall silent (and go FAULT themselves)
        # The callbacks run once the VIPs are up, after the state has changed.
        await eventually(lambda: changes.count(("MASTER", "master_down_timer")) == 3)
        lab.set_port(h1, True)  # back with a higher priority: the backups step down
        await eventually(lambda: all(i.state is State.MASTER for i in masters))
        await eventually(lambda: all(b.state is State.BACKUP for b in backups))
        await eventually(lambda: not any(holds(h2, f"198.51.100.{v}") for v in (1, 2, 3)))


# -- the kernel timing a master's silence (eBPF timers, root) ---------------------------------


async def test_a_backup_behind_a_steady_master_lets_the_kernel_time_its_silence(
    lab: Lab,
) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: b.status()["receive_mode"] == "kernel-timed")
        received = b.counters.advert_rcvd
        await anyio.sleep(FAST * 5)
        assert b.counters.advert_rcvd >= received + 3  # counted by the kernel, caught up
        assert b.state is State.BACKUP
        assert a.status()["receive_mode"] == "eager"


async def test_the_kernel_timed_silence_of_a_crashed_master_hands_over(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    changes: list[str] = []
    b.on_master(lambda change: changes.append(change.reason))
    async with cluster(a, b):
        await eventually(lambda: b.status()["receive_mode"] == "kernel-timed")
        lab.set_port(h1, False)  # the master falls silent without resigning
        await eventually(lambda: changes == ["master_down_timer"] and holds(h2, VIP4))


async def test_a_backup_waiting_out_a_preemption_delay_keeps_its_own_alarm(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 100), node(h2, "b", 200, preempt_delay=30.0)
    async with cluster(a):
        await eventually(lambda: a.state is State.MASTER)
        async with cluster(b):
            await eventually(lambda: b.counters.advert_rcvd >= 3)
            await anyio.sleep(FAST * 5)
            assert b.state is State.BACKUP and b.status()["receive_mode"] == "lazy"


async def test_without_kernel_timers_a_backup_reads_lazily_on_its_alarm(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vrrpkit.transports import absorber

    monkeypatch.setattr(absorber, "_btf", lambda: (b"not btf", 1, 3, 7, 9))
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: b.counters.advert_rcvd >= 5)
        assert b.status()["receive_mode"] == "lazy"


async def test_a_hub_socket_turned_eager_by_an_owner_starting_moves_no_backup(lab: Lab) -> None:
    # The backups' repeats, counted and timed by the kernel for several intervals, are still
    # uncollected when an address owner starts as MASTER on their shared socket (no reading
    # first) and turns it eager: handed over later, they must keep the down timers going.
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    async with TransportHub() as hub:
        masters = [pair(h1, vrid, 200) for vrid in (1, 2)]
        backups = [pair(h2, vrid, 100, hub=hub) for vrid in (1, 2)]
        async with cluster(*masters):
            await eventually(lambda: all(i.state is State.MASTER for i in masters))
            async with cluster(*backups):
                await eventually(
                    lambda: all(b.status()["receive_mode"] == "kernel-timed" for b in backups)
                )
                # Two Master_Down_Intervals, uncollected (a receive time further back than
                # 1 s + 4 intervals would be taken as a clock step, and as arrived now).
                await anyio.sleep(FAST * 8)
                owner = Instance(
                    "owner",
                    interface=h2.ifname,
                    vrid=3,
                    priority=255,
                    vips=[str(h2.ipv4)],
                    interval=FAST,
                    netns=h2.netns,
                    hub=hub,
                )
                async with cluster(owner):
                    await eventually(lambda: owner.state is State.MASTER)
                    await anyio.sleep(FAST * 10)
                    for inst in backups:
                        assert inst.state is State.BACKUP and inst.counters.become_master == 0


# -- the kernel sending a master's adverts (io_uring timeouts, root) --------------------------


def advert_priorities(frames: list[bytes], source: bytes) -> list[int]:
    """The priorities of the IPv4 VRRP adverts in ``frames`` sent from ``source``."""
    return [f[36] for f in frames if f[23] == 112 and f[26:30] == source]


async def capture_for(sock: Any, seconds: float) -> list[bytes]:
    """Every frame ``sock`` receives within ``seconds``."""
    frames: list[bytes] = []
    with anyio.move_on_after(seconds):
        while True:
            frames.append(await next_frame(sock, lambda f: True))
    return frames


async def test_a_steady_master_has_the_kernel_send_its_adverts(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
        sent, received = a.counters.advert_sent, b.counters.advert_rcvd
        await anyio.sleep(FAST * 30)  # past several refills of the queue
        assert a.counters.advert_sent >= sent + 25
        assert b.counters.advert_rcvd >= received + 25
        assert b.state is State.BACKUP and b.counters.become_master == 0
        assert b.status()["send_mode"] == "timer"


async def test_a_kernel_sending_master_refusing_an_unknown_tracker_name_goes_on_advertising(
    lab: Lab,
) -> None:
    async with master_and_backup(lab) as (a, b):
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
        with pytest.raises(ConfigError, match="no tracker named"):
            await a.tracker_result("typo", True)
        received = b.counters.advert_rcvd
        await anyio.sleep(FAST * 10)  # longer than b's Master_Down_Interval
        assert b.state is State.BACKUP and b.counters.become_master == 0
        assert b.counters.advert_rcvd >= received + 5


@pytest.fixture
def series_queued(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every series of adverts queued in the kernel from now on (topping one up is not one)."""
    queued: list[object] = []
    send_repeatedly = RawAdvertSocket.send_repeatedly

    def counted(self: RawAdvertSocket, *args: Any, **kwargs: Any) -> Any:
        queued.append(series := send_repeatedly(self, *args, **kwargs))
        return series

    monkeypatch.setattr(RawAdvertSocket, "send_repeatedly", counted)
    return queued


# Taking a queue back restarts it from a guess of when the next advert was due: inputs that
# change no advert leave it in the kernel.


async def test_a_kernel_sending_masters_gratuitous_arp_rounds_leave_its_adverts_queued(
    lab: Lab, series_queued: list[object]
) -> None:
    h1, h2 = lab.hosts
    with contextlib.closing(open_capture(h2, 0x0806)) as capture:
        a = node(h1, "a", 200, garp_delay=FAST * 5, garp_refresh=FAST * 3)
        async with cluster(a):
            await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
            before = len(series_queued)
            frames = await capture_for(capture, FAST * 20)
            assert a.status()["send_mode"] == "kernel-timed"
        assert len(series_queued) == before
        assert sum(f[12:14] == b"\x08\x06" for f in frames) >= 3


async def test_a_kernel_sending_masters_passing_checks_leave_its_adverts_queued(
    lab: Lab, series_queued: list[object]
) -> None:
    h1, _ = lab.hosts
    checks: list[bool] = []

    def check() -> bool:
        checks.append(True)
        return True

    tracker = CheckTracker("app", check, interval=FAST, weight=-50)
    a = node(h1, "a", 200, trackers=[tracker])
    async with cluster(a):
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
        before, ran = len(series_queued), len(checks)
        await anyio.sleep(FAST * 15)
        assert a.status()["send_mode"] == "kernel-timed"
        assert len(checks) >= ran + 5
    assert len(series_queued) == before


async def test_a_stopping_master_sends_no_queued_advert_after_its_priority_zero(
    lab: Lab,
) -> None:
    h1, h2 = lab.hosts
    with contextlib.closing(open_capture(h2, 0x0800)) as capture:
        a = node(h1, "a", 200)
        async with cluster(a):
            await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
            a.stop()
            frames = await capture_for(capture, FAST * 5)
        priorities = advert_priorities(frames, h1.ipv4.packed)
        assert 0 in priorities
        assert priorities[priorities.index(0) :] == [0]


@pytest.fixture
def stop_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What a stopping master does with its queue, in order: ``priority 0`` sent, ``settled``
    (the queue's end waited for)."""
    steps: list[str] = []
    send_nowait, end = RawAdvertSocket.send_nowait, uring.Series.end

    def sending(self: RawAdvertSocket, data: bytes, *args: Any) -> Any:
        if data[2] == 0:  # the advert's priority
            steps.append("priority 0")
        return send_nowait(self, data, *args)

    def ending(self: uring.Series) -> uring.RoundsSent:
        steps.append("settled")
        return end(self)

    monkeypatch.setattr(RawAdvertSocket, "send_nowait", sending)
    monkeypatch.setattr(uring.Series, "end", ending)
    return steps


async def stop_a_kernel_sending_master(host: Host, watcher: Host) -> list[bytes]:
    """Start a master on ``host`` and, once the kernel sends its adverts, stop it halfway
    between two of them (none is on its way out at the stop). The IPv4 frames ``watcher``
    saw from then on."""
    with contextlib.closing(open_capture(watcher, 0x0800)) as capture:
        a = node(host, "a", 200)
        async with cluster(a):
            await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
            with contextlib.suppress(BlockingIOError):
                while True:
                    capture.recv(65535)  # what went before: the event loop's own timer
            await next_frame(capture, lambda f: f[23] == 112 and f[26:30] == host.ipv4.packed)
            # The capture sees an advert while the kernel is still sending it: the next one's
            # timeout starts only once that send is done.
            await anyio.sleep(FAST / 2)
            a.stop()
        return await capture_for(capture, FAST * 2)


async def test_a_stopping_master_sends_priority_zero_before_its_queue_settles(
    lab: Lab, stop_steps: list[str]
) -> None:
    # The cancelled adverts settle once the submitting thread has woken: priority 0 need not
    # wait for that when the cancels found every one of them waiting for its time.
    await stop_a_kernel_sending_master(*lab.hosts)
    assert stop_steps == ["priority 0", "settled"]


async def test_a_stopping_master_settles_a_queue_that_may_still_send_before_priority_zero(
    lab: Lab, stop_steps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uring.Series, "halt", lambda self: False)
    await stop_a_kernel_sending_master(*lab.hosts)
    assert stop_steps == ["settled", "priority 0"]


async def test_an_advert_that_went_out_as_the_master_stopped_is_followed_by_priority_zero_again(
    lab: Lab, stop_steps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A timeout running out while the cancel looked for it counts as found: its advert may
    # then follow priority 0, and the backup would wait a whole Master_Down_Interval.
    end = uring.Series.end
    monkeypatch.setattr(uring.Series, "end", lambda self: attrs.evolve(end(self), rounds=1))
    h1, h2 = lab.hosts
    frames = await stop_a_kernel_sending_master(h1, h2)
    assert stop_steps == ["priority 0", "settled", "priority 0"]
    assert advert_priorities(frames, h1.ipv4.packed)[-2:] == [0, 0]


async def test_a_kernel_sending_master_steps_down_for_a_better_router(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 100), node(h2, "b", 200)
    async with cluster(a):
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
        async with cluster(b):
            await eventually(lambda: a.state is State.BACKUP and b.state is State.MASTER)
            sent = a.counters.advert_sent
            await anyio.sleep(FAST * 10)
            assert a.counters.advert_sent == sent
            assert a.status()["send_mode"] == "timer"
            assert b.state is State.MASTER and holds(h2, VIP4) and not holds(h1, VIP4)


async def test_a_kernel_sending_master_loses_its_link_and_goes_fault(lab: Lab) -> None:
    h1, _ = lab.hosts
    a = node(h1, "a", 200)
    async with cluster(a):
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
        lab.set_port(h1, False)
        await eventually(lambda: a.state is State.FAULT and not holds(h1, VIP4))
        assert a.status()["send_mode"] == "timer"
        lab.set_port(h1, True)
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")


async def test_without_io_uring_a_master_sends_on_its_own_timer(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vrrpkit.transports import uring

    monkeypatch.setattr(uring.TimedSends, "create", classmethod(lambda cls, entries=0: None))
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: b.counters.advert_rcvd >= 10)
        assert a.status()["send_mode"] == "timer"
        assert b.state is State.BACKUP


async def test_with_nothing_sent_ahead_a_master_times_its_own_adverts(lab: Lab) -> None:
    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200, send_ahead=0), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: b.counters.advert_rcvd >= 10)
        assert a.status()["send_mode"] == "timer"


async def test_a_master_sends_at_most_send_ahead_of_adverts_for_a_hung_event_loop(
    lab: Lab,
) -> None:
    h1, h2 = lab.hosts
    with contextlib.closing(open_capture(h2, 0x0800)) as capture:
        a = node(h1, "a", 200, send_ahead=FAST * 6)
        async with cluster(a):
            await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
            frames = await capture_for(capture, FAST * 2)  # drop what came so far
            time.sleep(FAST * 12)  # the event loop hangs: no refill
            frames = await capture_for(capture, FAST * 2)
            a.stop()
        sent = advert_priorities(frames, h1.ipv4.packed)
        # At most the six queued, plus the two after the loop came back.
        assert len(sent) <= 6 + 3


async def test_masters_sharing_a_hub_socket_each_have_the_kernel_send_their_adverts(
    lab: Lab,
) -> None:
    from vrrpkit.runtime.hub import TransportHub

    h1, h2 = lab.hosts
    async with TransportHub() as hub:
        masters = [pair(h1, vrid, 200, hub=hub) for vrid in (1, 2, 3)]
        backups = [pair(h2, vrid, 100) for vrid in (1, 2, 3)]
        async with cluster(*masters, *backups):
            await eventually(
                lambda: all(m.status()["send_mode"] == "kernel-timed" for m in masters)
            )
            await anyio.sleep(FAST * 30)
            assert all(b.state is State.BACKUP and b.counters.become_master == 0 for b in backups)
            masters[0].stop()
            await eventually(lambda: backups[0].state is State.MASTER)
            await anyio.sleep(FAST * 10)
            assert [b.state for b in backups[1:]] == [State.BACKUP, State.BACKUP]


async def test_a_unicast_peer_the_kernel_refuses_costs_the_others_no_advert(lab: Lab) -> None:
    h1, h2 = lab.hosts
    refused = "192.0.2.255"  # the subnet's broadcast address: EACCES without SO_BROADCAST
    a = node(h1, "a", 200, unicast_peers=[refused, str(h2.ipv4)])
    b = node(h2, "b", 100, unicast_peers=[str(h1.ipv4)])
    async with cluster(a, b):
        # Each refused send is reported, whoever timed it; the other peer hears every advert.
        await eventually(lambda: a.status()["transport_failures"] >= 10)
        assert a.state is State.MASTER
        assert b.state is State.BACKUP and b.counters.become_master == 0


async def test_an_instance_put_in_a_group_while_running_takes_its_adverts_back(
    lab: Lab,
) -> None:
    from vrrpkit.runtime.group import Group

    h1, h2 = lab.hosts
    a, b = node(h1, "a", 200), node(h2, "b", 100)
    async with cluster(a, b):
        await eventually(lambda: a.status()["send_mode"] == "kernel-timed")
        Group("g", [a])
        assert a.status()["send_mode"] == "timer"
        await anyio.sleep(FAST * 10)
        assert b.state is State.BACKUP and b.counters.become_master == 0


async def test_the_members_of_a_sync_group_send_on_their_own_timer(lab: Lab) -> None:
    # The group changes a member's router from another member's input: adverts queued in
    # the kernel would overtake that change.
    from vrrpkit.runtime.group import Group

    h1, _ = lab.hosts
    a = node(h1, "a", 200)
    group = Group("g", [a])
    async with anyio.create_task_group() as tg:
        await tg.start(group.run)
        await eventually(lambda: a.state is State.MASTER and a.counters.advert_sent >= 3)
        assert a.status()["send_mode"] == "timer"
        group.stop()
