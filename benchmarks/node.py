"""A vrrpkit node in its own process, for the namespace benchmarks.

Usage: ``python node.py '{"instances": [{Instance keyword arguments}, ...],
"check": null, "hub": false}'``. It enters ``async with Instance(...)`` for each
instance (all in this one process; with ``"hub": true`` they share the transports of one
``TransportHub``), prints ``started``, and then reacts to signals:

- SIGTERM: leaves the ``async with`` blocks normally (graceful stop: priority-0 adverts);
- SIGUSR1: the application fails: an exception is raised inside the ``async with`` blocks;
  once they are left, the process prints ``raised TIME`` (``time.time()`` at the raise) and
  exits with status 3;
- SIGUSR2: the in-process health check starts failing: a ``CheckTracker`` added to every
  instance when ``check`` is set (``{"interval": s, "weight": w, "fall": n, "rise": n}``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import signal
import sys
import time
from typing import Any

import anyio

from vrrpkit import CheckTracker, Instance


class ApplicationFault(RuntimeError):
    """The failure the benchmark injects into the application code, raised at ``raised_at``
    (``time.time()``)."""

    def __init__(self, raised_at: float) -> None:
        super().__init__(f"injected by the benchmark at {raised_at:.6f}")
        self.raised_at = raised_at


async def main(spec: dict[str, Any]) -> None:
    healthy = True

    def check() -> bool:
        return healthy

    tracker = spec.get("check")
    arguments = []
    for kwargs in spec["instances"]:
        kwargs = dict(kwargs)
        if tracker is not None:
            kwargs["trackers"] = [CheckTracker("app", check, **tracker)]
        arguments.append(kwargs)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2) as signals:
        async with contextlib.AsyncExitStack() as stack:
            if spec.get("hub"):
                from vrrpkit.runtime.hub import TransportHub

                hub = await stack.enter_async_context(TransportHub())
                arguments = [{**kwargs, "hub": hub} for kwargs in arguments]
            for kwargs in arguments:
                name = str(kwargs.pop("name"))
                await stack.enter_async_context(Instance(name, **kwargs))
            # As docs/instance.md advises an application that runs instances (and `vrrpkit
            # run` does): what start-up made stays out of later garbage collections, once
            # the garbage it left is collected.
            gc.collect()
            gc.freeze()
            print("started", flush=True)
            async for signum in signals:
                if signum == signal.SIGTERM:
                    break
                if signum == signal.SIGUSR1:
                    raise ApplicationFault(time.time())
                if signum == signal.SIGUSR2:
                    healthy = False


if __name__ == "__main__":
    try:
        anyio.run(main, json.loads(sys.argv[1]))
    except ApplicationFault as fault:
        # When the application's code failed: the benchmark's signal only asked it to.
        print(f"raised {fault.raised_at!r}", flush=True)
        sys.exit(3)
