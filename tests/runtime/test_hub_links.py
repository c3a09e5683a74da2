"""A TransportHub's shared link monitor: one failure must not end the hub or its instances."""

from __future__ import annotations

import contextlib

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
