"""keepalived and vrrpkit side by side in one VRRP group, in network-namespace labs.

Each node is a separate process in its own lab host (namespace): Debian's keepalived started
as in the lab facts, or ``vrrpkit run -f CONF --control SOCK --netns NS``. Both read the same
keepalived.conf text; only the priority and the node's own paths (its notify script and the
file its track script tests) differ, plus, for unicast, which address is the source and which
the peer.

What the tests look at:

- where the VIP is, from netlink (``ip -n NS -j addr show eth0``);
- the state each side reports: vrrpkit through its control socket (``status``), keepalived
  through its generic ``notify`` script (``INSTANCE VI_1 STATE priority``), whose lines the
  script appends to a file of the node's directory (vrrpkit runs the same script).

Node directories are made with mode 0700 (keepalived runs notify scripts as root and warns
about scripts in directories others can write to). Every process is started in a session of
its own so that killing its process group kills its notify and check scripts too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import Host, Lab, LabError

from vrrpkit.control import ControlError, query_sync

VIP4 = "192.0.2.100"
VIP6 = "2001:db8::100"
VRID = 51
INSTANCE = "VI_1"
HIGH, LOW = 150, 100
#: The track script's weight: a failing master at 150 drops to 50, below the other node's
#: 100; a failing node at 100 drops to 1 (priorities are clamped to 1..254).
WEIGHT = -100

#: vrrpkit's receive counters that mean a packet from the peer was refused.
ERROR_COUNTERS = (
    "packet_len_err",
    "ip_ttl_err",
    "invalid_type_rcvd",
    "advert_interval_err",
    "addr_list_err",
    "invalid_authtype",
    "authtype_mismatch",
    "auth_failure",
    "chk_err",
    "vers_err",
    "vrid_err",
    "unknown_source",
)


#: The log messages of keepalived's receive checks (``vrrp_check_packet`` in 2.2.7): any of
#: them means that keepalived refused an advert.
KEEPALIVED_RECEIVE_ERRORS = (
    "Received AH header but auth type not AH",
    "No AH header but auth type is AH",
    "vrrp packet too",
    "invalid TTL/HL",
    "wrong version",
    "Invalid auth type",
    "auth, expecting",
    "received an invalid passwd",
    "advertisement interval mismatch",
    "Invalid packet type",
    "received an unexpected ip number count",
    "ip_tot_len mismatch",
    "Setting unicast VRRPv3 checksum to old version",
    "Invalid VRRPv3 checksum",
    "Invalid VRRPv2 checksum",
    "icast packet but received",
    "VIPs but received",
    "not present in MASTER advert",
    "not a unicast peer",
    "not in range",
)


def require_keepalived() -> str:
    """Return keepalived's path; skip without it, but fail under ``CI=true`` (CI installs it)."""
    path = shutil.which("keepalived") or shutil.which("keepalived", path="/usr/sbin:/sbin")
    if path is not None:
        return path
    reason = "interop tests need keepalived (Debian package keepalived)"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason}; skipping is not allowed with CI=true")
    pytest.skip(reason)


def eventually(
    predicate: Callable[[], bool],
    timeout: float,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until it holds; a guard against hangs, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"not reached within {timeout:g} s: {what}{detail}")
        time.sleep(0.02)


