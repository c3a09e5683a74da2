"""Speed of the pure core and of the simulator (no privileges needed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import ip_address

from vrrpkit import Advertisement, Router, RouterConfig, State
from vrrpkit.testing import Simulation

SRC = ip_address("192.0.2.9")
GROUP = ip_address("224.0.0.18")


def _rate(fn: Callable[[int], None], n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` operations per second of ``fn(n)`` doing ``n`` operations."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def decode_rate() -> float:
    """Adverts decoded per second (v3 IPv4, one VIP, checksum with the pseudo-header)."""
    adv = Advertisement(version=3, vrid=1, priority=200, interval=1.0, addresses=["192.0.2.100"])
    data = adv.encode(src=SRC, dst=GROUP)
    decode = Advertisement.decode

    def run(n: int) -> None:
        for _ in range(n):
            decode(data, src=SRC, dst=GROUP)

    return _rate(run, 100_000)


def _backup_receiving(datas: list[bytes]) -> Callable[[int], None]:
    router = Router(
        RouterConfig(name="b", vrid=1, priority=100, address="192.0.2.1", vips=["192.0.2.100"])
    )
    router.start(0.0)
    assert router.state is State.BACKUP
    receive = router.receive_packet
    count = len(datas)

    def run(n: int) -> None:
        for i in range(n):
            receive(datas[i % count], src=SRC, dst=GROUP, ttl=255, now=i * 1e-6)

    return run


def decode_and_step_rate() -> float:
    """Adverts decoded, checked and processed per second by a BACKUP router.

    Two adverts in turn (priorities 200 and 201), so that none is a repeat of the one before.
    """
    datas = [
        Advertisement(
            version=3, vrid=1, priority=priority, interval=1.0, addresses=["192.0.2.100"]
        ).encode(src=SRC, dst=GROUP)
        for priority in (200, 201)
    ]
    return _rate(_backup_receiving(datas), 100_000)


def repeat_step_rate() -> float:
    """The advert a backup hears every interval from its master, processed per second.

    The hot receive path: the same bytes as the last accepted advert skip decoding and checks.
    """
    adv = Advertisement(version=3, vrid=1, priority=200, interval=1.0, addresses=["192.0.2.100"])
    return _rate(_backup_receiving([adv.encode(src=SRC, dst=GROUP)]), 100_000)


def simulated_day_seconds() -> float:
    """Wall seconds to simulate one day of a 3-router cluster at 1 s adverts."""
    sim = Simulation(seed=1)
    for i, prio in enumerate((200, 150, 100), start=1):
        sim.add_router(
            f"r{i}", vrid=51, priority=prio, address=f"192.0.2.{i}", vips=["192.0.2.100"]
        )
    start = time.perf_counter()
    sim.run_for(86_400)
    elapsed = time.perf_counter() - start
    assert sim.masters() == ["r1"]
    return elapsed


def many_vrids_speedup(vrids: int = 255, seconds: float = 600.0) -> float:
    """Simulated seconds per wall second for ``vrids`` VRIDs, each with a master and a backup."""
    sim = Simulation(seed=1)
    for vrid in range(1, vrids + 1):
        sim.add_router(
            f"m{vrid}",
            vrid=vrid,
            priority=200,
            address="192.0.2.1",
            vips=[f"198.51.100.{vrid % 250 + 1}"],
        )
        sim.add_router(
            f"b{vrid}",
            vrid=vrid,
            priority=100,
            address="192.0.2.2",
            vips=[f"198.51.100.{vrid % 250 + 1}"],
        )
    start = time.perf_counter()
    sim.run_for(seconds)
    elapsed = time.perf_counter() - start
    assert len(sim.masters()) == vrids
    return seconds / elapsed


def fake_clock_speedup(backend: str, seconds: float = 600.0) -> float:
    """Virtual seconds per wall second of three Instances at 0.1 s on the fake clock and
    network (what a user's failover test runs), under ``backend`` (asyncio or trio)."""
    import anyio

    from vrrpkit import Instance
    from vrrpkit.testing.fakes import (
        FakeAddressManager,
        FakeAnnouncer,
        FakeClock,
        FakeLinkMonitor,
        FakeNetwork,
    )

    async def run() -> float:
        clock, net = FakeClock(), FakeNetwork()
        instances = [
            Instance(
                f"r{i}", interface="eth0", vrid=51, priority=prio, vips=["192.0.2.100"],
                interval=0.1, clock=clock, socket=net.socket(f"192.0.2.{i}"),
                addresses=FakeAddressManager(), links=FakeLinkMonitor(),
                announcer=FakeAnnouncer(),
            )
            for i, prio in enumerate((200, 150, 100), start=1)
        ]  # fmt: skip
        async with anyio.create_task_group() as tg:
            for inst in instances:
                await tg.start(inst.run)
            start = time.perf_counter()
            await clock.advance(seconds)
            elapsed = time.perf_counter() - start
            assert instances[0].state is State.MASTER
            for inst in instances:
                inst.stop()
        return seconds / elapsed

    return anyio.run(run, backend=backend)


def rows() -> list[tuple[str, str, str]]:
    """(measure, value, target) rows for the table."""
    decode = decode_rate()
    step = decode_and_step_rate()
    repeat = repeat_step_rate()
    day = simulated_day_seconds()
    many = many_vrids_speedup()
    fake = {backend: fake_clock_speedup(backend) for backend in ("asyncio", "trio")}
    return [
        ("advert decode (v3 IPv4, 1 VIP)", f"{decode:,.0f} /s", "-"),
        # The target's row since session 1: the same advert every time, as a master sends it.
        ("BACKUP state step, master's repeated advert", f"{repeat:,.0f} /s", ">= 200,000 /s"),
        ("BACKUP state step, a new advert each time", f"{step:,.0f} /s", "-"),
        ("1 simulated day, 3 routers at 1 s", f"{day:.2f} s wall", "<= 3 s"),
        ("  = simulated s per wall s", f"{86_400 / day:,.0f}", "-"),
        ("255 VRIDs x 2 routers at 1 s", f"{many:,.0f} sim s / wall s", "-"),
        *(
            (f"3 Instances at 0.1 s, fake clock, {backend}", f"{speed:,.0f} virt s / wall s", "-")
            for backend, speed in fake.items()
        ),
    ]
