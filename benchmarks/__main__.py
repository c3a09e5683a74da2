"""Run every benchmark and print one table: ``python -m benchmarks``."""

from __future__ import annotations

import platform
import sys

from benchmarks import core_speed


def main() -> int:
    """Print the table of measured figures with the machine they were measured on."""
    print(
        f"vrrpkit benchmarks  (Python {platform.python_version()}, {platform.machine()}, "
        f"{platform.processor() or 'cpu'})"
    )
    table = core_speed.rows()
    width = max(len(r[0]) for r in table)
    print(f"{'measure':<{width}}  {'measured':>24}  target")
    print("-" * (width + 40))
    for name, value, target in table:
        print(f"{name:<{width}}  {value:>24}  {target}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
