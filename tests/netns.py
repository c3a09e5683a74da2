"""Network-namespace labs for the transport tests.

A lab is a few "hosts", each a network namespace whose ``eth0`` is one end of a veth pair;
the other ends sit on a bridge inside a namespace of their own, so no traffic and no
interface ever touches the namespace the tests run in. Only documentation addresses are
used (192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32, fe80::/64).

Namespace names start with a per-process prefix (``vk<pid hex>-``) so parallel runs never
collide and leftovers can be found and removed.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from vrrpkit.testing.netlab import LabError as LabError
from vrrpkit.testing.netlab import (
    LabHost,
    NetLab,
    delete_namespaces,
    lab_unavailable_reason,
    list_namespaces,
    remove_stale_namespaces,
    run_ip,
)
from vrrpkit.transports.netns import run_in_netns
from vrrpkit.transports.rawsocket import RawAdvertSocket

PREFIX = f"vk{os.getpid():x}-"
_counter = itertools.count()
_counter_lock = threading.Lock()
_created: set[str] = set()
_used = False


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip [-n netns] args`` and return its stdout."""
    return run_ip(*args, netns=netns)


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Return why namespace tests cannot run here, or None if they can."""
    reason = lab_unavailable_reason(probe=_new_name("probe"))
    if reason is None:
        remove_stale_namespaces("vk", PREFIX)
    return reason


def _new_name(role: str) -> str:
    global _used
    with _counter_lock:
        _used = True
        name = f"{PREFIX}{next(_counter)}-{role}"
        _created.add(name)
    return name


def leftovers() -> list[str]:
    """Return the namespaces of this process that still exist."""
    return [name for name in list_namespaces() if name.startswith(PREFIX)]


def remove_leftovers() -> None:
    """Delete every namespace this process created and did not delete yet."""
    if _used:
        delete_namespaces(sorted(set(_created) | set(leftovers())))


Host = LabHost
Lab = NetLab


def create_lab(count: int = 2) -> NetLab:
    """Build a lab of ``count`` hosts numbered 1..count; on failure nothing is left behind."""
    lab = NetLab(count, prefix=_new_name("lab"))
    _created.update(lab.namespaces)
    lab.create()
    return lab


ETH_P_ALL = 0x0003


def open_capture(host: Host, ethertype: int = ETH_P_ALL) -> socket.socket:
    """A non-blocking AF_PACKET socket receiving the frames on ``host``'s ``eth0``."""

    def create() -> socket.socket:
        sock = socket.socket(
            socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.htons(ethertype)
        )
        sock.bind((host.ifname, ethertype))
        return sock

    return run_in_netns(host.netns, create)


async def next_frame(sock: socket.socket, predicate: Callable[[bytes], bool]) -> bytes:
    """Wait for the next frame on a capture socket that satisfies ``predicate``."""
    while True:
        try:
            frame = sock.recv(65535)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        if predicate(frame):
            return frame


@asynccontextmanager
async def opened(host: Host, ip_version: int, **options: Any) -> AsyncIterator[RawAdvertSocket]:
    """A RawAdvertSocket on ``host``'s eth0, closed on exit."""
    sock = await RawAdvertSocket.open(host.ifname, ip_version, netns=host.netns, **options)
    try:
        yield sock
    finally:
        await sock.aclose()
