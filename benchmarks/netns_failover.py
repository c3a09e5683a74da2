"""Failover on the wire, vrrpkit next to keepalived, in network namespaces (root only).

Three hosts on a bridge: h1 runs the master (priority 200), h2 the backup (priority 100),
h3 only watches. Each run starts the master, waits until it holds the VIP and the backup is
silent, then fails it one way or another and times, from kernel receive timestamps on h3:

- ``kill``: SIGKILL of the master's process(es); from its last advert to the backup's first
  advert (theory: Master_Down_Interval = 3 x interval + skew) and to the VIP appearing on h2;
- ``term``: SIGTERM (a graceful stop); from the priority-0 advert (theory: skew);
- ``raise``: the application raises inside ``async with Instance(...)`` (vrrpkit only); from
  the raise, as the node stamped it (theory: skew); the signal that asks the node to raise
  takes its own time to arrive, reported apart;
- ``check``: a weight-0 health check starts failing (vrrpkit ``CheckTracker``, keepalived
  ``vrrp_script`` testing a file); from the moment it starts failing (theory: up to one check
  interval, then skew).

The backup keeps running across the runs of one lab; the master is restarted for each run.
The observer on h3 runs under ``SCHED_FIFO``: it stamps the VIP's netlink message when it reads
it, and an ordinary thread would read it only once the new master's process let go of the CPU.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import lab as L
from vrrpkit.core.timers import master_down_interval, skew_time

VIP = "192.0.2.100"
VIP_PREFIX = 24
VRID = 51
MASTER_PRIORITY = 200
BACKUP_PRIORITY = 100


@dataclass
class Sample:
    """One failover: seconds from the reference event to the new master's advert and VIP."""

    advert: float | None = None
    vip: float | None = None
    #: For ``term``: signal -> priority-0 advert. For ``raise``/``check``: fault -> advert.
    extra: float | None = None
    #: For ``raise``: the benchmark's signal -> the node's raise.
    delivered: float | None = None
    note: str = ""


@dataclass
class Series:
    """The samples of one implementation for one case."""

    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    remarks: list[str] = field(default_factory=list)

    def values(self, attr: str) -> list[float]:
        found = [getattr(s, attr) for s in self.samples]
        return [v for v in found if v is not None]

    def notes(self) -> list[str]:
        return self.remarks + [s.note for s in self.samples if s.note]


def theory(version: int, interval: float, mode: str) -> float:
    """Seconds the standards give for the takeover (backup priority 100)."""
    if mode == "kill":
        return master_down_interval(version, BACKUP_PRIORITY, interval)
    return skew_time(version, BACKUP_PRIORITY, interval)


