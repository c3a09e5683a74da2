"""Non-blocking socket helpers shared by the raw and packet socket transports."""

from __future__ import annotations

import socket
from collections.abc import Callable

import anyio
import anyio.lowlevel

from vrrpkit.transports.base import TransportError

__all__ = ["close_socket", "send_nonblocking"]


async def send_nonblocking(sock: socket.socket, send: Callable[[], object], what: str) -> None:
    """Call ``send()`` until the kernel takes the data; an OSError becomes TransportError."""
    while True:
        try:
            send()
            break
        except BlockingIOError:
            await anyio.wait_writable(sock)
        except OSError as exc:
            raise TransportError(f"{what}: {exc}", errno=exc.errno) from exc
    await anyio.lowlevel.cancel_shielded_checkpoint()


async def close_socket(sock: socket.socket) -> None:
    """Close ``sock``, first waking any task waiting on it (anyio.notify_closing)."""
    anyio.notify_closing(sock)
    sock.close()
    await anyio.lowlevel.checkpoint()
