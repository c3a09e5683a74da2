"""Run every benchmark and print one table: ``python -m benchmarks``.

Sections: the pure core's speed (anywhere), then, as root, in network namespaces and next to
keepalived: 1. failover timing, 2. CPU per advert and memory, 3. advert send jitter,
4. application fault -> VIP moved. ``--only`` picks sections, ``--quick`` runs fewer and
shorter rounds. Progress goes to stderr; the table and its notes to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import core_speed
from benchmarks.bytecode import compile_vrrpkit

Row = tuple[str, str, str, str, str, str]
HEADER: Row = ("measure", "vrrpkit", "keepalived", "ratio", "theory", "target")
SECTIONS = ("core", "failover", "cost", "jitter", "fault")


def cpu_model() -> str:
    """The CPU model line of /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def print_table(blocks: list[tuple[str, list[Row]]]) -> None:
    rows = [HEADER] + [row for _, block in blocks for row in block]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    total = sum(widths) + 2 * (len(widths) - 1)

    def line(row: Row) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:5], widths[1:5], strict=True)]
        cells.append(row[5])
        return "  ".join(cells).rstrip()

    print(line(HEADER))
    print("-" * total)
    for title, block in blocks:
        if not block:
            continue
        print(f"== {title}")
        for row in block:
            print(line(row))


def main(argv: list[str] | None = None) -> int:
    """Print the table of measured figures with the machine they were measured on."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}"
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    args = parser.parse_args(argv)
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    compile_vrrpkit()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    blocks: list[tuple[str, list[Row]]] = []
    notes: list[str] = []
    load_before = load()
    if "core" in wanted:
        progress("core speed")
        blocks.append(
            (
                "core (pure Python, no I/O)",
                [(name, value, "-", "-", "-", target) for name, value, target in core_speed.rows()],
            )
        )
    netns_sections = [name for name in SECTIONS[1:] if name in wanted]
    keepalived = "-"
    if netns_sections:
        from benchmarks import lab

        keepalived = lab.keepalived_version()
        reason = lab.unavailable_reason()
        if reason is not None:
            notes.append(
                f"network-namespace sections skipped ({', '.join(netns_sections)}): {reason}"
            )
        else:
            try:
                with lab.cleanup_on_exit():
                    blocks += run_netns_sections(netns_sections, args.quick, notes, progress)
            except KeyboardInterrupt:
                print("interrupted; namespaces and processes removed", file=sys.stderr)
                return 130
    print(
        f"vrrpkit benchmarks: Python {platform.python_version()} ({platform.machine()}), "
        f"{os.cpu_count()} CPUs: {cpu_model()}, Linux {platform.release()}, {keepalived}"
    )
    print_table(blocks)
    if notes:
        print("notes:")
        for note in notes:
            print(f"  - {note}")
    print(
        f"load average before / after: {load_before} / {load()}; "
        f"took {time.monotonic() - started:.0f} s"
    )
    sys.stdout.flush()
    return 0


def run_netns_sections(
    sections: list[str],
    quick: bool,
    notes: list[str],
    progress: Callable[[str], None],
) -> list[tuple[str, list[Row]]]:
    """Run the root-only sections; each adds its rows as a block and its notes."""
    from benchmarks import netns_cost, netns_failover, wake_floor

    scale = 0.4 if quick else 1.0
    window = 3.0 if quick else netns_cost.WINDOW
    blocks: list[tuple[str, list[Row]]] = []
    if "failover" in sections:
        rows, more = netns_failover.failover_rows(scale, progress)
        blocks.append(("1. failover in namespaces, backup priority 100 (median (min..max))", rows))
        notes += more
    if "cost" in sections:
        rows, more = netns_cost.cost_rows(window=window, progress=progress)
        progress("cost: idle wake-up floor")
        rows += [(name, value, "-", "-", "-", "-") for name, value, _ in wake_floor.rows()]
        blocks.append((f"2. cost: master and backup processes, {window:g} s window", rows))
        notes += more
    if "jitter" in sections:
        rows, more = netns_cost.jitter_rows(progress, rounds=1 if quick else 3)
        blocks.append(("3. advert send jitter on the wire", rows))
        notes += more
    if "fault" in sections:
        rows, more = netns_failover.fault_rows(scale, progress)
        blocks.append(("4. application fault -> VIP moved (from the fault)", rows))
        notes += more
    return blocks


if __name__ == "__main__":
    raise SystemExit(main())
