"""Adverts the kernel sends at their deadlines: io_uring timeouts linked to ``sendmsg``.

A steady MASTER sends the same bytes every interval. Woken by a timer for each, a Python
process pays an event-loop wake-up per advert; queued here as (timeout, sendmsg) pairs, the
kernel sends them at their deadlines and the process only wakes to queue more.

Two schedules, as the router's own timer has (``RouterConfig.align_adverts``):

- on a grid (absolute deadlines, every ``interval`` from the first): each round is its own
  chain, and a round the kernel sends late leaves the next one on the grid;
- one interval after the previous advert went out (RFC 5798 §6.4.3 resets the Adver_Timer
  when it sends; keepalived's timer does the same): the rounds form one chain, each timeout
  starting when the round before it was sent. A late advert then delays the next ones
  instead of being followed by a short gap. A series' chains run one after another: each
  ends by writing an eventfd that the next one starts by reading.
No liburing: the ring is set up and filled through ``ctypes``. Rounds timed from the previous
advert are handed to the kernel by the process's submitting thread, in which the kernel's
work for them then runs instead of in the event loop's (see :class:`_Submitter`); nothing
waits on the ring for completions, which are read whenever a series is collected.

Where io_uring is missing, refused (``kernel.io_uring_disabled``, seccomp filters of container
runtimes) or too old for what is used here (Linux 5.19: skipped completions, timed waits,
cancelling all matches), and inside a time namespace (io_uring's timeouts run on the host's
monotonic clock), :meth:`TimedSends.create` returns None and the caller keeps sending on its
own timer.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence

import attrs

from vrrpkit.transports.scheduling import request_short_slice

__all__ = ["RoundsSent", "Series", "TimedMessage", "TimedSends"]

logger = logging.getLogger(__name__)

_NR_IO_URING_SETUP = 425
_NR_IO_URING_ENTER = 426

_IORING_SETUP_CQSIZE = 1 << 3
_IORING_SETUP_CLAMP = 1 << 4
_IORING_FEAT_NODROP = 1 << 1
_IORING_FEAT_EXT_ARG = 1 << 8
_IORING_FEAT_CQE_SKIP = 1 << 11
_NEEDED_FEATURES = _IORING_FEAT_NODROP | _IORING_FEAT_EXT_ARG | _IORING_FEAT_CQE_SKIP
_IORING_ENTER_GETEVENTS = 1 << 0
_IORING_ENTER_EXT_ARG = 1 << 3
_IORING_SQ_CQ_OVERFLOW = 1 << 1
_IORING_OFF_SQES = 0x10000000
_MAP_POPULATE = 0x8000

_OP_SENDMSG = 9
_OP_TIMEOUT = 11
_OP_ASYNC_CANCEL = 14
_OP_READ = 22
_OP_WRITE = 23
_IOSQE_IO_LINK = 1 << 2
_IOSQE_IO_HARDLINK = 1 << 3
_IOSQE_CQE_SKIP_SUCCESS = 1 << 6
_TIMEOUT_ABS = 1 << 0
_TIMEOUT_ETIME_SUCCESS = 1 << 5
_CANCEL_ALL = 1 << 0
_MSG_DONTWAIT = 0x40

# user_data: the series' serial number above, what the entry is below. On a grid a round is
# one chain: timeout -> sendmsg => sendmsg => ... The sends are hard-linked (a destination
# the kernel refuses must not cost the others their advert) behind a soft-linked timeout
# (cancelled, it takes the whole round with it: a round goes to every destination or to
# none). Timed from the previous advert, a chain is [read eventfd ->] timeout -> sendmsg =>
# ... => timeout -> sendmsg => ... => write eventfd: a failed timeout or read ends it.
_TIMEOUT, _SEND, _LAST_SEND, _WAIT, _SIGNAL, _CANCEL, _PROBE = 1, 2, 3, 4, 5, 6, 7
# A halt's cancels (Series.halt) say what they found: _CANCEL plus the kind cancelled, shifted.
_CANCEL_OF = 4
_CURRENT_POSITION = 2**64 - 1  # an offset of -1: the file's own (an eventfd has none)

_SQE = struct.Struct("=BBHiQQIIQHHiQQ")
_CQE = struct.Struct("=QiI")
_U32 = struct.Struct("=I")
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_IOVEC = struct.Struct("=QQ")
_TIMESPEC = struct.Struct("=qq")

# Settling a series: waits of 2 ms for its last completions, 100 ms at most, the cancels
# submitted again every 10 ms (a send whose timeout ran out meanwhile completes on its own).
_SETTLE_BUDGET = 0.1
_SETTLE_WAIT_NS = 2_000_000
_CANCEL_EVERY = 0.01
_ORDER_NS = 100  # nanoseconds between series due at the same time, by key
# Timed from the previous advert, the next timeout starts only once the kernel has woken the
# thread and made the round's sends (and those of every other series due then): a lag of
# 0.05-0.4 ms per round on the VM of docs/benchmarks.md. It is measured over the rounds made
# (at least this many) and taken off the timeouts, a tenth of the interval or 2 ms at most.
_LAG_ROUNDS = 64
_LAG_MOST = 0.002
_SUBMIT_TIMEOUT = 1.0  # seconds the submitting thread has to answer (it answers in micro-)


class _Params(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", ctypes.c_uint32 * 10),
        ("cq_off", ctypes.c_uint32 * 10),
    ]


@attrs.frozen
class TimedMessage:
    """One datagram of a round: its bytes, the ``sockaddr`` and the ancillary data, raw."""

    data: bytes
    name: bytes
    control: bytes = b""


@attrs.frozen
class RoundsSent:
    """What became of a series' rounds since it was last asked.

    ``rounds``: rounds whose deadline came and whose sends were made (whatever the kernel
    answered: a timer-driven sender counts an advert it tried too); ``error``: the first errno
    a send or timeout failed with; ``unsettled``: entries the kernel did not settle when the
    series ended (they may still go out). ``next_due``, for a series ended that was timed from
    the previous advert: when its next round would have gone out, as near as known (within an
    interval: the kernel does not say when it sent each round); None on a grid.
    """

    rounds: int
    error: int | None = None
    unsettled: bool = False
    next_due: float | None = attrs.field(default=None, eq=False)


@attrs.define(eq=False)
class _State:
    """A series' entries in the kernel; its buffers stay alive until the last one settles."""

    serial: int
    fd: int
    msghdrs: list[int]
    buffers: list[ctypes.Array[ctypes.c_char]]
    relative: bool = False  # each timeout starts when the previous round went out
    eventfd: int = -1  # relative: passes the turn from one chain to the next
    chained: bool = False  # relative: a chain was queued (the next ones wait their turn)
    queued: int = 0  # rounds queued, ever
    made: int = 0  # rounds made, ever
    # relative: when round ``made_then + 1`` was thought due, at the last queueing
    due_then: float = 0.0
    made_then: int = 0
    template: bytes | None = None  # relative: the entries of a round after the first
    first_at: float = 0.0  # relative: when the first round went (on its deadline)
    timeout_ns: int = 0  # relative: the timeout of the rounds queued next
    # relative: (rounds, timeout_ns) of each chain not wholly made yet, in order; and the
    # rounds and timeout nanoseconds of those that were
    timeouts: collections.deque[tuple[int, int]] = attrs.Factory(collections.deque)
    timed_rounds: int = 0
    timed_ns: int = 0
    # A halt's cancels: what each found (by the kind it cancelled), and when they went.
    found: dict[int, int] = attrs.Factory(dict)
    cancelled_at: float = -math.inf
    outstanding: int = 0  # rounds (on a grid) or chains (relative) not settled
    rounds: int = 0  # rounds made since the last collect
    error: int | None = None  # first error since the last collect
    failed: bool = False  # any error, ever
    ended: bool = False


