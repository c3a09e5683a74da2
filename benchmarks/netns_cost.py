"""CPU per advert, memory and send jitter, vrrpkit next to keepalived (root only).

Cost: two hosts; h1 runs one process with ``count`` master instances (VRIDs 1..count,
priority 200), h2 one process with the same instances as backups (priority 100). Once the
backup is silent, the CPU time of each process (every thread, from ``/proc/PID/task/*/schedstat``,
nanoseconds) is read over a window and divided by the adverts h1 sent and h2 received (its
``eth0`` packet counters). keepalived runs the same configuration, its processes summed.

Jitter: one process with 20 master instances at 0.01 s, a third host timestamping every
advert (kernel receive time); per VRID, the gaps between consecutive adverts minus the
interval.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks import lab as L

Row = tuple[str, str, str, str, str, str]

COST_INTERVAL = 0.05
WINDOW = 10.0
GARP_SETTLE = 6.0  # keepalived's garp_master_delay (5 s), and a margin
JITTER_INSTANCES = 20
JITTER_INTERVAL = 0.01
JITTER_WINDOW = 5.0
JITTER_ROUNDS = 3


def vip(vrid: int) -> str:
    return f"198.51.100.{vrid}/32"


@dataclass
class Cost:
    """What one implementation costs with ``count`` instances."""

    count: int
    interval: float
    sent: int = 0
    received: int = 0
    backup_sent: int = 0
    rx_dropped: int = 0
    master_cpu_ns: int = 0
    backup_cpu_ns: int = 0
    #: (user, system) clock ticks over the window, for the user-space share.
    master_ticks: tuple[int, int] = (0, 0)
    backup_ticks: tuple[int, int] = (0, 0)
    master_rss: int = 0
    master_pss: int | None = None
    backup_rss: int = 0
    backup_pss: int | None = None
    master_sockets: int = 0
    master_processes: int = 0
    #: Voluntary context switches over the window (how often each process went to sleep).
    master_wakeups: int = 0
    backup_wakeups: int = 0
    startup: float = 0.0
    error: str | None = None

    @property
    def us_sent(self) -> float | None:
        return self.master_cpu_ns / 1000 / self.sent if self.sent else None

    @property
    def us_received(self) -> float | None:
        return self.backup_cpu_ns / 1000 / self.received if self.received else None


def _start(
    impl: str, host: L.Host, name: str, count: int, priority: int, interval: float
) -> L.Node:
    if impl in ("vrrpkit", "vrrpkit-hub"):
        return L.VrrpkitNode(
            name,
            host,
            [
                {
                    "name": f"{name}{vrid}",
                    "vrid": vrid,
                    "priority": priority,
                    "vips": [vip(vrid)],
                    "interval": interval,
                    # As `vrrpkit run` does: instances of one process send in step.
                    "align_adverts": impl == "vrrpkit-hub",
                }
                for vrid in range(1, count + 1)
            ],
            hub=impl == "vrrpkit-hub",
            start_timeout=300,
        )
    return L.KeepalivedNode(
        name,
        host,
        [
            L.KeepalivedInstance(vrid, priority, [vip(vrid)], interval)
            for vrid in range(1, count + 1)
        ],
    )


def _vip_count(host: L.Host) -> int:
    out = L.ip("-o", "-4", "addr", "show", "dev", host.ifname, netns=host.netns)
    return sum(1 for line in out.splitlines() if " 198.51.100." in line)


def _cpu_delta(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> int:
    return sum(after[key] - before[key] for key in after.keys() & before.keys())


def measure_cost(
    impl: str, count: int, interval: float = COST_INTERVAL, window: float = WINDOW
) -> Cost:
    """Run ``count`` instances on each of two hosts and measure one window."""
    cost = Cost(count, interval)
    try:
        with L.lab(2) as lab:
            h1, h2 = lab.hosts
            started = time.monotonic()
            master = _start(impl, h1, "a", count, 200, interval)
            cost.startup = time.monotonic() - started
            backup = _start(impl, h2, "b", count, 100, interval)
            if not L.wait_for(lambda: _vip_count(h1) == count, 60 + count * 0.2, 0.1):
                raise L.LabError(f"only {_vip_count(h1)} of {count} VIPs on the master")
            # Settle: the second gratuitous ARP round (garp_master_delay, 5 s after becoming
            # MASTER, both implementations) is a one-off, not the steady cost per advert.
            vips_up = time.monotonic()
            # ... and the backup's instances saw the master and went quiet.
            settle_deadline = time.monotonic() + 30
            while time.monotonic() < settle_deadline:
                tx = h2.link_stats()["tx_packets"]
                time.sleep(1.0)
                if h2.link_stats()["tx_packets"] == tx and _vip_count(h2) == 0:
                    break
            time.sleep(max(0.0, vips_up + GARP_SETTLE - time.monotonic()))
            m_pids, b_pids = master.pids(), backup.pids()
            s1, s2 = h1.link_stats(), h2.link_stats()
            c1, c2 = L.cpu_ns_by_task(m_pids), L.cpu_ns_by_task(b_pids)
            t1, t2 = L.cpu_ticks(m_pids), L.cpu_ticks(b_pids)
            w1, w2 = L.wakeups(m_pids), L.wakeups(b_pids)
            time.sleep(window)
            cost.master_wakeups = L.wakeups(m_pids) - w1
            cost.backup_wakeups = L.wakeups(b_pids) - w2
            c1e, c2e = L.cpu_ns_by_task(m_pids), L.cpu_ns_by_task(b_pids)
            t1e, t2e = L.cpu_ticks(m_pids), L.cpu_ticks(b_pids)
            e1, e2 = h1.link_stats(), h2.link_stats()
            cost.master_ticks = (t1e[0] - t1[0], t1e[1] - t1[1])
            cost.backup_ticks = (t2e[0] - t2[0], t2e[1] - t2[1])
            cost.master_cpu_ns = _cpu_delta(c1, c1e)
            cost.backup_cpu_ns = _cpu_delta(c2, c2e)
            cost.sent = e1["tx_packets"] - s1["tx_packets"]
            cost.received = e2["rx_packets"] - s2["rx_packets"]
            cost.backup_sent = e2["tx_packets"] - s2["tx_packets"]
            cost.rx_dropped = e2["rx_dropped"] - s2["rx_dropped"]
            cost.master_rss, cost.master_pss = L.memory_kib(m_pids)
            cost.backup_rss, cost.backup_pss = L.memory_kib(b_pids)
            cost.master_sockets = L.socket_counts(m_pids)
            cost.master_processes = len(m_pids)
            backup.stop()
            master.stop()
    except L.LabError as exc:
        cost.error = str(exc).splitlines()[0][:200]
    return cost


def measure_jitter(
    impl: str,
    count: int = JITTER_INSTANCES,
    interval: float = JITTER_INTERVAL,
    window: float = JITTER_WINDOW,
) -> tuple[list[float], float | None, str | None]:
    """|gap - interval| of every pair of consecutive adverts per VRID, in seconds; the share of
    the window's CPU time the hypervisor stole from this VM; and a note."""
    steal: float | None = None
    try:
        with L.lab(3) as lab:
            h1, _h2, h3 = lab.hosts
            # The observer reads in batches (every 20 ms, 400 adverts at most): it wakes 50
            # times a second, not once per advert, on the CPUs the master runs on.
            with L.Observer(h3, [], batch_every=0.02) as observer:
                master = _start(impl, h1, "a", count, 200, interval)
                if not L.wait_for(lambda: _vip_count(h1) == count, 30, 0.05):
                    raise L.LabError(f"only {_vip_count(h1)} of {count} VIPs up")
                time.sleep(0.5)
                observer.clear()
                stolen, total = L.host_ticks()
                time.sleep(window)
                adverts = list(observer.adverts)
                stolen_after, total_after = L.host_ticks()
                if total_after > total:
                    steal = (stolen_after - stolen) / (total_after - total)
                dropped = observer.drops()
                master.stop()
    except L.LabError as exc:
        return [], steal, str(exc).splitlines()[0][:200]
    deviations: list[float] = []
    for vrid in range(1, count + 1):
        times = [a.time for a in adverts if a.vrid == vrid and a.priority > 0]
        deviations += [abs(b - a - interval) for a, b in itertools.pairwise(times)]
    if dropped:
        note = f"the capture socket dropped {dropped} frames (gaps overstated)"
        return deviations, steal, note
    return deviations, steal, None


