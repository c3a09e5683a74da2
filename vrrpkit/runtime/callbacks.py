"""Ordered, awaited, isolated delivery of state changes to Python callbacks.

keepalived forks notify scripts and forgets them, so they may run concurrently and finish out
of order. Here each change is delivered only after every callback of the previous one has
returned (or timed out); a callback that raises is logged and counted, and never reaches the
protocol.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import anyio

from vrrpkit.core.errors import ConfigError
from vrrpkit.core.states import State
from vrrpkit.runtime.cancellation import is_stray_cancellation
from vrrpkit.runtime.timeouts import move_on_after
from vrrpkit.transports.base import Clock

__all__ = ["Callback", "CallbackRegistry", "StateCallbacks", "timeout_seconds"]

logger = logging.getLogger("vrrpkit.callbacks")

Callback: TypeAlias = Callable[[Any], "Awaitable[object] | object"]
C = TypeVar("C", bound=Callback)


def timeout_seconds(name: str, value: object) -> float:
    """``value`` as a timeout: a finite number of seconds > 0, else ConfigError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < math.inf  # NaN too
    ):
        raise ConfigError(f"{name} must be finite seconds > 0, got {value!r}")
    return float(value)


class CallbackRegistry:
    """Callbacks for every change and for entering one state, called in keepalived's order.

    keepalived runs the state's own notify before the generic one; likewise the per-state
    callbacks run before the ``on_transition`` ones. They run on their own task: a slow async
    callback delays the next callback, never the protocol's timers, and is cancelled after the
    timeout. Sync callbacks run on the event loop and must be quick; put blocking work in an
    async callback with ``await anyio.to_thread.run_sync(...)``.
    """

    def __init__(self, *, timeout: float | None, owner: str) -> None:
        self._timeout = None if timeout is None else timeout_seconds("callback_timeout", timeout)
        self._owner = owner
        self._any: list[Callback] = []
        self._by_state: dict[State, list[Callback]] = {}
        self._split_brain: list[Callback] = []
        #: Callbacks that raised.
        self.errors = 0
        #: Callbacks cancelled after the timeout.
        self.timeouts = 0
        #: The clock the timeout counts on (the owner's, once it runs; None: real time).
        self.clock: Clock | None = None

    def add(self, callback: C, state: State | None = None) -> C:
        """Register ``callback`` for every change (``state`` None) or for entering ``state``."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        if state is None:
            self._any.append(callback)
        else:
            self._by_state.setdefault(state, []).append(callback)
        return callback

    def add_split_brain(self, callback: C) -> C:
        """Register ``callback`` for :class:`vrrpkit.SplitBrain` reports."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._split_brain.append(callback)
        return callback

    def __bool__(self) -> bool:
        return bool(self._any or self._by_state or self._split_brain)

    async def deliver(self, event: Any, new: State) -> None:
        """Call every callback for ``event`` (entering ``new``), one after another."""
        for callback in (*self._by_state.get(new, ()), *self._any):
            await self._call(callback, event)

    async def deliver_split_brain(self, event: Any) -> None:
        """Call every split-brain callback for ``event``, one after another."""
        for callback in self._split_brain:
            await self._call(callback, event)

    async def _call(self, callback: Callback, event: Any) -> None:
        name = getattr(callback, "__qualname__", repr(callback))
        with move_on_after(self.clock, self._timeout) as scope:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.errors += 1
                logger.exception("%s: callback %s raised on %s", self._owner, name, event)
            except anyio.get_cancelled_exc_class() as exc:
                if not is_stray_cancellation(exc, scope):
                    raise
                self.errors += 1
                logger.error(
                    "%s: callback %s raised CancelledError on %s without being cancelled",
                    self._owner,
                    name,
                    event,
                )
        if scope.cancelled_caught:
            self.timeouts += 1
            logger.error(
                "%s: callback %s timed out after %s s on %s",
                self._owner,
                name,
                self._timeout,
                event,
            )


class StateCallbacks:
    """The callback registration methods shared by :class:`Instance` and :class:`Group`.

    Each receives the change (:class:`vrrpkit.StateChanged` or
    :class:`vrrpkit.GroupStateChanged`) and may be used as a decorator.
    """

    _callbacks: CallbackRegistry

    def on_transition(self, callback: C) -> C:
        """Call ``callback(change)`` on every state change (sync or async)."""
        return self._callbacks.add(callback)

    def on_master(self, callback: C) -> C:
        """Call ``callback(change)`` on becoming MASTER (after the VIPs are up)."""
        return self._callbacks.add(callback, State.MASTER)

    def on_backup(self, callback: C) -> C:
        """Call ``callback(change)`` on becoming BACKUP (after the VIPs are gone)."""
        return self._callbacks.add(callback, State.BACKUP)

    def on_fault(self, callback: C) -> C:
        """Call ``callback(change)`` on entering FAULT (after the VIPs are gone)."""
        return self._callbacks.add(callback, State.FAULT)

    def on_stop(self, callback: C) -> C:
        """Call ``callback(change)`` on stopping (after priority 0 and VIP removal)."""
        return self._callbacks.add(callback, State.STOPPED)