class Series:
    """One key's rounds queued on a :class:`TimedSends` ring (see :meth:`TimedSends.start`)."""

    def __init__(self, sends: TimedSends, key: int, state: _State, interval: float) -> None:
        self._sends = sends
        self._state = state
        self.key = key
        #: Seconds between rounds.
        self.interval = interval
        #: The deadline of the round :meth:`extend` would queue next.
        self.next_deadline = 0.0

    @property
    def failed(self) -> bool:
        """Whether any send or timeout of the series failed (collected or not)."""
        return self._state.failed

    def collect(self) -> RoundsSent:
        """The rounds made since the last collect, without cancelling any."""
        if not self._state.ended:
            self._sends.reap()
        return self._take(ending=False)

    def extend(self, rounds: int) -> bool:
        """Queue ``rounds`` more rounds after the last queued; False if that failed."""
        if self._state.ended or self._state.failed:
            return False
        return self._sends.queue(self, self.next_deadline, rounds)

    def end(self) -> RoundsSent:
        """Cancel the rounds not made yet, wait until the kernel settled every entry, and
        return what was made since the last collect."""
        self._sends.settle(self)
        return self._take(ending=True)

    def halt(self) -> bool:
        """Cancel the rounds not made yet without waiting for the kernel to settle them.

        True if each round (or chain) not made was found waiting for its time, its timeout
        or its turn cancelled: none of them goes out, and what :meth:`collect` says now is
        all that was made. (A timeout that runs out while the cancel looks for it is counted
        as found too: the kernel does not tell the two apart. Its advert may still go; the
        rounds :meth:`end` reports then say so.) :meth:`end` must follow.
        """
        return self._sends.halt(self)

    def _take(self, *, ending: bool) -> RoundsSent:
        state = self._state
        next_due = None
        if ending and state.relative and state.chained:
            # The round after the last one made: from when the next was thought due at the
            # last queueing, an interval per round made since, and certainly after now (it
            # was not made) and no more than an interval away (the last one was).
            now = time.monotonic()
            guess = state.due_then + (state.made - state.made_then) * self.interval
            next_due = min(max(guess, now), now + self.interval)
        sent = RoundsSent(
            state.rounds, state.error, unsettled=ending and state.outstanding > 0, next_due=next_due
        )
        state.rounds = 0
        state.error = None
        return sent


