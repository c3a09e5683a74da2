"""Addresses and link state through rtnetlink, inside lab namespaces, on asyncio and trio."""

from __future__ import annotations

import logging
import socket
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address

import anyio
import pytest
from netns import Lab

from vrrpkit.transports import (
    AddressRemoved,
    LinkEvent,
    NetlinkAddressManager,
    NetlinkLinkMonitor,
    TransportError,
)
from vrrpkit.transports.netlink import added_addresses, open_address_watch
from vrrpkit.transports.netns import call_in_netns

pytestmark = [pytest.mark.anyio, pytest.mark.netns]

# Only a guard against a hang; no test asserts anything about timing.
GUARD = 10


def shown(lab_addresses: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """``ip -j addr`` entries keyed by address."""
    return {str(entry["local"]): entry for entry in lab_addresses}


async def test_ipv4_vip_add_and_remove_are_idempotent(lab: Lab) -> None:
    host = lab.hosts[0]
    vip = IPv4Address("192.0.2.100")
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        assert await manager.add(host.ifname, vip) is True
        assert await manager.add(host.ifname, vip) is False
        assert IPv4Interface("192.0.2.100/32") in await manager.list(host.ifname)
        assert shown(host.addresses())["192.0.2.100"]["prefixlen"] == 32

        assert await manager.remove(host.ifname, vip) is True
        assert await manager.remove(host.ifname, vip) is False
        assert IPv4Interface("192.0.2.100/32") not in await manager.list(host.ifname)
        assert "192.0.2.100" not in shown(host.addresses())
        # The lab's own address was left alone.
        assert IPv4Interface(f"{host.ipv4}/24") in await manager.list(host.ifname)


@pytest.mark.parametrize("vip", ["2001:db8::100", "fe80::100"])
async def test_ipv6_vip_is_added_without_dad(lab: Lab, vip: str) -> None:
    host = lab.hosts[0]
    address = IPv6Address(vip)
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        assert await manager.add(host.ifname, address) is True
        assert await manager.add(host.ifname, address) is False
        assert IPv6Interface(f"{vip}/128") in await manager.list(host.ifname)
        entry = shown(host.addresses())[vip]
        assert entry.get("nodad") is True
        assert "tentative" not in entry
        assert await manager.remove(host.ifname, address) is True
        assert await manager.remove(host.ifname, address) is False
        assert vip not in shown(host.addresses())


async def test_prefix_length(lab: Lab) -> None:
    host = lab.hosts[0]
    address = IPv4Address("198.51.100.7")
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        assert await manager.add(host.ifname, address, 24) is True
        assert IPv4Interface("198.51.100.7/24") in await manager.list(host.ifname)
        assert await manager.remove(host.ifname, address, 32) is False
        assert await manager.remove(host.ifname, address) is True
        assert "198.51.100.7" not in shown(host.addresses())
        with pytest.raises(ValueError):
            await manager.add(host.ifname, address, 33)


async def test_concurrent_requests_share_one_socket(lab: Lab) -> None:
    host = lab.hosts[0]
    vips = [IPv4Address(f"198.51.100.{n}") for n in range(10, 30)]
    results: list[bool] = []
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:

        async def add(vip: IPv4Address) -> None:
            results.append(await manager.add(host.ifname, vip))

        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                for vip in vips:
                    tg.start_soon(add, vip)
        assert results == [True] * len(vips)
        present = {entry.ip for entry in await manager.list(host.ifname)}
        assert present >= set(vips)


async def test_an_address_added_without_waiting_is_there_before_the_answer(lab: Lab) -> None:
    host = lab.hosts[0]
    vip = IPv4Address("192.0.2.100")
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        ticket = manager.add_nowait(host.ifname, vip)
        assert ticket is not None
        assert "192.0.2.100" in shown(host.addresses())  # the kernel acted within the send
        assert await manager.add_result(ticket) is True
        again = manager.add_nowait(host.ifname, vip)
        assert again is not None
        assert await manager.add_result(again) is False  # already there, as add() says


async def test_answers_to_additions_survive_other_requests_read_meanwhile(lab: Lab) -> None:
    host = lab.hosts[0]
    first, second = IPv4Address("192.0.2.101"), IPv6Address("2001:db8::101")
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        tickets = [manager.add_nowait(host.ifname, vip) for vip in (first, second)]
        # This request reads past both answers before its own reply.
        listed = await manager.list(host.ifname)
        assert IPv4Interface("192.0.2.101/32") in listed
        assert [await manager.add_result(t) for t in tickets if t is not None] == [True, True]


async def test_adding_without_waiting_on_a_missing_interface_is_left_to_add(lab: Lab) -> None:
    host = lab.hosts[0]
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        assert manager.add_nowait("nosuch0", IPv4Address("192.0.2.102")) is None
        with pytest.raises(TransportError):
            await manager.add("nosuch0", IPv4Address("192.0.2.102"))


async def received_within(sock: socket.socket, seconds: float) -> bytes:
    """Every datagram ``sock`` receives within ``seconds``, joined."""
    data = b""
    with anyio.move_on_after(seconds):
        while True:
            await anyio.wait_readable(sock)
            data += sock.recv(65536)
    return data


@pytest.mark.parametrize("vip", ["192.0.2.100", "2001:db8::100"])
async def test_an_address_watch_is_told_of_additions_not_of_removals(lab: Lab, vip: str) -> None:
    host = lab.hosts[0]
    watch = await call_in_netns(host.netns, open_address_watch)
    try:
        async with await NetlinkAddressManager.open(netns=host.netns) as manager:
            ifindex = await manager.ifindex(host.ifname)
            await manager.add(host.ifname, ip_address(vip))
            added = added_addresses(await received_within(watch, 0.2))
            await manager.remove(host.ifname, ip_address(vip))
            removed = added_addresses(await received_within(watch, 0.2))
    finally:
        watch.close()
    assert [(record.ifindex, str(record.interface.ip)) for record in added] == [(ifindex, vip)]
    assert removed == []


async def test_missing_interface_and_namespace(lab: Lab) -> None:
    host = lab.hosts[0]
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        with pytest.raises(TransportError):
            await manager.add("nosuch0", IPv4Address("192.0.2.100"))
        with pytest.raises(TransportError):
            await manager.remove("nosuch0", IPv4Address("192.0.2.100"))
        with pytest.raises(TransportError):
            await manager.list("nosuch0")
    with pytest.raises(TransportError):
        await NetlinkAddressManager.open(netns=f"{host.netns}-missing")


async def next_event(monitor: NetlinkLinkMonitor, ifname: str) -> LinkEvent:
    """The monitor's next link event about ``ifname`` (address removals skipped)."""
    async for event in monitor:
        if isinstance(event, LinkEvent) and event.ifname == ifname:
            return event
    raise AssertionError("the monitor stopped")


async def test_an_address_removed_from_an_interface_is_reported(lab: Lab) -> None:
    host = lab.hosts[0]
    async with await NetlinkLinkMonitor.open(netns=host.netns) as monitor:
        host.ip("addr", "add", "198.51.100.7/32", "dev", host.ifname)
        host.ip("addr", "del", "198.51.100.7/32", "dev", host.ifname)
        with anyio.fail_after(GUARD):
            async for event in monitor:
                if isinstance(event, AddressRemoved):
                    break
    assert event == AddressRemoved(host.ifname, IPv4Address("198.51.100.7"))


async def test_link_down_and_up(lab: Lab) -> None:
    host = lab.hosts[0]
    async with await NetlinkLinkMonitor.open(netns=host.netns) as monitor:
        assert await monitor.is_up(host.ifname) is True
        assert await monitor.is_up("nosuch0") is False
        with anyio.fail_after(GUARD):
            host.ip("link", "set", host.ifname, "down")
            assert await next_event(monitor, host.ifname) == LinkEvent(host.ifname, False)
            assert await monitor.is_up(host.ifname) is False
            host.ip("link", "set", host.ifname, "up")
            assert await next_event(monitor, host.ifname) == LinkEvent(host.ifname, True)
            assert await monitor.is_up(host.ifname) is True


async def test_carrier_loss_counts_as_down(lab: Lab) -> None:
    host = lab.hosts[0]
    async with await NetlinkLinkMonitor.open(netns=host.netns) as monitor:
        with anyio.fail_after(GUARD):
            lab.set_port(host, False)
            assert await next_event(monitor, host.ifname) == LinkEvent(host.ifname, False)
            # Administratively still up: only IFF_RUNNING went away.
            assert "UP" in host.link_flags()
            assert await monitor.is_up(host.ifname) is False
            lab.set_port(host, True)
            assert await next_event(monitor, host.ifname) == LinkEvent(host.ifname, True)


async def test_new_and_deleted_interfaces(lab: Lab) -> None:
    host = lab.hosts[0]
    async with await NetlinkLinkMonitor.open(netns=host.netns) as monitor:
        with anyio.fail_after(GUARD):
            host.ip("link", "add", "t0", "type", "veth", "peer", "name", "t1")
            assert await next_event(monitor, "t0") == LinkEvent("t0", False)
            host.ip("link", "set", "t1", "up")
            host.ip("link", "set", "t0", "up")
            assert await next_event(monitor, "t0") == LinkEvent("t0", True)
            host.ip("link", "del", "t0")
            assert await next_event(monitor, "t0") == LinkEvent("t0", False)


async def test_lost_notifications_are_recovered(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    """With a tiny receive buffer the kernel drops notifications; a resync repairs the state."""
    host = lab.hosts[0]
    caplog.set_level(logging.WARNING, logger="vrrpkit.transports.netlink")
    async with await NetlinkLinkMonitor.open(netns=host.netns, rcvbuf=1) as monitor:
        for _ in range(10):
            host.ip("link", "set", host.ifname, "down")
            host.ip("link", "set", host.ifname, "up")
        host.ip("link", "set", host.ifname, "down")
        host.ip("link", "add", "mark0", "type", "veth", "peer", "name", "mark1")
        seen: list[LinkEvent] = []
        with anyio.fail_after(GUARD):
            async for event in monitor:
                seen.append(event)
                if event.ifname == "mark0":
                    break
    assert [e.up for e in seen if isinstance(e, LinkEvent) and e.ifname == host.ifname][-1] is False
    assert "notifications were lost" in caplog.text


async def test_closing_ends_the_iteration(lab: Lab) -> None:
    host = lab.hosts[0]
    monitor = await NetlinkLinkMonitor.open(netns=host.netns)
    seen: list[LinkEvent] = []
    finished = anyio.Event()

    async def iterate(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        async for event in monitor:
            seen.append(event)
        finished.set()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(iterate)
            await monitor.aclose()
    assert finished.is_set()
    assert seen == []


async def test_a_burst_of_additions_sent_at_once_is_added_and_answered_in_full(
    lab: Lab,
) -> None:
    """More answers than the socket holds (a takeover of hundreds of VIPs at once)."""
    host = lab.hosts[0]
    vips = [IPv4Address("198.51.100.0") + n for n in range(1, 255)]
    vips += [IPv6Address("2001:db8::1:0") + n for n in range(1, 347)]
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        with anyio.fail_after(GUARD * 3):
            tickets = [manager.add_nowait(host.ifname, vip) for vip in vips]
            for vip, ticket in zip(vips, tickets, strict=True):
                if ticket is None:
                    assert await manager.add(host.ifname, vip) is True
                else:
                    assert await manager.add_result(ticket) is True
            listed = {entry.ip for entry in await manager.list(host.ifname)}
    assert set(vips) <= listed


async def test_answers_the_kernel_drops_are_asked_again(lab: Lab) -> None:
    host = lab.hosts[0]
    vips = [IPv4Address("198.51.100.0") + n for n in range(1, 41)]
    async with await NetlinkAddressManager.open(netns=host.netns) as manager:
        # The smallest receive buffer holds a few answers: the rest are dropped (ENOBUFS).
        manager._channel.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        with anyio.fail_after(GUARD):
            tickets = [manager.add_nowait(host.ifname, vip) for vip in vips]
            assert None not in tickets
            results = [await manager.add_result(t) for t in tickets]  # type: ignore[arg-type]
            listed = {entry.ip for entry in await manager.list(host.ifname)}
    # Added by the request itself; an answer asked again finds the address there.
    assert set(vips) <= listed
    assert False in results


async def test_a_closed_manager_says_it_is_closed(lab: Lab) -> None:
    host = lab.hosts[0]
    manager = await NetlinkAddressManager.open(netns=host.netns)
    await manager.aclose()
    vip = IPv4Address("192.0.2.100")
    with pytest.raises(anyio.ClosedResourceError):
        manager.add_nowait(host.ifname, vip)
    for call in (
        manager.ifindex(host.ifname),
        manager.add(host.ifname, vip),
        manager.remove(host.ifname, vip, 32),
        manager.list(host.ifname),
    ):
        with pytest.raises(anyio.ClosedResourceError):
            await call


async def test_a_failed_resync_is_tried_again_and_loses_no_change(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = lab.hosts[0]
    async with await NetlinkLinkMonitor.open(netns=host.netns, rcvbuf=1) as monitor:
        real = monitor._snapshot
        failures = [TransportError("netlink dump kept being interrupted")]

        async def snapshot_failing_once() -> dict[int, tuple[str, bool]]:
            if failures:
                raise failures.pop()
            return await real()

        monkeypatch.setattr(monitor, "_snapshot", snapshot_failing_once)
        for _ in range(10):
            host.ip("link", "set", host.ifname, "down")
            host.ip("link", "set", host.ifname, "up")
        host.ip("link", "set", host.ifname, "down")
        with anyio.fail_after(GUARD):
            with pytest.raises(TransportError):
                async for _event in monitor:
                    pass
            host.ip("link", "set", host.ifname, "up")
            host.ip("link", "add", "mark0", "type", "veth", "peer", "name", "mark1")
            seen: list[LinkEvent] = []
            async for event in monitor:
                seen.append(event)
                if event.ifname == "mark0":
                    break
    assert not failures
    assert [e.up for e in seen if isinstance(e, LinkEvent) and e.ifname == host.ifname][-1] is True
