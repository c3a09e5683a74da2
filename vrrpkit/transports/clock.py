"""The real clocks: the event loop's time, and a precise monotonic clock on timerfd."""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import logging
import math
import os
import time
from collections.abc import Callable

import anyio
import anyio.lowlevel

from vrrpkit.transports.base import Alarm, Clock
from vrrpkit.transports.readiness import ReadableWatch

__all__ = ["AnyioClock", "PreciseClock", "QueuedAlarm", "SleepingAlarm", "TimerQueue", "alarm_for"]

logger = logging.getLogger(__name__)

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class AnyioClock:
    """:class:`~vrrpkit.transports.base.Clock` reading the running event loop's clock.

    It must be used inside a running event loop. Under trio it follows the loop's clock, so a
    ``trio.testing.MockClock`` drives it too.
    """

    def now(self) -> float:
        """Return the event loop's current time."""
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the event loop's time reaches ``deadline``."""
        await anyio.sleep_until(deadline)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _set_absolute(spec: _Itimerspec, deadline: float) -> None:
    """Fill ``spec`` for a one-shot expiry at ``deadline`` (CLOCK_MONOTONIC seconds)."""
    seconds = int(deadline)
    spec.it_value.tv_sec = seconds
    spec.it_value.tv_nsec = int((deadline - seconds) * 1e9)


def _libc() -> ctypes.CDLL | None:
    try:
        # The running interpreter already links libc: its symbols need no library search
        # (ctypes.util would import shutil, subprocess, tempfile, bz2 and lzma for it).
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create  # noqa: B018 - probe that the symbol exists
        return libc
    except (OSError, AttributeError):
        return None


def alarm_for(clock: Clock) -> Alarm:
    """The clock's own :class:`Alarm` if it offers one (``clock.alarm()``), else a sleeping one."""
    factory = getattr(clock, "alarm", None)
    if callable(factory):
        alarm: Alarm = factory()
        return alarm
    return SleepingAlarm(clock)


class SleepingAlarm:
    """:class:`~vrrpkit.transports.base.Alarm` for any clock: a task in ``clock.sleep_until``.

    Setting an earlier deadline cancels the sleep and starts a new one.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._deadline: float | None = None
        self._scope: anyio.CancelScope | None = None
        self._sleeping_until: float | None = None

    def set(self, deadline: float | None) -> None:
        """Ring at ``deadline``; wakes the sleeping task only if that changes its target."""
        self._deadline = deadline
        scope = self._scope
        if scope is not None and deadline != self._sleeping_until:
            scope.cancel()

    async def run(self, callback: Callable[[], None]) -> None:
        """Sleep toward the deadline set and call ``callback()`` on reaching it, forever."""
        while True:
            deadline = self._deadline
            with anyio.CancelScope() as scope:
                self._scope, self._sleeping_until = scope, deadline
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await self._clock.sleep_until(deadline)
            self._scope = self._sleeping_until = None
            if scope.cancelled_caught:
                continue
            if self._deadline == deadline:
                self._deadline = None
            try:
                callback()
            except Exception:
                logger.exception("alarm callback failed (carrying on)")

    def close(self) -> None:
        """Nothing to release."""


class TimerQueue:
    """Many alarms on one timerfd: every alarm due at a wake-up rings in that wake-up.

    keepalived runs all its instances from one timer; so does a queue shared by the
    instances of a :class:`~vrrpkit.TransportHub`. Instances started together with the same
    interval then send their adverts in one wake-up of the process instead of one each,
    which is most of the cost of an advert (a process waking from idle runs on cold caches).
    """

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self._fd = fd
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._settime = libc.timerfd_settime
        self._heap: list[tuple[float, int, QueuedAlarm]] = []
        self._seq = 0
        self._armed: float | None = None
        self._watch: ReadableWatch | None = None

    @classmethod
    def create(cls) -> TimerQueue | None:
        """A queue on a new timerfd, or None where timerfd is unavailable."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        return None if fd < 0 else cls(libc, fd)

    def alarm(self) -> QueuedAlarm:
        """A new alarm on this queue (it rings once :meth:`run` is running)."""
        return QueuedAlarm(self)

    def _schedule(self, alarm: QueuedAlarm, deadline: float) -> int:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, alarm))
        if self._armed is None or deadline < self._armed:
            self._arm(deadline)
        return self._seq

    def _arm(self, deadline: float | None) -> None:
        spec = self._spec
        if deadline is None:
            spec.it_value.tv_sec = spec.it_value.tv_nsec = 0
        else:
            # A zero it_value disarms: a deadline already due still has to ring.
            deadline = max(deadline, 1e-9)
            _set_absolute(spec, deadline)
        self._armed = deadline
        if self._fd >= 0 and self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ref, None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def _expired(self) -> None:
        # No read() of the expiry count: setting the timerfd again (always done below) clears
        # its readiness, one system call less per wake-up. While ringing, alarms re-arm
        # through _schedule; the timerfd is set once, after.
        self._armed = -math.inf
        heap = self._heap
        try:
            # Time is read again after each ring: an alarm that came due while the ones
            # before it ran rings in this same wake-up.
            while heap and heap[0][0] <= time.monotonic():
                _deadline, seq, alarm = heapq.heappop(heap)
                if alarm._seq == seq:
                    alarm._ring()
            while heap and heap[0][2]._seq != heap[0][1]:
                heapq.heappop(heap)  # superseded by a later set()
        finally:
            self._armed = None
            self._arm(heap[0][0] if heap else None)

    async def run(self) -> None:
        """Ring the alarms until cancelled."""
        self._watch = ReadableWatch(self._fd, self._expired, name="timerfd")
        try:
            await self._watch.run()
        finally:
            self._watch = None

    def close(self) -> None:
        """Close the timerfd."""
        if self._watch is not None:
            self._watch.stop()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)