# -- protocol variants --------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way to run a VRRP group: version, address family, multicast or unicast, auth."""

    id: str
    version: int
    family: int
    interval: float
    unicast: bool = False
    auth_pass: str | None = None

    @property
    def vip(self) -> str:
        return VIP4 if self.family == 4 else VIP6

    @property
    def vip_with_prefix(self) -> str:
        return f"{VIP4}/24" if self.family == 4 else f"{VIP6}/64"

    def address(self, host: Host) -> str:
        """The source address of ``host``'s adverts (the one compared in a tie-break)."""
        if self.family == 4:
            return str(host.ipv4)
        return str(host.ipv6 if self.unicast else host.link_local)

    def master_down(self, priority: int) -> float:
        """Master_Down_Interval of a backup at ``priority`` (3 adverts + skew)."""
        return 3 * self.interval + (256 - priority) / 256 * self.interval

    @property
    def timeout(self) -> float:
        """Guard for one failover or preemption (generous: a loaded CI runner)."""
        return max(10.0, 5 * self.master_down(1))

    def config(
        self, *, priority: int, host: Host, peer: Host, node_dir: Path, notify_fifo: bool = False
    ) -> str:
        """The keepalived.conf of a node; both implementations read the same text."""
        lines = [
            "global_defs {",
            "  script_user root",
            *([f"  notify_fifo {node_dir / 'notify.fifo'}"] if notify_fifo else []),
            "}",
            "",
            "vrrp_script chk_healthy {",
            f'  script "/usr/bin/test -e {node_dir / "healthy"}"',
            # keepalived 2.2.7 takes whole seconds only ("invalid number '0.2'" -> 1 s).
            "  interval 1",
            # Long enough that a slow fork on a loaded runner is not a failure.
            "  timeout 3",
            f"  weight {WEIGHT}",
            "  fall 1",
            "  rise 1",
            "}",
            "",
            f"vrrp_instance {INSTANCE} {{",
            "  state BACKUP",
            f"  interface {host.ifname}",
            f"  virtual_router_id {VRID}",
            f"  priority {priority}",
            f"  advert_int {self.interval:g}",
            f"  version {self.version}",
        ]
        if self.auth_pass is not None:
            lines += [
                "  authentication {",
                "    auth_type PASS",
                f"    auth_pass {self.auth_pass}",
                "  }",
            ]
        if self.unicast:
            lines += [
                f"  unicast_src_ip {self.address(host)}",
                "  unicast_peer {",
                f"    {self.address(peer)}",
                "  }",
            ]
        lines += [
            "  virtual_ipaddress {",
            f"    {self.vip_with_prefix}",
            "  }",
            "  track_script {",
            "    chk_healthy",
            "  }",
            f'  notify "{node_dir / "notify.sh"}"',
            "}",
        ]
        return "\n".join(lines) + "\n"


V2 = Variant("v2-ipv4", version=2, family=4, interval=1.0)
V2_AUTH = Variant("v2-ipv4-auth-pass", version=2, family=4, interval=1.0, auth_pass="s3cret")
# keepalived's VRRPv2 over IPv6 carries no authentication field (vrrpkit once added one).
V2_IPV6 = Variant("v2-ipv6", version=2, family=6, interval=1.0)
V3_IPV4 = Variant("v3-ipv4", version=3, family=4, interval=0.1)
V3_IPV6 = Variant("v3-ipv6", version=3, family=6, interval=0.1)
V3_UNICAST_IPV4 = Variant("v3-unicast-ipv4", version=3, family=4, interval=0.1, unicast=True)
V3_UNICAST_IPV6 = Variant("v3-unicast-ipv6", version=3, family=6, interval=0.1, unicast=True)

V3_VARIANTS = [V3_IPV4, V3_IPV6, V3_UNICAST_IPV4, V3_UNICAST_IPV6]
ALL_VARIANTS = [V2, V2_AUTH, *V3_VARIANTS]


def params(variants: list[Variant]) -> list[Any]:
    return [pytest.param(v, id=v.id) for v in variants]


# -- nodes ---------------------------------------------------------------------------------


NOTIFY_SCRIPT = """#!/bin/sh
# keepalived and vrrpkit both call it as: notify INSTANCE|GROUP name STATE priority
echo "$*" >> {log}
"""


