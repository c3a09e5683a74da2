"""A TransportHub's shared link monitor: one failure must not end the hub or its instances."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
import pytest

from vrrpkit.runtime.hub import _LinkView, _SharedLinks, link_events
from vrrpkit.testing.fakes import FakeLinkMonitor
from vrrpkit.transports.base import LinkEvent, TransportError

pytestmark = pytest.mark.anyio


async def next_item(view: _LinkView) -> LinkEvent:
    async with contextlib.aclosing(link_events(view.mailbox)) as events:
        return await events.__anext__()


async def test_a_monitor_failure_reaches_every_view_and_the_hub_listens_again() -> None:
    monitor = FakeLinkMonitor()
    shared = _SharedLinks(monitor)
    views = [_LinkView(shared), _LinkView(shared)]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(shared.read)
            monitor.fail(TransportError("link monitor failed: interrupted dump"))
            monitor.set("eth0", False)
            for view in views:
                with pytest.raises(TransportError, match="interrupted dump"):
                    await next_item(view)
            for view in views:
                assert await next_item(view) == LinkEvent("eth0", False)
            tg.cancel_scope.cancel()


async def test_an_attached_view_is_handed_the_events_queued_before_then_each_as_it_comes() -> None:
    view = _LinkView(_SharedLinks(FakeLinkMonitor()))
    view.deliver(LinkEvent("eth0", False))  # before the instance attached: queued
    handed: list[LinkEvent | TransportError] = []
    assert view.attach(handed.append)
    view.deliver(LinkEvent("eth0", True))
    assert handed == [LinkEvent("eth0", False), LinkEvent("eth0", True)]


async def read_changes(
    shared: _SharedLinks, monitor: FakeLinkMonitor, changes: list[bool], until: Callable[[], bool]
) -> None:
    """Run the hub's reading task while eth0 goes through ``changes``, until ``until()``."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(shared.read)
            for up in changes:
                monitor.set("eth0", up)
            while not until():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()


async def test_a_handler_that_raises_keeps_no_event_from_the_other_views() -> None:
    monitor = FakeLinkMonitor()
    shared = _SharedLinks(monitor)
    broken, working = _LinkView(shared), _LinkView(shared)
    handed: list[LinkEvent | TransportError] = []

    def fail(item: LinkEvent | TransportError) -> None:
        raise RuntimeError("a bug in one subscriber")

    broken.attach(fail)
    working.attach(handed.append)
    await read_changes(shared, monitor, [False, True], until=lambda: len(handed) == 2)
    assert handed == [LinkEvent("eth0", False), LinkEvent("eth0", True)]


async def test_a_closed_view_is_handed_nothing_more() -> None:
    monitor = FakeLinkMonitor()
    shared = _SharedLinks(monitor)
    view, other = _LinkView(shared), _LinkView(shared)
    handed: list[LinkEvent | TransportError] = []
    seen: list[LinkEvent | TransportError] = []
    view.attach(handed.append)
    other.attach(seen.append)
    await view.aclose()
    await read_changes(shared, monitor, [False], until=lambda: bool(seen))
    assert handed == []