# -- formatting ----------------------------------------------------------------------------


def _us(value: float | None, ticks: tuple[int, int] = (0, 0)) -> str:
    if value is None:
        return "n/a"
    user, system = ticks
    share = f" ({user / (user + system):.0%} user)" if user + system else ""
    return f"{value:.1f} us{share}"


def _mb(kib: int, pss: int | None) -> str:
    text = f"{kib / 1024:.1f} MB"
    return text if pss is None else f"{text} (PSS {pss / 1024:.1f})"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class CostCase:
    """One configuration of section 2."""

    count: int
    interval: float
    #: vrrpkit runs with a TransportHub (one socket per interface and family) ...
    hub: bool
    #: ... and, when set, a second time without one (a socket per instance).
    also_without_hub: bool = False
    #: The window, in windows of the section: longer where few adverts go out in one.
    windows: float = 1.0
    #: Whether to add the memory and socket rows (once per instance count is enough).
    memory_rows: bool = True


COST_CASES = (
    CostCase(1, COST_INTERVAL, hub=False),
    CostCase(10, COST_INTERVAL, hub=True, also_without_hub=True),
    CostCase(50, COST_INTERVAL, hub=True, also_without_hub=True),
    # A Python process cannot send 255 x 20 adverts/s (see the notes): 1 s for 255.
    CostCase(255, 1.0, hub=True),
    # keepalived's default interval, where a few instances wake Python for every advert
    # (send_ahead holds too few of them to be worth queueing in the kernel).
    CostCase(1, 1.0, hub=False, windows=3.0, memory_rows=False),
    CostCase(10, 1.0, hub=True, windows=3.0, memory_rows=False),
)


