"""Adverts the kernel sends on its own timers: RawAdvertSocket.send_repeatedly (io_uring).

Between namespaces, both families. Nothing here asserts timing: what went out is counted on
the receiving side and compared with what the sender's kernel reports.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path

import anyio
import pytest
from netns import Lab, next_frame, open_capture, opened

from vrrpkit.transports import (
    VRRP_GROUP_V4,
    VRRP_GROUP_V6,
    RawAdvertSocket,
    ReceivedPacket,
    TransportError,
    uring,
)
from vrrpkit.transports.scheduling import SHORT_SLICE, request_short_slice

pytestmark = [pytest.mark.anyio, pytest.mark.netns]

GUARD = 10  # seconds: only a guard against a hang


@pytest.fixture(params=[False, True], ids=["grid", "relative"])
def relative(request: pytest.FixtureRequest) -> bool:
    """Both schedules: rounds on a grid, or each an interval after the one before."""
    return bool(request.param)


def advert(priority: int = 150, vrid: int = 51) -> bytes:
    """A VRRPv3 advert (VRID 51 unless told) with one IPv4 address (checksum left to
    nobody)."""
    return struct.pack("!BBBBHH", 0x31, vrid, priority, 1, 100, 0) + bytes([192, 0, 2, 100])


async def received_within(sock: RawAdvertSocket, seconds: float) -> list[ReceivedPacket]:
    """Every packet ``sock`` receives within ``seconds``."""
    packets: list[ReceivedPacket] = []
    with anyio.move_on_after(seconds):
        while True:
            packets += await sock.receive_batch()
    return packets


@asynccontextmanager
async def queued(
    lab: Lab, rounds: int, *, relative: bool = False, interval: float = 0.02
) -> AsyncIterator[tuple[RawAdvertSocket, RawAdvertSocket, uring.Series]]:
    """A sender on h1 with ``rounds`` rounds of an advert to the IPv4 group queued from now
    on, ``interval`` apart, and a receiver on h2."""
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), interval, rounds, relative=relative
        )
        assert series is not None
        yield sender, receiver, series


@pytest.mark.parametrize("ip_version", [4, 6])
async def test_every_round_goes_out_from_the_sockets_address(
    lab: Lab, ip_version: int, relative: bool
) -> None:
    h1, h2 = lab.hosts
    group = VRRP_GROUP_V4 if ip_version == 4 else VRRP_GROUP_V6
    async with opened(h1, ip_version) as sender, opened(h2, ip_version) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), group)], time.monotonic() + 0.05, 0.02, 5, relative=relative
        )
        assert series is not None
        packets = await received_within(receiver, 0.5)
        sent = series.end()
    assert sent == uring.RoundsSent(5)
    assert len(packets) == 5
    assert {(p.src, p.dst, p.ttl) for p in packets} == {(sender.local_address, group, 255)}


async def test_ending_cancels_the_rounds_not_sent_yet(lab: Lab, relative: bool) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.05, 100, relative=relative
        )
        assert series is not None
        await anyio.sleep(0.12)
        sent = series.end()
        packets = await received_within(receiver, 0.3)
    assert 1 <= sent.rounds < 100 and sent.error is None
    assert len(packets) == sent.rounds


async def test_a_round_reaches_every_destination(lab: Lab, relative: bool) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        packets_out = [(advert(), h2.ipv4), (advert(), VRRP_GROUP_V4)]
        series = sender.send_repeatedly(
            51, packets_out, time.monotonic(), 0.02, 3, relative=relative
        )
        assert series is not None
        packets = await received_within(receiver, 0.3)
        assert series.end().rounds == 3
    assert sorted(str(p.dst) for p in packets) == ["192.0.2.2"] * 3 + ["224.0.0.18"] * 3


async def burst_of_three(lab: Lab, *, relative: bool) -> list[int]:
    """The VRIDs of the adverts of three series due at the same time, 3 rounds each, queued
    in the order 53, 51, 52, in the order they arrived."""
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        first = time.monotonic() + 0.05
        queued = [
            sender.send_repeatedly(
                vrid, [(advert(vrid=vrid), VRRP_GROUP_V4)], first, 0.02, 3, relative=relative
            )
            for vrid in (53, 51, 52)
        ]
        packets = await received_within(receiver, 0.3)
        assert [series.end().rounds for series in queued if series is not None] == [3, 3, 3]
    return [packet.data[1] for packet in packets]


async def test_series_due_at_the_same_time_on_a_grid_go_out_in_key_order(lab: Lab) -> None:
    # Whatever the order they were queued in: a burst keeps its order from round to round.
    assert await burst_of_three(lab, relative=False) == [51, 52, 53] * 3


async def test_series_timed_from_the_previous_advert_keep_one_order_from_round_to_round(
    lab: Lab,
) -> None:
    # Their first timeouts may run out on different CPUs (the submitting thread moves), so
    # the first round's order is not the keys'; each later advert follows its own previous
    # one, timed on one CPU in the order the sends were made.
    vrids = await burst_of_three(lab, relative=True)
    assert sorted(vrids[:3]) == [51, 52, 53]
    assert vrids == vrids[:3] * 3


async def test_a_key_has_one_series_at_a_time(lab: Lab) -> None:
    h1, _ = lab.hosts
    async with opened(h1, 4) as sender:
        first = time.monotonic() + 60
        series = sender.send_repeatedly(51, [(advert(), VRRP_GROUP_V4)], first, 1.0, 4)
        assert series is not None
        assert sender.send_repeatedly(51, [(advert(), VRRP_GROUP_V4)], first, 1.0, 4) is None
        assert sender.send_repeatedly(52, [(advert(), VRRP_GROUP_V4)], first, 1.0, 4) is not None
        assert series.end() == uring.RoundsSent(0)


async def test_a_send_the_kernel_refuses_is_reported_with_its_errno(
    lab: Lab, relative: bool
) -> None:
    h1, _ = lab.hosts
    async with opened(h1, 4) as sender:
        # Broadcast without SO_BROADCAST: sendmsg fails with EACCES.
        broadcast = IPv4Address("255.255.255.255")
        series = sender.send_repeatedly(
            51, [(advert(), broadcast)], time.monotonic(), 0.01, 2, relative=relative
        )
        assert series is not None
        await anyio.sleep(0.1)
        assert series.end() == uring.RoundsSent(2, errno.EACCES)  # tried, and refused
        assert series.failed


async def test_a_refused_destination_costs_the_others_nothing(lab: Lab, relative: bool) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4, multicast=False) as receiver:
        refused = IPv4Address("255.255.255.255")  # EACCES without SO_BROADCAST
        packets_out = [(advert(), refused), (advert(), h2.ipv4)]
        series = sender.send_repeatedly(
            51, packets_out, time.monotonic(), 0.02, 3, relative=relative
        )
        assert series is not None
        packets = await received_within(receiver, 0.3)
        assert series.end() == uring.RoundsSent(3, errno.EACCES)
    assert len(packets) == 3


async def test_what_went_out_is_reported_after_the_socket_closed(lab: Lab, relative: bool) -> None:
    h1, h2 = lab.hosts
    async with opened(h2, 4) as receiver:
        async with opened(h1, 4) as sender:
            series = sender.send_repeatedly(
                51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.05, 100, relative=relative
            )
            assert series is not None
            await anyio.sleep(0.12)
        sent = series.end()  # the socket closed meanwhile: nothing more went
        packets = await received_within(receiver, 0.3)
    assert 1 <= sent.rounds < 100
    assert len(packets) == sent.rounds
    assert (
        sender.send_repeatedly(51, [(advert(), VRRP_GROUP_V4)], 0.0, 1.0, 4, relative=relative)
        is None
    )


@pytest.mark.parametrize("unicast", [False, True], ids=["multicast", "unicast"])
async def test_an_ipv4_round_the_kernel_sends_is_the_packet_the_socket_sends(
    lab: Lab, unicast: bool
) -> None:
    # The kernel-sent ones carry a header written here (IP_HDRINCL, as keepalived's); only
    # the identification and checksum the kernel fills in may differ.
    h1, h2 = lab.hosts
    dst = h2.ipv4 if unicast else VRRP_GROUP_V4
    capture = open_capture(h2)
    try:
        async with opened(h1, 4, unicast_ttl=64) as sender:
            await sender.send(advert(), dst)
            series = sender.send_repeatedly(51, [(advert(), dst)], time.monotonic(), 0.02, 1)
            assert series is not None
            frames = []
            with anyio.fail_after(GUARD):
                while len(frames) < 2:
                    frames.append(await next_frame(capture, is_vrrp_over_ipv4))
            assert series.end().rounds == 1
    finally:
        capture.close()
    sent, kernel_sent = (frame[14:] for frame in frames)

    def compared(packet: bytes) -> bytes:
        return packet[:4] + packet[6:10] + packet[12:]  # not the identification and checksum

    assert compared(kernel_sent) == compared(sent)
    assert kernel_sent[8] == (64 if unicast else 255)  # the socket's unicast TTL


@pytest.mark.parametrize("refusal", [OSError(errno.EPERM, "refused"), TransportError("gone")])
async def test_where_no_header_socket_opens_the_socket_itself_sends_the_rounds(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, refusal: Exception
) -> None:
    def refuse(self: RawAdvertSocket) -> None:
        raise refusal

    monkeypatch.setattr(RawAdvertSocket, "_open_header_socket", refuse)
    async with queued(lab, 3) as (sender, receiver, series):
        packets = await received_within(receiver, 0.3)
        assert series.end() == uring.RoundsSent(3)
    assert [(p.src, p.ttl) for p in packets] == [(sender.local_address, 255)] * 3


def is_vrrp_over_ipv4(frame: bytes) -> bool:
    """Whether an Ethernet frame carries an IPv4 packet of protocol 112."""
    return frame[12:14] == b"\x08\x00" and frame[14 + 9] == 112


def voluntary_switches() -> int:
    """How many times the calling thread has gone to sleep (``voluntary_ctxt_switches``)."""
    for line in Path("/proc/thread-self/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc/thread-self/status")


def sleep_in_select(seconds: float) -> int:
    """Block this thread in ``select()`` (which returns EINTR to Python when interrupted, as an
    event loop's wait does) for ``seconds``; how many times it was woken meanwhile."""
    before = voluntary_switches()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)
    return voluntary_switches() - before


