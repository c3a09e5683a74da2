"""A network-namespace lab for the benchmarks: hosts on a bridge, nodes, a wire observer.

Every host is a network namespace whose ``eth0`` is one end of a veth pair; the other ends sit
on a bridge in a namespace of its own, so no packet and no interface ever touches the
namespace the benchmarks run in. Only documentation addresses are used (192.0.2.0/24,
2001:db8::/64 and fe80::/64). Namespace names start with a per-run prefix
(``vkbn<pid hex>-``); :func:`cleanup` deletes them and stops every process started here, and
the runners call it in ``finally`` blocks (Ctrl-C and SIGTERM included).

Nodes run in processes of their own: :class:`VrrpkitNode` (``benchmarks/node.py``) and
:class:`KeepalivedNode` (Debian's keepalived, started as in the lab facts). The
:class:`Observer` is a thread that timestamps every VRRP advert seen by a third host with the
kernel's receive time (``SO_TIMESTAMPNS``) and every VIP address added or removed on the
nodes (netlink).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import attrs

from vrrpkit.testing import netlab
from vrrpkit.testing.netlab import LabError as LabError
from vrrpkit.testing.netlab import LabHost, NetLab, run_ip
from vrrpkit.transports.netns import run_in_netns

PREFIX = f"vkbn{os.getpid():x}-"
_counter = itertools.count()
_created: set[str] = set()
_processes: list[subprocess.Popen[bytes]] = []
_workdirs: list[str] = []

NODE_SCRIPT = Path(__file__).with_name("node.py")


def ip(*args: str, netns: str | None = None, batch: Sequence[str] | None = None) -> str:
    """Run ``ip [-n netns] args`` (or a batch of ip commands) and return its stdout."""
    return run_ip(*args, netns=netns, batch=batch)


def unavailable_reason() -> str | None:
    """Why the namespace benchmarks cannot run here, or None if they can."""
    reason = netlab.lab_unavailable_reason(probe=_new_name("probe"))
    if reason is None:
        netlab.remove_stale_namespaces("vkbn", PREFIX)
    return reason


def keepalived_path() -> str | None:
    """The keepalived binary, or None."""
    return shutil.which("keepalived") or (
        "/usr/sbin/keepalived" if Path("/usr/sbin/keepalived").exists() else None
    )


def keepalived_version() -> str:
    """keepalived's version line, or 'not installed'."""
    path = keepalived_path()
    if path is None:
        return "not installed"
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _new_name(role: str) -> str:
    name = f"{PREFIX}{next(_counter)}-{role}"
    _created.add(name)
    return name


def delete_namespaces(names: Sequence[str]) -> None:
    """Delete namespaces, ignoring ones already gone."""
    netlab.delete_namespaces(names)
    _created.difference_update(names)


def cleanup() -> None:
    """Stop every process started here and delete every namespace of this run."""
    for proc in _processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    _processes.clear()
    mine = sorted(set(_created) | {n for n in netlab.list_namespaces() if n.startswith(PREFIX)})
    delete_namespaces(mine)
    for path in _workdirs:
        shutil.rmtree(path, ignore_errors=True)
    _workdirs.clear()


@contextlib.contextmanager
def cleanup_on_exit() -> Iterator[None]:
    """Run the body with SIGTERM turned into SystemExit; always :func:`cleanup` after it."""
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        try:
            cleanup()
        finally:
            signal.signal(signal.SIGTERM, previous)


def workdir() -> Path:
    """A temporary directory removed by :func:`cleanup`."""
    path = tempfile.mkdtemp(prefix="vrrpkit-bench-")
    _workdirs.append(path)
    return Path(path)


@attrs.frozen
class Host(LabHost):
    """One namespace with ``eth0`` on the lab's bridge, plus the counters benchmarks read."""

    def link_stats(self) -> dict[str, int]:
        """``eth0``'s packet counters (rx_packets, tx_packets, rx_dropped).

        Read from ``/proc/thread-self/net/dev`` on a thread inside the namespace: a
        millisecond, where ``ip -s link`` takes tens of them on a loaded machine.
        """
        text = run_in_netns(self.netns, lambda: Path("/proc/thread-self/net/dev").read_text())
        for line in text.splitlines():
            name, _, counters = line.partition(":")
            if name.strip() == self.ifname:
                values = [int(v) for v in counters.split()]
                return {"rx_packets": values[1], "rx_dropped": values[3], "tx_packets": values[9]}
        raise LabError(f"no {self.ifname} in {self.netns}")

    def has_address(self, address: str) -> bool:
        """Whether ``address`` is on ``eth0`` now."""
        return self.holds(address)

    def remove_address(self, address: str, prefixlen: int) -> None:
        """Delete an address if present (a SIGKILLed node leaves its VIP behind)."""
        with contextlib.suppress(LabError):
            ip("addr", "del", f"{address}/{prefixlen}", "dev", self.ifname, netns=self.netns)


