"""vrrpkit.Group (a sync group) on the fake clock and networks, under asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from vrrpkit import ConfigError, State, StateChanged, VrrpError
from vrrpkit.core.addresses import Address
from vrrpkit.runtime.group import Group
from vrrpkit.runtime.instance import Instance
from vrrpkit.testing.fakes import (
    FakeAddressManager,
    FakeAnnouncer,
    FakeClock,
    FakeLinkMonitor,
    FakeNetwork,
    FakeRunner,
)

pytestmark = pytest.mark.anyio

VIP = "192.0.2.100"


class HeldAddressManager(FakeAddressManager):
    """Adds addresses only once ``release`` is set (a slow netlink)."""

    def __init__(self) -> None:
        super().__init__(["eth0"])
        self.release = anyio.Event()

    async def add(self, ifname: str, address: Address, prefixlen: int | None = None) -> bool:
        await self.release.wait()
        return await super().add(ifname, address, prefixlen)


class Member:
    """One group member with its own network and fakes, on a shared clock."""

    def __init__(
        self,
        clock: FakeClock,
        name: str,
        address: str,
        addresses: FakeAddressManager | None = None,
        **kwargs: Any,
    ) -> None:
        self.addresses = FakeAddressManager(["eth0"]) if addresses is None else addresses
        self.links = FakeLinkMonitor()
        self.instance = Instance(
            name,
            interface="eth0",
            vrid=51,
            priority=200,
            vips=[VIP],
            clock=clock,
            socket=FakeNetwork().socket(address),
            addresses=self.addresses,
            links=self.links,
            announcer=FakeAnnouncer(),
            **kwargs,
        )

    def holds_vip(self) -> bool:
        return self.addresses.holds("eth0", VIP)


def two_members(
    runner: FakeRunner | None = None,
    a_addresses: FakeAddressManager | None = None,
    **kwargs: Any,
) -> tuple[FakeClock, Member, Member]:
    """Members a and b, alone on their segments: the group becomes MASTER within 5 s."""
    clock = FakeClock()
    runner = runner or FakeRunner()
    a = Member(clock, "a", "192.0.2.1", runner=runner, addresses=a_addresses, **kwargs)
    b = Member(clock, "b", "198.51.100.1", runner=runner, **kwargs)
    return clock, a, b


def record_states(*members: Member) -> list[tuple[str, State]]:
    """Every state change of ``members``, as (instance, new state), in delivery order."""
    seen: list[tuple[str, State]] = []
    for member in members:
        member.instance.on_transition(
            lambda c: seen.append((c.instance, c.new)) if isinstance(c, StateChanged) else None
        )
    return seen


def group_states(group: Group) -> list[State]:
    """The group's states as its callbacks receive them, in order (filled as they come)."""
    delivered: list[State] = []
    group.on_transition(lambda change: delivered.append(change.new))
    return delivered


# -- stopping --------------------------------------------------------------------------------


async def test_stop_called_before_run_has_started_still_stops_the_group() -> None:
    _, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            group.stop()
    assert a.instance.state is State.STOPPED and b.instance.state is State.STOPPED


async def test_a_member_stopped_on_its_own_does_not_stop_the_next_group_run() -> None:
    clock, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            a.instance.stop()
            await clock.advance(1)
        async with group:
            await clock.advance(10)
            assert group.state is State.MASTER
            assert a.instance.state is b.instance.state is State.MASTER


async def test_a_hung_group_callback_is_abandoned_after_the_shutdown_timeout() -> None:
    clock, a, b = two_members(callback_timeout=None, shutdown_timeout=0.3)
    group = Group("g", [a.instance, b.instance], callback_timeout=None, shutdown_timeout=0.3)

    @group.on_master
    async def hangs(change: object) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            assert group.state is State.MASTER
    assert a.instance.state is b.instance.state is State.STOPPED


async def test_group_stop_takes_every_member_to_stop_without_fault() -> None:
    clock, a, b = two_members()
    seen = record_states(a, b)
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            assert group.state is State.MASTER
    assert set(seen[-2:]) == {("a", State.STOPPED), ("b", State.STOPPED)}
    assert State.FAULT not in [state for _, state in seen]
    assert [(c.old, c.new) for c in group.transitions][-1] == (State.MASTER, State.STOPPED)


