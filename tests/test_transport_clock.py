"""The real clock follows the event loop's time, including trio's virtual MockClock."""

from __future__ import annotations

import pytest
import trio.testing

from vrrpkit.transports import AnyioClock

pytestmark = pytest.mark.anyio


async def test_sleep_until_reaches_the_deadline() -> None:
    clock = AnyioClock()
    start = clock.now()
    await clock.sleep_until(start + 0.01)
    assert clock.now() >= start + 0.01
    await clock.sleep_until(start)  # a deadline in the past returns at once


@pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]
)
async def test_virtual_time_under_trio_mock_clock() -> None:
    clock = AnyioClock()
    start = clock.now()
    await clock.sleep_until(start + 3600)
    assert clock.now() == start + 3600


async def test_precise_clock_sleeps_until_the_monotonic_deadline() -> None:
    import time

    from vrrpkit.transports import PreciseClock

    clock = PreciseClock()
    start = clock.now()
    assert abs(start - time.monotonic()) < 1.0
    await clock.sleep_until(start + 0.02)
    assert clock.now() >= start + 0.02
    await clock.sleep_until(start)  # a deadline in the past returns at once


async def test_precise_clock_sleep_can_be_cancelled() -> None:
    import anyio

    from vrrpkit.transports import PreciseClock

    clock = PreciseClock()
    with anyio.move_on_after(0.01) as scope:
        await clock.sleep_until(clock.now() + 3600)
    assert scope.cancelled_caught
