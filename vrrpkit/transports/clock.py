"""The real clocks: the event loop's time, and a precise monotonic clock on timerfd."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import time

import anyio
import anyio.lowlevel

__all__ = ["AnyioClock", "PreciseClock"]

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


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.timerfd_create  # noqa: B018 - probe that the symbol exists
        return libc
    except (OSError, AttributeError):
        return None


class PreciseClock:
    """:class:`~vrrpkit.transports.base.Clock` on CLOCK_MONOTONIC with timerfd wake-ups.

    asyncio and trio wait in epoll with whole-millisecond timeouts, so their sleeps end up to
    about a millisecond late. A timerfd armed for the absolute deadline makes the kernel wake
    the loop at the deadline itself, as keepalived's timer thread does; failover then lands
    within a fraction of a millisecond of the RFC formula. Falls back to the event loop's
    sleep where timerfd is unavailable.
    """

    def __init__(self) -> None:
        self._libc = _libc()
        # One idle timerfd is kept for the next sleep: creating and closing one per advert
        # costs two system calls for nothing.
        self._idle: int | None = None
        if self._libc is None:
            logger.info("timerfd unavailable: timers use the event loop's resolution")

    def now(self) -> float:
        """Return CLOCK_MONOTONIC in seconds."""
        return time.monotonic()

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
        seconds = int(deadline)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, int((deadline - seconds) * 1e9)))
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
