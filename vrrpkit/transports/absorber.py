"""An eBPF socket filter that counts a master's repeated adverts instead of queueing them.

A backup reads its adverts lazily (see :mod:`vrrpkit.transports.rawsocket`): when its down
timer is due it reads the few hundred that waited in the socket, and that reading is most of
what a backup costs per advert. But a master's adverts repeat byte for byte while nothing
changes, and all a backup learns from a repeat is that it came, and when. So once the socket
has passed one advert of a VRID up, :class:`RepeatAbsorber` arms the filter with it: the
kernel drops every identical packet, counting it and keeping its receive time (CLOCK_MONOTONIC,
the clock of ``time.monotonic()``) in a map shared with the process by ``mmap``. Reading the
repeats back is then a read of that memory: :meth:`RepeatAbsorber.collect` rebuilds them for
the router, which handles them exactly as read from the socket; only the receive times of all
but the last are lost, and the last is the one that sets the down timer.

A packet that differs in any byte the router reads (VRRP message, addresses, TTL/hop limit,
length) is not identical and goes through the socket as before. Loading the program needs
``CAP_BPF`` (or root); where the kernel refuses it, :meth:`RepeatAbsorber.create` returns None
and the socket reads every packet.

Where the kernel lets eBPF programs use timers (``bpf_timer``), the filter is loaded with a
watchdog: for a VRID given a watch interval (:meth:`RepeatAbsorber.watch`), each repeat it
counts also moves that VRID's deadline to its receive time plus the interval, and the
socket's one kernel timer is kept set for the earliest deadline. When it runs out, its
callback writes each VRID whose deadline passed, with its count and last receive time, to a
ring buffer, whose descriptor wakes the process. A backup whose down timer only follows those
repeats then needs no alarm of its own.

One timer per socket, not one per VRID: the kernel allocates a timer's memory when the
program first sets it up, in the receive path where it may not wait for memory, and it
refused that to the last VRIDs of a burst of 255 first repeats (``-ENOMEM`` from
``bpf_timer_init`` on Linux 6.18, for 12 to 99 of them in three runs). A repeat also costs
less so: a compare with the timer's expiry instead of restarting a timer.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from collections.abc import Iterable
from typing import NamedTuple

from vrrpkit.transports import ebpf as E

__all__ = ["CAPACITY", "RepeatAbsorber", "Repeats"]

logger = logging.getLogger(__name__)

#: Largest VRRP message the filter can hold (v3 with 30 IPv4 or 7 IPv6 addresses).
CAPACITY = 128

_ACCEPT = 0x40000  # a socket filter's verdict: keep up to this many bytes (all)
# Room for 1024 expiry records (4 per VRID); one that does not fit is counted as lost.
_RING_SIZE = 32768

# Map value layout, one per VRID: what the kernel writes, then the armed advert.
_COUNT, _LAST_NS, _ARMED, _PLEN, _LENGTH_FIELD, _TTL, _ADDRESSES, _PAYLOAD = (
    0,
    8,
    16,
    20,
    24,
    26,
    32,
    64,
)
# The first repeat's receive time since the process last read the entry (0: none yet).
_FIRST_NS = _PAYLOAD + CAPACITY
# The silence after which the kernel reports the VRID, counted from each repeat (0: none).
_WATCH_NS = _FIRST_NS + 8
# When the VRID's watched silence runs out (0: none pending, or reported): the last repeat's
# receive time plus the watch interval.
_DEADLINE_NS = _WATCH_NS + 8
# Expiry records the ring buffer had no room for, and repeats whose deadline no timer covers
# (each a silence whose place is unknown).
_LOST = _DEADLINE_NS + 8
_VALUE_SIZE = _LOST + 8
_ENTRIES = 256

# The value of the socket's one timer: the timer, the expiry it was last set for (0: none),
# whether it has been initialised and given its callback, and the callback's scratch: the time
# it ran and the earliest deadline left (kept in the map, where the verifier assumes nothing of
# them: kept in registers, their ranges narrowed by each comparison, the loop over the VRIDs
# was too many states to verify).
_NEXT, _READY, _NOW, _EARLIEST, _TIMER_VALUE_SIZE = 16, 24, 32, 40, 48

_KEY = -8  # stack offset of the VRID, as a 4-byte map key
_PAYLOAD_BUF = _KEY - CAPACITY

_u64 = struct.Struct("<Q")
_u32 = struct.Struct("<I")
# What the timer's callback writes to the ring buffer: VRID, count and last receive time then
# (VRID 0: the timer could not be set again, no deadline is covered).
_EXPIRY = struct.Struct("<I4xQQ")


class Repeats(NamedTuple):
    """Identical adverts of one VRID the kernel absorbed, in one stretch.

    ``first_ns``/``last_ns``: receive times of the first and last (CLOCK_MONOTONIC; 0 when
    unknown). ``timed``: the kernel kept the VRID's deadline all along (see
    :meth:`RepeatAbsorber.watch`) without it passing, so no gap between them, nor between the
    first and the repeat before it, reached the watched silence.
    """

    vrid: int
    number: int
    first_ns: int
    last_ns: int
    timed: bool


class _Family:
    """Where the fields are in the network header the filter sees (IPv4 or IPv6)."""

    def __init__(self, ip_version: int) -> None:
        self.header_len = 20 if ip_version == 4 else 40
        # Stack offset of the header, below the message's buffer: the address words must be
        # 8-byte aligned.
        self.base = _PAYLOAD_BUF - 28 if ip_version == 4 else _PAYLOAD_BUF - 40
        self.length_at = 2 if ip_version == 4 else 4
        self.ttl_at = 8 if ip_version == 4 else 7
        self.addresses_at = 12 if ip_version == 4 else 8
        self.address_words = 1 if ip_version == 4 else 4
        # IPv4 without options (version 4, header length 5); IPv6 without extension headers.
        self.check_at, self.check_value = (0, 0x45) if ip_version == 4 else (6, 112)


class _Watch:
    """File descriptors of the watchdog: the timer's map and the ring buffer of expiries."""

    def __init__(self, timers_fd: int, ring_fd: int) -> None:
        self.timers_fd = timers_fd
        self.ring_fd = ring_fd


