"""The main demonstration on real interfaces: three routers in network namespaces.

Each router is a separate Python process running :class:`vrrpkit.Instance` in its own
namespace, with real raw sockets and real VIPs; a capture on the bridge timestamps every
advert. The timeline shows election, a SIGKILL of the master, failover, the old master's
return and preemption, and a graceful hand-back — each measured against the RFC formula.
Needs root and iproute2 (``python -m vrrpkit.demo`` falls back to the simulator without).
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio
import anyio.abc

from vrrpkit.core.timers import master_down_interval, skew_time
from vrrpkit.testing.netlab import NetLab
from vrrpkit.transports.netlink import added_addresses, open_address_watch
from vrrpkit.transports.netns import call_in_netns

_SO_TIMESTAMPNS = 35
VIP = "192.0.2.100"
VRID = 51
PRIORITIES = {"r1": 200, "r2": 150, "r3": 100}


class _Advert:
    def __init__(self, when: float, src: str, priority: int) -> None:
        self.when, self.src, self.priority = when, src, priority


class _Demo:
    def __init__(self, lab: NetLab, interval: float, out: TextIO) -> None:
        self.lab = lab
        self.interval = interval
        self.out = out
        self.t0 = time.monotonic()
        self.adverts: list[_Advert] = []
        self.states: dict[str, str] = {}
        self.processes: dict[str, anyio.abc.Process] = {}
        self.hosts = dict(zip(PRIORITIES, lab.hosts, strict=True))

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def stamp(self, when: float) -> str:
        return f"t={when - self.t0:8.4f}s"

    async def capture(self) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(
                socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.htons(0x0800)
            )
            # Kernel receive timestamps: the demo's own work must not skew the figures.
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.bind(("br0", 0x0800))
            return sock

        sock = await call_in_netns(self.lab.bridge_netns, open_socket)
        # Timestamps are CLOCK_REALTIME; the rest of the demo reads CLOCK_MONOTONIC.
        offset = time.time() - time.monotonic()
        try:
            while True:
                try:
                    frame, ancillary, _flags, info = sock.recvmsg(2048, 64)
                except BlockingIOError:
                    await anyio.wait_readable(sock)
                    continue
                when = time.monotonic()
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                        seconds, nanoseconds = struct.unpack("qq", data[:16])
                        when = seconds + nanoseconds / 1e9 - offset
                # One copy per bridge port: keep the frame as it enters the bridge.
                if info[2] != socket.PACKET_HOST and len(frame) > 36 and frame[23] == 112:
                    ihl = (frame[14] & 0x0F) * 4
                    src = socket.inet_ntoa(frame[26:30])
                    advert = _Advert(when, src, frame[14 + ihl + 2])
                    if not any(
                        a.src == src and abs(a.when - when) < 1e-4 for a in self.adverts[-4:]
                    ):
                        self.adverts.append(advert)
        finally:
            sock.close()

    async def start(self, name: str) -> None:
        host = self.hosts[name]
        args = {
            "name": name,
            "interface": host.ifname,
            "vrid": VRID,
            "priority": PRIORITIES[name],
            "vips": [VIP],
            "interval": self.interval,
            "netns": host.netns,
        }
        process = await anyio.open_process(
            [sys.executable, "-m", "vrrpkit.demo_netns", "--node", json.dumps(args)],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes[name] = process
        self.tg.start_soon(self.follow, name, process)

    async def follow(self, name: str, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                event = json.loads(line)
                self.states[name] = event["new"]
                where = [n for n, h in self.hosts.items() if h.holds(VIP)]
                self.say(
                    f"  {self.stamp(event['t'])}  {name}: {event['old']} -> "
                    f"{event['new']} ({event['reason']}, priority {event['priority']})"
                    f"  VIP on {', '.join(where) or 'nobody'}"
                )

    async def added(self, watch: socket.socket, address: str, timeout: float = 30.0) -> float:
        """When ``watch`` (an :func:`open_address_watch` socket) is told ``address`` was added:
        as the kernel tells it, not when ``ip addr`` would next show it."""
        with anyio.fail_after(timeout):
            while True:
                try:
                    data = watch.recv(65536)
                except BlockingIOError:
                    await anyio.wait_readable(watch)
                    continue
                when = time.monotonic()
                if any(str(r.interface.ip) == address for r in added_addresses(data)):
                    return when

    async def until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> float:
        with anyio.fail_after(timeout):
            while not predicate():
                await anyio.sleep(0.001)
        return time.monotonic()

    def first_advert(self, src: str, after: float, zero: bool = False) -> _Advert:
        return next(
            a for a in self.adverts if a.src == src and a.when > after and (a.priority == 0) == zero
        )

    def last_advert(self, src: str, before: float) -> _Advert:
        return [a for a in self.adverts if a.src == src and a.when <= before][-1]

    async def kill(self, name: str, sig: signal.Signals) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        await process.wait()

    async def scenario(self) -> None:
        interval, host = self.interval, self.hosts
        r1, r2 = str(host["r1"].ipv4), str(host["r2"].ipv4)
        self.say(
            "\n1. Election: three processes start in BACKUP; the highest priority "
            "takes over after its Master_Down_Interval"
        )
        for name in PRIORITIES:
            await self.start(name)
        await self.until(lambda: self.states.get("r1") == "MASTER" and host["r1"].holds(VIP))
        await anyio.sleep(2 * interval)

        self.say("\n2. SIGKILL of r1 (no priority 0: silence)")
        watch = await call_in_netns(host["r2"].netns, open_address_watch)
        try:
            killed = time.monotonic()
            await self.kill("r1", signal.SIGKILL)
            vip_at = await self.added(watch, VIP)
        finally:
            watch.close()
        await anyio.sleep(interval / 2)
        last = self.last_advert(r1, killed)
        first = self.first_advert(r2, last.when)
        theory = master_down_interval(3, PRIORITIES["r2"], interval)
        self.say(
            f"  -> r2's first advert {1000 * (first.when - last.when):.1f} ms after r1's "
            f"last one (theory Master_Down_Interval {1000 * theory:.1f} ms); VIP on r2 "
            f"{1000 * (vip_at - last.when):.1f} ms after it; the VIP stays on the dead "
            f"r1: {host['r1'].holds(VIP)}"
        )
        await anyio.sleep(2 * interval)

        self.say("\n3. r1 restarts: it removes its stale VIP and preempts r2")
        restarted = time.monotonic()
        await self.start("r1")
        await self.until(
            lambda: (
                self.states.get("r1") == "MASTER"
                and host["r1"].holds(VIP)
                and not host["r2"].holds(VIP)
            )
        )
        took = self.first_advert(r1, restarted).when - restarted
        self.say(
            f"  -> r1 MASTER again, its first advert {1000 * took:.1f} ms after its start "
            f"(theory {1000 * master_down_interval(3, 200, interval):.1f} ms plus process "
            f"start-up)"
        )
        await anyio.sleep(2 * interval)

        self.say("\n4. SIGTERM of r1: graceful hand-back with a priority-0 advert")
        stopping = time.monotonic()
        await self.kill("r1", signal.SIGTERM)
        await self.until(lambda: host["r2"].holds(VIP))
        await anyio.sleep(interval / 2)
        zero = self.first_advert(r1, stopping, zero=True)
        first = self.first_advert(r2, zero.when)
        self.say(
            f"  -> r2's first advert {1000 * (first.when - zero.when):.1f} ms after r1's "
            f"priority-0 advert (theory skew {1000 * skew_time(3, 150, interval):.1f} ms);"
            f" VIP on r1: {host['r1'].holds(VIP)}, on r2: {host['r2'].holds(VIP)}"
        )

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self.tg = tg
            tg.start_soon(self.capture)
            try:
                await self.scenario()
            finally:
                with anyio.CancelScope(shield=True):
                    for name in list(self.processes):
                        await self.kill(name, signal.SIGTERM)
                tg.cancel_scope.cancel()


def run(interval: float = 1.0, out: TextIO = sys.stdout) -> None:
    """Build a three-host lab, play the scenario with a live timeline, delete the lab."""
    out.write(
        f"vrrpkit demo on real interfaces: 3 routers in network namespaces, VRRPv3, "
        f"VRID {VRID}, advert interval {interval} s, VIP {VIP}\n"
    )
    with NetLab(3) as lab:
        for name, lab_host in zip(PRIORITIES, lab.hosts, strict=True):
            out.write(
                f"  {name}: priority {PRIORITIES[name]}, {lab_host.ipv4} on {lab_host.netns}/eth0\n"
            )
        anyio.run(_Demo(lab, interval, out).run)
    out.write("\nLab deleted.\n")


async def _node(kwargs: dict[str, Any]) -> None:
    from vrrpkit.runtime.instance import Instance

    name = str(kwargs.pop("name"))
    inst = Instance(name, **kwargs)
    inst.on_transition(
        lambda c: print(
            json.dumps(
                {
                    "t": time.monotonic(),
                    "old": c.old.value,
                    "new": c.new.value,
                    "reason": c.reason,
                    "priority": c.priority,
                }
            ),
            flush=True,
        )
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with inst:
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``--node JSON`` runs one router (used by the demo's own processes)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--node"]:
        anyio.run(_node, json.loads(args[1]))
        return 0
    run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