class Lab(NetLab):
    """Hosts joined by a bridge that lives in its own namespace (vrrpkit.testing.netlab)."""

    host_class = Host
    hosts: list[Host]  # type: ignore[assignment]


def create_lab(count: int) -> Lab:
    """Build a lab of ``count`` hosts numbered 1..count; on failure nothing is left behind."""
    made = Lab(count, prefix=_new_name("lab"))
    _created.update(made.namespaces)
    made.create()
    return made


@contextlib.contextmanager
def lab(count: int) -> Iterator[Lab]:
    """A lab whose namespaces (and the processes started meanwhile) are gone afterwards."""
    made = create_lab(count)
    try:
        yield made
    finally:
        for proc in _processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        _processes.clear()
        made.destroy()


# -- processes -----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def cpu_ns_by_task(pids: Sequence[int]) -> dict[tuple[int, int], int]:
    """CPU time (user + system) in nanoseconds per (pid, tid) of the processes.

    From the threads' ``schedstat`` run times, which have nanosecond resolution where
    ``/proc/PID/stat`` has clock ticks; a window's CPU time is the sum of the deltas of the
    threads alive at both ends.
    """
    times: dict[tuple[int, int], int] = {}
    for pid in pids:
        for task in _tasks(pid):
            with contextlib.suppress(OSError, ValueError):
                path = f"/proc/{pid}/task/{task}/schedstat"
                times[(pid, task)] = int(Path(path).read_text().split()[0])
    return times


def wakeups(pids: Sequence[int]) -> int:
    """Voluntary context switches of every thread of the processes (one per sleep)."""
    total = 0
    for pid in pids:
        for task in _tasks(pid):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
    return total


def cpu_ticks(pids: Sequence[int]) -> tuple[int, int]:
    """(user, system) clock ticks of the processes, from ``/proc/PID/stat``."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            user += int(fields[11])
            system += int(fields[12])
    return user, system


def host_ticks() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs so far, from ``/proc/stat``.

    Steal is the time the hypervisor ran something else while this VM had work to do: a
    wake-up due then runs late whatever the program does.
    """
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0
    # guest and guest_nice (fields 8, 9) are already counted in user and nice.
    return steal, sum(fields[:8])


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def memory_kib(pids: Sequence[int]) -> tuple[int, int | None]:
    """(RSS, PSS) in KiB summed over the processes; PSS None without smaps_rollup."""
    rss = 0
    pss: int | None = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            pss = None
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:") and pss is not None:
                pss += int(line.split()[1])
    return rss, pss


def socket_counts(pids: Sequence[int]) -> int:
    """Open sockets of the processes."""
    count = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                        count += 1
    return count


class Node:
    """A VRRP speaker in a process of its own (one or more instances)."""

    name: str
    host: Host
    proc: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL: the process(es) vanish without a word on the wire."""
        raise NotImplementedError

    def terminate(self) -> None:
        """SIGTERM: a graceful stop."""
        self.proc.send_signal(signal.SIGTERM)

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop gracefully if still running (kill after a timeout)."""
        if self.proc.poll() is None:
            self.terminate()
            self.wait()

    def log(self) -> str:
        return ""


@dataclass(frozen=True)
class Check:
    """A health check on the master: vrrpkit ``CheckTracker``, keepalived ``vrrp_script``."""

    interval: float
    weight: int = 0
    fall: int = 1
    rise: int = 1

    def as_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "weight": self.weight,
            "fall": self.fall,
            "rise": self.rise,
        }


class VrrpkitNode(Node):
    """``benchmarks/node.py`` running ``instances`` (Instance keyword arguments)."""

    def __init__(
        self,
        name: str,
        host: Host,
        instances: Sequence[dict[str, Any]],
        *,
        check: Check | None = None,
        hub: bool = False,
        start_timeout: float = 120.0,
    ) -> None:
        self.name = name
        self.host = host
        spec: dict[str, Any] = {
            "instances": [
                {"interface": host.ifname, "netns": host.netns, **kwargs} for kwargs in instances
            ],
            "check": None if check is None else check.as_json(),
            "hub": hub,
        }
        # Lives as long as the node; closed with it (its log is read after a failure).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT), json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        _processes.append(self.proc)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], start_timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"started":
            self.kill()
            raise LabError(f"vrrpkit node {name} did not start: {self.log()[-2000:]}")

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def output(self) -> list[str]:
        """The lines the node printed after ``started`` (read once it has exited)."""
        assert self.proc.stdout is not None
        if self.proc.poll() is None:
            return []
        return self.proc.stdout.read().decode(errors="replace").splitlines()

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")