def cost_rows(
    cases: Sequence[CostCase] = COST_CASES,
    window: float = WINDOW,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[Row], list[str]]:
    """Rows of section 2 (CPU per advert and memory), and notes."""
    rows: list[Row] = []
    notes: list[str] = []
    have_keepalived = L.keepalived_path() is not None
    base_window = window
    for case in cases:
        count, interval = case.count, case.interval
        window = base_window * case.windows
        impl = "vrrpkit-hub" if case.hub else "vrrpkit"
        progress(f"cost: {impl}, {count} instances at {interval:g} s")
        ours = measure_cost(impl, count, interval, window=window)
        plain: Cost | None = None
        if case.also_without_hub:
            progress(f"cost: vrrpkit without hub, {count} instances at {interval:g} s")
            plain = measure_cost("vrrpkit", count, interval, window=window)
        if have_keepalived:
            progress(f"cost: keepalived, {count} instances at {interval:g} s")
            theirs = measure_cost("keepalived", count, interval, window=window)
        else:
            theirs = Cost(count, interval, error="keepalived is not installed")
        for label, cost in ((impl, ours), ("vrrpkit without hub", plain), ("keepalived", theirs)):
            if cost is not None:
                notes += _cost_notes(label, cost, window)
        tag = f"{count} inst @{interval:g}s" + (" (hub)" if case.hub else "")
        if window != base_window:
            tag += f", {window:g} s window"
        rows += [
            (
                f"{tag}: CPU/advert sent (master)",
                _us(ours.us_sent, ours.master_ticks),
                _us(theirs.us_sent, theirs.master_ticks),
                _ratio(ours.us_sent, theirs.us_sent),
                "-",
                f"<= keepalived {_le(ours.us_sent, theirs.us_sent)}",
            ),
            (
                f"{tag}: CPU/advert received (backup)",
                _us(ours.us_received, ours.backup_ticks),
                _us(theirs.us_received, theirs.backup_ticks),
                _ratio(ours.us_received, theirs.us_received),
                "-",
                f"<= keepalived {_le(ours.us_received, theirs.us_received)}",
            ),
            (
                f"{tag}: wake-ups/s master / backup",
                _wakeups(ours, window),
                _wakeups(theirs, window),
                "-",
                "-",
                "-",
            ),
            (
                f"{tag}: CPU share master / backup",
                _share(ours, window),
                _share(theirs, window),
                "-",
                "-",
                "-",
            ),
        ]
        if not case.memory_rows:
            continue
        rows += [
            (
                f"{count} inst: master RSS (PSS)" + (" (hub)" if case.hub else ""),
                "n/a" if ours.error else _mb(ours.master_rss, ours.master_pss),
                "n/a" if theirs.error else _mb(theirs.master_rss, theirs.master_pss),
                _ratio(
                    None if ours.error else ours.master_rss,
                    None if theirs.error else theirs.master_rss,
                ),
                "-",
                f"RSS <= 30 MB {_le(ours.master_rss / 1024, 30.0)}" if count == 50 else "-",
            ),
            (
                f"{count} inst: master sockets / processes" + (" (hub)" if case.hub else ""),
                "n/a" if ours.error else f"{ours.master_sockets} / {ours.master_processes}",
                "n/a" if theirs.error else f"{theirs.master_sockets} / {theirs.master_processes}",
                "-",
                "-",
                "-",
            ),
        ]
        if plain is not None:
            rows += [
                (
                    f"{count} inst @{interval:g}s no hub: CPU/advert sent / received",
                    "n/a"
                    if plain.error
                    else f"{_num(plain.us_sent)} / {_num(plain.us_received)} us",
                    "-",
                    "-",
                    "-",
                    "-",
                ),
                (
                    f"{count} inst no hub: master RSS (PSS), sockets",
                    "n/a"
                    if plain.error
                    else f"{_mb(plain.master_rss, plain.master_pss)}, {plain.master_sockets}",
                    "-",
                    "-",
                    "-",
                    "-",
                ),
            ]
    return rows, notes


