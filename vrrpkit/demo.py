"""The main demonstration: a three-router cluster and its failover timeline.

Run it with ``python -m vrrpkit.demo``. As root (with iproute2) the routers are real
processes in network namespaces (:mod:`vrrpkit.demo_netns`); otherwise, or with
``--simulate``, they run on the deterministic simulator. Election, a crash of the master,
failover, the old master coming back and preempting, then a graceful hand-back with priority
0 — each event with the time the RFC formulas predict next to the time it took.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from vrrpkit.core.states import State
from vrrpkit.core.timers import master_down_interval, skew_time
from vrrpkit.testing.simulation import Simulation, TransitionRecord

VIP = "192.0.2.100"
ROUTERS = (("r1", 200, "192.0.2.1"), ("r2", 150, "192.0.2.2"), ("r3", 100, "192.0.2.3"))


def _print_new(sim: Simulation, seen: int, out: TextIO) -> int:
    for record in sim.transitions[seen:]:
        out.write(
            f"  t={record.time:9.6f}s  {record.router}: {record.old} -> {record.new}"
            f"  ({record.reason})\n"
        )
    return len(sim.transitions)


def _master_since(sim: Simulation, name: str, after: float) -> TransitionRecord:
    return next(
        t for t in sim.transitions if t.router == name and t.new is State.MASTER and t.time >= after
    )


def run(interval: float = 1.0, out: TextIO = sys.stdout) -> Simulation:
    """Play the scenario on a fresh simulation and write its timeline to ``out``."""
    sim = Simulation(seed=0)
    out.write(
        f"vrrpkit demo: 3 routers, VRRPv3, VRID 51, advert interval {interval} s, VIP {VIP}\n"
    )
    for name, prio, address in ROUTERS:
        out.write(f"  {name}: priority {prio}, address {address}\n")
    seen = 0

    out.write("\n1. Election (everyone starts in BACKUP and waits Master_Down_Interval)\n")
    for name, prio, address in ROUTERS:
        sim.add_router(name, vrid=51, priority=prio, address=address, vips=[VIP], interval=interval)
    sim.run_until(lambda: sim.masters() == ["r1"], timeout=10 * interval)
    seen = _print_new(sim, seen, out)
    expected = master_down_interval(3, 200, interval)
    out.write(
        f"  -> r1 is MASTER at {_master_since(sim, 'r1', 0).time:.6f} s; theory "
        f"3 x {interval} + skew({200}) = {expected:.6f} s; VIP on r1: "
        f"{sorted(map(str, sim['r1'].vips))}\n"
    )

    sim.run_for(5 * interval)
    out.write("\n2. r1 crashes (no priority 0: silence)\n")
    crash = sim.now
    last_advert = _master_since(sim, "r1", 0).time
    last_advert += int((crash - last_advert) / interval + 1e-9) * interval
    sim.crash("r1")
    sim.run_until(lambda: sim.masters() == ["r2"], timeout=10 * interval)
    seen = _print_new(sim, seen, out)
    took = _master_since(sim, "r2", crash).time - last_advert
    out.write(
        f"  -> r2 took over {took:.6f} s after r1's last advert; theory "
        f"Master_Down_Interval(150) = {master_down_interval(3, 150, interval):.6f} s\n"
    )

    sim.run_for(5 * interval)
    out.write("\n3. r1 comes back and preempts (higher priority)\n")
    back = sim.now
    sim.start("r1")
    sim.run_until(lambda: sim.masters() == ["r1"], timeout=10 * interval)
    seen = _print_new(sim, seen, out)
    out.write(
        f"  -> r1 MASTER again {_master_since(sim, 'r1', back).time - back:.6f} s after "
        f"its restart (it discards r2's lower-priority adverts); stale VIP removed at "
        f"start\n"
    )

    sim.run_for(5 * interval)
    out.write("\n4. r1 stops gracefully (priority-0 advert): graceful hand-back\n")
    stop = sim.now
    sim.stop("r1")
    sim.run_until(lambda: sim.masters() == ["r2"], timeout=10 * interval)
    seen = _print_new(sim, seen, out)
    out.write(
        f"  -> r2 MASTER {_master_since(sim, 'r2', stop).time - stop:.6f} s after the "
        f"priority-0 advert; theory skew(150) = {skew_time(3, 150, interval):.6f} s\n"
    )
    sim.run_for(5 * interval)
    out.write(
        f"\nFinal: masters {sim.masters()}, VIP holders "
        f"{sorted(n for n, h in sim.routers.items() if h.vips)}, "
        f"{sim.packets_sent} adverts sent in {sim.now:.1f} simulated seconds\n"
    )
    return sim


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of the demonstration."""
    parser = argparse.ArgumentParser(prog="python -m vrrpkit.demo", description=__doc__)
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="VRRPv3 advertisement interval in seconds (default 1.0)",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="use the simulator even where network namespaces are available",
    )
    args = parser.parse_args(argv)
    from vrrpkit.testing.netlab import lab_unavailable_reason

    reason = lab_unavailable_reason()
    if args.simulate or reason is not None:
        run(args.interval)
        if reason is not None:
            print(
                f"\n(Simulated: {reason}. For the real thing, three processes in network "
                "namespaces with real sockets and VIPs, run as root: "
                "sudo .venv/bin/python -m vrrpkit.demo)"
            )
        return 0
    from vrrpkit import demo_netns

    demo_netns.run(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
