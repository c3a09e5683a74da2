"""The runtime's unbounded mailbox."""

from __future__ import annotations

import contextlib

import pytest

from vrrpkit.runtime.mailbox import Mailbox

pytestmark = pytest.mark.anyio


async def test_items_not_yet_yielded_when_an_iteration_closes_early_stay_queued() -> None:
    mailbox: Mailbox[int] = Mailbox(10)
    for item in (1, 2, 3):
        mailbox.put(item)
    async with contextlib.aclosing(mailbox.iterate()) as items:
        assert await items.__anext__() == 1
    mailbox.close()
    assert [item async for item in mailbox.iterate()] == [2, 3]
