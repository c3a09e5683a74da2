"""Resident memory of the imports a running vrrpkit needs, step by step (no root needed).

Each step imports more in a fresh interpreter and reads its peak RSS
(``resource.getrusage``): where the memory of a vrrpkit process goes before any instance
exists. ``python -m benchmarks.import_memory``.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.bytecode import compile_vrrpkit

STEPS: tuple[tuple[str, str], ...] = (
    ("bare interpreter", ""),
    ("+ asyncio", "import asyncio"),
    (
        "+ asyncio without ssl (for comparison)",
        "import sys; sys.modules['ssl'] = None; import asyncio",
    ),
    ("+ anyio on asyncio", "import asyncio, anyio._backends._asyncio"),
    ("+ attrs", "import asyncio, anyio._backends._asyncio, attrs"),
    ("+ vrrpkit (core and runtime)", "import asyncio, anyio._backends._asyncio, vrrpkit"),
    (
        "+ real transports (what a running process has)",
        "import asyncio, anyio._backends._asyncio, vrrpkit, vrrpkit.transports.netlink, "
        "vrrpkit.transports.rawsocket, vrrpkit.transports.garp, vrrpkit.transports.process, "
        "vrrpkit.runtime.hub",
    ),
    ("whole pyroute2 package (for comparison)", "import asyncio, pyroute2"),
)


def peak_rss_mb(code: str) -> float | None:
    """Peak RSS in MB of a fresh interpreter that runs ``code``."""
    program = f"{code}\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=60
    )
    try:
        return int(done.stdout.strip().splitlines()[-1]) / 1024
    except (ValueError, IndexError):
        return None


def main() -> None:
    """Print one line per step."""
    compile_vrrpkit()
    for label, code in STEPS:
        rss = peak_rss_mb(code)
        print(f"{label:50s} {'n/a' if rss is None else f'{rss:5.1f} MB'}")


if __name__ == "__main__":
    main()