async def test_rounds_timed_from_the_previous_advert_do_not_wake_the_thread_that_queued_them(
    lab: Lab,
) -> None:
    # The kernel's work after each timeout runs in the process's submitting thread.
    async with queued(lab, 10, relative=True) as (_, receiver, series):
        woken = sleep_in_select(0.4)
        packets = await received_within(receiver, 0.1)
        assert series.end().rounds == 10
    assert len(packets) == 10
    assert woken <= 2


def submitting_threads() -> int:
    """How many io_uring submitting threads this process runs."""
    return sum(thread.name == "vrrpkit-uring" for thread in threading.enumerate())


async def test_the_rings_of_a_process_share_one_submitting_thread_until_the_last_closes(
    lab: Lab,
) -> None:
    h1, _ = lab.hosts
    first = time.monotonic() + 60
    async with opened(h1, 4) as one:
        async with opened(h1, 6) as other:
            for sock, group in ((one, VRRP_GROUP_V4), (other, VRRP_GROUP_V6)):
                assert sock.send_repeatedly(51, [(advert(), group)], first, 1.0, 4, relative=True)
            assert submitting_threads() == 1
        assert submitting_threads() == 1
    assert submitting_threads() == 0


def waiting_in() -> int:
    """The system call the submitting thread waits in, once it waits (its number)."""
    (thread,) = [thread for thread in threading.enumerate() if thread.name == "vrrpkit-uring"]
    status = Path(f"/proc/self/task/{thread.native_id}/syscall")
    deadline = time.monotonic() + GUARD
    while (fields := status.read_text().split())[0] == "running" or len(fields) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return int(fields[0])


