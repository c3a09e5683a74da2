"""Timeouts on the runtime's clock: the fake clock's time in tests, real time otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import anyio

from vrrpkit.transports.base import Clock

__all__ = ["move_on_after"]


@contextlib.contextmanager
def move_on_after(clock: Clock | None, seconds: float | None) -> Iterator[anyio.CancelScope]:
    """``anyio.move_on_after(seconds)``, counted on ``clock`` where it can time callbacks.

    A clock with ``call_at(deadline, callback)`` (:class:`vrrpkit.testing.FakeClock`) times
    the scope too, so a check or callback timeout runs out when the test's clock says so,
    or after ``seconds`` of real time if that comes first (a test no longer advancing its
    clock, in its ``async with`` exit say, still sees a hung callback end). Any other clock
    (the real one) is on the event loop's time, which anyio's scope uses.
    """
    call_at: Callable[[float, Callable[[], object]], Any] | None = getattr(clock, "call_at", None)
    if seconds is None or clock is None or not callable(call_at):
        with anyio.move_on_after(seconds) as scope:
            yield scope
        return
    with anyio.CancelScope(deadline=anyio.current_time() + seconds) as scope:
        timer = call_at(clock.now() + seconds, scope.cancel)
        try:
            yield scope
        finally:
            timer.cancel()