class Node:
    """One VRRP node (keepalived or vrrpkit) on one lab host, in a directory of its own."""

    kind = "node"

    def __init__(
        self, variant: Variant, host: Host, peer: Host, priority: int, *, notify_fifo: bool = False
    ) -> None:
        self.variant = variant
        self.host = host
        self.priority = priority
        self.dir = Path(tempfile.mkdtemp(prefix=f"vrrpkit-interop-{self.kind}-"))  # 0700
        self.conf = self.dir / "keepalived.conf"
        self.conf.write_text(
            variant.config(
                priority=priority, host=host, peer=peer, node_dir=self.dir, notify_fifo=notify_fifo
            )
        )
        # The notify FIFO exists and has a reader (this process) before the node starts, and
        # across its restarts, so that no line is dropped for want of a reader.
        self._fifo_fd: int | None = None
        self._fifo_data = b""
        if notify_fifo:
            fifo = self.dir / "notify.fifo"
            os.mkfifo(fifo, 0o600)
            self._fifo_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.notify_log = self.dir / "notify.log"
        script = self.dir / "notify.sh"
        script.write_text(NOTIFY_SCRIPT.format(log=self.notify_log))
        script.chmod(0o755)
        self.set_healthy(True)
        self.log = self.dir / "output.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"{self.kind}@{self.host.netns}(priority {self.priority})"

    # -- processes

    def _spawn(self, argv: list[str]) -> None:
        assert not self.running(), f"{self} is already running"
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"==== start {self.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def hard_kill(self) -> None:
        """SIGKILL: the node vanishes without a priority-0 advert and keeps its VIP."""
        raise NotImplementedError

    def stop(self) -> None:
        """SIGTERM and wait: a graceful stop (priority-0 advert, VIP removed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"{self} did not stop on SIGTERM") from None

    def kill_group(self) -> None:
        """SIGKILL the node's whole process group (its session), and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        """Kill whatever still runs and remove the node's directory."""
        self.kill_group()
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- observations

    def state(self) -> str | None:
        raise NotImplementedError

    def notifications(self) -> list[tuple[str, ...]]:
        """The notify calls so far, each ``(INSTANCE, VI_1, STATE, priority)``."""
        try:
            text = self.notify_log.read_text()
        except FileNotFoundError:
            return []
        return [tuple(line.split()) for line in text.splitlines() if line.strip()]

    def fifo_lines(self) -> list[bytes]:
        """The lines written to the node's notify FIFO so far (each with its newline)."""
        assert self._fifo_fd is not None, "node built without notify_fifo"
        while True:
            try:
                chunk = os.read(self._fifo_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:  # no writer at the moment
                break
            self._fifo_data += chunk
        return self._fifo_data.splitlines(keepends=True)

    def notified_state(self) -> str | None:
        """The state of the last notify call (keepalived's view of itself)."""
        calls = self.notifications()
        return calls[-1][2] if calls else None

    def holds_vip(self) -> bool:
        return any(e.get("local") == self.variant.vip for e in self.host.addresses())

    def set_healthy(self, healthy: bool) -> None:
        """Make the node's track script succeed or fail (``test -e DIR/healthy``)."""
        marker = self.dir / "healthy"
        if healthy:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def log_lines(self, text: str) -> list[str]:
        """The lines of the node's output that contain ``text``."""
        try:
            output = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in output.splitlines() if text in line]

    def describe(self) -> str:
        try:
            output = self.log.read_text(errors="replace")
        except FileNotFoundError:
            output = ""
        tail = "\n".join(output.splitlines()[-25:])
        return (
            f"--- {self}: running={self.running()} state={self.state()} "
            f"vip={self.holds_vip()} notifications={self.notifications()[-6:]}\n{tail}"
        )