IO_URING_ENTER, READ = 426, 0  # x86_64


@pytest.mark.parametrize("wait_ring", [True, False], ids=["in-a-ring", "in-a-read"])
async def test_the_submitting_thread_waits_in_a_ring_of_its_own_or_else_in_a_read(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, wait_ring: bool
) -> None:
    # In a ring, the kernel's work for each advert runs inside the wait; a read is restarted.
    if not wait_ring:
        monkeypatch.setattr(uring._WaitRing, "create", classmethod(lambda cls, eventfd: None))
    async with queued(lab, 5, relative=True) as (_, receiver, series):
        assert waiting_in() == (IO_URING_ENTER if wait_ring else READ)
        packets = await received_within(receiver, 0.3)
        assert series.end().rounds == 5
    assert len(packets) == 5


def grants_short_slices() -> bool:
    """Whether the kernel gives a thread that asks a short slice (a probe thread's answer)."""
    granted: list[bool] = []
    probe = threading.Thread(target=lambda: granted.append(request_short_slice()))
    probe.start()
    probe.join()
    return granted[0]


async def test_the_submitting_thread_asks_for_a_short_slice(lab: Lab) -> None:
    # Its wake-ups preempt what runs on their CPU (scheduling.request_short_slice).
    async with queued(lab, 5, relative=True):
        (thread,) = [t for t in threading.enumerate() if t.name == "vrrpkit-uring"]
        sched = Path(f"/proc/self/task/{thread.native_id}/sched").read_text()
    if not grants_short_slices() or "se.slice" not in sched:
        pytest.skip("no custom slices (Linux 6.12+) or no slice reported")
    (line,) = [line for line in sched.splitlines() if line.startswith("se.slice")]
    assert int(line.split(":")[1]) == round(SHORT_SLICE * 1e9)


