"""What one wake-up from idle costs a process before it does any work (no root needed).

A program that sleeps on a timerfd armed every 50 ms and does nothing else when it wakes:
once as a bare ``select.epoll`` loop, once under anyio's asyncio backend with vrrpkit's
timer queue (the runtime's own wake-up path). CPU time (user + system) per wake-up is the
floor under "CPU per advert" for a process that sends or receives one advert per wake-up.
"""

from __future__ import annotations

import subprocess
import sys

WAKES = 100
PERIOD = 0.05

_BARE = """
import os, select, sys, time
from vrrpkit.transports.clock import TimerQueue
q = TimerQueue.create()
ep = select.epoll()
ep.register(q._fd, select.EPOLLIN)
wakes, period = int(sys.argv[1]), float(sys.argv[2])
for i in range(wakes + 10):
    if i == 10:
        start = time.process_time()
    q._arm(time.monotonic() + period)
    ep.poll()
    os.read(q._fd, 8)
print((time.process_time() - start) / wakes)
"""

_ASYNCIO = """
import sys, time
import anyio
from vrrpkit.transports.clock import TimerQueue
wakes, period = int(sys.argv[1]), float(sys.argv[2])

async def main():
    queue = TimerQueue.create()
    alarm = queue.alarm()
    done = anyio.Event()
    count = 0
    start = 0.0

    def ring():
        nonlocal count, start
        count += 1
        if count == 10:
            start = time.process_time()
        if count == wakes + 10:
            print((time.process_time() - start) / wakes)
            done.set()
        else:
            alarm.set(time.monotonic() + period)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        tg.start_soon(alarm.run, ring)
        alarm.set(time.monotonic() + period)
        await done.wait()
        tg.cancel_scope.cancel()

anyio.run(main)
"""


def _measure(program: str) -> float | None:
    done = subprocess.run(
        [sys.executable, "-c", program, str(WAKES), str(PERIOD)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def rows() -> list[tuple[str, str, str]]:
    """(measure, value, note) rows: CPU per idle wake-up of a bare loop and of the runtime's."""
    bare, runtime = _measure(_BARE), _measure(_ASYNCIO)

    def us(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1e6:.1f} us"

    return [
        ("CPU per idle wake-up: Python epoll loop, no work", us(bare), "floor"),
        ("CPU per idle wake-up: anyio/asyncio + timer queue, no work", us(runtime), "floor"),
    ]


if __name__ == "__main__":
    for name, value, _ in rows():
        print(f"{name}: {value}")