@dataclass
class KeepalivedInstance:
    """One ``vrrp_instance`` of a generated keepalived.conf."""

    vrid: int
    priority: int
    vips: Sequence[str]
    interval: float
    version: int = 3
    track_script: bool = False


class KeepalivedNode(Node):
    """keepalived in a namespace, VRRP subsystem only, with pid files of its own."""

    def __init__(
        self,
        name: str,
        host: Host,
        instances: Sequence[KeepalivedInstance],
        *,
        check_file: Path | None = None,
        check: Check | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        binary = keepalived_path()
        if binary is None:
            raise LabError("keepalived is not installed")
        self.name = name
        self.host = host
        self.dir = workdir()
        conf = self.dir / "keepalived.conf"
        conf.write_text(self.config(name, host, instances, check_file, check))
        self.vrrp_pidfile = self.dir / "vrrp.pid"
        self.logfile = self.dir / "log"
        argv = [
            "ip", "netns", "exec", host.netns, binary, "-P", "-n", "-l", "-D", "-G",
            "-f", str(conf), "-p", str(self.dir / "keepalived.pid"),
            "-r", str(self.vrrp_pidfile), "-c", str(self.dir / "checkers.pid"),
            "-b", str(self.dir / "bfd.pid"),
        ]  # fmt: skip
        with self.logfile.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _processes.append(self.proc)
        deadline = time.monotonic() + start_timeout
        while self.vrrp_pid() is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise LabError(f"keepalived {name} did not start: {self.log()[-2000:]}")
            time.sleep(0.01)

    @staticmethod
    def config(
        name: str,
        host: Host,
        instances: Sequence[KeepalivedInstance],
        check_file: Path | None,
        check: Check | None,
    ) -> str:
        lines = [
            "global_defs {",
            f"  router_id {name}",
            "  script_user root",
            "  enable_script_security",
            "}",
        ]
        if check_file is not None and check is not None:
            # keepalived only takes whole seconds (>= 1) for a script's interval.
            lines += [
                "vrrp_script chk {",
                f'  script "/usr/bin/test -e {check_file}"',
                f"  interval {max(1, round(check.interval))}",
                f"  weight {check.weight}",
                f"  fall {check.fall}",
                f"  rise {check.rise}",
                "}",
            ]
        for inst in instances:
            lines += [
                f"vrrp_instance vi{inst.vrid} {{",
                "  state BACKUP",
                f"  interface {host.ifname}",
                f"  virtual_router_id {inst.vrid}",
                f"  priority {inst.priority}",
                f"  advert_int {inst.interval:g}",
                f"  version {inst.version}",
                "  virtual_ipaddress {",
                *(f"    {vip}" for vip in inst.vips),
                "  }",
            ]
            if inst.track_script:
                lines += ["  track_script {", "    chk", "  }"]
            lines.append("}")
        return "\n".join(lines) + "\n"

    def vrrp_pid(self) -> int | None:
        try:
            pid = int(self.vrrp_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def pids(self) -> list[int]:
        return [self.proc.pid, *_children(self.proc.pid)]

    def kill(self) -> None:
        # The VRRP child first, so that nothing is left to notice the parent's death and send
        # a priority-0 advert; then the parent, before it can respawn the child.
        child = self.vrrp_pid()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


# -- the observer --------------------------------------------------------------------------

_SO_TIMESTAMPNS = 35
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_ETH_P_ALL = 0x0003
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100
_RTM_NEWADDR = 20
_RTM_DELADDR = 21


@dataclass(frozen=True)
class Advert:
    """A VRRP advert seen on the wire (``time``: kernel receive time, CLOCK_REALTIME)."""

    time: float
    src: str
    vrid: int
    priority: int
    version: int


@dataclass(frozen=True)
class AddressEvent:
    """An address added to or removed from a host (``time``: when netlink reported it)."""

    time: float
    host: str
    address: str
    added: bool


#: The real-time priority of an observer that asks for one (any will do: it has only to come
#: before the ordinary threads of the processes measured).
OBSERVER_PRIORITY = 10


class Observer:
    """A thread recording the adverts a watching host sees and the hosts' address changes.

    ``batch_every``: seconds to wait after each reading, so that the thread wakes a few
    times a second instead of once per advert (the adverts keep their kernel receive times;
    the address changes, stamped when read, would not: use it without ``hosts``). The
    measurement then takes less of the CPU the measured processes run on.

    ``realtime``: the thread runs under ``SCHED_FIFO``. Netlink has no receive timestamp, so
    an address change is stamped when the thread reads it; an ordinary thread woken behind
    a process that keeps the CPU busy (a new master's gratuitous ARPs and callbacks) would
    stamp it late. ``realtime_refused`` says why the kernel refused, if it did.
    """

    def __init__(
        self,
        watcher: Host,
        hosts: Sequence[Host],
        *,
        batch_every: float = 0.0,
        realtime: bool = False,
    ) -> None:
        self._batch_every = batch_every
        self._realtime = realtime
        self.realtime_refused: str | None = None
        self.adverts: list[Advert] = []
        self.addresses: list[AddressEvent] = []
        self._capture = run_in_netns(watcher.netns, lambda: _open_capture(watcher.ifname))
        self._netlink: dict[int, str] = {}
        self._sockets: list[socket.socket] = []
        for host in hosts:
            sock = run_in_netns(host.netns, _open_netlink)
            self._netlink[sock.fileno()] = host.netns
            self._sockets.append(sock)
        self._stop_r, self._stop_w = os.pipe()
        self._scheduled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()
        self._scheduled.wait(5)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        self._capture.close()
        for sock in self._sockets:
            sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear(self) -> None:
        self.adverts = []
        self.addresses = []
        self.drops()

    def drops(self) -> int:
        """Frames the kernel dropped on the capture socket since the last call."""
        stats = self._capture.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        return int(struct.unpack("II", stats)[1])

    def _run(self) -> None:
        if self._realtime:
            try:
                # 0: the calling thread (Linux schedules threads, not processes).
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(OBSERVER_PRIORITY))
            except OSError as exc:
                self.realtime_refused = f"observer not real-time: {exc}"
        self._scheduled.set()
        poller = select.poll()
        poller.register(self._capture.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        by_fd = {sock.fileno(): sock for sock in self._sockets}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        capture_fd = self._capture.fileno()
        while True:
            for fd, _ in poller.poll():
                if fd == self._stop_r:
                    return
                if fd == capture_fd:
                    self._read_capture()
                else:
                    self._read_netlink(by_fd[fd], self._netlink[fd])
            if self._batch_every:
                time.sleep(self._batch_every)

    def _read_capture(self) -> None:
        anc = socket.CMSG_SPACE(16)
        while True:
            try:
                frame, ancdata, _, _ = self._capture.recvmsg(2048, anc)
            except BlockingIOError:
                return
            stamp = time.time()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec / 1e9
            advert = parse_advert(frame, stamp)
            if advert is not None:
                self.adverts.append(advert)

    def _read_netlink(self, sock: socket.socket, netns: str) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            stamp = time.time()
            for kind, address in _parse_addr_messages(data):
                self.addresses.append(AddressEvent(stamp, netns, address, kind == _RTM_NEWADDR))


def _open_capture(ifname: str) -> socket.socket:
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.htons(_ETH_P_ALL)
    )
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((ifname, _ETH_P_ALL))
    return sock


def _open_netlink() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
    return sock


def parse_advert(frame: bytes, stamp: float) -> Advert | None:
    """The VRRP advert in an Ethernet frame, or None."""
    if len(frame) < 14:
        return None
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00" and len(frame) >= 34 and frame[23] == 112:
        header = (frame[14] & 0x0F) * 4
        src = str(IPv4Address(frame[26:30]))
        vrrp = frame[14 + header :]
    elif ethertype == b"\x86\xdd" and len(frame) >= 54 and frame[20] == 112:
        src = str(IPv6Address(frame[22:38]))
        vrrp = frame[54:]
    else:
        return None
    if len(vrrp) < 8:
        return None
    return Advert(stamp, src, vrrp[1], vrrp[2], vrrp[0] >> 4)


def _parse_addr_messages(data: bytes) -> Iterator[tuple[int, str]]:
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            return
        if kind in (_RTM_NEWADDR, _RTM_DELADDR):
            body = offset + 16
            family = data[body]
            attr = body + 8
            end = offset + length
            found: str | None = None
            while attr + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, attr)
                if alen < 4:
                    break
                value = data[attr + 4 : attr + alen]
                # IFA_LOCAL (2) is the address itself; IFA_ADDRESS (1) the peer or the same.
                if atype in (1, 2) and (found is None or atype == 2):
                    with contextlib.suppress(ValueError):
                        found = str(ip_address(value)) if family in (2, 10) else None
                attr += (alen + 3) & ~3
            if found is not None:
                yield kind, found
        offset += (length + 3) & ~3


def wait_for(predicate: Any, timeout: float, interval: float = 0.005) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