class QueuedAlarm:
    """:class:`~vrrpkit.transports.base.Alarm` on a :class:`TimerQueue`.

    Arming costs a heap push (and a ``timerfd_settime`` only if it is the queue's earliest
    deadline); ringing calls the callback straight from the loop's readiness dispatch.
    """

    def __init__(self, queue: TimerQueue, *, owns_queue: bool = False) -> None:
        self._queue = queue
        self._owns_queue = owns_queue
        self._seq = 0
        self._callback: Callable[[], None] | None = None
        self._missed = False

    def set(self, deadline: float | None) -> None:
        """Ring at ``deadline`` on CLOCK_MONOTONIC instead of any earlier setting."""
        if deadline is None:
            self._seq = 0
        else:
            self._seq = self._queue._schedule(self, deadline)

    def _ring(self) -> None:
        self._seq = 0
        callback = self._callback
        if callback is None:
            self._missed = True  # rang before run() started: ring as it does
            return
        try:
            callback()
        except Exception:
            logger.exception("alarm callback failed (carrying on)")

    def attach(self, callback: Callable[[], None]) -> bool:
        """Ring ``callback()`` from the shared queue's task, until :meth:`close`.

        Returns False for an alarm with a queue of its own, which needs :meth:`run`.
        """
        if self._owns_queue:
            return False
        self._callback = callback
        if self._missed:
            self._missed = False
            self._ring()
        return True

    async def run(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time the alarm rings, until cancelled."""
        self._callback = callback
        try:
            if self._missed:
                self._missed = False
                self._ring()
            if self._owns_queue:
                await self._queue.run()
            else:
                await anyio.sleep_forever()
        finally:
            self._callback = None

    def close(self) -> None:
        """Disarm and detach; close the timerfd if this alarm has a queue of its own."""
        self._seq = 0
        self._callback = None
        if self._owns_queue:
            self._queue.close()


class PreciseClock:
    """:class:`~vrrpkit.transports.base.Clock` on CLOCK_MONOTONIC with timerfd wake-ups.

    asyncio and trio wait in epoll with whole-millisecond timeouts, so their sleeps end up to
    about a millisecond late. A timerfd armed for the absolute deadline makes the kernel wake
    the loop at the deadline itself, as keepalived's timer thread does; failover then lands
    within a fraction of a millisecond of the RFC formula. Falls back to the event loop's
    sleep where timerfd is unavailable.
    """

    def __init__(self, timers: TimerQueue | None = None) -> None:
        #: Alarms come from this shared queue when given (a hub's), so they ring together.
        self._timers = timers
        self._libc = _libc()
        # One idle timerfd is kept for the next sleep: creating and closing one per advert
        # costs two system calls for nothing.
        self._idle: int | None = None
        if self._libc is None:
            logger.info("timerfd unavailable: timers use the event loop's resolution")

    def now(self) -> float:
        """Return CLOCK_MONOTONIC in seconds."""
        return time.monotonic()

    def alarm(self) -> Alarm:
        """An alarm on the shared :class:`TimerQueue` given, else on a timerfd of its own.

        Without timerfd, a :class:`SleepingAlarm`.
        """
        if self._timers is not None:
            return self._timers.alarm()
        queue = TimerQueue.create()
        if queue is None:
            return SleepingAlarm(self)
        return QueuedAlarm(queue, owns_queue=True)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until CLOCK_MONOTONIC reaches ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            await anyio.lowlevel.checkpoint()
            return
        libc = self._libc
        fd = self._idle
        self._idle = None
        if fd is None and libc is not None:
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if libc is None or fd is None or fd < 0:
            await anyio.sleep(remaining)
            return
        spec = _Itimerspec()
        _set_absolute(spec, deadline)
        if libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            os.close(fd)
            await anyio.sleep(remaining)
            return
        finished = False
        try:
            while time.monotonic() < deadline:
                await anyio.wait_readable(fd)
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 8)
            finished = True
        finally:
            if finished and self._idle is None:
                self._idle = fd  # expired and read: safe to re-arm next time
            else:
                os.close(fd)  # cancelled while armed, or another one is already idle

    def __del__(self) -> None:
        if self._idle is not None:
            with contextlib.suppress(OSError):
                os.close(self._idle)
            self._idle = None