class TimedSends:
    """One io_uring sending rounds of datagrams at absolute ``CLOCK_MONOTONIC`` deadlines.

    Each key (a VRID on one socket) has at most one :class:`Series` at a time. A round is
    one timeout linked to a ``sendmsg`` per datagram. Completions are read
    whenever a series is collected, extended or ended. Not thread-safe: one thread (the
    event loop's) uses a ring; the process's submitting thread only makes the ring's
    ``io_uring_enter`` calls it is handed, while that thread waits for them.
    """

    def __init__(self, fd: int, params: _Params, libc: ctypes.CDLL) -> None:
        self._fd = fd
        self._libc = libc
        sq, cq = list(params.sq_off), list(params.cq_off)
        self._sq_tail, self._sq_flags_off = sq[1], sq[4]
        self._cq_head, self._cq_tail, self._cqes = cq[0], cq[1], cq[5]
        self._sq_entries = params.sq_entries
        self._cq_entries = params.cq_entries
        self._ring, self._sqes = _map_ring(fd, params)
        # The kernel copies a timeout's time when it takes the entry: one buffer serves all.
        self._specs = ctypes.create_string_buffer(params.sq_entries * _TIMESPEC.size)
        self._keys: dict[int, Series] = {}
        # What a key's last series timed from the previous advert took off its timeouts.
        self._lags: dict[int, int] = {}
        self._by_serial: dict[int, _State] = {}
        self._serial = 0
        self._closed = False
        # Made on the first series timed from the previous advert (see _hand_over).
        self._submitter: _Submitter | None = None
        self._submitter_tried = False
        self._retired: list[_Submitter] = []  # replaced submitters, released at close

    @classmethod
    def create(cls, entries: int = 256, completions: int = 4096) -> TimedSends | None:
        """A ring of ``entries`` submission and ``completions`` completion slots, or None
        where io_uring cannot serve (see the module's docstring)."""
        if _monotonic_offset() != 0:
            logger.info("in a time namespace: adverts keep their own timer")
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
        except (OSError, AttributeError):
            return None
        syscall.restype = ctypes.c_long
        params = _Params()
        params.flags = _IORING_SETUP_CLAMP | _IORING_SETUP_CQSIZE
        params.cq_entries = completions
        fd = syscall(
            ctypes.c_long(_NR_IO_URING_SETUP), ctypes.c_uint(entries), ctypes.byref(params)
        )
        if fd < 0:
            logger.info("io_uring unavailable (%s): adverts keep their own timer", _why())
            return None
        if params.features & _NEEDED_FEATURES != _NEEDED_FEATURES:
            os.close(fd)
            logger.info(
                "io_uring too old (features %#x): adverts keep their own timer", params.features
            )
            return None
        try:
            sends = cls(fd, params, libc)
        except (OSError, ValueError) as exc:
            os.close(fd)
            logger.info("io_uring rings cannot be mapped (%s)", exc)
            return None
        if not sends._cancels_all():
            sends.close()
            logger.info("io_uring cannot cancel all matches: adverts keep their own timer")
            return None
        return sends

    def _cancels_all(self) -> bool:
        # IORING_ASYNC_CANCEL_ALL (Linux 5.19): a kernel without it refuses the flag.
        tail = self._load(self._sq_tail)
        self._write_entries(tail, _entry(_OP_ASYNC_CANCEL, 0, -1, _PROBE, 0, _CANCEL_ALL, _PROBE))
        _U32.pack_into(self._ring, self._sq_tail, (tail + 1) & 0xFFFFFFFF)
        if self._enter(1, 1, _IORING_ENTER_GETEVENTS) != 1:
            return False
        head = self._load(self._cq_head)
        if head == self._load(self._cq_tail):
            return False
        _, result, _ = _CQE.unpack_from(
            self._ring, self._cqes + (head & (self._cq_entries - 1)) * _CQE.size
        )
        _U32.pack_into(self._ring, self._cq_head, (head + 1) & 0xFFFFFFFF)
        return bool(result != -errno.EINVAL)

    def start(
        self,
        key: int,
        fd: int,
        messages: Sequence[TimedMessage],
        first: float,
        interval: float,
        rounds: int,
        relative: bool = False,
    ) -> Series | None:
        """Queue ``rounds`` rounds of ``messages`` on socket ``fd``, the first at ``first``,
        the next every ``interval`` on from it, or ``interval`` after the previous one went
        out if ``relative``; None if the key has a series running or the kernel refused."""
        if self._closed or not messages or interval <= 0 or key in self._keys:
            return None
        if 1 + len(messages) + 2 * relative > self._sq_entries:
            return None
        eventfd = -1
        if relative:
            try:
                eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            except OSError as exc:
                logger.warning("io_uring: no eventfd for a series (%s)", exc)
                return None
        buffers: list[ctypes.Array[ctypes.c_char]] = []
        msghdrs = [_msghdr(message, buffers) for message in messages]
        if relative:
            # The interval of every timeout but the first (the kernel copies it when it takes
            # the entry), where the turn's value is read into, and the value a chain's end
            # writes: the three last buffers.
            interval_ns = round(interval * 1e9)
            interval_ns -= min(self._lags.get(key, 0), interval_ns // 10)
            spec = _TIMESPEC.pack(*divmod(interval_ns, 1_000_000_000))
            buffers += (
                ctypes.create_string_buffer(spec, len(spec)),
                ctypes.create_string_buffer(8),
                ctypes.create_string_buffer(b"\1", 8),
            )
        self._serial += 1
        state = _State(self._serial, fd, msghdrs, buffers, relative, eventfd)
        if relative:
            state.timeout_ns = interval_ns
        series = Series(self, key, state, interval)
        self._keys[key] = series
        self._by_serial[state.serial] = state
        if not self.queue(series, first, rounds):
            self.settle(series)
            return None
        return series

    # -- queueing ------------------------------------------------------------------------

    def queue(self, series: Series, first: float, rounds: int) -> bool:
        """Queue ``rounds`` rounds of ``series`` from ``first`` on (see :meth:`Series.extend`)."""
        state = series._state
        if self._closed or state.ended or rounds < 1:
            return False
        if state.relative:
            return self._queue_chains(series, first, rounds)
        per_round = 1 + len(state.msghdrs)
        specs = ctypes.addressof(self._specs)
        # In whole nanoseconds: series due in step (aligned adverts) stay exactly in step.
        base_ns, step_ns = round(first * 1e9), round(series.interval * 1e9)
        # The kernel runs timeouts due at the same time in the order it took them; series
        # refilled at different times would change places within such a burst from one
        # round to the next, and each advert's gap would jitter by up to the burst's
        # length. Keyed offsets of 100 ns keep one order: the key's.
        first_ns = base_ns + (series.key & 0xFF) * _ORDER_NS
        tail = self._load(self._sq_tail)
        pending = 0
        state.queued += rounds
        for number in range(rounds):
            if pending + per_round > self._sq_entries:
                if not self._submit(tail, pending, per_round, state):
                    return False
                pending = 0
            seconds, nanoseconds = divmod(first_ns + number * step_ns, 1_000_000_000)
            slot = tail & (self._sq_entries - 1)
            _TIMESPEC.pack_into(self._specs, slot * _TIMESPEC.size, seconds, nanoseconds)
            spec = specs + slot * _TIMESPEC.size
            self._write_entries(tail, self._round(state, spec, _TIMEOUT_ABS, last_link=0))
            tail += per_round
            pending += per_round
            series.next_deadline = (base_ns + (number + 1) * step_ns) / 1e9
        return not pending or self._submit(tail, pending, per_round, state)

    def _queue_chains(self, series: Series, first: float, rounds: int) -> bool:
        """Queue ``rounds`` rounds timed from the previous advert, in chains that each fit in
        the ring and take their turn (see the module's docstring)."""
        state = series._state
        tag = state.serial << 8
        per_round = 1 + len(state.msghdrs)
        most = (self._sq_entries - 2) // per_round  # rounds in a chain, with its wait and signal
        spec, turn, signal = (ctypes.addressof(buffer) for buffer in state.buffers[-3:])
        starting = not state.chained
        if starting:
            state.first_at = max(first, time.monotonic())
        else:
            self._take_off_lag(series)
        while rounds > 0:
            count = min(rounds, most)
            tail = self._load(self._sq_tail)
            start = tail
            if state.chained:
                wait = _entry(
                    _OP_READ, _IOSQE_IO_LINK | _IOSQE_CQE_SKIP_SUCCESS, state.eventfd, turn, 8,
                    0, tag | _WAIT, _CURRENT_POSITION,
                )  # fmt: skip
                self._write_entries(tail, wait)
                tail += 1
            else:
                # The series' first advert, at its deadline (keyed, as on the grid).
                first_ns = round(first * 1e9) + (series.key & 0xFF) * _ORDER_NS
                slot = tail & (self._sq_entries - 1)
                _TIMESPEC.pack_into(self._specs, slot * _TIMESPEC.size, *divmod(first_ns, 10**9))
                first_spec = ctypes.addressof(self._specs) + slot * _TIMESPEC.size
                self._write_entries(tail, self._round(state, first_spec, _TIMEOUT_ABS))
                tail += per_round
                count -= 1
                rounds -= 1
                state.queued += 1
            # Every other round's entries are the same bytes.
            if state.template is None:
                state.template = self._round(state, spec, 0)
            self._write_entries(tail, state.template * count)
            state.timeouts.append((count, state.timeout_ns))
            tail += count * per_round
            signalled = _entry(
                _OP_WRITE, 0, state.eventfd, signal, 8, 0, tag | _SIGNAL, _CURRENT_POSITION
            )
            self._write_entries(tail, signalled)
            tail += 1
            state.chained = True
            state.queued += count
            rounds -= count
            taken = self._hand_over(tail, tail - start, relative=True)
            if taken:
                state.outstanding += 1  # a chain settles once: its signal, or what failed
            if taken < tail - start:
                state.failed = True
                logger.warning("io_uring took %d of %d entries", taken, tail - start)
                return False
        now = time.monotonic()
        # The next round is due at the series' first deadline, or (the kernel does not say
        # when it sent the last one) half an interval from now, on average.
        state.due_then = max(first, now) if starting else now + series.interval / 2
        state.made_then = state.made
        series.next_deadline = state.due_then + (state.queued - state.made) * series.interval
        return True

    def _take_off_lag(self, series: Series) -> None:
        """Shorten the timeouts of the chains queued next by the lag measured so far."""
        state = series._state
        after_first = state.made - 1
        if after_first < _LAG_ROUNDS:
            return
        # The timeouts of the rounds made after the first: those of the chains made in full
        # are folded into a sum (a long-lived series would otherwise keep one per refill).
        timeouts = state.timeouts
        while timeouts and state.timed_rounds + timeouts[0][0] <= after_first:
            count, timeout_ns = timeouts.popleft()
            state.timed_rounds += count
            state.timed_ns += count * timeout_ns
        timed_ns = state.timed_ns
        if timeouts:
            timed_ns += (after_first - state.timed_rounds) * timeouts[0][1]
        lag = lag_per_round(
            time.monotonic() - state.first_at, after_first, timed_ns / 1e9, series.interval
        )
        state.timeout_ns = round(series.interval * 1e9) - round(lag * 1e9)
        self._lags[series.key] = round(lag * 1e9)
        ctypes.memmove(
            state.buffers[-3],
            _TIMESPEC.pack(*divmod(state.timeout_ns, 1_000_000_000)),
            _TIMESPEC.size,
        )

    @staticmethod
    def _round(state: _State, spec: int, flags: int, last_link: int = _IOSQE_IO_HARDLINK) -> bytes:
        """A round's entries: its timeout (``spec``, ``flags``), then its sends, the last one
        linked to what follows by ``last_link`` (a chain goes on after a refused send)."""
        tag = state.serial << 8
        entries = [
            _entry(
                _OP_TIMEOUT, _IOSQE_IO_LINK | _IOSQE_CQE_SKIP_SUCCESS, -1, spec, 1,
                flags | _TIMEOUT_ETIME_SUCCESS, tag | _TIMEOUT,
            )
        ]  # fmt: skip
        last = len(state.msghdrs) - 1
        for index, msghdr in enumerate(state.msghdrs):
            kind, link = (_LAST_SEND, last_link) if index == last else (_SEND, _IOSQE_IO_HARDLINK)
            entries.append(
                _entry(_OP_SENDMSG, link, state.fd, msghdr, 1, _MSG_DONTWAIT, tag | kind)
            )
        return b"".join(entries)

    def _write_entries(self, tail: int, data: bytes) -> None:
        """Write whole entries from ``tail`` on, wrapping around the ring's end."""
        position = (tail & (self._sq_entries - 1)) * _SQE.size
        size = self._sq_entries * _SQE.size
        head = min(len(data), size - position)
        self._sqes[position : position + head] = data[:head]
        if head < len(data):
            self._sqes[0 : len(data) - head] = data[head:]

    def _submit(self, tail: int, count: int, per_round: int, state: _State) -> bool:
        """Hand the kernel ``count`` entries (whole rounds) ending at ``tail``."""
        taken = self._hand_over(tail, count)
        # Each round completes once: its last send (made or failed), or its timeout (cancelled
        # or refused; its sends then post nothing). A round cut short (the kernel took only its
        # first entries) is counted too: it settles only if cancelled in time, and the series
        # fails at once.
        state.outstanding += math.ceil(taken / per_round)
        if taken < count:
            state.failed = True
            logger.warning("io_uring took %d of %d entries", taken, count)
            return False
        return True

    def _hand_over(
        self, tail: int, count: int, wait: int = 0, timeout_ns: int = 0, *, relative: bool = False
    ) -> int:
        """Submit the ``count`` entries ending at ``tail``; how many the kernel took.

        Rounds timed from the previous advert are submitted by the process's submitting
        thread (see :class:`_Submitter`). Not on a grid: the kernel arms a timeout on the CPU that
        submits it, and series due at the same time keep their key order only if their
        timeouts run out on one CPU; the event loop's thread seldom moves, a thread woken
        for each submission often does. (Cancels complete at once: they need neither.)
        """
        _U32.pack_into(self._ring, self._sq_tail, tail & 0xFFFFFFFF)
        flags = _IORING_ENTER_GETEVENTS if wait else 0
        submitter = self._submitter
        if relative and submitter is None and not self._submitter_tried:
            self._submitter_tried = True
            submitter = self._submitter = _Submitter.acquire()
        elif relative and submitter is not None and submitter._broken and not submitter._forked:
            # Its thread once failed to answer in time: a fresh one takes the next series.
            # The old one is kept until the ring closes: the entries it submitted run in
            # its thread, and the kernel would cancel them if it exited.
            self._retired.append(submitter)
            submitter = self._submitter = _Submitter.acquire()
        if relative and submitter is not None:
            taken = max(submitter.enter(self._enter, count, 0, flags), 0)
        else:
            taken = max(self._enter(count, wait, flags, timeout_ns), 0)
        if taken < count:
            # The entries not taken stay in the ring: take them back, unsent.
            _U32.pack_into(self._ring, self._sq_tail, (tail - count + taken) & 0xFFFFFFFF)
        return taken

    # -- settling ------------------------------------------------------------------------

    def _cancels(self, state: _State, tail: int, halting: bool = False) -> int:
        """Write the cancels of everything ``state`` may have in the kernel from ``tail`` on;
        how many. A timeout not run out yet takes its round with it; a send already issued
        is cancelled by its own user_data."""
        tag = state.serial << 8
        kinds = (_TIMEOUT, _SEND, _LAST_SEND, _WAIT)[: 3 + state.relative]
        for count, kind in enumerate(kinds):
            user_data = tag | _CANCEL | ((kind << _CANCEL_OF) if halting else 0)
            self._write_entries(
                tail + count,
                _entry(_OP_ASYNC_CANCEL, 0, -1, tag | kind, 0, _CANCEL_ALL, user_data),
            )
        return len(kinds)

    def halt(self, series: Series) -> bool:
        """See :meth:`Series.halt`."""
        state = series._state
        if state.ended or state.failed or self._closed:
            return False
        self.reap()
        unsettled = state.outstanding
        state.found.clear()
        tail = self._load(self._sq_tail)
        count = self._cancels(state, tail, halting=True)
        # Submitted from this thread, cancels complete within the call (no wait needed).
        taken = self._hand_over(tail + count, count)
        state.cancelled_at = time.monotonic()
        self.reap()
        if taken < count or len(state.found) < count:
            return False
        waiting = max(state.found[_TIMEOUT], 0) + max(state.found.get(_WAIT, 0), 0)
        issued = state.found[_SEND] > 0 or state.found[_LAST_SEND] > 0
        return waiting == unsettled and not issued

    def settle(self, series: Series) -> None:
        """Cancel ``series``' rounds not made yet and wait until every one has settled."""
        state = series._state
        if state.ended:
            return
        state.ended = True
        if self._keys.get(series.key) is series:
            del self._keys[series.key]
        self.reap()
        started = time.monotonic()
        cancelled = state.cancelled_at  # a halt's cancels count as the first ones
        while state.outstanding > 0 and not self._closed:
            now = time.monotonic()
            if now - started > _SETTLE_BUDGET:
                break
            tail = self._load(self._sq_tail)
            count = 0
            if now - cancelled >= _CANCEL_EVERY:
                cancelled = now
                count = self._cancels(state, tail)
            self._hand_over(tail + count, count, wait=1, timeout_ns=_SETTLE_WAIT_NS)
            self.reap()
        if state.eventfd >= 0:
            os.close(state.eventfd)  # entries still queued hold the file itself
            state.eventfd = -1
        if state.outstanding > 0:
            # Kept (buffers included) until it settles: the kernel may still read them.
            unit = "chains" if state.relative else "rounds"
            logger.error(
                "io_uring: %d %s of key %d did not settle", state.outstanding, unit, series.key
            )
        else:
            self._by_serial.pop(state.serial, None)

    def reap(self) -> None:
        """Read every completion the kernel posted into the series' tallies."""
        ring = self._ring
        if self._load(self._sq_flags_off) & _IORING_SQ_CQ_OVERFLOW:
            self._enter(0, 0, _IORING_ENTER_GETEVENTS)  # moves the kernel's backlog in
        head = self._load(self._cq_head)
        tail = self._load(self._cq_tail)
        mask = self._cq_entries - 1
        by_serial = self._by_serial
        while head != tail:
            user_data, result, _ = _CQE.unpack_from(ring, self._cqes + (head & mask) * _CQE.size)
            head = (head + 1) & 0xFFFFFFFF
            state = by_serial.get(user_data >> 8)
            kind = user_data & 0xFF
            if state is None or kind > _SIGNAL:
                if state is not None and kind >> _CANCEL_OF:
                    state.found[kind >> _CANCEL_OF] = result
                continue
            if kind == _LAST_SEND:
                state.rounds += 1
                state.made += 1
            if kind in (_TIMEOUT, _WAIT, _SIGNAL) or (kind == _LAST_SEND and not state.relative):
                # Over: on a grid, the round (made: its last send; or not: its timeout); timed
                # from the previous advert, the chain (its signal, or the timeout or wait that
                # failed: the entries behind a failed entry that skips success post nothing).
                state.outstanding -= 1
            # A timeout or wait completes visibly only if it did not run out (it skips
            # success): cancelled, or refused (a kernel that does not know its flags).
            if result < 0 and result != -errno.ECANCELED:
                state.failed = True
                if state.error is None:
                    state.error = -result
            if state.ended and state.outstanding <= 0:
                del by_serial[state.serial]  # an unsettled series, settled late
        _U32.pack_into(ring, self._cq_head, head)

    def _load(self, offset: int) -> int:
        value: int = _U32.unpack_from(self._ring, offset)[0]
        return value

    def _enter(self, submit: int, wait: int, flags: int, timeout_ns: int = 0) -> int:
        arg = None
        size = 0
        if timeout_ns:
            spec = (ctypes.c_int64 * 2)(timeout_ns // 1_000_000_000, timeout_ns % 1_000_000_000)
            arg = (ctypes.c_uint64 * 3)(0, 0, ctypes.addressof(spec))
            flags |= _IORING_ENTER_EXT_ARG
            size = ctypes.sizeof(arg)
        while True:
            done: int = self._libc.syscall(
                ctypes.c_long(_NR_IO_URING_ENTER),
                ctypes.c_uint(self._fd),
                ctypes.c_uint(submit),
                ctypes.c_uint(wait),
                ctypes.c_uint(flags),
                arg,
                ctypes.c_size_t(size),
            )
            if done >= 0 or ctypes.get_errno() != errno.EINTR:
                return done

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """End every series (each keeps what it made for its :meth:`Series.end`) and release
        the ring."""
        if self._closed:
            return
        for series in list(self._keys.values()):
            self.settle(series)
        self._closed = True
        if self._submitter is not None:
            self._submitter.release()
            self._submitter = None
        for retired in self._retired:
            retired.release()
        self._retired.clear()
        self._ring.close()
        self._sqes.close()
        os.close(self._fd)


class _Submitter:
    """The thread that hands rings their entries, and so runs the kernel's work for them.

    io_uring finishes a timeout that ran out, and issues the ``sendmsg`` linked to it, in the
    thread that submitted them (``task_work``), interrupting what that thread waits in. An
    event loop waits in ``epoll_wait``, which then returns ``EINTR`` to Python: the GIL, a
    signal check and a new wait, for every advert. This thread waits for its next request
    in a ring of its own (:class:`_WaitRing`), inside which the kernel does that work, or in
    a blocking ``read()`` of an eventfd, which the kernel restarts after it: no Python runs,
    and the event loop's thread is not woken at all.

    One thread serves every ring of the process (:meth:`acquire`, :meth:`release`): the
    kernel's work for adverts due together, whatever their sockets, is then done in one
    wake-up, as it was in the event loop's thread. :meth:`enter` is a call from a ring's
    thread: it hands the arguments over and waits for the result (refills are rare: a few
    per hundred adverts).
    """

    _sharing = threading.Lock()  # guards the one below and each submitter's _users
    _shared: _Submitter | None = None

    def __init__(self) -> None:
        self._wake = os.eventfd(0, os.EFD_CLOEXEC)
        self._calling = threading.Lock()  # one call at a time, whichever thread makes it
        self._request: tuple[Callable[[int, int, int, int], int], tuple[int, ...]] | None = None
        self._result = 0
        self._done = threading.Lock()
        self._done.acquire()
        # Taking a request and withdrawing one exclude each other: a withdrawn one never runs.
        self._picking = threading.Lock()
        self._broken = False
        self._forked = False  # a parent's thread in a forked child: its rings are the parent's
        self._users = 0  # rings holding this thread (under _sharing)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="vrrpkit-uring", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:
            os.close(self._wake)
            raise

    @classmethod
    def acquire(cls) -> _Submitter | None:
        """The process's submitter (started if none runs), or None if no thread can be
        started. Each call is matched by a :meth:`release`."""
        with cls._sharing:
            shared = cls._shared
            if shared is None or shared._broken:
                try:
                    shared = cls()
                except (OSError, RuntimeError) as exc:
                    logger.info("io_uring: no submitting thread (%s): the event loop submits", exc)
                    return None
                # A broken one is not stopped: the kernel runs the entries it submitted in
                # its thread, and would cancel them all if it exited. Its users get refusals
                # for new series and keep their queued ones until each releases it.
                cls._shared = shared
            shared._users += 1
            return shared

    def release(self) -> None:
        """One user fewer; the thread stops with its last (their entries must have settled:
        the kernel cancels those of a thread that exits)."""
        with _Submitter._sharing:
            self._users -= 1
            if self._users > 0:
                return
            if _Submitter._shared is self:
                _Submitter._shared = None
        if self._broken:
            self._abandon()  # it may not answer: stopping it is only asked
        else:
            self._stop()

    def _abandon(self) -> None:
        # A broken thread does not answer; stopping it is only asked.
        self._stopping = True
        os.eventfd_write(self._wake, 1)

    def enter(
        self,
        enter: Callable[[int, int, int, int], int],
        submit: int,
        wait: int,
        flags: int,
        timeout_ns: int = 0,
    ) -> int:
        """``enter(submit, wait, flags, timeout_ns)`` (a ring's ``io_uring_enter``) made by
        the thread; negative if it could not be."""
        with self._calling:
            if self._broken:
                return -1
            with self._picking:
                self._request = (enter, (submit, wait, flags, timeout_ns))
            os.eventfd_write(self._wake, 1)
            if self._done.acquire(timeout=_SUBMIT_TIMEOUT):
                return self._result
            with self._picking:
                withdrawn = self._request is not None
                self._request = None
            if not withdrawn:
                # Picked up meanwhile: its (non-blocking) io_uring_enter is made, and only its
                # answer says how many entries the kernel took. Guessing would leave the ring
                # out of step with the kernel: a chain running that nobody can cancel.
                self._done.acquire()
                return self._result
            # Never picked up, so never made; a thread this late serves no further call.
            self._broken = True
        logger.error("io_uring: the submitting thread did not answer")
        return -1

    def _serve(self) -> None:
        # Woken for every advert on whatever CPU the kernel picks: a short slice lets it
        # preempt a task running there instead of waiting out that task's slice.
        request_short_slice()
        ring = _WaitRing.create(self._wake)
        try:
            while not self._stopping:
                ring = self._wait(ring)
                with self._picking:
                    request, self._request = self._request, None
                if request is None:
                    continue  # asked to stop, or the eventfd written twice for one request
                enter, arguments = request
                try:
                    self._result = enter(*arguments)
                except Exception:  # a ctypes failure: reported as a refusal, never a hang
                    logger.exception("io_uring: the submitting thread failed")
                    self._result = -1
                self._done.release()
        finally:
            if ring is not None:
                ring.close()

    def _wait(self, ring: _WaitRing | None) -> _WaitRing | None:
        """Until the eventfd is written; the ring to wait in next time."""
        if ring is not None:
            try:
                ring.wait()
                return ring
            except OSError as exc:
                logger.warning("io_uring: waiting in a read instead of a ring (%s)", exc)
                ring.close()
        os.eventfd_read(self._wake)
        return None

    def _stop(self) -> None:
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        self._thread.join(timeout=_SUBMIT_TIMEOUT)
        if not self._thread.is_alive():
            os.close(self._wake)

    @classmethod
    def _forget_after_fork(cls) -> None:
        # A forked child has none of its parent's threads. Without this its first refill
        # would wait _SUBMIT_TIMEOUT for an answer that never comes, and a lock another
        # thread held at the fork would stay held for good.
        cls._sharing = threading.Lock()
        if cls._shared is not None:
            cls._shared._broken = True  # the parent's rings in the child: refused at once
            cls._shared._forked = True
        cls._shared = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Submitter._forget_after_fork)


class _WaitRing:
    """A ring of the submitting thread's own, in which it waits for its eventfd to be written.

    A thread waiting in ``io_uring_enter`` runs the kernel's work for its entries in other
    rings (``task_work``: a send behind a timeout that ran out) inside that wait, and goes on
    waiting. A blocking ``read()`` is restarted after it instead: a return to user space and
    a new system call per advert. (The thread cannot wait in a ring of timed sends: a wait
    there ends whenever one of that ring's timeouts runs out.)
    """

    def __init__(self, fd: int, params: _Params, libc: ctypes.CDLL, eventfd: int) -> None:
        self._fd = fd
        self._libc = libc
        self._eventfd = eventfd
        sq, cq = list(params.sq_off), list(params.cq_off)
        self._sq_tail, self._cq_head, self._cq_tail, self._cqes = sq[1], cq[0], cq[1], cq[5]
        self._mask, self._cq_mask = params.sq_entries - 1, params.cq_entries - 1
        self._ring, self._sqes = _map_ring(fd, params)
        self._count = ctypes.create_string_buffer(8)  # what the read takes from the eventfd
        self._reading = False

    @classmethod
    def create(cls, eventfd: int) -> _WaitRing | None:
        """A wait ring for ``eventfd``, or None where io_uring refuses one."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
        except (OSError, AttributeError):
            return None
        params = _Params()
        fd = libc.syscall(ctypes.c_long(_NR_IO_URING_SETUP), ctypes.c_uint(2), ctypes.byref(params))
        if fd < 0:
            return None
        try:
            return cls(fd, params, libc, eventfd)
        except (OSError, ValueError):
            os.close(fd)
            return None

    def wait(self) -> None:
        """Until the eventfd is written (its count is then read); OSError if the kernel
        refuses the wait."""
        submit = 0
        if not self._reading:
            tail: int = _U32.unpack_from(self._ring, self._sq_tail)[0]
            position = (tail & self._mask) * _SQE.size
            self._sqes[position : position + _SQE.size] = _entry(
                _OP_READ, 0, self._eventfd, ctypes.addressof(self._count), 8, 0, 0,
                _CURRENT_POSITION,
            )  # fmt: skip
            _U32.pack_into(self._ring, self._sq_tail, (tail + 1) & 0xFFFFFFFF)
            self._reading = True
            submit = 1
        while True:
            done = self._libc.syscall(
                ctypes.c_long(_NR_IO_URING_ENTER), ctypes.c_uint(self._fd),
                ctypes.c_uint(submit), ctypes.c_uint(1), ctypes.c_uint(_IORING_ENTER_GETEVENTS),
                None, ctypes.c_size_t(0),
            )  # fmt: skip
            if done < 0:
                code = ctypes.get_errno()
                if code != errno.EINTR:
                    raise OSError(code, os.strerror(code))
            elif submit:
                submit = 0  # taken, whether or not the wait was interrupted
            head: int = _U32.unpack_from(self._ring, self._cq_head)[0]
            if head != _U32.unpack_from(self._ring, self._cq_tail)[0]:
                position = self._cqes + (head & self._cq_mask) * _CQE.size
                _, result, _ = _CQE.unpack_from(self._ring, position)
                _U32.pack_into(self._ring, self._cq_head, (head + 1) & 0xFFFFFFFF)
                self._reading = False
                if result < 0:  # a read that failed would fail again: no busy loop
                    raise OSError(-result, os.strerror(-result))
                return

    def close(self) -> None:
        """Release the ring (a read still queued is cancelled with it)."""
        self._ring.close()
        self._sqes.close()
        os.close(self._fd)


def _map_ring(fd: int, params: _Params) -> tuple[mmap.mmap, mmap.mmap]:
    """Ring ``fd``'s queues (one mapping for both: ``IORING_FEAT_SINGLE_MMAP``, Linux 5.4) and
    its submission entries, each slot of the submission queue naming its own entry."""
    sq, cq = list(params.sq_off), list(params.cq_off)
    size = max(sq[6] + params.sq_entries * 4, cq[5] + params.cq_entries * _CQE.size)
    flags = mmap.MAP_SHARED | _MAP_POPULATE
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    ring = mmap.mmap(fd, size, flags, prot, offset=0)
    try:
        sqes = mmap.mmap(fd, params.sq_entries * _SQE.size, flags, prot, offset=_IORING_OFF_SQES)
    except BaseException:
        ring.close()
        raise
    for index in range(params.sq_entries):
        _U32.pack_into(ring, sq[6] + 4 * index, index)
    return ring, sqes


def _entry(
    op: int,
    flags: int,
    fd: int,
    addr: int,
    length: int,
    op_flags: int,
    data: int,
    offset: int = 0,
) -> bytes:
    """One submission queue entry."""
    return _SQE.pack(op, flags, 0, fd, offset, addr, length, op_flags, data, 0, 0, 0, 0, 0)


def lag_per_round(elapsed: float, rounds: int, timed: float, interval: float) -> float:
    """What to take off a timeout that starts once the previous round was made, so that the
    rounds come ``interval`` apart: the seconds each round took beyond its timeout, at least.

    ``rounds`` rounds made after the first, ``elapsed`` seconds after it went (the next round
    not made yet, so the last one went less than about two intervals ago), ``timed`` of them
    the timeouts. A lower bound (no round is made early), at most a tenth of the interval
    and 2 ms; 0 with less than :data:`_LAG_ROUNDS` rounds to go by.
    """
    if rounds < _LAG_ROUNDS:
        return 0.0
    lag = (elapsed - 2 * interval - timed) / rounds
    return min(max(lag, 0.0), interval / 10, _LAG_MOST)


def _msghdr(message: TimedMessage, buffers: list[ctypes.Array[ctypes.c_char]]) -> int:
    """A ``struct msghdr`` for ``message`` (its parts appended to ``buffers``); its address."""
    data = ctypes.create_string_buffer(message.data, len(message.data))
    name = ctypes.create_string_buffer(message.name, len(message.name))
    control = ctypes.create_string_buffer(message.control, max(1, len(message.control)))
    iov = ctypes.create_string_buffer(_IOVEC.size)
    _IOVEC.pack_into(iov, 0, ctypes.addressof(data), len(message.data))
    hdr = ctypes.create_string_buffer(_MSGHDR.size)
    _MSGHDR.pack_into(
        hdr,
        0,
        ctypes.addressof(name),
        len(message.name),
        ctypes.addressof(iov),
        1,
        ctypes.addressof(control) if message.control else 0,
        len(message.control),
        0,
    )
    buffers += (data, name, control, iov, hdr)
    return ctypes.addressof(hdr)


def _monotonic_offset() -> int:
    """Nanoseconds this process's time namespace adds to CLOCK_MONOTONIC (0 outside one).

    -1 if it cannot be known: the offsets shown are those of the namespace for children,
    which a process that called unshare(CLONE_NEWTIME) itself is not in.
    """
    try:
        if os.readlink("/proc/self/ns/time") != os.readlink("/proc/self/ns/time_for_children"):
            return -1
    except OSError:
        pass
    try:
        with open("/proc/self/timens_offsets", encoding="ascii") as offsets:
            for line in offsets:
                fields = line.split()
                if fields and fields[0] in ("monotonic", "1"):
                    return int(fields[1]) * 1_000_000_000 + int(fields[2])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _why() -> str:
    code = ctypes.get_errno()
    return os.strerror(code) if code else "unknown error"