class Cluster:
    """A backup that keeps running and a master restarted for each run, in one lab."""

    def __init__(
        self,
        impl: str,
        lab: L.Lab,
        observer: L.Observer,
        *,
        version: int,
        interval: float,
        check: L.Check | None = None,
    ) -> None:
        self.impl = impl
        self.h1, self.h2, _ = lab.hosts
        self.observer = observer
        self.version = version
        self.interval = interval
        self.check = check
        self.check_file: Path | None = None
        if impl == "keepalived" and check is not None:
            self.check_file = L.workdir() / "healthy"
        self.backup = self._start(self.h2, "b", BACKUP_PRIORITY, tracked=False)
        self.master: L.Node | None = None

    def _start(self, host: L.Host, name: str, priority: int, *, tracked: bool) -> L.Node:
        if self.impl == "vrrpkit":
            kwargs = {
                "name": name,
                "vrid": VRID,
                "priority": priority,
                "vips": [f"{VIP}/{VIP_PREFIX}"],
                "interval": self.interval,
                "version": self.version,
            }
            return L.VrrpkitNode(name, host, [kwargs], check=self.check if tracked else None)
        inst = L.KeepalivedInstance(
            VRID,
            priority,
            [f"{VIP}/{VIP_PREFIX}"],
            self.interval,
            self.version,
            track_script=tracked and self.check_file is not None,
        )
        return L.KeepalivedNode(
            name,
            host,
            [inst],
            check_file=self.check_file if tracked else None,
            check=self.check,
        )

    def start_master(self, *, tracked: bool) -> None:
        """(Re)start the master and wait until it rules: VIP on h1, backup silent."""
        if self.check_file is not None:
            self.check_file.touch()
        self.observer.clear()
        self.master = self._start(self.h1, "a", MASTER_PRIORITY, tracked=tracked)
        a, b = str(self.h1.ipv4), str(self.h2.ipv4)
        timeout = 4 * master_down_interval(self.version, MASTER_PRIORITY, self.interval) + 10

        def ruling() -> bool:
            adverts = self.observer.adverts
            last_b = max((x.time for x in adverts if x.src == b), default=0.0)
            after = [x for x in adverts if x.src == a and x.priority > 0 and x.time > last_b]
            return len(after) >= 3

        if not L.wait_for(ruling, timeout) or not L.wait_for(
            lambda: self.h1.has_address(VIP) and not self.h2.has_address(VIP), 5
        ):
            raise L.LabError(f"{self.impl}: the master did not take over: {self.master.log()}")
        self.observer.clear()
        time.sleep(2 * self.interval)

    def failover(self, mode: str, phase: float = 0.0) -> Sample:
        """Fail the master by ``mode`` and time the backup's takeover.

        ``phase`` (0..1) of a check interval is waited first, so that the runs of a ``check``
        case meet the periodic check at spread-out points of its cycle.
        """
        master = self.master
        assert master is not None
        obs = self.observer
        a, b = str(self.h1.ipv4), str(self.h2.ipv4)
        check_interval = 0.0
        if self.check is not None:
            check_interval = self.check.interval
            if self.impl == "keepalived":
                check_interval = max(1, round(check_interval))
        if mode == "check":
            time.sleep(phase * check_interval)
        trigger = time.time()
        if mode == "kill":
            master.kill()
        elif mode == "term":
            master.terminate()
        elif mode == "raise":
            master.send_signal(signal.SIGUSR1)
        elif mode == "check":
            if self.check_file is not None:
                self.check_file.unlink()
            else:
                master.send_signal(signal.SIGUSR2)
        else:
            raise ValueError(mode)
        limit = (
            master_down_interval(self.version, BACKUP_PRIORITY, self.interval)
            + check_interval * (self.check.fall if self.check else 0)
            + 3
        )

        def first_b() -> float | None:
            return next((x.time for x in obs.adverts if x.src == b and x.time > trigger), None)

        def vip_on_b() -> float | None:
            return next(
                (
                    e.time
                    for e in obs.addresses
                    if e.host == self.h2.netns and e.added and e.address == VIP
                ),
                None,
            )

        sample = Sample()
        if not L.wait_for(lambda: first_b() is not None and vip_on_b() is not None, limit):
            sample.note = f"{mode}: no takeover within {limit:.1f} s"
        took = first_b()
        vip = vip_on_b()
        from_a = [x for x in obs.adverts if x.src == a and (took is None or x.time < took)]
        zero = next((x for x in from_a if x.priority == 0), None)
        alive = [x for x in from_a if x.priority > 0]
        if mode == "kill":
            if zero is not None:
                sample.note = "kill: the killed master sent a priority-0 advert"
            ref = alive[-1].time if alive else None
        elif mode == "term":
            ref = zero.time if zero is not None else None
            if zero is not None:
                sample.extra = zero.time - trigger
            else:
                sample.note = "term: no priority-0 advert"
        else:
            ref = trigger
        self._finish(mode)
        if mode == "raise":
            raised = _raised_at(master)
            if raised is None:
                sample.note = "raise: the node did not say when it raised"
            else:
                sample.delivered = raised - trigger
            ref = raised
        if mode in ("raise", "check") and ref is not None and zero is not None:
            sample.extra = zero.time - ref
        if ref is not None:
            sample.advert = None if took is None else took - ref
            sample.vip = None if vip is None else vip - ref
        return sample

    def _finish(self, mode: str) -> None:
        master = self.master
        assert master is not None
        if mode in ("check", "raise"):
            master.stop()
        master.wait()
        self.master = None
        # keepalived and vrrpkit both leave the VIP behind when SIGKILLed.
        self.h1.remove_address(VIP, VIP_PREFIX)
        # Let the backup settle as MASTER before the next master starts.
        time.sleep(2 * self.interval)


def _raised_at(node: L.Node) -> float | None:
    """When a vrrpkit node's application code raised (``time.time()``), from its output."""
    if not isinstance(node, L.VrrpkitNode):
        return None
    for line in node.output():
        kind, _, value = line.partition(" ")
        if kind == "raised":
            with contextlib.suppress(ValueError):
                return float(value)
    return None


