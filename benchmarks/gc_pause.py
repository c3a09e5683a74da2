"""How long a full garbage collection stops a process running instances (no root needed).

Python's generation-2 collection scans every object the process holds, and the event loop
stands still meanwhile. Each case runs in a fresh interpreter that imports what a running
node imports (the real transports too), starts ``count`` instances on vrrpkit's fakes (each
MASTER of a segment of its own), then times ``gc.collect()`` (median of 5), once as is and
once after ``gc.freeze()`` (what ``vrrpkit run`` does once everything has started, and
docs/instance.md advises).
``python -m benchmarks.gc_pause``.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.bytecode import compile_vrrpkit

COUNTS = (1, 20, 255)

_PROGRAM = """
import contextlib, gc, statistics, sys, time
import anyio
import vrrpkit.runtime.hub, vrrpkit.transports.garp, vrrpkit.transports.netlink
import vrrpkit.transports.process, vrrpkit.transports.rawsocket
from vrrpkit import Instance
from vrrpkit.testing import (FakeAddressManager, FakeAnnouncer, FakeClock, FakeLinkMonitor,
                             FakeNetwork)

def pause_ms():
    times = []
    for _ in range(5):
        start = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000

async def main(count):
    clock = FakeClock()
    async with contextlib.AsyncExitStack() as stack:
        for vrid in range(1, count + 1):
            # A segment each: every instance becomes MASTER alone, holding its VIP.
            await stack.enter_async_context(Instance(
                f"vi{vrid}", interface="eth0", vrid=vrid, priority=100,
                vips=[f"198.51.100.{vrid}/32"], interval=1.0, clock=clock,
                socket=FakeNetwork().socket("192.0.2.1"), addresses=FakeAddressManager(),
                links=FakeLinkMonitor(), announcer=FakeAnnouncer()))
        await clock.advance(5)
        before = pause_ms()
        gc.freeze()
        after = pause_ms()
        gc.unfreeze()
        print(f"{before:.2f} {after:.2f} {len(gc.get_objects())}")

anyio.run(main, int(sys.argv[1]))
"""


def measure(count: int) -> tuple[float, float, int] | None:
    """(full collection ms, the same after gc.freeze() ms, objects tracked) for ``count``."""
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(count)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    try:
        before, after, objects = done.stdout.split()
        return float(before), float(after), int(objects)
    except ValueError:
        return None


def main() -> None:
    """Print one line per instance count."""
    compile_vrrpkit()
    print(f"{'instances':>9}  {'objects':>9}  {'full collection':>15}  {'after gc.freeze()':>17}")
    for count in COUNTS:
        found = measure(count)
        if found is None:
            print(f"{count:9d}  failed")
            continue
        before, after, objects = found
        print(f"{count:9d}  {objects:9,d}  {before:12.2f} ms  {after:14.2f} ms")


if __name__ == "__main__":
    main()
