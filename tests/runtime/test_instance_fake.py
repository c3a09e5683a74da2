"""vrrpkit.Instance on the fake clock and network, under asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_interface
from typing import Any

import anyio
import pytest

from vrrpkit import ConfigError, State, StateChanged, Tracker
from vrrpkit.runtime.instance import Instance
from vrrpkit.runtime.trackers import CheckTracker, InterfaceTracker, ScriptTracker
from vrrpkit.testing.fakes import (
    FakeAddressManager,
    FakeAnnouncer,
    FakeClock,
    FakeLinkMonitor,
    FakeNetwork,
    FakeRunner,
)
from vrrpkit.transports.base import TransportError

pytestmark = pytest.mark.anyio

VIP = "192.0.2.100"


class Node:
    """One instance with its own fakes, on a shared network and clock."""

    def __init__(
        self,
        net: FakeNetwork,
        clock: FakeClock,
        name: str,
        address: str,
        priority: int,
        **kwargs: Any,
    ) -> None:
        self.net = net
        self.address = address
        self.addresses = FakeAddressManager(["eth0"])
        self.links = FakeLinkMonitor()
        self.announcer = FakeAnnouncer()
        self.runner: FakeRunner = kwargs.pop("runner", FakeRunner())
        self.instance = Instance(
            name,
            interface="eth0",
            vrid=51,
            priority=priority,
            vips=[VIP],
            clock=clock,
            socket=net.socket(address),
            addresses=self.addresses,
            links=self.links,
            announcer=self.announcer,
            runner=self.runner,
            **kwargs,
        )

    def holds_vip(self) -> bool:
        return self.addresses.holds("eth0", VIP)


@asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[anyio.abc.TaskGroup]:
    async with anyio.create_task_group() as tg:
        for node in nodes:
            await tg.start(node.instance.run)
        yield tg
        for node in nodes:
            node.instance.stop()


def pair(**a_kwargs: Any) -> tuple[FakeClock, Node, Node]:
    net, clock = FakeNetwork(), FakeClock()
    a = Node(net, clock, "a", "192.0.2.1", 200, **a_kwargs)
    b = Node(net, clock, "b", "192.0.2.2", 100)
    return clock, a, b


async def test_higher_priority_instance_becomes_master_and_adds_the_vip() -> None:
    clock, a, b = pair()
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.state is State.MASTER
        assert b.instance.state is State.BACKUP
        assert a.holds_vip() and not b.holds_vip()
        assert a.announcer.announced == [a.instance.config.vips[0]] * 5


async def test_master_takes_over_exactly_master_down_interval_after_the_crash() -> None:
    clock, a, b = pair()
    changes: list[tuple[float, State]] = []
    b.instance.on_transition(lambda c: changes.append((clock.now(), c.new)))
    async with running(a, b):
        await clock.advance(5)
        # A crash as the network sees it: a falls silent, without a priority-0 advert.
        a.net.cut(a.address)
        await clock.advance(10)
        assert b.instance.state is State.MASTER
    took = next(t for t, s in changes if s is State.MASTER)
    assert took == pytest.approx(4.21875 + 3.609375, abs=1e-6)


async def test_graceful_stop_hands_over_in_skew_time_and_removes_vips_first() -> None:
    clock, a, b = pair()
    order: list[str] = []
    a.instance.on_stop(lambda c: order.append(f"stop callback, vip held={a.holds_vip()}"))
    async with anyio.create_task_group() as tg:
        await tg.start(a.instance.run)
        await tg.start(b.instance.run)
        await clock.advance(5)
        a.instance.stop()
        await clock.advance(0.5)
        assert a.instance.state is State.STOPPED
        assert order == ["stop callback, vip held=False"]
        await clock.advance(0.2)
        assert b.instance.state is State.MASTER
        b.instance.stop()
    assert a.instance.counters.pri_zero_sent == 1


async def test_exception_inside_async_with_stops_gracefully_with_priority_zero() -> None:
    clock, a, b = pair()
    async with anyio.create_task_group() as tg:
        await tg.start(b.instance.run)
        with pytest.raises(RuntimeError, match="application bug"):
            async with a.instance:
                await clock.advance(5)
                assert a.instance.state is State.MASTER
                raise RuntimeError("application bug")
        assert a.instance.state is State.STOPPED
        assert not a.holds_vip()
        await clock.advance(0.7)  # skew(100) = 0.609375 s
        assert b.instance.state is State.MASTER
        b.instance.stop()


async def test_callbacks_run_in_transition_order_after_the_vips_change() -> None:
    clock, a, b = pair()
    seen: list[str] = []

    async def slow(change: StateChanged) -> None:
        await anyio.sleep(0)
        seen.append(f"{change.new} vip={a.holds_vip()}")

    a.instance.on_transition(slow)
    a.instance.on_master(lambda c: seen.append("on_master"))
    async with running(a, b):
        await clock.advance(5)
    assert seen == ["BACKUP vip=False", "on_master", "MASTER vip=True", "STOPPED vip=False"]


async def test_callback_that_raises_is_logged_counted_and_harmless(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, a, b = pair()

    def broken(change: StateChanged) -> None:
        raise ValueError("bad callback")

    a.instance.on_master(broken)
    async with running(a, b):
        await clock.advance(10)
        assert a.instance.state is State.MASTER
        assert a.instance.status()["callback_errors"] == 1
    assert "bad callback" in caplog.text


async def _raise_cancelled_error_uncancelled() -> None:
    """What a buggy library can do under asyncio: raise CancelledError nobody asked for."""
    import asyncio

    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_callback_raising_cancelled_error_uncancelled_is_counted_not_a_stop() -> None:
    clock, a, b = pair()

    async def leaks_cancellation(change: StateChanged) -> None:
        await _raise_cancelled_error_uncancelled()

    a.instance.on_master(leaks_cancellation)
    with anyio.fail_after(10):
        async with running(a, b):
            await clock.advance(10)
            assert a.instance.state is State.MASTER and a.holds_vip()
            assert a.instance.status()["callback_errors"] == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_check_raising_cancelled_error_uncancelled_counts_as_a_failure() -> None:
    async def leaks_cancellation() -> bool:
        await _raise_cancelled_error_uncancelled()
        return True

    clock, a, b = pair(trackers=[CheckTracker("db", leaks_cancellation)])
    with anyio.fail_after(10):
        async with running(a, b):
            await clock.advance(1)
            assert a.instance.state is State.FAULT


async def test_stop_asked_before_run_has_started_still_stops_it() -> None:
    _clock, a, _b = pair()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.instance.run)
            a.instance.stop()
    assert a.instance.state is State.STOPPED


async def test_shutdown_timeout_bounds_a_stop_callback_that_never_returns() -> None:
    clock, a, b = pair(callback_timeout=None, shutdown_timeout=0.3)

    @a.instance.on_stop
    async def hangs(change: StateChanged) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5):  # real seconds: the shutdown deadline is on real time
        async with running(a, b):
            await clock.advance(5)
    assert a.instance.state is State.STOPPED and not a.holds_vip()


async def test_link_monitor_failure_is_reported_and_the_instance_carries_on() -> None:
    clock, a, b = pair()
    failures = []
    async with running(a, b):
        await clock.advance(5)
        a.instance.on_transition(failures.append)  # no transition is expected
        a.links.fail(TransportError("link monitor failed: interrupted dump"))
        await clock.advance(5)
        assert a.instance.state is State.MASTER and a.holds_vip()
        assert a.instance.status()["transport_failures"] == 1
        assert failures == []


async def test_after_a_link_monitor_failure_link_states_are_read_again() -> None:
    clock, a, b = pair()
    async with running(a, b):
        await clock.advance(5)
        a.links.set("eth0", False, report=False)  # its event lost with the failure
        a.links.fail(TransportError("link monitor failed: interrupted dump"))
        await clock.advance(2)
        assert a.instance.state is State.FAULT and not a.holds_vip()
        a.links.set("eth0", True)  # and the monitor is listened to again
        await clock.advance(5)
        assert a.instance.state is State.MASTER


async def test_a_vip_whose_removal_failed_is_removed_again_until_it_goes() -> None:
    clock, a, b = pair()
    vip = a.instance.config.vips[0]
    async with running(a, b):
        await clock.advance(5)
        a.addresses.fail_remove.add(vip)
        a.links.set("eth0", False)
        await clock.advance(3)
        assert a.instance.state is State.FAULT and a.holds_vip()  # refused, and retried
        a.addresses.fail_remove.clear()
        await clock.advance(2)
        assert not a.holds_vip()


async def test_stop_callbacks_come_after_a_vip_whose_removal_failed_is_removed() -> None:
    clock, a, b = pair()
    vip = a.instance.config.vips[0]
    held_at_stop: list[bool] = []
    a.instance.on_stop(lambda change: held_at_stop.append(a.holds_vip()))
    async with running(a, b):
        await clock.advance(5)
        a.addresses.fail_remove.add(vip)
        a.links.set("eth0", False)
        await clock.advance(0.1)
        assert a.instance.state is State.FAULT and a.holds_vip()
        a.addresses.fail_remove.clear()
    assert held_at_stop == [False]


async def test_an_instance_that_fails_to_start_raises_and_reports_no_stop() -> None:
    class BrokenLinks(FakeLinkMonitor):
        async def is_up(self, ifname: str) -> bool:
            raise TransportError("netlink request failed")

    _clock, a, _b = pair()
    a.instance._links = BrokenLinks()
    stops: list[StateChanged] = []
    a.instance.on_stop(stops.append)
    with anyio.fail_after(5), pytest.raises(TransportError, match="netlink request failed"):
        async with a.instance:
            pass
    assert stops == [] and a.instance.state is State.INIT


async def test_slow_callback_never_delays_the_adverts() -> None:
    clock, a, b = pair(callback_timeout=None)
    release = anyio.Event()

    async def stuck(change: StateChanged) -> None:
        await release.wait()

    a.instance.on_master(stuck)
    async with running(a, b):
        await clock.advance(5)
        sent = a.instance.counters.advert_sent
        await clock.advance(10)
        assert a.instance.counters.advert_sent == sent + 10
        release.set()


async def test_callback_timeout_cancels_a_hung_async_callback() -> None:
    clock, a, b = pair(callback_timeout=0.01)

    async def hung(change: StateChanged) -> None:
        await anyio.sleep_forever()

    a.instance.on_master(hung)
    async with running(a, b):
        await clock.advance(5)
        with anyio.fail_after(5):
            while a.instance.status()["callback_timeouts"] == 0:
                await anyio.sleep(0.01)


async def test_events_iterator_reports_state_changes() -> None:
    clock, a, b = pair()
    seen: list[State] = []

    async def watch() -> None:
        async for event in a.instance.events():
            if isinstance(event, StateChanged):
                seen.append(event.new)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await tg.start(a.instance.run)
        await tg.start(b.instance.run)
        await clock.advance(5)
        a.instance.stop()
        b.instance.stop()
    assert seen == [State.BACKUP, State.MASTER, State.STOPPED]


async def test_in_process_check_failing_moves_the_vip() -> None:
    healthy = {"ok": True}
    clock, a, b = pair(trackers=[CheckTracker("app", lambda: healthy["ok"], weight=-150)])
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.state is State.MASTER
        healthy["ok"] = False
        await clock.advance(6)
        assert a.instance.effective_priority == 50
        assert b.instance.state is State.MASTER and b.holds_vip() and not a.holds_vip()


async def test_check_that_raises_counts_as_a_failure() -> None:
    def boom() -> bool:
        raise OSError("database unreachable")

    clock, a, b = pair(trackers=[CheckTracker("db", boom)])
    async with running(a, b):
        await clock.advance(1)
        assert a.instance.state is State.FAULT


async def test_hung_check_in_a_thread_fails_without_starting_a_thread_per_interval() -> None:
    import threading

    release = threading.Event()
    started: list[float] = []

    def hangs() -> bool:
        started.append(clock.now())
        return release.wait()

    clock, a, b = pair(
        trackers=[CheckTracker("db", hangs, in_thread=True, timeout=0.05, weight=-150)]
    )
    try:
        with anyio.fail_after(10):
            async with running(a, b):
                for _ in range(6):
                    await clock.advance(1)
                    await anyio.sleep(0.1)  # the thread runs on real time
                assert a.instance.effective_priority == 50
                assert len(started) == 1  # the hung thread is not joined by one per interval
    finally:
        release.set()


async def test_track_script_exit_status_sets_the_tracker() -> None:
    status = {"code": 0}
    runner = FakeRunner({"/usr/local/bin/check": lambda argv: status["code"]})
    clock, a, b = pair(
        runner=runner, trackers=[ScriptTracker("chk", ["/usr/local/bin/check"], weight=-150)]
    )
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.state is State.MASTER
        status["code"] = 1
        await clock.advance(6)
        assert b.instance.state is State.MASTER
    assert runner.calls[0] == ("/usr/local/bin/check",)


async def test_missing_track_script_counts_as_a_failure_unlike_keepalived() -> None:
    clock, a, b = pair(trackers=[ScriptTracker("chk", ["/nonexistent"])])
    async with running(a, b):
        await clock.advance(2)
        assert a.instance.state is State.FAULT


async def test_interface_down_puts_the_master_in_fault_and_removes_the_vip() -> None:
    clock, a, b = pair()
    async with running(a, b):
        await clock.advance(5)
        a.links.set("eth0", False)
        await clock.advance(0.01)
        assert a.instance.state is State.FAULT
        assert not a.holds_vip()
        a.links.set("eth0", True)
        await clock.advance(0.01)
        assert a.instance.state is State.BACKUP


async def test_tracked_interface_weight_lowers_priority() -> None:
    clock, a, b = pair(trackers=[InterfaceTracker("uplink", weight=-30)])
    a.links.set("uplink", True)
    async with running(a, b):
        await clock.advance(1)
        a.links.set("uplink", False)
        await clock.advance(0.01)
        assert a.instance.effective_priority == 170


async def test_notify_scripts_get_keepalived_arguments_in_order() -> None:
    runner = FakeRunner({"/n": lambda argv: 0, "/m": lambda argv: 0, "/s": lambda argv: 0})
    clock, a, b = pair(
        runner=runner, notify=["/n"], notify_master=["/m", "arg"], notify_stop=["/s"]
    )
    async with running(a, b):
        await clock.advance(5)
    assert runner.calls == [
        ("/n", "INSTANCE", "a", "BACKUP", "200"),
        ("/m", "arg"),
        ("/n", "INSTANCE", "a", "MASTER", "200"),
        ("/s",),
        ("/n", "INSTANCE", "a", "STOP", "200"),
    ]


async def test_vip_add_refused_is_reported_and_retried_at_each_advert() -> None:
    clock, a, b = pair()
    a.addresses.fail_add.add(a.instance.config.vips[0])
    failures: list[object] = []

    async def watch() -> None:
        async for event in a.instance.events():
            failures.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await tg.start(a.instance.run)
        await tg.start(b.instance.run)
        await clock.advance(5)
        assert a.instance.state is State.MASTER
        assert a.instance.status()["transport_failures"] == 1
        assert not a.holds_vip()
        a.addresses.fail_add.clear()
        await clock.advance(1)  # retried at the next advert
        assert a.holds_vip()
        a.instance.stop()
        b.instance.stop()
    assert any(type(f).__name__ == "TransportFailure" for f in failures)


async def test_status_is_a_json_ready_dict() -> None:
    import json

    clock, a, b = pair(trackers=[Tracker("manual", weight=-10)])
    async with running(a, b):
        await clock.advance(5)
        await a.instance.tracker_result("manual", False)
        status = json.loads(json.dumps(a.instance.status()))
    assert status["state"] == "MASTER"
    assert status["effective_priority"] == 190
    assert status["trackers"]["manual"] == {"weight": -10, "ok": False, "contribution": -10}
    assert status["vips_held"] == [VIP]


async def test_stale_vip_left_by_a_crash_is_removed_at_start() -> None:
    clock, a, b = pair()
    await a.addresses.add("eth0", a.instance.config.vips[0])
    async with running(b, a):
        await clock.advance(0.01)
        assert not a.holds_vip()


async def test_a_stop_after_the_run_ended_does_not_stop_the_next_run() -> None:
    clock, a, _b = pair()
    async with a.instance:
        await clock.advance(5)
        a.instance.stop()  # an explicit stop inside the block; its exit stops again
        await clock.advance(1)
    assert a.instance.state is State.STOPPED
    async with a.instance:
        await clock.advance(5)
        assert a.instance.state is State.MASTER and a.holds_vip()


async def test_a_run_after_the_interface_came_back_while_stopped_leaves_fault() -> None:
    clock, a, _b = pair()
    async with running(a):
        await clock.advance(5)
        a.links.set("eth0", False)
        await clock.advance(1)
        assert a.instance.state is State.FAULT
    a.links.set("eth0", True, report=False)  # back while nothing runs: no event for anyone
    async with running(a):
        await clock.advance(5)
        assert a.instance.state is State.MASTER and a.instance.status()["faults"] == []


async def test_a_vip_someone_else_removes_from_the_master_is_put_back() -> None:
    clock, a, b = pair()
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.state is State.MASTER and a.holds_vip()
        vip = a.instance.config.vips[0]
        await a.addresses.remove("eth0", vip)
        a.links.address_removed("eth0", vip)
        await clock.advance(0.01)
        assert a.holds_vip() and a.instance.status()["vips_held"] == [VIP]
        assert a.instance.state is State.MASTER and b.instance.state is State.BACKUP


async def test_a_backup_leaves_removed_addresses_alone() -> None:
    clock, a, b = pair()
    async with running(a, b):
        await clock.advance(5)
        vip = b.instance.config.vips[0]
        b.links.address_removed("eth0", vip)
        await clock.advance(1)
        assert not b.holds_vip()


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="vrid"):
        Instance("x", interface="eth0", vrid=0, priority=100, vips=[VIP])
    with pytest.raises(ConfigError, match="virtual IP"):
        Instance("x", interface="eth0", vrid=1, priority=100, vips=["not-an-ip"])


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "2", True])
def test_send_ahead_must_be_seconds(value: object) -> None:
    with pytest.raises(ConfigError, match="send_ahead"):
        Instance("x", interface="eth0", vrid=1, priority=100, vips=[VIP], send_ahead=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [float("nan"), float("inf")])
@pytest.mark.parametrize("version", [2, 3])
def test_interval_must_be_finite(interval: float, version: int) -> None:
    with pytest.raises(ConfigError, match="interval"):
        Instance(
            "x",
            interface="eth0",
            vrid=1,
            priority=100,
            vips=[VIP],
            interval=interval,
            version=version,
        )


@pytest.mark.parametrize("name", ["notify_timeout", "shutdown_timeout", "callback_timeout"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "10", True])
def test_timeouts_must_be_finite_seconds_above_zero(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name):
        Instance("x", interface="eth0", vrid=1, priority=100, vips=[VIP], **{name: value})


@pytest.mark.parametrize("field", ["interval", "timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0])
def test_tracker_periods_must_be_finite_seconds(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        ScriptTracker("s", ["/bin/true"], **{field: value})
    with pytest.raises(ConfigError, match=field):
        CheckTracker("c", lambda: True, **{field: value})


@pytest.mark.parametrize("argv", ["/bin/true", b"/bin/true", None, 5])
def test_script_tracker_argv_must_be_a_sequence_of_str(argv: object) -> None:
    with pytest.raises(ConfigError, match="argv"):
        ScriptTracker("s", argv)  # type: ignore[arg-type]


async def test_sync_group_members_fail_over_together() -> None:
    from vrrpkit import GroupStateChanged
    from vrrpkit.runtime.group import Group

    net, clock = FakeNetwork(), FakeClock()
    inside = FakeNetwork()
    runner = FakeRunner({"/g": lambda argv: 0})
    nodes = {}
    for host, prio in ((1, 200), (2, 100)):
        out = Node(net, clock, f"out{host}", f"192.0.2.{host}", prio, runner=runner)
        inn = Node(inside, clock, f"in{host}", f"198.51.100.{host}", prio)
        nodes[host] = (out, inn)
    group_changes: list[State] = []
    g1 = Group("g1", [n.instance for n in nodes[1]], notify=["/g"])
    g1.on_transition(
        lambda c: group_changes.append(c.new) if isinstance(c, GroupStateChanged) else None
    )
    g2 = Group("g2", [n.instance for n in nodes[2]])
    async with g1, g2:
        await clock.advance(5)
        assert g1.state is State.MASTER and g2.state is State.BACKUP
        assert all(n.holds_vip() for n in nodes[1])
        nodes[1][0].links.set("eth0", False)  # out1 loses its link
        await clock.advance(0.01)
        assert nodes[1][1].instance.state is State.FAULT  # in1 follows into FAULT
        assert not nodes[1][1].holds_vip()
        await clock.advance(2)
        assert g2.state is State.MASTER
        assert all(n.holds_vip() for n in nodes[2])
    assert group_changes[:3] == [State.BACKUP, State.MASTER, State.FAULT]
    group_notifies = [c for c in runner.calls if c[0] == "/g"]
    assert group_notifies[:3] == [
        ("/g", "GROUP", "g1", "BACKUP", "0"),
        ("/g", "GROUP", "g1", "MASTER", "0"),
        ("/g", "GROUP", "g1", "FAULT", "0"),
    ]


async def test_cancellation_of_the_host_task_still_hands_over_gracefully() -> None:
    clock, a, b = pair()
    stopped: list[str] = []
    a.instance.on_stop(lambda c: stopped.append(f"vip held={a.holds_vip()}"))
    async with anyio.create_task_group() as tg:
        await tg.start(b.instance.run)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as inner:
                await inner.start(a.instance.run)
                await clock.advance(5)
                assert a.instance.state is State.MASTER
                scope.cancel()
        assert a.instance.state is State.STOPPED
        assert a.instance.counters.pri_zero_sent == 1
        assert stopped == ["vip held=False"]
        await clock.advance(0.7)
        assert b.instance.state is State.MASTER
        b.instance.stop()


async def test_master_hearing_a_lower_priority_master_reports_it_to_split_brain_callbacks() -> None:
    from vrrpkit import SplitBrain

    clock, a, b = pair()
    reports: list[SplitBrain] = []
    a.instance.on_split_brain(reports.append)
    async with running(a, b):
        await clock.advance(5)
        a.net.cut(a.address)  # partition: b stops hearing a and becomes MASTER too
        # Mend just after a's advert (a sends at x.21875 s), so b's advert crosses first.
        await clock.advance(5.3)
        assert b.instance.state is State.MASTER
        a.net.mend(a.address)
        await clock.advance(1.5)
        assert b.instance.state is State.BACKUP
    assert reports and not reports[0].yielded and reports[0].peer_priority == 100
    assert a.instance.counters.split_brain >= 1


async def test_stop_sends_the_priority_zero_advert_before_returning() -> None:
    clock, a, b = pair()
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.state is State.MASTER
        a.instance.stop()
        # Nothing awaited yet: the hand-over advert already left.
        assert a.instance.counters.pri_zero_sent == 1
        assert a.instance.state is State.STOPPED
        await clock.advance(0.7)
        assert b.instance.state is State.MASTER
        assert not a.holds_vip()


def alone_with(addresses: FakeAddressManager) -> tuple[FakeClock, FakeLinkMonitor, Instance]:
    """An instance alone on its segment, with ``addresses`` as its address manager."""
    clock, links = FakeClock(), FakeLinkMonitor()
    inst = Instance(
        "a", interface="eth0", vrid=51, priority=200, vips=[VIP], clock=clock,
        socket=FakeNetwork().socket("192.0.2.1"), addresses=addresses, links=links,
        announcer=FakeAnnouncer(), runner=FakeRunner(),
    )  # fmt: skip
    return clock, links, inst


class GatedAddressManager(FakeAddressManager):
    """An address manager whose subclasses wait at a gate while ``hold()`` is on."""

    def __init__(self) -> None:
        super().__init__(["eth0"])
        self._released: anyio.Event | None = None

    def hold(self) -> None:
        self._released = anyio.Event()

    def release(self) -> None:
        if self._released is not None:
            self._released.set()

    async def _gate(self) -> None:
        if self._released is not None:
            await self._released.wait()


class SlowRemovals(GatedAddressManager):
    """Removals wait while ``hold()`` is on; additions can also be sent without waiting, as
    the real netlink manager's can."""

    async def remove(self, ifname: str, address: Any, prefixlen: int | None = None) -> bool:
        await self._gate()
        return await super().remove(ifname, address, prefixlen)

    def add_nowait(self, ifname: str, address: Any, prefixlen: int | None = None) -> int:
        self.log.append(("add_nowait", ifname, address))
        self.addresses[ifname].add(ip_interface(f"{address}/{prefixlen}"))
        return 1

    async def add_result(self, ticket: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return True


async def test_a_vip_addition_never_overtakes_a_removal_still_under_way() -> None:
    manager = SlowRemovals()
    clock, links, inst = alone_with(manager)
    async with anyio.create_task_group() as tg:
        await tg.start(inst.run)
        try:
            await clock.advance(5)
            assert inst.state is State.MASTER and manager.log[-1][0] == "add_nowait"
            manager.hold()
            links.set("eth0", False)  # FAULT: the removal starts and hangs
            await clock.advance(0.01)
            links.set("eth0", True)  # BACKUP, then MASTER again while it still hangs
            await clock.advance(5)
            assert inst.state is State.MASTER
            manager.release()
            await clock.advance(0.01)
            assert [entry[0] for entry in manager.log][-3:] == ["add_nowait", "remove", "add"]
            assert manager.holds("eth0", VIP)
        finally:
            manager.release()
            inst.stop()


async def test_a_shutdown_whose_vip_removal_never_returns_gives_up_after_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net, clock = FakeNetwork(), FakeClock()
    manager = SlowRemovals()
    inst = Instance(
        "a", interface="eth0", vrid=51, priority=200, vips=[VIP], clock=clock,
        socket=net.socket("192.0.2.1"), addresses=manager, links=FakeLinkMonitor(),
        announcer=FakeAnnouncer(), runner=FakeRunner(), shutdown_timeout=0.2,
    )  # fmt: skip
    with anyio.fail_after(10):  # a guard against the hang this test is about
        async with anyio.create_task_group() as tg:
            await tg.start(inst.run)
            await clock.advance(5)
            manager.hold()  # never released: the removal hangs forever
            inst.stop()
    assert inst.state is State.STOPPED
    assert "shutdown took over 0.2 s" in caplog.text


class SlowAnswers(GatedAddressManager):
    """An addition takes effect at once, but its answer waits while ``hold()`` is on (the
    kernel's answer and its address notifications come on different sockets)."""

    async def add(self, ifname: str, address: Any, prefixlen: int | None = None) -> bool:
        added = await super().add(ifname, address, prefixlen)
        await self._gate()
        return added


async def test_a_vip_removed_before_its_addition_was_answered_is_put_back() -> None:
    manager = SlowAnswers()
    clock, links, inst = alone_with(manager)
    async with anyio.create_task_group() as tg:
        manager.hold()
        await tg.start(inst.run)
        try:
            await clock.advance(5)
            assert inst.state is State.MASTER and manager.holds("eth0", VIP)
            vip = inst.config.vips[0]
            await manager.remove("eth0", vip)  # someone else, before the answer came
            links.address_removed("eth0", vip)
            await clock.advance(0.01)
            manager.release()
            await clock.advance(1)
            assert manager.holds("eth0", VIP) and inst.status()["vips_held"] == [VIP]
        finally:
            manager.release()
            inst.stop()


@pytest.mark.parametrize("healthy", [True, False])
async def test_a_start_awaiting_its_weight_zero_script_announces_only_what_the_script_says(
    healthy: bool,
) -> None:
    """keepalived runs no FAULT notify while a weight-0 script has not answered yet."""
    runner = FakeRunner({"/chk": lambda argv: 0 if healthy else 1, "/n": lambda argv: 0})
    clock, a, b = pair(runner=runner, trackers=[ScriptTracker("chk", ["/chk"])], notify=["/n"])
    faults: list[StateChanged] = []
    a.instance.on_fault(faults.append)
    async with running(a, b):
        await clock.advance(5)
    notified = [call[3] for call in runner.calls if call[0] == "/n"]
    if healthy:
        assert notified == ["BACKUP", "MASTER", "STOP"] and faults == []
    else:
        assert notified == ["FAULT", "STOP"] and len(faults) == 1


async def test_a_hung_check_times_out_on_the_instances_clock() -> None:
    hung = False

    async def database_answers() -> bool:
        if hung:
            await anyio.sleep_forever()
        return True

    check = CheckTracker("db", database_answers, interval=1.0, timeout=0.5, weight=-150)
    clock, a, b = pair(trackers=[check])
    with anyio.fail_after(5):  # real seconds: a guard against hangs
        async with running(a, b):
            await clock.advance(5)
            hung = True
            await clock.advance(2)  # no real time passes: the fake clock times the check
            assert a.instance.effective_priority == 50 and b.instance.state is State.BACKUP


async def test_a_hung_callback_is_cancelled_after_its_timeout_on_the_instances_clock() -> None:
    clock, a, b = pair(callback_timeout=1.0)
    seen: list[State] = []

    @a.instance.on_master
    async def hangs(change: StateChanged) -> None:
        await anyio.sleep_forever()

    a.instance.on_transition(lambda change: seen.append(change.new))
    with anyio.fail_after(5):
        async with running(a, b):
            await clock.advance(5)
            assert a.instance.status()["callback_timeouts"] == 1
            assert seen == [State.BACKUP, State.MASTER]


def test_tracking_the_instances_own_interface_is_refused() -> None:
    with pytest.raises(ConfigError, match="own interface"):
        Instance(
            "a", interface="eth0", vrid=51, priority=200, vips=[VIP],
            trackers=[InterfaceTracker("eth0", weight=50)],
        )  # fmt: skip


async def test_a_tracker_result_fed_before_the_first_run_counts_from_the_start() -> None:
    net = FakeNetwork()
    inst = Instance(
        "a", interface="eth0", vrid=51, priority=200, vips=[VIP], trackers=[Tracker("app")],
        socket=net.socket("192.0.2.1"), addresses=FakeAddressManager(["eth0"]),
        links=FakeLinkMonitor(), announcer=FakeAnnouncer(),
    )  # fmt: skip
    await inst.tracker_result("app", False)
    assert inst.router.faults == {"app"}


async def test_every_change_reaches_the_callbacks_however_far_a_slow_one_falls_behind() -> None:
    _, a, _ = pair(trackers=[Tracker("app")])
    release = anyio.Event()
    seen: list[State] = []

    @a.instance.on_transition
    async def slow(change: StateChanged) -> None:
        await release.wait()
        seen.append(change.new)

    with anyio.fail_after(10):
        async with running(a):
            await a.instance.tracker_result("app", True)
            for _ in range(800):  # 1600 changes behind the first callback
                await a.instance.tracker_result("app", False)
                await a.instance.tracker_result("app", True)
            release.set()
    assert len(seen) == 1 + 1600 + 1 and seen[-1] is State.STOPPED


async def test_a_fake_program_that_raises_is_a_failed_run_not_a_crash() -> None:
    def broken(argv: object) -> int:
        raise RuntimeError("bug in the test's fake program")

    runner = FakeRunner({"/chk": broken})
    clock, a, b = pair(runner=runner, trackers=[ScriptTracker("chk", ["/chk"], weight=-150)])
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.effective_priority == 50 and b.instance.state is State.MASTER


async def test_a_fake_address_refusal_given_as_a_string_is_honoured() -> None:
    clock, a, b = pair()
    a.addresses.fail_add.add(VIP)
    async with running(a, b):
        await clock.advance(5)
        assert a.instance.state is State.MASTER and not a.holds_vip()
        assert a.instance.status()["transport_failures"] >= 1


async def test_a_run_again_ignores_adverts_and_link_events_queued_while_it_was_stopped() -> None:
    clock, a, b = pair()
    changes: list[State] = []
    b.instance.on_transition(lambda change: changes.append(change.new))
    async with running(a, b):
        await clock.advance(5)
        b.instance.stop()
        await clock.advance(1)
        a.instance.stop()  # its priority-0 advert reaches b's socket, which nobody reads
        await clock.advance(1)
    b.links.set("eth0", False)  # unplugged and plugged again while nothing ran
    b.links.set("eth0", True)
    changes.clear()
    async with running(b):
        start = clock.now()
        await clock.advance(1)
        assert b.instance.state is State.BACKUP  # no skew-time takeover from the old advert
        await clock.advance(5)
        assert b.instance.state is State.MASTER and clock.now() - start > 3
    assert State.FAULT not in changes


async def test_one_fake_link_monitor_read_by_two_instances_is_a_clear_error() -> None:
    net, clock, shared = FakeNetwork(), FakeClock(), FakeLinkMonitor()
    instances = [
        Instance(
            name, interface="eth0", vrid=51, priority=prio, vips=[VIP], clock=clock,
            socket=net.socket(address), addresses=FakeAddressManager(["eth0"]), links=shared,
            announcer=FakeAnnouncer(),
        )
        for name, prio, address in (("a", 200, "192.0.2.1"), ("b", 100, "192.0.2.2"))
    ]  # fmt: skip
    with pytest.raises(BaseException) as raised:
        async with anyio.create_task_group() as tg:
            for inst in instances:
                await tg.start(inst.run)
            await clock.advance(1)
    assert raised.group_contains(ConfigError, match="one instance at a time", depth=None)


def test_an_instance_given_fakes_refuses_to_open_the_real_transports_left_out() -> None:
    with pytest.raises(ConfigError, match="no addresses, announcer"):
        Instance(
            "a", interface="eth0", vrid=51, priority=200, vips=[VIP], clock=FakeClock(),
            socket=FakeNetwork().socket("192.0.2.1"), links=FakeLinkMonitor(),
        )  # fmt: skip


async def test_a_check_in_a_thread_reports_its_result() -> None:
    healthy = {"db": True}
    check = CheckTracker("db", lambda: healthy["db"], in_thread=True, weight=-150)
    clock, a, b = pair(trackers=[check])
    with anyio.fail_after(10):
        async with running(a, b):
            await clock.advance(5)
            assert a.instance.effective_priority == 200
            healthy["db"] = False
            for _ in range(3):  # the thread answers in real time
                await clock.advance(1)
                await anyio.sleep(0.1)
            assert a.instance.effective_priority == 50


HUNG_CHECK_PROGRAM = """
import threading, anyio
from vrrpkit import CheckTracker, Instance
from vrrpkit.testing import FakeAddressManager, FakeAnnouncer, FakeLinkMonitor, FakeNetwork

async def main():
    hung = CheckTracker("db", threading.Event().wait, in_thread=True, timeout=0.05)
    inst = Instance("a", interface="eth0", vrid=51, priority=200, vips=["192.0.2.100"],
                    trackers=[hung], socket=FakeNetwork().socket("192.0.2.1"),
                    addresses=FakeAddressManager(), links=FakeLinkMonitor(),
                    announcer=FakeAnnouncer())
    async with inst:
        await anyio.sleep(0.3)  # real time: the check's thread has started and hangs

anyio.run(main)
print("done", flush=True)
"""


def test_a_check_hung_in_its_thread_does_not_hold_the_process_at_exit() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", HUNG_CHECK_PROGRAM], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr


def pair_on_network(seed: int = 0) -> tuple[FakeClock, FakeNetwork, Node, Node]:
    """a (200) and b (100) on a FakeNetwork that can delay packets (it has the clock)."""
    clock = FakeClock()
    net = FakeNetwork(clock, seed=seed)
    a, b = Node(net, clock, "a", "192.0.2.1", 200), Node(net, clock, "b", "192.0.2.2", 100)
    return clock, net, a, b


async def test_a_partitioned_fake_network_splits_the_brain_and_healing_mends_it() -> None:
    clock, net, a, b = pair_on_network()
    async with running(a, b):
        await clock.advance(5)
        net.partition(["192.0.2.1"], ["192.0.2.2"])
        await clock.advance(5)
        assert a.instance.state is b.instance.state is State.MASTER
        net.heal()
        await clock.advance(2)
        assert a.instance.state is State.MASTER and b.instance.state is State.BACKUP


def lossy_timeline(seed: int) -> list[tuple[float, str, State]]:
    async def run() -> list[tuple[float, str, State]]:
        clock, net, a, b = pair_on_network(seed)
        seen: list[tuple[float, str, State]] = []
        for node in (a, b):
            node.instance.on_transition(
                lambda change: seen.append((clock.now(), change.instance, change.new))
            )
        async with running(a, b):
            await clock.advance(5)
            net.impair(loss=0.5, delay=0.01, jitter=0.02)
            await clock.advance(60)
        return seen

    return anyio.run(run)


def test_a_lossy_fake_network_gives_the_same_timeline_for_the_same_seed() -> None:
    first = lossy_timeline(seed=3)
    assert len(first) > 4  # the losses made the backup take over, and give back, and again
    assert lossy_timeline(seed=3) == first


def takeover_after_silence(delay: float) -> float:
    """When b takes over from a, which falls silent at 7 s, on a network with ``delay``."""

    async def run() -> float:
        clock, net, a, b = pair_on_network()
        takeover: list[float] = []
        b.instance.on_master(lambda change: takeover.append(clock.now()))
        async with running(a, b):
            await clock.advance(5)
            if delay:
                net.impair(delay=delay)
            await clock.advance(2)
            net.cut("192.0.2.1")  # its last advert, if delayed, is still on its way
            await clock.advance(10)
        return takeover[0]

    return anyio.run(run)


def test_adverts_delayed_on_the_fake_network_arrive_that_much_later() -> None:
    assert takeover_after_silence(0.25) - takeover_after_silence(0.0) == pytest.approx(0.25)


class HeldLinks(FakeLinkMonitor):
    """is_up waits while ``hold`` is set (a netlink that does not answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = True
        self.entered = anyio.Event()

    async def is_up(self, ifname: str) -> bool:
        if self.hold:
            self.entered.set()
            await anyio.sleep_forever()
        return await super().is_up(ifname)


async def test_a_stop_after_a_run_stopped_while_opening_does_not_stop_the_next_run() -> None:
    links = HeldLinks()
    clock = FakeClock()
    inst = Instance(
        "a", interface="eth0", vrid=51, priority=200, vips=[VIP], clock=clock,
        socket=FakeNetwork().socket("192.0.2.1"), addresses=FakeAddressManager(["eth0"]),
        links=links, announcer=FakeAnnouncer(),
    )  # fmt: skip
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(inst.run)
            await links.entered.wait()
            inst.stop()  # while the run reads its links
        inst.stop()  # for the run that has ended
        links.hold = False
        async with inst:
            await clock.advance(5)
            assert inst.state is State.MASTER


async def test_a_hung_stop_callback_times_out_while_the_test_no_longer_advances_the_clock() -> None:
    clock, a, _ = pair(callback_timeout=0.2, shutdown_timeout=3)
    ran: list[str] = []

    @a.instance.on_stop
    async def hangs(change: StateChanged) -> None:
        await anyio.sleep_forever()

    @a.instance.on_stop
    def after(change: StateChanged) -> None:
        ran.append("after")

    with anyio.fail_after(10):
        async with running(a):
            await clock.advance(5)
    assert ran == ["after"] and a.instance.status()["callback_timeouts"] == 1


async def test_a_check_thread_that_could_not_start_fails_that_run_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    real_start = threading.Thread.start
    refused: list[str] = []

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("vrrpkit check") and not refused:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    check = CheckTracker("db", lambda: True, in_thread=True, interval=1.0, weight=-150)
    clock, a, _ = pair(trackers=[check])
    with anyio.fail_after(10):
        async with running(a):
            for _ in range(5):
                await clock.advance(1)
                await anyio.sleep(0.05)  # the threads answer in real time
            assert refused and a.instance.effective_priority == 200


def test_an_instance_given_fakes_and_notify_programs_needs_a_fake_runner() -> None:
    with pytest.raises(ConfigError, match="no runner"):
        Instance(
            "a", interface="eth0", vrid=51, priority=200, vips=[VIP], clock=FakeClock(),
            socket=FakeNetwork().socket("192.0.2.1"), addresses=FakeAddressManager(),
            links=FakeLinkMonitor(), announcer=FakeAnnouncer(), notify=["/usr/bin/logger"],
        )  # fmt: skip


async def test_a_cable_pulled_stops_a_delayed_advert_on_its_way_to_it() -> None:
    clock, net, a, b = pair_on_network()
    async with running(a, b):
        await clock.advance(5)
        net.impair(delay=0.5)
        sent = len(net.sent)
        while len(net.sent) == sent:
            await clock.advance(0.01)  # until an advert leaves a: on its way for 0.5 s
        received = b.instance.counters.advert_rcvd
        net.cut("192.0.2.2")
        await clock.advance(0.6)
        assert b.instance.counters.advert_rcvd == received


def test_duplicates_without_delays_need_no_clock() -> None:
    FakeNetwork().impair(duplicate=0.5)
    with pytest.raises(ConfigError, match="clock"):
        FakeNetwork().impair(delay=0.1)