def measure(
    impl: str,
    *,
    version: int,
    interval: float,
    modes: Sequence[str],
    runs: int,
    check: L.Check | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Series]:
    """``runs`` failovers of each mode (interleaved) in one lab; a Series per mode."""
    results = {mode: Series() for mode in modes}
    try:
        with L.lab(3) as lab:
            h1, h2, h3 = lab.hosts
            with L.Observer(h3, [h1, h2], realtime=True) as observer:
                if observer.realtime_refused:
                    for series in results.values():
                        series.remarks.append(observer.realtime_refused)
                cluster = Cluster(
                    impl,
                    lab,
                    observer,
                    version=version,
                    interval=interval,
                    check=check,
                )
                for run in range(runs):
                    for mode in modes:
                        progress(f"{impl} v{version} {interval:g} s {mode} run {run + 1}/{runs}")
                        cluster.start_master(tracked=mode == "check")
                        phase = (run + 0.5) / runs
                        results[mode].samples.append(cluster.failover(mode, phase))
    except L.LabError as exc:
        for series in results.values():
            series.error = str(exc).splitlines()[0][:200]
    return results


# -- formatting ----------------------------------------------------------------------------


def ms(values: Sequence[float]) -> str:
    """``median (min..max)`` in milliseconds."""
    if not values:
        return "n/a"
    med = statistics.median(values) * 1000
    lo, hi = min(values) * 1000, max(values) * 1000
    digits = 2 if hi < 100 else 1
    return f"{med:.{digits}f} ({lo:.{digits}f}..{hi:.{digits}f}) ms"


def ratio(ours: Sequence[float], theirs: Sequence[float]) -> str:
    if not ours or not theirs or statistics.median(theirs) == 0:
        return "-"
    return f"{statistics.median(ours) / statistics.median(theirs):.3f}"


def within(values: Sequence[float], expected: float, tolerance: float) -> str:
    if not values:
        return "[n/a]"
    return "[ok]" if abs(statistics.median(values) - expected) <= tolerance else "[MISS]"


Row = tuple[str, str, str, str, str, str]

FAILOVER_CASES: list[tuple[int, float, int]] = [(3, 0.1, 5), (3, 0.01, 5), (2, 1.0, 3)]
MODE_LABEL = {"kill": "SIGKILL", "term": "SIGTERM"}


def failover_rows(
    runs_scale: float = 1.0, progress: Callable[[str], None] = lambda _: None
) -> tuple[list[Row], list[str]]:
    """Rows of section 1, and notes."""
    rows: list[Row] = []
    notes: list[str] = []
    have_keepalived = L.keepalived_path() is not None
    if not have_keepalived:
        notes.append("keepalived is not installed: its column is empty")
    for version, interval, runs in FAILOVER_CASES:
        n = max(1, round(runs * runs_scale))
        ours = measure(
            "vrrpkit",
            version=version,
            interval=interval,
            modes=["kill", "term"],
            runs=n,
            progress=progress,
        )
        theirs = (
            measure(
                "keepalived",
                version=version,
                interval=interval,
                modes=["kill", "term"],
                runs=n,
                progress=progress,
            )
            if have_keepalived
            else {"kill": Series(), "term": Series()}
        )
        for mode in ("kill", "term"):
            expect = theory(version, interval, mode)
            o, t = ours[mode], theirs[mode]
            for impl, series in (("vrrpkit", o), ("keepalived", t)):
                if series.error:
                    notes.append(f"v{version} {interval:g} s {mode}, {impl}: {series.error}")
                notes += [f"v{version} {interval:g} s, {impl}: {n}" for n in series.notes()]
            since = "last advert" if mode == "kill" else "prio-0 advert"
            name = f"v{version} {interval:g}s {MODE_LABEL[mode]}: {since} -> new master advert"
            rows.append(
                (
                    f"{name} (n={n})",
                    ms(o.values("advert")),
                    ms(t.values("advert")),
                    ratio(o.values("advert"), t.values("advert")),
                    f"{expect * 1000:.1f} ms",
                    f"theory +-1 ms {within(o.values('advert'), expect, 0.001)}",
                )
            )
            rows.append(
                (
                    f"v{version} {interval:g}s {MODE_LABEL[mode]}: {since} -> VIP on new master",
                    ms(o.values("vip")),
                    ms(t.values("vip")),
                    ratio(o.values("vip"), t.values("vip")),
                    f"{expect * 1000:.1f} ms",
                    "-",
                )
            )
            if mode == "term":
                rows.append(
                    (
                        f"v{version} {interval:g}s SIGTERM -> priority-0 advert",
                        ms(o.values("extra")),
                        ms(t.values("extra")),
                        ratio(o.values("extra"), t.values("extra")),
                        "-",
                        "-",
                    )
                )
    return rows, notes