async def test_group_stop_runs_member_stop_notifies_then_the_group_stop_notify_only() -> None:
    runner = FakeRunner({"/n": lambda argv: 0})
    clock, a, b = two_members(runner, notify=["/n"])
    group = Group("g", [a.instance, b.instance], notify=["/n"])
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            runner.calls.clear()
    assert sorted(runner.calls[:2]) == [
        ("/n", "INSTANCE", "a", "STOP", "200"),
        ("/n", "INSTANCE", "b", "STOP", "200"),
    ]
    assert runner.calls[2:] == [("/n", "GROUP", "g", "STOP", "0")]


async def test_cancelling_the_group_stops_every_member_without_fault() -> None:
    clock, a, b = two_members()
    seen = record_states(a, b)
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await tg.start(group.run)
                await clock.advance(5)
                scope.cancel()
    assert a.instance.state is State.STOPPED and b.instance.state is State.STOPPED
    assert not a.holds_vip() and not b.holds_vip()
    assert State.FAULT not in [state for _, state in seen]
    assert group.state is State.STOPPED


class SlowLinks(FakeLinkMonitor):
    """While ``hold``, answers is_up only once ``release`` is set (a netlink slow to answer
    at start); ``entered`` is set when a run is waiting for it."""

    def __init__(self, hold: bool = True) -> None:
        super().__init__()
        self.hold = hold
        self.release = anyio.Event()
        self.entered = anyio.Event()

    async def is_up(self, ifname: str) -> bool:
        if self.hold:
            self.entered.set()
            await self.release.wait()
        return await super().is_up(ifname)


def members_one_slow_to_start(hold: bool = True) -> tuple[FakeClock, Member, Member, SlowLinks]:
    clock, a, b = two_members()
    slow = SlowLinks(hold)
    b.instance = Instance(
        "b", interface="eth0", vrid=51, priority=200, vips=[VIP], clock=clock,
        socket=FakeNetwork().socket("198.51.100.1"), addresses=b.addresses, links=slow,
        announcer=FakeAnnouncer(),
    )  # fmt: skip
    return clock, a, b, slow


async def test_cancelling_the_group_while_a_member_starts_stops_it_without_fault() -> None:
    clock, a, b, _ = members_one_slow_to_start()
    seen = record_states(a, b)
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            await clock.advance(0.5)
            assert a.instance.state is State.BACKUP and b.instance.state is State.INIT
            tg.cancel_scope.cancel()
    assert State.FAULT not in [state for _, state in seen]
    assert group.state is State.STOPPED and a.instance.state is State.STOPPED


async def test_cancelling_a_later_run_while_a_member_starts_starts_none_of_the_rest() -> None:
    clock, a, b, slow = members_one_slow_to_start(hold=False)
    group = Group("g", [b.instance, a.instance])  # b (slow) starts first
    a_states = record_states(a)
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
        a_states.clear()
        slow.hold = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            await slow.entered.wait()
            tg.cancel_scope.cancel()
    assert a_states == [] and group.state is State.STOPPED


async def test_members_a_cancelled_first_run_never_started_run_normally_next_time() -> None:
    clock, a, b, slow = members_one_slow_to_start()
    group = Group("g", [b.instance, a.instance])  # b (slow) starts first
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            await slow.entered.wait()
            tg.cancel_scope.cancel()  # a was never started
        slow.hold = False
        slow.release.set()
        async with group:
            await clock.advance(10)
            assert group.state is a.instance.state is State.MASTER


async def test_a_member_stopping_on_its_own_runs_its_stop_callbacks_behind_a_slow_group() -> None:
    clock, a, b = two_members(shutdown_timeout=0.5)
    group = Group("g", [a.instance, b.instance])

    @group.on_master
    async def slow(change: object) -> None:
        await anyio.sleep(1.5)  # real time, well within the group's callback_timeout

    stops: list[str] = []
    a.instance.on_stop(lambda change: stops.append(change.instance))
    with anyio.fail_after(10):
        async with group:
            await clock.advance(5)
            await anyio.sleep(0.01)  # the slow group callback is under way
            a.instance.stop()
            await clock.advance(0.1)
            await anyio.sleep(1)  # real time: past a's shutdown_timeout
            assert stops == ["a"]