def _cost_notes(label: str, cost: Cost, window: float) -> list[str]:
    where = f"cost {cost.count} instances at {cost.interval:g} s, {label}"
    if cost.error:
        return [f"{where}: {cost.error}"]
    notes = []
    expected = round(cost.count * window / cost.interval)
    if cost.sent < 0.95 * expected:
        notes.append(
            f"{where}: sent {cost.sent} adverts in {window:g} s where {expected} were due "
            f"({cost.sent / expected:.0%})"
        )
    if cost.backup_sent > 2:
        notes.append(
            f"{where}: the backup sent {cost.backup_sent} packets in the window "
            "(some of its instances became MASTER)"
        )
    if cost.rx_dropped:
        notes.append(f"{where}: {cost.rx_dropped} packets dropped on the backup's eth0")
    return notes


def _le(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "[n/a]"
    return "[ok]" if ours <= theirs else "[MISS]"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _wakeups(cost: Cost, window: float) -> str:
    if cost.error:
        return "n/a"
    return f"{cost.master_wakeups / window:.0f} / {cost.backup_wakeups / window:.0f}"


def _share(cost: Cost, window: float) -> str:
    if cost.error:
        return "n/a"
    master = cost.master_cpu_ns / 1e9 / window
    backup = cost.backup_cpu_ns / 1e9 / window
    return f"{master:.1%} / {backup:.1%}"


def jitter_rows(
    progress: Callable[[str], None] = lambda _: None, rounds: int = JITTER_ROUNDS
) -> tuple[list[Row], list[str]]:
    """Rows of section 3 (send jitter), and notes.

    The implementations take turns, ``rounds`` windows each, so that a noisy spell of the host
    hits both; the percentiles are over all the rounds' gaps, and the p99 of each round is
    shown too.
    """
    notes: list[str] = []
    impls = ["vrrpkit"] + (["keepalived"] if L.keepalived_path() is not None else [])
    gaps: dict[str, list[list[float]]] = {impl: [] for impl in impls}
    steals: dict[str, list[float | None]] = {impl: [] for impl in impls}
    for round_ in range(1, rounds + 1):
        for impl in impls:
            progress(
                f"jitter: {impl}, {JITTER_INSTANCES} instances at {JITTER_INTERVAL:g} s, "
                f"round {round_}/{rounds}"
            )
            values, steal, error = measure_jitter(impl)
            if values:
                steals[impl].append(steal)
            if error:
                notes.append(f"jitter, {impl}, round {round_}: {error}")
            if values:
                gaps[impl].append(values)
    ours = [v for values in gaps["vrrpkit"] for v in values]
    theirs = [v for values in gaps.get("keepalived", []) for v in values]

    def fmt(values: Sequence[float], q: float) -> str:
        return "n/a" if not values else f"{_percentile(values, q) * 1000:.3f} ms"

    def rel(q: float) -> str:
        if not ours or not theirs or _percentile(theirs, q) == 0:
            return "-"
        return f"{_percentile(ours, q) / _percentile(theirs, q):.2f}"

    def per_round(impl: str) -> str:
        runs = gaps.get(impl, [])
        return (
            " / ".join(f"{_percentile(v, 0.99) * 1000:.2f}" for v in runs) + " ms" if runs else "-"
        )

    def stolen(impl: str) -> str:
        runs = steals.get(impl, [])
        return " / ".join("n/a" if v is None else f"{v:.1%}" for v in runs) if runs else "-"

    tag = f"send jitter, {JITTER_INSTANCES} inst @{JITTER_INTERVAL:g}s |gap - interval|"
    p99_ok = "[ok]" if ours and _percentile(ours, 0.99) <= 0.002 else "[MISS]"

    def sent(impl: str) -> str:
        runs = gaps.get(impl, [])
        due = len(runs) * JITTER_INSTANCES * (round(JITTER_WINDOW / JITTER_INTERVAL) - 1)
        count = sum(len(v) for v in runs)
        return "n/a" if not runs else f"{count / due:.0%} ({count} gaps)"

    def mean(values: Sequence[float]) -> str:
        return "n/a" if not values else f"{statistics.mean(values) * 1000:.3f} ms"

    return [
        (f"{tag} p50", fmt(ours, 0.5), fmt(theirs, 0.5), rel(0.5), "-", "-"),
        (f"{tag} p99", fmt(ours, 0.99), fmt(theirs, 0.99), rel(0.99), "-", f"<= 2 ms {p99_ok}"),
        ("  p99 of each round", per_round("vrrpkit"), per_round("keepalived"), "-", "-", "-"),
        (
            "  CPU stolen by the host, each round",
            stolen("vrrpkit"),
            stolen("keepalived"),
            "-",
            "-",
            "-",
        ),
        (f"{tag} mean", mean(ours), mean(theirs), "-", "-", "-"),
        (
            "  adverts sent / due in the windows",
            sent("vrrpkit"),
            sent("keepalived"),
            "-",
            "100%",
            "-",
        ),
    ], notes
