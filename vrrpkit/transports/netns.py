"""Run setup code inside a named network namespace, within this process.

A socket belongs to the namespace of the thread that created it and keeps it for life, so
the transports create their sockets on a short-lived thread that has joined the namespace
(``setns`` changes only the calling thread's network namespace). The thread then exits, and
the rest of the program, including the event loop, never changes namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.lowlevel
import anyio.to_thread

from vrrpkit.transports.base import TransportError

__all__ = ["NETNS_RUN_DIR", "call_in_netns", "run_in_netns"]

T = TypeVar("T")

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def run_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Call ``fn()`` inside network namespace ``netns`` and return its result (blocking).

    ``netns`` is a name under ``/run/netns`` (as ``ip netns`` uses) or a path to a namespace
    file; None calls ``fn`` directly. Exceptions from ``fn`` propagate; failing to enter the
    namespace raises :class:`TransportError`.
    """
    if netns is None:
        return fn()
    path = _netns_path(netns)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            failure.append(
                TransportError(f"cannot open network namespace {netns!r}: {exc}", errno=exc.errno)
            )
            return
        try:
            _setns(fd)
        except OSError as exc:
            failure.append(
                TransportError(f"cannot enter network namespace {netns!r}: {exc}", errno=exc.errno)
            )
            return
        finally:
            os.close(fd)
        try:
            outcome.append(fn())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"vrrpkit-netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def call_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Like :func:`run_in_netns`, without blocking the event loop.

    In our own namespace ``fn`` (socket setup: the kernel answers at once) runs right here:
    a worker thread would cost more than it saves, and keep its own malloc arena.
    """
    if netns is None:
        await anyio.lowlevel.checkpoint()
        return fn()
    return await anyio.to_thread.run_sync(run_in_netns, netns, fn)