async def test_changes_of_members_run_without_their_group_are_not_its_next_runs() -> None:
    clock, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    delivered = group_states(group)
    with anyio.fail_after(5):
        async with a.instance:  # alone, outside any group run
            await clock.advance(5)
        async with group:
            await clock.advance(5)
    assert delivered == [State.BACKUP, State.MASTER, State.STOPPED]


def test_a_group_with_notify_programs_needs_its_members_fake_runner() -> None:
    clock = FakeClock()
    members = [
        Instance(
            name, interface="eth0", vrid=51, priority=200, vips=[VIP], clock=clock,
            socket=FakeNetwork().socket(address), addresses=FakeAddressManager(["eth0"]),
            links=FakeLinkMonitor(), announcer=FakeAnnouncer(),
        )
        for name, address in (("a", "192.0.2.1"), ("b", "198.51.100.1"))
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="runner"):
        Group("g", members, notify_master=["/usr/bin/touch", "/tmp/never"])


async def test_a_stop_after_a_run_has_ended_does_not_stop_the_next_run() -> None:
    clock, a, b, slow = members_one_slow_to_start()
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            await clock.advance(0.5)
            tg.cancel_scope.cancel()
        group.stop()  # for the run that has ended
        slow.release.set()
        async with group:
            await clock.advance(10)
            assert group.state is State.MASTER


async def test_group_changes_are_delivered_after_every_member_was_run_again() -> None:
    clock, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    delivered = group_states(group)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(group.run)
            await clock.advance(5)
            for member in (a, b):  # each stopped on its own and run again
                member.instance.stop()
                await clock.advance(1)
                await tg.start(member.instance.run)
                await clock.advance(10)
                assert delivered[-1] is group.state is State.MASTER
            group.stop()


async def test_a_member_abandoning_its_shutdown_holds_no_later_group_change() -> None:
    clock, a, b = two_members(callback_timeout=None, shutdown_timeout=0.2)
    hung = True

    @b.instance.on_stop
    async def stuck(change: StateChanged) -> None:
        if hung:
            await anyio.sleep_forever()

    group = Group("g", [a.instance, b.instance])
    delivered = group_states(group)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(group.run)
            await clock.advance(5)
            b.instance.stop()
            await anyio.sleep(0.5)  # real time: b's shutdown is abandoned after 0.2 s
            await clock.advance(1)
            hung = False
            await tg.start(b.instance.run)
            await clock.advance(10)
            master, backup, fault = State.MASTER, State.BACKUP, State.FAULT
            assert delivered == [backup, master, fault, backup, master]
            group.stop()


class HangingRemovals(FakeAddressManager):
    """Removals never return once ``hang`` is set (a netlink that stops answering)."""

    def __init__(self) -> None:
        super().__init__(["eth0"])
        self.hang = False

    async def remove(self, ifname: str, address: Address, prefixlen: int | None = None) -> bool:
        if self.hang:
            await anyio.sleep_forever()
        return await super().remove(ifname, address, prefixlen)


async def test_a_member_abandoned_behind_a_hung_removal_holds_no_group_change() -> None:
    removals = HangingRemovals()
    clock, a, b = two_members(a_addresses=removals, shutdown_timeout=0.3)
    group = Group("g", [a.instance, b.instance])
    delivered = group_states(group)
    with anyio.fail_after(10):
        async with group:
            await clock.advance(5)
            removals.hang = True
            a.instance.stop()  # the group goes FAULT; a's shutdown hangs and is abandoned
            for _ in range(10):
                await anyio.sleep(0.1)  # real time: the shutdown timeout
                await clock.advance(0.1)
            assert delivered[-1] is group.state is State.FAULT


async def test_one_member_stopping_on_its_own_pulls_the_others_into_fault() -> None:
    clock, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            a.instance.stop()
            await clock.advance(0.01)
            assert b.instance.state is State.FAULT
            assert group.state is State.FAULT