FAULT_CASES: list[tuple[float, int]] = [(1.0, 3), (0.1, 5)]
#: keepalived's usual way to move a VIP on a failing check (the lab facts' 4.6 s): lower the
#: priority below the backup's after ``fall`` failures. Measured at 1 s.
LOWERING_CHECK = L.Check(1.0, weight=-150, fall=2, rise=2)


def fault_rows(
    runs_scale: float = 1.0, progress: Callable[[str], None] = lambda _: None
) -> tuple[list[Row], list[str]]:
    """Rows of section 4 (application fault -> VIP moved), and notes."""
    rows: list[Row] = []
    notes: list[str] = []
    have_keepalived = L.keepalived_path() is not None

    def both(
        interval: float, check: L.Check, n: int, vrrpkit_modes: list[str]
    ) -> tuple[dict[str, Series], dict[str, Series]]:
        ours = measure(
            "vrrpkit",
            version=3,
            interval=interval,
            modes=vrrpkit_modes,
            runs=n,
            check=check,
            progress=progress,
        )
        theirs = {"check": Series()}
        if have_keepalived:
            theirs = measure(
                "keepalived",
                version=3,
                interval=interval,
                modes=["check"],
                runs=n,
                check=check,
                progress=progress,
            )
        for impl, results in (("vrrpkit", ours), ("keepalived", theirs)):
            for mode, series in results.items():
                where = f"fault v3 {interval:g} s {mode} (weight {check.weight}), {impl}"
                if series.error:
                    notes.append(f"{where}: {series.error}")
                notes.extend(f"{where}: {note}" for note in series.notes())
        return ours, theirs

    for interval, runs in FAULT_CASES:
        n = max(1, round(runs * runs_scale))
        ours, theirs = both(interval, L.Check(interval), n, ["raise", "check"])
        skew = skew_time(3, BACKUP_PRIORITY, interval)
        raised = ours["raise"]
        rows.append(
            (
                f"v3 {interval:g}s app raises in async with -> VIP moved (n={n})",
                ms(raised.values("vip")),
                "(no equivalent)",
                "-",
                f"{skew * 1000:.1f} ms",
                f"skew +-1 ms {within(raised.values('vip'), skew, 0.001)}",
            )
        )
        rows.append(
            (
                f"v3 {interval:g}s app raises -> priority-0 advert",
                ms(raised.values("extra")),
                "-",
                "-",
                "-",
                "-",
            )
        )
        rows.append(
            (
                "  the benchmark's signal -> the app's raise",
                ms(raised.values("delivered")),
                "-",
                "-",
                "-",
                "-",
            )
        )
        ours_check, theirs_check = ours["check"], theirs["check"]
        rows.append(
            (
                f"v3 {interval:g}s weight-0 check fails -> VIP moved (n={n})",
                ms(ours_check.values("vip")),
                ms(theirs_check.values("vip")),
                ratio(ours_check.values("vip"), theirs_check.values("vip")),
                f"{skew * 1000:.0f}..{(skew + interval) * 1000:.0f} ms",
                f"<= check interval + skew {_upto(ours_check.values('vip'), skew + interval)}",
            )
        )
        if interval < 1:
            notes.append(
                f"keepalived refuses a vrrp_script interval of {interval:g} s (whole seconds, "
                f">= 1): its check ran every 1 s in the {interval:g} s case"
            )

    check = LOWERING_CHECK
    n = max(1, round(3 * runs_scale))
    ours, theirs = both(check.interval, check, n, ["check"])
    mdi = master_down_interval(3, BACKUP_PRIORITY, check.interval)
    low = (check.fall - 1) * check.interval + mdi - check.interval
    high = check.fall * check.interval + mdi
    rows.append(
        (
            f"v3 1s check weight {check.weight} fall {check.fall} fails -> VIP moved (n={n})",
            ms(ours["check"].values("vip")),
            ms(theirs["check"].values("vip")),
            ratio(ours["check"].values("vip"), theirs["check"].values("vip")),
            f"{low * 1000:.0f}..{high * 1000:.0f} ms",
            "-",
        )
    )
    return rows, notes


def _upto(values: Sequence[float], limit: float) -> str:
    if not values:
        return "[n/a]"
    return "[ok]" if statistics.median(values) <= limit + 0.001 else "[MISS]"


def main() -> None:  # pragma: no cover - a manual entry point
    with L.cleanup_on_exit():
        for row in failover_rows(progress=print)[0]:
            print(row)


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        main()
