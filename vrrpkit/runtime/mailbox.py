"""A small single-reader mailbox used by shared transports and the fakes."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["Mailbox"]

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded queue that one task drains in batches; closing it wakes the waiter.

    Unlike a memory object stream it needs no closing to be garbage-collected quietly, and a
    full mailbox drops new items (as a kernel socket buffer does) instead of blocking.
    """

    def __init__(self, limit: int) -> None:
        # A list, not a deque: items are always taken all at once, and an empty deque
        # costs ten times the memory (one per instance and transport adds up).
        self._items: list[T] = []
        self._limit = limit
        self._waiter: anyio.Event | None = None
        self.closed = False

    def put(self, item: T) -> None:
        """Queue ``item`` (dropped if closed or full)."""
        if self.closed or len(self._items) >= self._limit:
            return  # a full receive buffer drops, as a kernel socket does
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        """Refuse new items; a waiting reader gets ClosedResourceError once drained."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    async def get_all(self) -> list[T]:
        """Wait for at least one item, then return and remove every queued item."""
        while not self._items:
            if self.closed:
                raise anyio.ClosedResourceError
            self._waiter = anyio.Event()
            await self._waiter.wait()
        return self.take_all()

    def take_all(self) -> list[T]:
        """Remove and return every queued item, without waiting."""
        items, self._items = self._items, []
        return items

    async def wait_closed(self) -> None:
        """Wait until the mailbox is closed (items put meanwhile stay queued)."""
        if self.closed:
            await anyio.lowlevel.checkpoint()
        while not self.closed:
            self._waiter = anyio.Event()
            await self._waiter.wait()

    async def iterate(self) -> AsyncGenerator[T, None]:
        """Yield every item as it arrives, until the mailbox is closed and drained.

        Items not yet yielded when the iteration is closed early stay queued for the next.
        """
        while True:
            try:
                items = await self.get_all()
            except anyio.ClosedResourceError:
                return
            for index, item in enumerate(items):
                try:
                    yield item
                except BaseException:
                    self._items[:0] = items[index + 1 :]
                    raise
