"""The real clock: anyio's monotonic event-loop time."""

from __future__ import annotations

import anyio

__all__ = ["AnyioClock"]


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
