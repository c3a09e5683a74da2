"""ReadableWatch: call a plain function each time a file descriptor becomes readable.

The protocol's hot paths (an advert arrives, a timer expires) are a few microseconds of
synchronous work; waking a task for each of them costs many times that (a future, a cancel
scope, an epoll registration made and undone per wait). Under asyncio the watch registers
the descriptor once with ``loop.add_reader`` and the loop calls the function directly; under
any other anyio backend (trio) one task waits with ``anyio.wait_readable`` in a loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio

__all__ = ["ReadableWatch"]

logger = logging.getLogger(__name__)


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None  # trio, or another backend without an asyncio loop in this thread


class ReadableWatch:
    """Calls ``callback()`` whenever ``fd`` is readable, from :meth:`run` until :meth:`stop`.

    The callback must not block; it should read what is there (a callback that leaves the
    descriptor readable is simply called again). An exception it raises is logged and the
    watch goes on. Call :meth:`stop` before closing the descriptor.
    """

    def __init__(self, fd: int, callback: Callable[[], None], *, name: str = "") -> None:
        self._fd = fd
        self._callback = callback
        self._name = name or f"fd {fd}"
        self._stopped = False
        self._paused = False
        self._resumed: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Exceptions the callback raised (logged, never propagated).
        self.errors = 0

    def _fire(self) -> None:
        try:
            self._callback()
        except Exception:
            self.errors += 1
            logger.exception("%s: readiness callback failed (carrying on)", self._name)

    async def run(self) -> None:
        """Watch until :meth:`stop` is called or the calling task is cancelled."""
        if self._stopped:
            await anyio.lowlevel.checkpoint()
            return
        loop = _asyncio_loop()
        if loop is not None:
            try:
                loop.add_reader(self._fd, self._fire)
            except NotImplementedError:
                loop = None
        if loop is None:
            await self._run_waiting()
            return
        self._loop = loop
        self._done = anyio.Event()
        if self._paused:
            loop.remove_reader(self._fd)
        try:
            await self._done.wait()
        finally:
            self._detach()

    async def _run_waiting(self) -> None:
        while not self._stopped:
            if self._paused:
                self._resumed = anyio.Event()
                await self._resumed.wait()
                continue
            try:
                await anyio.wait_readable(self._fd)
            except anyio.ClosedResourceError:
                return
            if not self._stopped and not self._paused:
                self._fire()

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)

    def pause(self) -> None:
        """Stop calling the callback until :meth:`resume` (the descriptor stays open)."""
        if self._paused or self._stopped:
            return
        self._paused = True
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        # On trio the waiting task finishes its wait, sees the pause and waits for resume().

    def resume(self) -> None:
        """Call the callback again whenever the descriptor is readable."""
        if not self._paused:
            return
        self._paused = False
        if self._stopped:
            return
        if self._loop is not None:
            self._loop.add_reader(self._fd, self._fire)
        elif self._resumed is not None:
            self._resumed.set()

    def stop(self) -> None:
        """Stop watching now (before the descriptor is closed); :meth:`run` returns."""
        if self._stopped:
            return
        self._stopped = True
        if self._resumed is not None:
            self._resumed.set()
        if self._loop is not None:
            self._detach()
            assert self._done is not None
            self._done.set()
        else:
            # A task in anyio.wait_readable gets ClosedResourceError and returns.
            anyio.notify_closing(self._fd)
