"""Telling a real cancellation from a cancellation exception that user code raised itself."""

from __future__ import annotations

import asyncio

import anyio


def is_stray_cancellation(exc: BaseException, scope: anyio.CancelScope) -> bool:
    """Whether ``exc``, a cancellation exception caught inside ``scope``, came from user code.

    Under asyncio a callback or check can raise ``asyncio.CancelledError`` without anyone
    cancelling it (it awaited a future it cancelled itself, or a library leaked one). Let
    through, that exception would end the instance's task as if the instance were being
    stopped: silently, without a priority-0 advert. It is a real cancellation when ``scope``
    ran out (its own timeout) or a cancel request is pending on the task (``Task.cancelling``,
    Python 3.11+). Trio's ``Cancelled`` cannot be made by user code; on Python 3.10 the
    request count is unknown: both count as real.
    """
    if scope.cancel_called or not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return True  # no asyncio loop (trio): nothing of ours raises asyncio's exception
    cancelling = getattr(task, "cancelling", None)
    return callable(cancelling) and cancelling() == 0