def test_a_submission_the_thread_makes_after_the_deadline_is_answered_with_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread took the request just in time, then was slow: its count is the truth
    (guessing "none taken" would leave the ring out of step with the kernel)."""
    monkeypatch.setattr(uring, "_SUBMIT_TIMEOUT", 0.05)
    submitter = uring._Submitter.acquire()
    assert submitter is not None
    try:

        def slow_enter(submit: int, wait: int, flags: int, timeout_ns: int) -> int:
            time.sleep(0.2)
            return submit

        assert submitter.enter(slow_enter, 7, 0, 0) == 7
        assert submitter.enter(lambda *args: 3, 3, 0, 0) == 3  # and it serves on
    finally:
        submitter.release()


async def test_a_ring_whose_thread_failed_to_answer_gets_a_fresh_one_for_new_series(
    lab: Lab,
) -> None:
    """The old thread goes on serving what it queued: the kernel runs those entries in it,
    and would cancel them if it exited."""
    h1, _ = lab.hosts
    async with opened(h1, 4) as sock:
        queued = sock.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.05, 40, relative=True
        )
        assert queued is not None
        stale = uring._Submitter._shared
        assert stale is not None
        stale._broken = True  # as after a request it never picked up in time
        first = time.monotonic() + 60
        again = sock.send_repeatedly(
            52, [(advert(vrid=52), VRRP_GROUP_V4)], first, 1.0, 4, relative=True
        )
        assert again is not None and not again.failed
        assert uring._Submitter._shared is not stale
        await anyio.sleep(0.5)
        sent = queued.collect()
        assert sent.rounds >= 5 and sent.error is None and not queued.failed
    with anyio.fail_after(GUARD):  # the old thread is only asked to stop
        while submitting_threads():
            await anyio.sleep(0.01)


def test_a_forked_child_starts_a_submitting_thread_of_its_own() -> None:
    # The parent's thread is not in the child: waiting for it would take a second a call.
    parents = uring._Submitter.acquire()
    assert parents is not None
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                childs = uring._Submitter.acquire()
                started = time.monotonic()
                answered = childs is not None and childs.enter(lambda *_: 7, 0, 0, 0) == 7
                refused = parents.enter(lambda *_: 7, 0, 0, 0) == -1
                if answered and refused and time.monotonic() - started < uring._SUBMIT_TIMEOUT:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        parents.release()


async def test_without_a_submitting_thread_the_event_loop_submits(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unstartable(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    # Only the ring's module: opening a socket in a namespace starts a thread too.
    threads = types.SimpleNamespace(Thread=Unstartable, Lock=threading.Lock)
    monkeypatch.setattr(uring, "threading", threads)
    async with queued(lab, 5, relative=True) as (_, receiver, series):
        packets = await received_within(receiver, 0.3)
        assert series.end().rounds == 5
    assert len(packets) == 5


async def test_without_io_uring_nothing_is_queued(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uring.TimedSends, "create", classmethod(lambda cls, entries=0: None))
    h1, _ = lab.hosts
    async with opened(h1, 4) as sender:
        assert sender.send_repeatedly(51, [(advert(), VRRP_GROUP_V4)], 0.0, 1.0, 4) is None


async def test_an_ipv6_advert_carries_the_kernels_checksum(lab: Lab, relative: bool) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 6) as sender, opened(h2, 6) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V6)], time.monotonic(), 0.02, 1, relative=relative
        )
        assert series is not None
        packets = await received_within(receiver, 0.2)
        series.end()
    assert len(packets) == 1 and packets[0].data[6:8] != b"\0\0"


async def test_collecting_counts_what_went_without_stopping_the_rest(
    lab: Lab, relative: bool
) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.02, 6, relative=relative
        )
        assert series is not None
        await anyio.sleep(0.05)
        early = series.collect()
        packets = await received_within(receiver, 0.3)
        late = series.collect()
        assert series.end() == uring.RoundsSent(0)
    assert early.rounds >= 1 and early.rounds + late.rounds == 6 == len(packets)
    assert not early.unsettled  # a running series is not an unsettled one


async def test_extending_queues_rounds_behind_the_last(lab: Lab) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        first = time.monotonic()
        series = sender.send_repeatedly(51, [(advert(), VRRP_GROUP_V4)], first, 0.02, 2)
        assert series is not None
        assert series.next_deadline == pytest.approx(first + 0.04)
        assert series.extend(3)
        assert series.next_deadline == pytest.approx(first + 0.1)
        packets = await received_within(receiver, 0.3)
        assert series.end() == uring.RoundsSent(5)
    assert len(packets) == 5
    assert not series.extend(1)  # ended


async def test_a_timeout_the_kernel_refuses_fails_the_series_and_sends_nothing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    # A kernel that does not know a timeout flag refuses every timeout (before Linux 5.16,
    # ETIME_SUCCESS): the series must say so rather than look like a quiet success.
    monkeypatch.setattr(uring, "_TIMEOUT_ETIME_SUCCESS", 1 << 20)
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.02, 3, relative=relative
        )
        assert series is not None
        packets = await received_within(receiver, 0.2)
        assert series.collect() == uring.RoundsSent(0, errno.EINVAL)
        assert series.failed and not series.extend(3)
        assert series.end() == uring.RoundsSent(0)
    assert packets == []


async def test_a_round_the_kernel_takes_only_in_part_fails_the_series_and_sends_nothing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, relative: bool
) -> None:
    # The kernel may take fewer entries than handed (out of memory): the round's timeout
    # without its sends. The rest are taken back unsent, and the timeout is cancelled.
    enter = uring.TimedSends._enter
    cut: list[int] = []

    def takes_one(self: uring.TimedSends, submit: int, *args: int) -> int:
        if submit > 1 and not cut:
            cut.append(submit)
            submit = 1
        return enter(self, submit, *args)

    monkeypatch.setattr(uring.TimedSends, "_enter", takes_one)
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        first = time.monotonic() + 0.05
        assert (
            sender.send_repeatedly(
                51, [(advert(), VRRP_GROUP_V4)], first, 0.02, 3, relative=relative
            )
            is None
        )
        packets = await received_within(receiver, 0.2)
    assert cut and packets == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_ring_without_a_needed_feature_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uring, "_NEEDED_FEATURES", uring._NEEDED_FEATURES | 1 << 31)
    assert uring.TimedSends.create() is None


def test_inside_a_time_namespace_no_ring_is_used() -> None:
    # io_uring's timeouts run on the host's monotonic clock, not the namespace's.
    code = "from vrrpkit.transports.uring import TimedSends; print(TimedSends.create())"
    result = subprocess.run(
        ["unshare", "--time", "--monotonic", "1000", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip() == "None"


# -- timed from the previous advert ---------------------------------------------------------


async def test_rounds_timed_from_the_previous_advert_run_in_chains_that_take_turns(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ring of 8 entries holds chains of 3 rounds (with a chain's wait and signal): 2 + 5
    # rounds make four chains, which must run one after another, every round once.
    create = uring.TimedSends.create.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        uring.TimedSends, "create", classmethod(lambda cls, entries=8: create(cls, 8))
    )
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.02, 2, relative=True
        )
        assert series is not None and series.extend(5)
        packets = await received_within(receiver, 0.4)
        assert series.end() == uring.RoundsSent(7)
    assert len(packets) == 7
    stamps = [packet.timestamp for packet in packets]
    assert all(stamp is not None for stamp in stamps)
    assert min(b - a for a, b in itertools.pairwise(stamps)) > 0.01  # type: ignore[operator]


async def test_ending_cancels_the_chains_still_waiting_their_turn(lab: Lab) -> None:
    h1, h2 = lab.hosts
    async with opened(h1, 4) as sender, opened(h2, 4) as receiver:
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.05, 3, relative=True
        )
        assert series is not None and series.extend(3) and series.extend(3)
        await anyio.sleep(0.07)
        sent = series.end()
        packets = await received_within(receiver, 0.4)
    assert 1 <= sent.rounds < 9 and not sent.unsettled
    assert len(packets) == sent.rounds


# -- halting: cancelling without waiting for the kernel to settle -----------------------------


async def test_a_halt_between_rounds_vouches_that_no_round_goes_any_more(
    lab: Lab, relative: bool
) -> None:
    async with queued(lab, 100, relative=relative, interval=0.2) as (_, receiver, series):
        await anyio.sleep(0.3)  # halfway between the second round and the third
        assert series.halt()
        made = series.collect()
        packets = await received_within(receiver, 0.3)
        late = series.end()
    assert 1 <= made.rounds < 100 and made.error is None
    assert late.rounds == 0 and not late.unsettled
    assert len(packets) == made.rounds


async def test_a_halt_catches_the_chains_waiting_their_turn_too(lab: Lab) -> None:
    async with queued(lab, 3, relative=True, interval=0.2) as (_, receiver, series):
        assert series.extend(3) and series.extend(3)
        await anyio.sleep(0.3)  # halfway between the second round and the third
        assert series.halt()
        made = series.collect().rounds
        packets = await received_within(receiver, 0.4)
        assert series.end() == uring.RoundsSent(0)
    assert len(packets) == made


async def test_a_halt_does_not_vouch_for_a_round_it_did_not_find_waiting(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    # Rounds that went out after the last reading of the completions are not found by the
    # cancels: the halt cannot tell them from rounds on their way out.
    async with queued(lab, 2, relative=relative) as (_, _, series):
        await anyio.sleep(0.1)  # both rounds went; their completions are not read yet
        reap = uring.TimedSends.reap
        skipped: list[bool] = []

        def late_reader(self: uring.TimedSends) -> None:
            if not skipped:
                skipped.append(True)
                return
            reap(self)

        monkeypatch.setattr(uring.TimedSends, "reap", late_reader)
        assert not series.halt()
        assert series.end().rounds == 2


async def test_a_failed_series_is_not_halted(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    monkeypatch.setattr(uring, "_TIMEOUT_ETIME_SUCCESS", 1 << 20)  # every timeout refused
    async with queued(lab, 3, relative=relative) as (_, _, series):
        await anyio.sleep(0.05)
        series.collect()
        assert not series.halt()
        series.end()


async def test_an_ended_series_is_not_halted(lab: Lab) -> None:
    async with queued(lab, 4) as (_, _, series):
        series.end()
        assert not series.halt()


_STOPPED_SENDER = """
import sys, time, anyio
from vrrpkit.transports import VRRP_GROUP_V4, RawAdvertSocket

