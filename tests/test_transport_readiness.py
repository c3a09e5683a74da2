"""ReadableWatch calls a plain function whenever a descriptor is readable, on both backends."""

from __future__ import annotations

import socket

import anyio
import pytest

from vrrpkit.transports.readiness import ReadableWatch

pytestmark = pytest.mark.anyio


async def test_callback_runs_for_each_arrival_until_stopped() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    received: list[bytes] = []
    watch = ReadableWatch(left.fileno(), lambda: received.append(left.recv(100)))
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run)
        for chunk in (b"one", b"two"):
            right.send(chunk)
            with anyio.fail_after(5):
                while len(received) < (1 if chunk == b"one" else 2):
                    await anyio.sleep(0.001)
        watch.stop()  # run() returns: the task group can finish on its own
    left.close()
    right.close()
    assert received == [b"one", b"two"]


async def test_a_failing_callback_is_counted_and_the_watch_goes_on() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    calls: list[bytes] = []

    def flaky() -> None:
        data = left.recv(100)
        calls.append(data)
        if data == b"bad":
            raise RuntimeError("callback bug")

    watch = ReadableWatch(left.fileno(), flaky)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run)
        right.send(b"bad")
        with anyio.fail_after(5):
            while watch.errors < 1:
                await anyio.sleep(0.001)
        right.send(b"good")
        with anyio.fail_after(5):
            while len(calls) < 2:
                await anyio.sleep(0.001)
        watch.stop()
    left.close()
    right.close()
    assert calls == [b"bad", b"good"] and watch.errors == 1


async def test_cancelling_the_watching_task_detaches_the_descriptor() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    calls: list[bytes] = []
    watch = ReadableWatch(left.fileno(), lambda: calls.append(left.recv(100)))
    with anyio.move_on_after(0.01):
        await watch.run()
    right.send(b"late")
    await anyio.sleep(0.05)
    assert calls == []  # nobody watches any more: the data stays queued
    assert left.recv(100) == b"late"
    left.close()
    right.close()


async def held_until_resumed(pause_first: bool) -> list[bytes]:
    """What a watch paused with a datagram waiting delivers, once resumed."""
    left, right = socket.socketpair()
    left.setblocking(False)
    received: list[bytes] = []
    watch = ReadableWatch(left.fileno(), lambda: received.append(left.recv(100)))
    if pause_first:
        watch.pause()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run)
        await anyio.sleep(0.01)
        watch.pause()
        right.send(b"held")
        await anyio.sleep(0.05)  # the loop runs meanwhile; the callback must not
        assert received == []
        watch.resume()
        with anyio.fail_after(5):
            while not received:
                await anyio.sleep(0.001)
        watch.stop()
    left.close()
    right.close()
    return received


async def test_a_paused_watch_calls_nothing_until_resumed() -> None:
    assert await held_until_resumed(pause_first=False) == [b"held"]


async def test_a_watch_paused_before_it_runs_starts_paused() -> None:
    assert await held_until_resumed(pause_first=True) == [b"held"]
