"""The real clock follows the event loop's time, including trio's virtual MockClock."""

from __future__ import annotations

import anyio
import anyio.lowlevel
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


async def test_alarms_due_together_on_a_timer_queue_ring_in_one_wake_up() -> None:
    import time

    import anyio

    from vrrpkit.transports.clock import TimerQueue

    queue = TimerQueue.create()
    assert queue is not None
    order: list[str] = []
    alarms = [queue.alarm() for _ in range(3)]
    for index, alarm in enumerate(alarms):
        alarm.attach(lambda index=index: order.append(f"{index}@{queue._armed}"))
    deadline = time.monotonic() + 0.02
    for alarm in alarms:
        alarm.set(deadline)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    queue.close()
    # All three rang in the same dispatch (the timer is re-armed only after it), in order.
    assert order == ["0@-inf", "1@-inf", "2@-inf"]


async def test_an_earlier_deadline_replaces_a_later_one() -> None:
    import time

    import anyio

    from vrrpkit.transports.clock import TimerQueue

    queue = TimerQueue.create()
    assert queue is not None
    alarm = queue.alarm()
    rang: list[float] = []
    alarm.attach(lambda: rang.append(time.monotonic()))
    start = time.monotonic()
    alarm.set(start + 10.0)
    alarm.set(start + 0.02)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    queue.close()
    assert len(rang) == 1 and start + 0.02 <= rang[0] < start + 1.0


async def test_a_queue_left_with_nothing_to_ring_does_not_wake_the_loop_again() -> None:
    import select
    import time

    import anyio

    from vrrpkit.transports.clock import TimerQueue

    queue = TimerQueue.create()
    assert queue is not None
    alarm = queue.alarm()
    rang: list[bool] = []
    alarm.attach(lambda: rang.append(True))
    alarm.set(time.monotonic() + 0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await anyio.sleep(0.05)
        # The expiry is never read: setting the timer again is what clears its readiness.
        assert select.select([queue._fd], [], [], 0)[0] == []
        tg.cancel_scope.cancel()
    queue.close()
    assert rang == [True]


async def test_an_alarm_that_came_due_before_it_was_attached_rings_on_attach() -> None:
    import time

    import anyio

    from vrrpkit.transports.clock import TimerQueue

    queue = TimerQueue.create()
    assert queue is not None
    alarm = queue.alarm()
    alarm.set(time.monotonic())
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await anyio.sleep(0.02)
        rang: list[bool] = []
        alarm.attach(lambda: rang.append(True))
        assert rang == [True]
        tg.cancel_scope.cancel()
    queue.close()


async def test_sleeping_alarm_rings_at_its_deadline_on_a_fake_clock() -> None:
    import anyio

    from vrrpkit.testing.fakes import FakeClock
    from vrrpkit.transports.clock import SleepingAlarm

    clock = FakeClock()
    alarm = SleepingAlarm(clock)
    rang: list[float] = []

    def ring() -> None:
        rang.append(clock.now())
        if len(rang) < 3:
            alarm.set(clock.now() + 1.0)

    alarm.set(0.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(alarm.run, ring)
        await clock.advance(1.0)
        alarm.set(1.25)  # earlier than the 1.5 it sleeps toward
        await clock.advance(10.0)
        tg.cancel_scope.cancel()
    assert rang == [0.5, 1.25, 2.25]


async def test_a_fake_clock_lets_a_task_its_last_child_wakes_run_before_time_moves_on() -> None:
    """Every woken task runs until it blocks again, also one woken through a callback (a
    task group's host, when its last child ends)."""
    from vrrpkit.testing.fakes import FakeClock

    clock = FakeClock()
    seen: list[float] = []

    async def child() -> None:
        await clock.sleep_until(1)
        await anyio.lowlevel.checkpoint()

    async def host() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        seen.append(clock.now())
        await clock.sleep_until(clock.now() + 1)
        seen.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(host)
        await clock.advance(5)
        tg.cancel_scope.cancel()
    assert seen == [1, 2]