async def main() -> None:
    sock = await RawAdvertSocket.open("eth0", 4)
    advert = bytes.fromhex(sys.argv[1])
    series = sock.send_repeatedly(51, [(advert, VRRP_GROUP_V4)], time.monotonic(), 0.02, 40,
                                  sys.argv[2] == "relative")
    print("queued" if series is not None else "refused", flush=True)
    await anyio.sleep(30)

anyio.run(main)
"""


@pytest.mark.parametrize(("schedule", "burst"), [("relative", False), ("grid", True)])
async def test_a_stopped_sender_bursts_on_continuing_only_on_a_grid(
    lab: Lab, schedule: str, burst: bool
) -> None:
    # The kernel runs a sender's completions in its thread: while it is stopped nothing goes.
    # On a grid every deadline missed meanwhile then goes at once; timed from the previous
    # advert, only the one that was due, and the next an interval later (as keepalived).
    h1, h2 = lab.hosts
    argv = ["ip", "netns", "exec", h1.netns, sys.executable, "-c", _STOPPED_SENDER]
    async with opened(h2, 4) as receiver:
        with subprocess.Popen(
            [*argv, advert().hex(), schedule],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        ) as child:
            try:
                assert child.stdout is not None
                assert await anyio.to_thread.run_sync(child.stdout.readline) == "queued\n"
                await anyio.sleep(0.05)
                child.send_signal(signal.SIGSTOP)
                await received_within(receiver, 0.2)  # what went before the stop
                child.send_signal(signal.SIGCONT)
                packets = await received_within(receiver, 0.1)
            finally:
                child.kill()
    stamps = [packet.timestamp for packet in packets]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]  # type: ignore[operator]
    assert len(packets) >= 3
    assert (min(gaps) < 0.005) is burst


async def test_ending_a_series_timed_from_the_previous_advert_says_when_the_next_was_due(
    lab: Lab,
) -> None:
    h1, _ = lab.hosts
    async with opened(h1, 4) as sender:
        start = time.monotonic()
        series = sender.send_repeatedly(
            51, [(advert(), VRRP_GROUP_V4)], start, 0.05, 10, relative=True
        )
        assert series is not None
        await anyio.sleep(0.12)
        before = time.monotonic()
        sent = series.end()
    assert sent.rounds >= 1 and sent.next_due is not None
    # Not made yet, and no more than an interval after the last one made.
    assert before <= sent.next_due <= time.monotonic() + 0.05


async def test_ending_a_series_on_a_grid_leaves_the_next_deadline_to_the_grid(lab: Lab) -> None:
    h1, _ = lab.hosts
    async with opened(h1, 4) as sender:
        series = sender.send_repeatedly(51, [(advert(), VRRP_GROUP_V4)], time.monotonic(), 0.05, 4)
        assert series is not None
        assert series.end().next_due is None


# -- the lag a timeout timed from the previous advert starts after ----------------------------


def test_no_lag_is_taken_off_before_enough_rounds_went() -> None:
    assert uring.lag_per_round(1.0, uring._LAG_ROUNDS - 1, 0.5, 0.01) == 0.0


def test_the_lag_taken_off_is_what_each_round_took_beyond_its_timeout_at_least() -> None:
    # 100 rounds of 10 ms timeouts took 1.04 s after the first, the last one went at most
    # two intervals before: each took at least (1.04 - 0.02 - 1.0) / 100 = 0.2 ms more.
    assert uring.lag_per_round(1.04, 100, 1.0, 0.01) == pytest.approx(0.0002)


def test_rounds_that_went_no_later_than_their_timeouts_have_no_lag_taken_off() -> None:
    assert uring.lag_per_round(1.0, 100, 1.0, 0.01) == 0.0


def test_the_lag_taken_off_is_at_most_a_tenth_of_the_interval_and_2_ms() -> None:
    # A process stopped for a second meanwhile is no lag of the kernel's.
    assert uring.lag_per_round(3.0, 100, 1.0, 0.01) == 0.001
    assert uring.lag_per_round(300.0, 100, 10.0, 0.1) == 0.002
