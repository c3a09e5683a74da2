"""``async with`` for services that otherwise run as ``await tg.start(service.run)``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc

__all__ = ["Hosted"]

H = TypeVar("H", bound="Hosted")


class Hosted:
    """Runs ``self.run`` in a task group of its own for the duration of an ``async with``.

    Entering waits until ``run`` reports it has started. Leaving, for any reason (an exception
    in the block included), calls ``stop()`` and waits for ``run`` to finish its graceful
    shutdown; the block's own exception, if any, then propagates unchanged.
    """

    _hosting: anyio.abc.TaskGroup | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the service until stopped (provided by the subclass)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the service to stop gracefully (provided by the subclass)."""
        raise NotImplementedError

    async def __aenter__(self: H) -> H:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self.run)
        except BaseException as exc:
            failure = exc
            try:
                await tg.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseException as group:
                # The task group reports run's failure again, wrapped in an exception group:
                # raise it once, as itself (a failed start is one error, not a group of them).
                split = getattr(group, "split", None)
                if split is None or split(lambda error: error is failure)[1] is not None:
                    raise
            raise
        self._hosting = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        tg, self._hosting = self._hosting, None
        assert tg is not None
        await tg.__aexit__(None, None, None)