class KeepalivedNode(Node):
    """Debian's keepalived, VRRP only, in the foreground with pid files of its own."""

    kind = "keepalived"

    def __init__(
        self, variant: Variant, host: Host, peer: Host, priority: int, *, notify_fifo: bool = False
    ) -> None:
        self.binary = require_keepalived()
        super().__init__(variant, host, peer, priority, notify_fifo=notify_fifo)
        self.vrrp_pidfile = self.dir / "vrrp.pid"

    def start(self) -> None:
        started = len(self.notifications())
        self.vrrp_pidfile.unlink(missing_ok=True)
        # -P VRRP only, -n foreground, -l -D -G detailed log on stdout only; pid files of
        # its own, so that several keepalived run on one machine.
        argv = [
            "ip", "netns", "exec", self.host.netns, self.binary,
            "-P", "-n", "-l", "-D", "-G",
            "-f", str(self.conf),
            "-p", str(self.dir / "keepalived.pid"),
            "-r", str(self.vrrp_pidfile),
            "-c", str(self.dir / "checkers.pid"),
            "-b", str(self.dir / "bfd.pid"),
        ]  # fmt: skip
        self._spawn(argv)
        # Started: its VRRP child runs and has entered its first state (the BACKUP notify).
        eventually(
            lambda: len(self.notifications()) > started or not self.running(),
            timeout=20,
            what=f"{self} starts",
            describe=self.describe,
        )
        assert self.running(), self.describe()

    def vrrp_pid(self) -> int | None:
        try:
            return int(self.vrrp_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def hard_kill(self) -> None:
        # The VRRP child first: SIGKILL to the parent alone makes the child stop gracefully
        # (priority-0 advert, VIP removed), and one signal to the whole group may reach the
        # parent first. Then the rest of the group, before the parent can respawn a child.
        assert self.proc is not None
        child = self.vrrp_pid()
        assert child is not None, self.describe()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        self.kill_group()

    def state(self) -> str | None:
        return self.notified_state() if self.running() else None


def _vrrpkit_command() -> list[str]:
    script = Path(sys.executable).with_name("vrrpkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vrrpkit"]


class VrrpkitNode(Node):
    """``vrrpkit run`` in a process of its own, its interfaces in the host's namespace."""

    kind = "vrrpkit"

    def __init__(
        self, variant: Variant, host: Host, peer: Host, priority: int, *, notify_fifo: bool = False
    ) -> None:
        super().__init__(variant, host, peer, priority, notify_fifo=notify_fifo)
        self.control = str(self.dir / "control.sock")

    def start(self) -> None:
        argv = [
            *_vrrpkit_command(), "run",
            "-f", str(self.conf),
            "--control", self.control,
            "--netns", self.host.netns,
            "--log-level", "DEBUG",
        ]  # fmt: skip
        self._spawn(argv)
        eventually(
            lambda: self.state() in {"BACKUP", "MASTER"} or not self.running(),
            timeout=20,
            what=f"{self} starts",
            describe=self.describe,
        )
        assert self.running(), self.describe()

    def hard_kill(self) -> None:
        self.kill_group()

    def status(self) -> dict[str, Any] | None:
        """The instance's entry of ``vrrpkit status``, or None if the daemon does not answer."""
        if not self.running():
            return None
        try:
            result = query_sync("status", self.control, timeout=2.0)
        except ControlError:
            return None
        instances: list[dict[str, Any]] = result["instances"]
        return instances[0] if instances else None

    def state(self) -> str | None:
        status = self.status()
        return None if status is None else str(status["state"])

    def counters(self) -> dict[str, int]:
        status = self.status()
        assert status is not None, self.describe()
        counters: dict[str, int] = status["counters"]
        return counters


# -- the lab ----------------------------------------------------------------------------------


class Interop:
    """One keepalived node and one vrrpkit node of the same VRRP group in one lab."""

    def __init__(self, lab: Lab, nodes: list[Node]) -> None:
        self.lab = lab
        self.nodes = nodes

    def describe(self) -> str:
        return "\n".join(node.describe() for node in self.nodes)

    def eventually(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        eventually(predicate, timeout=timeout, what=what, describe=self.describe)

    def wait_master(self, master: Node, timeout: float | None = None) -> None:
        """Wait until ``master`` is MASTER with the VIP and every other live node is BACKUP
        without it (a stopped or killed node is left out: a killed one keeps its VIP)."""
        others = [n for n in self.nodes if n is not master and n.running()]

        def settled() -> bool:
            return (
                master.state() == "MASTER"
                and master.holds_vip()
                and all(n.state() == "BACKUP" and not n.holds_vip() for n in others)
            )

        self.eventually(
            settled,
            f"{master} MASTER with the VIP, {others} BACKUP without it",
            timeout or master.variant.timeout,
        )

    def start(self, master: Node, backup: Node, *, hold: bool = False) -> None:
        """Start ``master``, wait until it is MASTER, then start ``backup`` and wait until it
        is BACKUP (starting the master first keeps every notify sequence deterministic);
        with ``hold``, also check that the backup keeps accepting the master's adverts."""
        master.start()
        self.wait_master(master)
        backup.start()
        self.wait_master(master)
        if hold:
            self.hold(master, backup)

    def hold(self, master: Node, backup: Node) -> None:
        """Check that ``backup`` keeps accepting ``master``'s adverts: after more adverts
        than its down timer counts (3), nothing moved and nothing was refused."""
        vrrpkit = master if isinstance(master, VrrpkitNode) else backup
        assert isinstance(vrrpkit, VrrpkitNode)
        counter = "advert_sent" if vrrpkit is master else "advert_rcvd"
        start = vrrpkit.counters()[counter]
        self.eventually(
            lambda: vrrpkit.counters()[counter] >= start + 5,
            f"5 more adverts ({counter} of {vrrpkit})",
            master.variant.timeout,
        )
        assert master.state() == "MASTER" and master.holds_vip(), self.describe()
        assert backup.state() == "BACKUP" and not backup.holds_vip(), self.describe()
        self.assert_no_receive_errors()

    def assert_no_receive_errors(self) -> None:
        """Neither side refused a packet of the other: vrrpkit's error counters are 0 and
        keepalived logged none of the messages of its receive checks (vrrp.c 2.2.7)."""
        for node in self.nodes:
            if isinstance(node, VrrpkitNode) and node.running():
                counters = node.counters()
                errors = {name: counters[name] for name in ERROR_COUNTERS if counters[name]}
                assert errors == {}, f"{node} refused packets: {errors}\n{self.describe()}"
            if isinstance(node, KeepalivedNode):
                refused = [
                    line
                    for line in node.log.read_text(errors="replace").splitlines()
                    if any(message in line for message in KEEPALIVED_RECEIVE_ERRORS)
                ]
                assert refused == [], f"{node} refused packets:\n" + "\n".join(refused)

    def expect_notifications(self, node: Node, expected: list[str]) -> None:
        """Wait until ``node``'s notify calls are exactly ``expected`` (``"STATE priority"``
        each, for ``INSTANCE VI_1``); notify programs run asynchronously on both sides."""

        def calls() -> list[str]:
            return [
                f"{call[2]} {call[3]}"
                if len(call) == 4 and call[:2] == ("INSTANCE", INSTANCE)
                else " ".join(call)
                for call in node.notifications()
            ]

        deadline = time.monotonic() + 10
        while calls() != expected and time.monotonic() < deadline:
            if len(calls()) > len(expected):
                break
            time.sleep(0.02)
        assert calls() == expected, f"{node} notify calls\n{self.describe()}"

    def partition(self, partitioned: bool) -> None:
        """Stop (or restore) forwarding between the hosts, their links staying up: every
        bridge port goes to the disabled (0) or forwarding (3) port state. (``ip link set
        PORT type bridge_slave state N`` is silently ignored; ``bridge link set`` works.)"""
        state = "0" if partitioned else "3"
        for host in self.lab.hosts:
            run(
                "bridge", "-n", self.lab.bridge_netns,
                "link", "set", "dev", host.port, "state", state,
            )  # fmt: skip

    def deafen(self, host: Host, deaf: bool = True) -> None:
        """Stop (or resume) flooding multicast to ``host``: it still sends its adverts to
        the others but no longer hears theirs (``mcast_flood`` of its bridge port)."""
        run(
            "bridge", "-n", self.lab.bridge_netns,
            "link", "set", "dev", host.port, "mcast_flood", "off" if deaf else "on",
        )  # fmt: skip


#: What the ``interop`` fixture's factory returns, and the factory.
Pair = tuple[KeepalivedNode, VrrpkitNode, Interop]
MakePair = Callable[..., Pair]


def run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