async def test_a_group_change_is_delivered_between_the_member_changes_around_it() -> None:
    """keepalived writes both to its notify FIFO in transition order: the group's FAULT
    comes after the members' FAULT and before their BACKUP on a quick link flap."""
    clock, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    lines: list[str] = []
    for member in (a, b):
        member.instance.on_transition(
            lambda change: lines.append(f"INSTANCE {change.instance} {change.new}")
        )
    group.on_transition(lambda change: lines.append(f"GROUP {change.group} {change.new}"))
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            lines.clear()
            a.links.set("eth0", False)
            a.links.set("eth0", True)
            await clock.advance(0.5)
    fault = lines.index("GROUP g FAULT")
    assert lines.index("INSTANCE a FAULT") < fault < lines.index("INSTANCE a BACKUP")
    assert lines.index("INSTANCE b FAULT") < fault < lines.index("INSTANCE b BACKUP")


# -- GROUP notify programs -----------------------------------------------------------------


async def test_group_notifies_run_as_the_members_script_user() -> None:
    runner = FakeRunner({"/g": lambda argv: 0})
    clock, a, b = two_members(runner, script_user="vrrp", script_group="vrrpgrp")
    group = Group("g", [a.instance, b.instance], notify=["/g"])
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
    assert runner.calls and all(c[0] == "/g" for c in runner.calls)
    assert set(runner.users) == {("vrrp", "vrrpgrp")}


async def test_failed_group_notify_is_counted_in_the_group_status() -> None:
    runner = FakeRunner({"/g": lambda argv: 1})
    clock, a, b = two_members(runner)
    group = Group("g", [a.instance, b.instance], notify=["/g"])
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            assert group.status()["notify_failures"] == 2  # BACKUP, then MASTER


def test_members_running_scripts_as_different_users_are_refused() -> None:
    clock = FakeClock()
    a = Member(clock, "a", "192.0.2.1", script_user="alice")
    b = Member(clock, "b", "198.51.100.1", script_user="bob")
    with pytest.raises(ConfigError, match="script"):
        Group("g", [a.instance, b.instance])


@pytest.mark.parametrize("name", ["notify_timeout", "callback_timeout"])
def test_a_bad_timeout_is_refused_before_any_member_joins(name: str) -> None:
    clock = FakeClock()
    a = Member(clock, "a", "192.0.2.1")
    with pytest.raises(ConfigError, match=name):
        Group("g", [a.instance], **{name: float("nan")})
    Group("g", [a.instance])  # still free to join a group


@pytest.mark.parametrize("notify", [{"notify": "/usr/bin/notify.sh"}, {"notify_master": []}])
async def test_a_bad_notify_is_refused_before_any_member_joins(notify: dict[str, Any]) -> None:
    clock = FakeClock()
    a = Member(clock, "a", "192.0.2.1")
    with pytest.raises(ConfigError):
        Group("g", [a.instance], **notify)
    async with a.instance:  # free to run alone
        await clock.advance(5)
        assert a.instance.state is State.MASTER
    Group("g", [a.instance])  # and to join a group


async def test_a_second_run_of_a_running_group_is_refused_and_leaves_it_running() -> None:
    clock, a, b = two_members()
    group = Group("g", [a.instance, b.instance])
    async with group:
        await clock.advance(5)
        with pytest.raises(VrrpError, match="already running"):
            await group.run()
        assert group.state is State.MASTER
        group.stop()
        await clock.advance(1)
        assert group.state is State.STOPPED


# -- order: members first, then the group --------------------------------------------------


async def test_group_callbacks_wait_until_every_member_holds_its_vips() -> None:
    held = HeldAddressManager()
    clock, a, b = two_members(a_addresses=held)
    masters: list[tuple[bool, bool]] = []
    group = Group("g", [a.instance, b.instance])
    group.on_master(lambda change: masters.append((a.holds_vip(), b.holds_vip())))
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            assert group.state is State.MASTER
            assert masters == []  # a's VIP is not in place yet
            held.release.set()
            await clock.advance(0.01)
            assert masters == [(True, True)]


async def test_group_callbacks_run_after_the_members_own_callbacks_have_returned() -> None:
    clock, a, b = two_members()
    order: list[str] = []
    release = anyio.Event()

    @a.instance.on_master
    async def slow(change: StateChanged) -> None:
        order.append("member callback starts")
        await release.wait()
        order.append("member callback returns")

    group = Group("g", [a.instance, b.instance])
    group.on_master(lambda change: order.append("group callback"))
    with anyio.fail_after(5):
        async with group:
            await clock.advance(5)
            release.set()
            await clock.advance(0.01)
    assert order == ["member callback starts", "member callback returns", "group callback"]