def _program(ip_version: int, map_fd: int, watch: _Watch | None = None) -> tuple[bytes, int]:
    """The filter: drop (count) a packet identical to its VRID's armed advert, pass the rest.

    With ``watch``, each packet dropped also moves its VRID's deadline to its receive time
    plus the entry's watch interval, when one is set, and makes sure the socket's one kernel
    timer runs out no later than that deadline. The timer's callback reports each VRID whose
    deadline passed to the ring buffer, which wakes the process, and sets the timer for the
    earliest deadline left. Returns the code and the index of the first instruction of the
    callback (0 without ``watch``).
    """
    f = _Family(ip_version)
    # Jumps to labels ("pass", "drop", ...) are patched once the program is laid out.
    code: list[bytes | tuple[str, int, int, int, int]] = []
    labels: dict[str, int] = {}

    def label(name: str) -> None:
        labels[name] = len(code)

    def jump(to: str, opcode: int, dst: int = 0, src: int = 0, imm: int = 0) -> None:
        code.append((to, opcode, dst, src, imm))

    def load_map(register: int, fd: int) -> None:
        code.append(E.insn(E.LD_IMM64, register, E.PSEUDO_MAP_FD, imm=fd))
        code.append(E.insn(0))

    def look_up_key(fd: int, register: int, missing: str) -> None:
        # The map's element for the key stored at _KEY into ``register``; else to ``missing``.
        load_map(1, fd)
        code.append(E.insn(E.MOV_X, 2, E.FP))
        code.append(E.insn(E.ADD_K, 2, imm=_KEY))
        code.append(E.insn(E.CALL, imm=E.MAP_LOOKUP_ELEM))
        jump(missing, E.JEQ_K, 0, imm=0)
        code.append(E.insn(E.MOV_X, register, 0))

    def load_relative(offset: int, buffer: int, size_reg: int | None, size: int = 0) -> None:
        code.append(E.insn(E.MOV_X, 1, 6))
        code.append(E.insn(E.MOV_K, 2, imm=offset))
        code.append(E.insn(E.MOV_X, 3, E.FP))
        code.append(E.insn(E.ADD_K, 3, imm=buffer))
        if size_reg is None:
            code.append(E.insn(E.MOV_K, 4, imm=size))
        code.append(E.insn(E.MOV_K, 5, imm=E.HDR_START_NET))
        code.append(E.insn(E.CALL, imm=E.SKB_LOAD_BYTES_RELATIVE))
        jump("pass", E.JNE_K, 0, imm=0)

    def set_timer_by(tag: str, timer: int, deadline: int, done: str, failed: str) -> None:
        # Make the timer (its map value in register ``timer``) run out no later than the
        # absolute time in register ``deadline``, or go to ``failed``. _NEXT holds the
        # expiry it was last set for (0: none, or its callback is running): only lowered by
        # compare-and-exchange, and whoever lowers it sets the timer. Two CPUs that lower it
        # at once may set the timer in the other order, so each reads _NEXT again after
        # setting it and sets it again for a lower one. Unrolled: the verifier takes no loop
        # it cannot bound, and running out of tries is a failure too (a deadline may be
        # left uncovered). A timer that could not be set takes its expiry out of _NEXT:
        # left there, it would turn every later deadline away as covered.
        for attempt in range(3):
            code.append(E.insn(E.LDX_DW, 1, timer, off=_NEXT))
            jump(f"{tag}take{attempt}", E.JEQ_K, 1, imm=0)
            jump(done, E.JLE_X, 1, deadline)  # set for earlier already
            label(f"{tag}take{attempt}")
            code.append(E.insn(E.MOV_X, 0, 1))
            code.append(E.insn(E.MOV_X, 2, deadline))
            code.append(E.insn(E.ATOMIC_DW, timer, 2, off=_NEXT, imm=E.CMPXCHG))
            jump(f"{tag}set0", E.JEQ_X, 0, 1)
        jump(failed, E.JA)
        for again in range(3):
            label(f"{tag}set{again}")
            code.append(E.insn(E.CALL, imm=E.KTIME_GET_NS))
            code.append(E.insn(E.MOV_X, 2, deadline))
            code.append(E.insn(E.SUB_X, 2, 0))
            code.append(E.insn(E.JSGT_K, 2, off=1, imm=0))
            code.append(E.insn(E.MOV_K, 2, imm=0))  # due already: at once
            code.append(E.insn(E.MOV_X, 1, timer))
            code.append(E.insn(E.MOV_K, 3, imm=0))
            code.append(E.insn(E.CALL, imm=E.TIMER_START))
            jump(f"{tag}unset", E.JNE_K, 0, imm=0)
            code.append(E.insn(E.LDX_DW, 1, timer, off=_NEXT))
            jump(done, E.JEQ_K, 1, imm=0)
            jump(done, E.JGE_X, 1, deadline)
            code.append(E.insn(E.MOV_X, deadline, 1))
        jump(failed, E.JA)
        label(f"{tag}unset")
        code.append(E.insn(E.MOV_X, 0, deadline))
        code.append(E.insn(E.MOV_K, 2, imm=0))
        code.append(E.insn(E.ATOMIC_DW, timer, 2, off=_NEXT, imm=E.CMPXCHG))
        jump(failed, E.JA)

    code.append(E.insn(E.MOV_X, 6, 1))  # r6 = the packet
    for word in range(CAPACITY // 8):  # compared whole: bytes past the message must be zero
        code.append(E.insn(E.ST_DW, E.FP, off=_PAYLOAD_BUF + 8 * word, imm=0))
    load_relative(0, f.base, None, f.header_len)
    code.append(E.insn(E.LDX_B, 1, E.FP, off=f.base + f.check_at))
    jump("pass", E.JNE_K, 1, imm=f.check_value)
    load_relative(f.header_len, _PAYLOAD_BUF, None, 8)  # the VRRP header: its VRID
    code.append(E.insn(E.LDX_B, 1, E.FP, off=_PAYLOAD_BUF + 1))
    code.append(E.insn(E.STX_W, E.FP, 1, off=_KEY))
    look_up_key(map_fd, 7, "pass")  # r7 = this VRID's entry
    code.append(E.insn(E.LDX_W, 1, 7, off=_ARMED))
    jump("pass", E.JEQ_K, 1, imm=0)
    code.append(E.insn(E.LDX_H, 1, E.FP, off=f.base + f.length_at))
    code.append(E.insn(E.LDX_H, 2, 7, off=_LENGTH_FIELD))
    jump("pass", E.JNE_X, 1, 2)
    code.append(E.insn(E.LDX_B, 1, E.FP, off=f.base + f.ttl_at))
    code.append(E.insn(E.LDX_B, 2, 7, off=_TTL))
    jump("pass", E.JNE_X, 1, 2)
    for word in range(f.address_words):
        code.append(E.insn(E.LDX_DW, 1, E.FP, off=f.base + f.addresses_at + 8 * word))
        code.append(E.insn(E.LDX_DW, 2, 7, off=_ADDRESSES + 8 * word))
        jump("pass", E.JNE_X, 1, 2)
    code.append(E.insn(E.LDX_W, 4, 7, off=_PLEN))
    jump("pass", E.JGT_K, 4, imm=CAPACITY)
    jump("pass", E.JLT_K, 4, imm=8)
    load_relative(f.header_len, _PAYLOAD_BUF, 4)
    for word in range(CAPACITY // 8):
        code.append(E.insn(E.LDX_DW, 1, E.FP, off=_PAYLOAD_BUF + 8 * word))
        code.append(E.insn(E.LDX_DW, 2, 7, off=_PAYLOAD + 8 * word))
        jump("pass", E.JNE_X, 1, 2)
    code.append(E.insn(E.CALL, imm=E.KTIME_GET_NS))
    code.append(E.insn(E.STX_DW, 7, 0, off=_LAST_NS))
    code.append(E.insn(E.LDX_DW, 1, 7, off=_FIRST_NS))
    code.append(E.insn(E.JNE_K, 1, off=1, imm=0))  # kept: the first since the last reading
    code.append(E.insn(E.STX_DW, 7, 0, off=_FIRST_NS))
    code.append(E.insn(E.MOV_K, 1, imm=1))
    # Counted before the watch interval is read: see RepeatAbsorber.watching.
    code.append(E.insn(E.ATOMIC_ADD_DW, 7, 1, off=_COUNT))
    callback_at = -1
    if watch is not None:
        code.append(E.insn(E.LDX_DW, 9, 7, off=_WATCH_NS))  # read once
        jump("drop", E.JEQ_K, 9, imm=0)
        code.append(E.insn(E.ADD_X, 9, 0))  # r9 = the deadline (r0: the receive time)
        code.append(E.insn(E.MOV_X, 1, 9))
        # An exchange, a full barrier: a callback that cleared _NEXT after the read of it
        # below sees this deadline in its scan.
        code.append(E.insn(E.ATOMIC_DW, 7, 1, off=_DEADLINE_NS, imm=E.XCHG))
        code.append(E.insn(E.ST_W, E.FP, off=_KEY, imm=0))
        look_up_key(watch.timers_fd, 8, "failed")  # r8 = the socket's timer
        code.append(E.insn(E.LDX_DW, 1, 8, off=_READY))
        jump("ready", E.JNE_K, 1, imm=0)  # set up once
        code.append(E.insn(E.MOV_X, 1, 8))
        load_map(2, watch.timers_fd)
        code.append(E.insn(E.MOV_K, 3, imm=E.CLOCK_MONOTONIC))
        code.append(E.insn(E.CALL, imm=E.TIMER_INIT))  # -EBUSY once initialised: harmless
        code.append(E.insn(E.MOV_X, 1, 8))
        callback_at = len(code)
        code.append(b"")  # the callback's address, set below
        code.append(E.insn(0))
        code.append(E.insn(E.CALL, imm=E.TIMER_SET_CALLBACK))
        # Fails if the init did (no memory in softirq, say): ready only once both worked.
        jump("failed", E.JNE_K, 0, imm=0)
        code.append(E.insn(E.ST_DW, 8, off=_READY, imm=1))
        label("ready")
        set_timer_by("p", 8, 9, "drop", "failed")
        # A repeat whose deadline no timer covers for certain: counted as a lost report, so
        # that the process vouches for none of this stretch and keeps its own alarm.
        label("failed")
        code.append(E.insn(E.MOV_K, 1, imm=1))
        code.append(E.insn(E.ATOMIC_ADD_DW, 7, 1, off=_LOST))
    label("drop")
    code.append(E.insn(E.MOV_K, 0, imm=0))  # dropped: counted
    code.append(E.insn(E.EXIT))
    label("pass")
    code.append(E.insn(E.MOV_K, 0, imm=_ACCEPT))
    code.append(E.insn(E.EXIT))
    start = 0
    if watch is not None:
        # The timer's callback, a static subprogram: R3 points to the timer's map value.
        # It reports each VRID whose deadline passed with its count and last receive time
        # as they are now (or counts the report as lost when the ring buffer is full), and
        # sets the timer for the earliest deadline left.
        start = len(code)
        code[callback_at] = E.insn(E.LD_IMM64, 2, E.PSEUDO_FUNC, imm=start - callback_at - 1)
        record = _KEY - _EXPIRY.size

        def write_record() -> None:
            # The expiry record on the stack to the ring buffer (R0: 0, or no room).
            load_map(1, watch.ring_fd)
            code.append(E.insn(E.MOV_X, 2, E.FP))
            code.append(E.insn(E.ADD_K, 2, imm=record))
            code.append(E.insn(E.MOV_K, 3, imm=_EXPIRY.size))
            code.append(E.insn(E.MOV_K, 4, imm=0))
            code.append(E.insn(E.CALL, imm=E.RINGBUF_OUTPUT))

        # Cleared first: a repeat from now on sets the timer itself, and one before that
        # wrote its deadline where the scan below reads it.
        code.append(E.insn(E.MOV_X, 8, 3))  # r8 = the timer's value
        code.append(E.insn(E.MOV_K, 0, imm=0))
        code.append(E.insn(E.ATOMIC_DW, 8, 0, off=_NEXT, imm=E.XCHG))
        code.append(E.insn(E.CALL, imm=E.KTIME_GET_NS))
        code.append(E.insn(E.STX_DW, 8, 0, off=_NOW))
        code.append(E.insn(E.ST_DW, 8, off=_EARLIEST, imm=-1))
        code.append(E.insn(E.MOV_K, 6, imm=1))  # r6 = the VRID
        label("scan")
        code.append(E.insn(E.STX_W, E.FP, 6, off=_KEY))
        look_up_key(map_fd, 7, "next")  # r7 = its entry
        code.append(E.insn(E.LDX_DW, 1, 7, off=_DEADLINE_NS))
        jump("next", E.JEQ_K, 1, imm=0)
        code.append(E.insn(E.LDX_DW, 2, 8, off=_NOW))
        jump("later", E.JGT_X, 1, 2)
        # Passed: reported once, unless a repeat moved it meanwhile.
        code.append(E.insn(E.MOV_X, 0, 1))
        code.append(E.insn(E.MOV_K, 2, imm=0))
        code.append(E.insn(E.ATOMIC_DW, 7, 2, off=_DEADLINE_NS, imm=E.CMPXCHG))
        jump("report", E.JEQ_X, 0, 1)
        code.append(E.insn(E.MOV_X, 1, 0))
        jump("later", E.JA)
        label("report")
        code.append(E.insn(E.ST_DW, E.FP, off=record, imm=0))
        code.append(E.insn(E.STX_W, E.FP, 6, off=record))
        code.append(E.insn(E.LDX_DW, 1, 7, off=_COUNT))
        code.append(E.insn(E.STX_DW, E.FP, 1, off=record + 8))
        code.append(E.insn(E.LDX_DW, 1, 7, off=_LAST_NS))
        code.append(E.insn(E.STX_DW, E.FP, 1, off=record + 16))
        write_record()
        jump("next", E.JEQ_K, 0, imm=0)
        code.append(E.insn(E.MOV_K, 1, imm=1))
        code.append(E.insn(E.ATOMIC_ADD_DW, 7, 1, off=_LOST))
        jump("next", E.JA)
        label("later")
        code.append(E.insn(E.LDX_DW, 2, 8, off=_EARLIEST))
        jump("next", E.JGE_X, 1, 2)
        code.append(E.insn(E.STX_DW, 8, 1, off=_EARLIEST))
        label("next")
        code.append(E.insn(E.ADD_K, 6, imm=1))
        jump("scan", E.JLT_K, 6, imm=_ENTRIES)
        code.append(E.insn(E.LDX_DW, 9, 8, off=_EARLIEST))
        jump("done", E.JEQ_K, 9, imm=-1)  # nothing left to time
        set_timer_by("c", 8, 9, "done", "untimed")
        # The deadlines left have no timer: a record for VRID 0 says so (each watched VRID
        # is then taken to have gone silent, untimed: its instance checks its own deadline).
        label("untimed")
        for word in range(_EXPIRY.size // 8):
            code.append(E.insn(E.ST_DW, E.FP, off=record + 8 * word, imm=0))
        write_record()
        label("done")
        code.append(E.insn(E.MOV_K, 0, imm=0))
        code.append(E.insn(E.EXIT))
    out = []
    for index, item in enumerate(code):
        if isinstance(item, tuple):
            to, opcode, dst, src, imm = item
            item = E.insn(opcode, dst, src, off=labels[to] - index - 1, imm=imm)
        out.append(item)
    return b"".join(out), start


def _btf() -> tuple[bytes, int, int, int, int]:
    """Type information for the timer's map and the two functions of the watchdog program.

    The kernel finds a ``struct bpf_timer`` in a map value only through BTF, and accepts a
    timer callback only in a program whose functions are described (``func_info``).
    Returns the blob and the ids of: the key type, the timer's value type, the program's
    function and the callback's.
    """
    btf = E.BtfBuilder()
    integer = btf.add("int", E.BTF_INT, 0, 4, (1 << 24) | 32)  # signed, 32 bits
    u64 = btf.add("u64", E.BTF_INT, 0, 8, 64)
    timer = btf.add("bpf_timer", E.BTF_STRUCT, 0, 16)  # opaque to programs, 16 bytes
    members = (
        *(btf.name("timer"), timer, 0),
        *(btf.name("next"), u64, 8 * _NEXT),
        *(btf.name("ready"), u64, 8 * _READY),
        *(btf.name("now"), u64, 8 * _NOW),
        *(btf.name("earliest"), u64, 8 * _EARLIEST),
    )
    slot = btf.add("watchdog", E.BTF_STRUCT, 5, _TIMER_VALUE_SIZE, *members)
    pointer = btf.add("", E.BTF_PTR, 0, 0)  # void *
    int_pointer = btf.add("", E.BTF_PTR, 0, integer)
    main_proto = btf.add("", E.BTF_FUNC_PROTO, 1, integer, btf.name("ctx"), pointer)
    main = btf.add("repeat_filter", E.BTF_FUNC, 0, main_proto)  # vlen 0: static
    callback_proto = btf.add(
        "",
        E.BTF_FUNC_PROTO,
        3,
        integer,
        *(btf.name("map"), pointer, btf.name("key"), int_pointer, btf.name("value"), pointer),
    )
    callback = btf.add("silence", E.BTF_FUNC, 0, callback_proto)
    return btf.blob(), integer, slot, main, callback


class RepeatAbsorber:
    """The loaded filter and its maps for one raw socket's address family.

    :meth:`arm` gives a VRID the advert to absorb; :meth:`collect` returns what the kernel
    absorbed since the last call. Where the kernel has timers for eBPF programs
    (:attr:`watches`), :meth:`watch` also has it time a VRID's silence: the descriptor
    :attr:`expiry_fd` becomes readable when one ran out, and :meth:`collect` reports it.
    """

    def __init__(self, fds: list[int], memory: mmap.mmap, ring: E.RingBuffer | None) -> None:
        self._fds = fds
        self._prog_fd = fds[-1]
        self._memory = memory
        self._ring = ring
        self._seen: dict[int, int] = {}  # armed VRID -> count already collected
        self._armed_with: dict[int, bytes] = {}
        self._watch_ns: dict[int, int] = {}
        self._watched_from: dict[int, int] = {}  # VRID -> count when its deadline last passed
        self._lost: dict[int, int] = {}  # VRID -> expiry records lost, as last read
        # Expiries read after a count they came later than: applied at the next collect.
        self._pending: dict[int, tuple[int, int]] = {}
        self._closed = False
        # VRIDs whose deadline the kernel has kept since (at the latest) the last repeat
        # collected.
        self._timed: set[int] = set()

    @classmethod
    def create(cls, ip_version: int) -> RepeatAbsorber | None:
        """Load the filter, or None where the kernel or the process's privileges refuse.

        The filter with the watchdog is tried first, then the one without.
        """
        if not E.supported():
            return None
        for watchdog in (True, False):
            loader = E.BpfLoader()
            try:
                return cls._load(loader, ip_version, watchdog)
            except OSError as exc:
                loader.close_all()
                logger.debug(
                    "no repeat filter %s a watchdog for IPv%d: %s",
                    "with" if watchdog else "without",
                    ip_version,
                    exc,
                )
        return None

    @classmethod
    def _load(cls, loader: E.BpfLoader, ip_version: int, watchdog: bool) -> RepeatAbsorber:
        map_fd = loader.create_map(E.MAP_ARRAY, 4, _VALUE_SIZE, _ENTRIES, map_flags=E.F_MMAPABLE)
        keep = [map_fd]
        ring = None
        if watchdog:
            blob, key_type, slot_type, main, callback = _btf()
            btf_fd = loader.load_btf(blob)
            timers_fd = loader.create_map(
                E.MAP_ARRAY,
                4,
                _TIMER_VALUE_SIZE,
                1,
                btf_fd=btf_fd,
                btf_key_type_id=key_type,
                btf_value_type_id=slot_type,
            )
            ring_fd = loader.create_map(E.MAP_RINGBUF, 0, 0, _RING_SIZE)
            code, start = _program(ip_version, map_fd, _Watch(timers_fd, ring_fd))
            func_info = struct.pack("<IIII", 0, main, start, callback)
            # bpf_timer_* are helpers for GPL-compatible programs only: this generated
            # program is offered under MIT or GPL (the kernel's "Dual MIT/GPL").
            prog_fd = loader.load_socket_filter(
                code, b"Dual MIT/GPL", func_info=func_info, btf_fd=btf_fd
            )
            ring = E.RingBuffer(ring_fd, _RING_SIZE)
            # The program keeps its maps alive, but the kernel cancels a map's timers once
            # no descriptor of it is open: the timers' map stays open with the ring buffer's.
            keep += [timers_fd, ring_fd]
        else:
            code, _ = _program(ip_version, map_fd)
            prog_fd = loader.load_socket_filter(code, b"Apache-2.0")
        try:
            memory = mmap.mmap(map_fd, _VALUE_SIZE * _ENTRIES)
        except OSError:
            if ring is not None:
                ring.close()
            raise
        loader.close_all(keep=[*keep, prog_fd])
        return cls([*keep, prog_fd], memory, ring)

    @property
    def watches(self) -> bool:
        """Whether :meth:`watch` works here (the kernel loaded the watchdog)."""
        return self._ring is not None

    @property
    def expiry_fd(self) -> int | None:
        """Readable when a watched VRID's deadline passed (None without a watchdog)."""
        return None if self._ring is None else self._ring.fd

    def attach(self, sock_fd: int) -> None:
        """Attach the filter to the socket ``sock_fd`` (OSError if refused)."""
        E.attach_to_socket(sock_fd, self._prog_fd)

    def arm(
        self, vrid: int, *, length: bytes, ttl: int, src: bytes, dst: bytes, payload: bytes
    ) -> bool:
        """Absorb the packets identical to this advert from now on; False if it cannot.

        ``length`` is the IP header's length field as received (IPv4 total length, IPv6
        payload length: two bytes, network order), ``ttl`` the TTL or hop limit, ``src`` and
        ``dst`` the packed addresses, ``payload`` the VRRP message. An IPv4 packet with header
        options must not be armed (the filter passes those). Call :meth:`collect` first: the
        repeats of the advert armed before are not counted once another is armed (rebuilt
        from the new one, they could stand for what its sender never sent). Another advert
        than the one armed stops the VRID's timed stretch (see :meth:`watching`).
        """
        if self._closed or not 8 <= len(payload) <= CAPACITY or not 1 <= vrid < _ENTRIES:
            return False
        identity = length + bytes((ttl,)) + src + dst + payload
        if self._armed_with.get(vrid) == identity:
            return True
        memory, at = self._memory, vrid * _VALUE_SIZE
        _u32.pack_into(memory, at + _ARMED, 0)
        memory[at + _LENGTH_FIELD : at + _LENGTH_FIELD + 3] = identity[:3]
        memory[at + _ADDRESSES : at + _ADDRESSES + 32] = (src + dst).ljust(32, b"\0")
        memory[at + _PAYLOAD : at + _PAYLOAD + CAPACITY] = payload.ljust(CAPACITY, b"\0")
        _u32.pack_into(memory, at + _PLEN, len(payload))
        count = self._seen[vrid] = _u64.unpack_from(memory, at + _COUNT)[0]
        self._watched_from[vrid] = count
        self._timed.discard(vrid)
        _u32.pack_into(memory, at + _ARMED, 1)
        self._armed_with[vrid] = identity
        return True

    def disarm(self, vrids: Iterable[int] | None = None) -> None:
        """Stop absorbing and watching ``vrids`` (all if None); :meth:`collect` still counts
        what came."""
        if self._closed:
            return
        for vrid in list(self._armed_with) if vrids is None else vrids:
            if self._armed_with.pop(vrid, None) is not None:
                _u32.pack_into(self._memory, vrid * _VALUE_SIZE + _ARMED, 0)
            self._set_watch(vrid, 0)
            # Unlike watch(vrid, 0), the stretch counted so far keeps its timing: nothing is
            # counted from now on, and the deadline passing marks where timing ended. (A
            # socket another instance turned eager may hold a long stretch not yet handed.)

    def watch(self, vrid: int, nanoseconds: int) -> None:
        """Have each repeat of ``vrid`` set its deadline ``nanoseconds`` later (0: none).

        When a deadline passes with no repeat, :attr:`expiry_fd` turns readable and
        :meth:`collect` reports it. Without a watchdog (:attr:`watches` False) this does
        nothing.
        """
        if self._set_watch(vrid, nanoseconds):
            # Another interval, or none: what is counted from now on is not vouched for
            # until the deadline is seen kept with the new one (the caller handed over what
            # came before: its down timer changed after reading it).
            self._timed.discard(vrid)

    def _set_watch(self, vrid: int, nanoseconds: int) -> bool:
        if self._ring is None or self._closed or not 1 <= vrid < _ENTRIES:
            return False
        if self._watch_ns.get(vrid, 0) == nanoseconds:
            return False
        at = vrid * _VALUE_SIZE
        _u64.pack_into(self._memory, at + _WATCH_NS, nanoseconds)
        self._watch_ns[vrid] = nanoseconds
        self._watched_from[vrid] = _u64.unpack_from(self._memory, at + _COUNT)[0]
        return True

    def watching(self, vrid: int) -> bool:
        """Whether the kernel has kept ``vrid``'s deadline, with the current interval and
        advert, since the last repeat :meth:`collect` returned (and it has not passed)."""
        return vrid in self._timed and vrid not in self._pending

    def collect(self) -> tuple[list[Repeats], list[int]]:
        """What the kernel absorbed since the last call, and the VRIDs whose deadline passed.

        The repeats come per VRID; where a deadline passed among them, in two stretches: those
        before (their last is the one the silence followed) and those after (untimed, their
        first receive time unknown). A report the ring buffer had no room for makes the
        whole stretch untimed (a silence came, somewhere).
        """
        if self._closed:
            return [], []
        memory, seen, timed, lost_seen = self._memory, self._seen, self._timed, self._lost
        # The counts are read before the expiries: an expiry read here may have come after
        # a count was read, and then stops the timing of later repeats only.
        counts = {vrid: _u64.unpack_from(memory, vrid * _VALUE_SIZE)[0] for vrid in seen}
        expired, self._pending = self._pending, {}
        if self._ring is not None:
            for record in self._ring.read(_EXPIRY.size):
                vrid, count_then, last_then = _EXPIRY.unpack(record)
                if vrid == 0:
                    # The timer could not be set again: every watched VRID's deadline went
                    # uncovered, and none of what was counted since the last call is timed.
                    for watched, nanoseconds in self._watch_ns.items():
                        if nanoseconds:
                            expired.setdefault(watched, (seen.get(watched, 0), 0))
                    continue
                expired.setdefault(vrid, (count_then, last_then))
        found: list[Repeats] = []
        silent: list[int] = [vrid for vrid in expired if vrid not in seen]
        watchdog = self._ring is not None
        for vrid, before in seen.items():
            at = vrid * _VALUE_SIZE
            count = counts[vrid]
            silence = expired.get(vrid)
            lost = False
            if watchdog:
                records_lost = _u64.unpack_from(memory, at + _LOST)[0]
                if records_lost != lost_seen.get(vrid, 0):
                    lost_seen[vrid] = records_lost
                    lost = True
            if silence is not None or lost:
                silent.append(vrid)
            elif count == before:
                continue
            seen[vrid] = count
            first = last = 0
            if count > before:
                first = _u64.unpack_from(memory, at + _FIRST_NS)[0]
                _u64.pack_into(memory, at + _FIRST_NS, 0)
                last = _u64.unpack_from(memory, at + _LAST_NS)[0]
            was_timed = vrid in timed
            if lost:
                if count > before:
                    found.append(Repeats(vrid, count - before, first, last, False))
                timed.discard(vrid)
                self._watched_from[vrid] = count
                continue
            if silence is None or silence[0] > count:
                # No silence, or one after every repeat counted here (counted meanwhile).
                if count > before:
                    found.append(Repeats(vrid, count - before, first, last, was_timed))
                if silence is not None:
                    self._pending[vrid] = silence  # it splits the next stretch
                continue
            count_then, last_then = silence
            if count_then > before:
                found.append(Repeats(vrid, count_then - before, first, last_then, was_timed))
                first = 0
            after = max(count_then, before)
            if count > after:
                found.append(Repeats(vrid, count - after, first, last, False))
            timed.discard(vrid)
            # The next repeat sets a deadline again; count from the silence on.
            self._watched_from[vrid] = after
        for vrid, nanoseconds in self._watch_ns.items():
            # Two repeats since the interval was set (or the deadline last passed): the first
            # may have been counted by a filter that read the interval before this process's
            # write of it reached that CPU; the second set the deadline for certain.
            if (
                nanoseconds
                and vrid not in timed
                and vrid not in expired
                and vrid in self._armed_with
                and seen.get(vrid, 0) >= self._watched_from.get(vrid, 0) + 2
            ):
                timed.add(vrid)
        return found, silent

    def close(self) -> None:
        """Release the program and its maps (the other methods then do nothing)."""
        if self._closed:
            return
        self._closed = True
        self._memory.close()
        if self._ring is not None:
            self._ring.close()
        for fd in self._fds:
            os.close(fd)
