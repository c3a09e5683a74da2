"""Non-blocking socket helpers shared by the raw and packet socket transports."""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from collections.abc import Callable

import anyio
import anyio.lowlevel

from vrrpkit.transports.base import TransportError

__all__ = ["close_socket", "interface_index", "send_nonblocking"]

_SIOCGIFINDEX = 0x8933


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


def interface_index(sock: socket.socket, ifname: str) -> int:
    """Return the index of ``ifname`` in the network namespace of ``sock``."""
    name = ifname.encode()
    if not name or len(name) >= 16 or b"\0" in name:
        raise TransportError(f"invalid interface name {ifname!r}", errno=errno.EINVAL)
    try:
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFINDEX, struct.pack("16si12x", name, 0))
    except OSError as exc:
        raise TransportError(f"no interface {ifname!r}: {exc}", errno=exc.errno) from exc
    index: int = struct.unpack_from("16si", reply)[1]
    return index
