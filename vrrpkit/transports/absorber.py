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
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

__all__ = ["CAPACITY", "RepeatAbsorber"]

logger = logging.getLogger(__name__)

#: Largest VRRP message the filter can hold (v3 with 30 IPv4 or 7 IPv6 addresses).
CAPACITY = 128

_NR_BPF = 321  # x86_64; other architectures get None from create()
_BPF_MAP_CREATE = 0
_BPF_PROG_LOAD = 5
_BPF_BTF_LOAD = 18
_BPF_MAP_TYPE_ARRAY = 2
_BPF_MAP_TYPE_RINGBUF = 27
_RING_SIZE = 4096  # a page: room for 256 expiries of 16 bytes
_RINGBUF_BUSY, _RINGBUF_DISCARD, _RINGBUF_LENGTH = 1 << 31, 1 << 30, (1 << 30) - 1
_CLOCK_MONOTONIC = 1
_BPF_F_MMAPABLE = 1 << 10
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_SO_ATTACH_BPF = 50
_BPF_HDR_START_NET = 1
_ACCEPT = 0x40000

# Helpers (linux/bpf.h).
_MAP_LOOKUP_ELEM = 1
_KTIME_GET_NS = 5
_SKB_LOAD_BYTES_RELATIVE = 68
_RINGBUF_OUTPUT = 130
_TIMER_INIT, _TIMER_SET_CALLBACK, _TIMER_START = 169, 170, 171
_CALLBACK_LENGTH = 7  # instructions of the timer callback, last in the program

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
_WATCH_NS = _PAYLOAD + CAPACITY
_VALUE_SIZE = _WATCH_NS + 8
_ENTRIES = 256

_FP = 10
_KEY = -8  # the VRID, as a 4-byte map key
_PAYLOAD_BUF = _KEY - CAPACITY

_u64 = struct.Struct("<Q")
_u32 = struct.Struct("<I")


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


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


# Opcodes (linux/bpf_common.h, linux/bpf.h).
_LDX_B, _LDX_H, _LDX_W, _LDX_DW = 0x71, 0x69, 0x61, 0x79
_STX_W, _STX_DW, _ST_DW = 0x63, 0x7B, 0x7A
_ATOMIC_ADD_DW = 0xDB
_MOV_K, _MOV_X, _ADD_K = 0xB7, 0xBF, 0x07
_JEQ_K, _JNE_K, _JNE_X, _JGT_K, _JLT_K = 0x15, 0x55, 0x5D, 0x25, 0xA5
_CALL, _EXIT, _LD_IMM64 = 0x85, 0x95, 0x18


class _Watch:
    """File descriptors of the watchdog: the timers' map and the ring buffer of expiries."""

    def __init__(self, timers_fd: int, ring_fd: int) -> None:
        self.timers_fd = timers_fd
        self.ring_fd = ring_fd


def _program(ip_version: int, map_fd: int, watch: _Watch | None = None) -> bytes:
    """The filter: drop (count) a packet identical to its VRID's armed advert, pass the rest.

    With ``watch``, each packet dropped also (re)starts its VRID's kernel timer for the
    entry's watch interval, when one is set; the timer's callback writes the VRID to the ring
    buffer, which wakes the process.
    """
    f = _Family(ip_version)
    # Jumps to the labels "pass" and "drop" are patched once the program is laid out.
    code: list[bytes | tuple[str, int, int, int, int]] = []

    def jump(label: str, opcode: int, dst: int, src: int = 0, imm: int = 0) -> None:
        code.append((label, opcode, dst, src, imm))

    def load_map(register: int, fd: int) -> None:
        code.append(_insn(_LD_IMM64, register, 1, imm=fd))  # src 1: BPF_PSEUDO_MAP_FD
        code.append(_insn(0))

    def load_relative(offset: int, buffer: int, size_reg: int | None, size: int = 0) -> None:
        code.append(_insn(_MOV_X, 1, 6))
        code.append(_insn(_MOV_K, 2, imm=offset))
        code.append(_insn(_MOV_X, 3, _FP))
        code.append(_insn(_ADD_K, 3, imm=buffer))
        if size_reg is None:
            code.append(_insn(_MOV_K, 4, imm=size))
        code.append(_insn(_MOV_K, 5, imm=_BPF_HDR_START_NET))
        code.append(_insn(_CALL, imm=_SKB_LOAD_BYTES_RELATIVE))
        jump("pass", _JNE_K, 0, imm=0)

    code.append(_insn(_MOV_X, 6, 1))  # r6 = the packet
    for word in range(CAPACITY // 8):  # compared whole: bytes past the message must be zero
        code.append(_insn(_ST_DW, _FP, off=_PAYLOAD_BUF + 8 * word, imm=0))
    load_relative(0, f.base, None, f.header_len)
    code.append(_insn(_LDX_B, 1, _FP, off=f.base + f.check_at))
    jump("pass", _JNE_K, 1, imm=f.check_value)
    load_relative(f.header_len, _PAYLOAD_BUF, None, 8)  # the VRRP header: its VRID
    code.append(_insn(_LDX_B, 1, _FP, off=_PAYLOAD_BUF + 1))
    code.append(_insn(_STX_W, _FP, 1, off=_KEY))
    load_map(1, map_fd)
    code.append(_insn(_MOV_X, 2, _FP))
    code.append(_insn(_ADD_K, 2, imm=_KEY))
    code.append(_insn(_CALL, imm=_MAP_LOOKUP_ELEM))
    jump("pass", _JEQ_K, 0, imm=0)
    code.append(_insn(_MOV_X, 7, 0))  # r7 = this VRID's entry
    code.append(_insn(_LDX_W, 1, 7, off=_ARMED))
    jump("pass", _JEQ_K, 1, imm=0)
    code.append(_insn(_LDX_H, 1, _FP, off=f.base + f.length_at))
    code.append(_insn(_LDX_H, 2, 7, off=_LENGTH_FIELD))
    jump("pass", _JNE_X, 1, 2)
    code.append(_insn(_LDX_B, 1, _FP, off=f.base + f.ttl_at))
    code.append(_insn(_LDX_B, 2, 7, off=_TTL))
    jump("pass", _JNE_X, 1, 2)
    for word in range(f.address_words):
        code.append(_insn(_LDX_DW, 1, _FP, off=f.base + f.addresses_at + 8 * word))
        code.append(_insn(_LDX_DW, 2, 7, off=_ADDRESSES + 8 * word))
        jump("pass", _JNE_X, 1, 2)
    code.append(_insn(_LDX_W, 4, 7, off=_PLEN))
    jump("pass", _JGT_K, 4, imm=CAPACITY)
    jump("pass", _JLT_K, 4, imm=8)
    load_relative(f.header_len, _PAYLOAD_BUF, 4)
    for word in range(CAPACITY // 8):
        code.append(_insn(_LDX_DW, 1, _FP, off=_PAYLOAD_BUF + 8 * word))
        code.append(_insn(_LDX_DW, 2, 7, off=_PAYLOAD + 8 * word))
        jump("pass", _JNE_X, 1, 2)
    code.append(_insn(_CALL, imm=_KTIME_GET_NS))
    code.append(_insn(_STX_DW, 7, 0, off=_LAST_NS))
    code.append(_insn(_MOV_K, 1, imm=1))
    # Counted before the watch interval is read: see RepeatAbsorber.watching.
    code.append(_insn(_ATOMIC_ADD_DW, 7, 1, off=_COUNT))
    callback_at = -1
    if watch is not None:
        code.append(_insn(_LDX_DW, 2, 7, off=_WATCH_NS))
        jump("drop", _JEQ_K, 2, imm=0)
        load_map(1, watch.timers_fd)
        code.append(_insn(_MOV_X, 2, _FP))
        code.append(_insn(_ADD_K, 2, imm=_KEY))
        code.append(_insn(_CALL, imm=_MAP_LOOKUP_ELEM))
        jump("drop", _JEQ_K, 0, imm=0)
        code.append(_insn(_MOV_X, 8, 0))  # r8 = this VRID's timer
        code.append(_insn(_MOV_X, 1, 8))
        load_map(2, watch.timers_fd)
        code.append(_insn(_MOV_K, 3, imm=_CLOCK_MONOTONIC))
        code.append(_insn(_CALL, imm=_TIMER_INIT))  # -EBUSY once initialised: harmless
        code.append(_insn(_MOV_X, 1, 8))
        callback_at = len(code)
        code.append(b"")  # the callback's address, set below (src 4: BPF_PSEUDO_FUNC)
        code.append(_insn(0))
        code.append(_insn(_CALL, imm=_TIMER_SET_CALLBACK))
        code.append(_insn(_MOV_X, 1, 8))
        code.append(_insn(_LDX_DW, 2, 7, off=_WATCH_NS))
        code.append(_insn(_MOV_K, 3, imm=0))
        code.append(_insn(_CALL, imm=_TIMER_START))
    labels = {"drop": len(code)}
    code.append(_insn(_MOV_K, 0, imm=0))
    code.append(_insn(_EXIT))
    labels["pass"] = len(code)
    code.append(_insn(_MOV_K, 0, imm=_ACCEPT))
    code.append(_insn(_EXIT))
    if watch is not None:
        # The timer's callback (a static subprogram): R2 points to the VRID (the map key).
        code[callback_at] = _insn(_LD_IMM64, 2, 4, imm=len(code) - callback_at - 1)
        load_map(1, watch.ring_fd)
        code.append(_insn(_MOV_K, 3, imm=4))
        code.append(_insn(_MOV_K, 4, imm=0))
        code.append(_insn(_CALL, imm=_RINGBUF_OUTPUT))
        code.append(_insn(_MOV_K, 0, imm=0))
        code.append(_insn(_EXIT))
    out = []
    for index, item in enumerate(code):
        if isinstance(item, tuple):
            label, opcode, dst, src, imm = item
            item = _insn(opcode, dst, src, off=labels[label] - index - 1, imm=imm)
        out.append(item)
    return b"".join(out)


def _btf() -> bytes:
    """Type information for the timers' map and the two functions of the watchdog program.

    The kernel finds a ``struct bpf_timer`` in a map value only through BTF, and accepts a
    timer callback only in a program whose functions are described (``func_info``).
    """
    strings = bytearray(b"\0")

    def name(text: str) -> int:
        strings.extend(text.encode() + b"\0")
        return len(strings) - len(text) - 1

    def kind(name_off: int, kind: int, vlen: int, size_or_type: int, *extra: int) -> bytes:
        return struct.pack(
            f"<III{len(extra)}I", name_off, (kind << 24) | vlen, size_or_type, *extra
        )

    types = b"".join(
        (
            kind(name("int"), 1, 0, 4, (1 << 24) | 32),  # 1: int (signed, 32 bits)
            kind(name("bpf_timer"), 4, 0, 16),  # 2: struct bpf_timer (opaque, 16 bytes)
            kind(name("timer_slot"), 4, 1, 16, name("timer"), 2, 0),  # 3: the map value
            kind(0, 2, 0, 0),  # 4: void *
            kind(0, 2, 0, 1),  # 5: int *
            kind(0, 13, 1, 1, name("ctx"), 4),  # 6: int (void *ctx)
            kind(name("repeat_filter"), 12, 0, 6),  # 7: static (the main program)
            kind(0, 13, 3, 1, name("map"), 4, name("key"), 5, name("value"), 4),  # 8
            kind(name("silence"), 12, 0, 8),  # 9: static (the timer callback)
        )
    )
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + bytes(strings)


_MAIN_FUNC, _CALLBACK_FUNC, _INT, _TIMER_SLOT = 7, 9, 1, 3


class _MapCreate(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
        ("map_ifindex", ctypes.c_uint32),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("pad", ctypes.c_uint8 * 68),
    ]


class _ProgLoad(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("func_info_cnt", ctypes.c_uint32),
        ("pad", ctypes.c_uint8 * 52),
    ]


class _BtfLoad(ctypes.Structure):
    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_log_buf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("btf_log_size", ctypes.c_uint32),
        ("btf_log_level", ctypes.c_uint32),
        ("pad", ctypes.c_uint8 * 100),
    ]


class _Loader:
    """bpf() calls through libc; every descriptor it opens is closed by :meth:`close_all`."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fds: list[int] = []

    def call(self, command: int, attr: ctypes.Structure) -> int:
        result: int = self.libc.syscall(_NR_BPF, command, ctypes.byref(attr), ctypes.sizeof(attr))
        if result < 0:
            raise OSError(ctypes.get_errno(), "bpf() failed")
        self.fds.append(result)
        return result

    def create_map(self, kind: int, key: int, value: int, entries: int, **more: Any) -> int:
        return self.call(_BPF_MAP_CREATE, _MapCreate(kind, key, value, entries, **more))

    def load(self, code: bytes, license_: bytes, func_info: bytes = b"", btf_fd: int = 0) -> int:
        buffer = ctypes.create_string_buffer(code, len(code))
        license_buffer = ctypes.create_string_buffer(license_)
        info = ctypes.create_string_buffer(func_info, max(len(func_info), 1))
        attr = _ProgLoad(
            prog_type=_BPF_PROG_TYPE_SOCKET_FILTER,
            insn_cnt=len(code) // 8,
            insns=ctypes.addressof(buffer),
            license=ctypes.addressof(license_buffer),
            prog_name=b"vrrp_repeats",
        )
        if func_info:
            attr.prog_btf_fd, attr.func_info_rec_size = btf_fd, 8
            attr.func_info, attr.func_info_cnt = ctypes.addressof(info), len(func_info) // 8
        try:
            return self.call(_BPF_PROG_LOAD, attr)
        except OSError as exc:
            # Say why the verifier refused (the log costs 64 KiB only then).
            log = ctypes.create_string_buffer(65536)
            attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
            with contextlib.suppress(OSError):
                self.call(_BPF_PROG_LOAD, attr)
            logger.debug("repeat filter refused (%s): %s", exc, log.value.decode()[-400:])
            raise

    def close_all(self, keep: Iterable[int] = ()) -> None:
        for fd in set(self.fds) - set(keep):
            os.close(fd)


class RepeatAbsorber:
    """The loaded filter and its maps for one raw socket's address family.

    :meth:`arm` gives a VRID the advert to absorb; :meth:`collect` returns, per VRID, how many
    identical packets the kernel dropped since the last call and when the last came. Where
    the kernel has timers for eBPF programs (:attr:`watches`), :meth:`watch` also has it
    report a VRID whose repeats stopped for a given time (:meth:`expired`).
    """

    def __init__(
        self,
        fds: list[int],
        map_fd: int,
        memory: mmap.mmap,
        ip_version: int,
        ring: tuple[int, mmap.mmap, mmap.mmap] | None,
    ) -> None:
        self._fds = fds
        self._prog_fd = fds[-1]
        self._memory = memory
        self._ip_version = ip_version
        self._ring = ring
        self._seen: dict[int, int] = {}  # armed VRID -> count already collected
        self._armed_with: dict[int, bytes] = {}
        self._watch_ns: dict[int, int] = {}
        self._watched_from: dict[int, int] = {}  # VRID -> count when its watch last changed

    @classmethod
    def create(cls, ip_version: int) -> RepeatAbsorber | None:
        """Load the filter, or None where the kernel or the process's privileges refuse.

        The filter with the watchdog is tried first, then the one without.
        """
        if os.uname().machine != "x86_64":
            return None
        for watchdog in (True, False):
            loader = _Loader()
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
    def _load(cls, loader: _Loader, ip_version: int, watchdog: bool) -> RepeatAbsorber:
        map_fd = loader.create_map(
            _BPF_MAP_TYPE_ARRAY, 4, _VALUE_SIZE, _ENTRIES, map_flags=_BPF_F_MMAPABLE
        )
        ring = None
        timers_fd = -1
        if watchdog:
            blob = _btf()
            blob_buffer = ctypes.create_string_buffer(blob, len(blob))
            btf_fd = loader.call(
                _BPF_BTF_LOAD, _BtfLoad(btf=ctypes.addressof(blob_buffer), btf_size=len(blob))
            )
            timers_fd = loader.create_map(
                _BPF_MAP_TYPE_ARRAY,
                4,
                16,
                _ENTRIES,
                btf_fd=btf_fd,
                btf_key_type_id=_INT,
                btf_value_type_id=_TIMER_SLOT,
            )
            ring_fd = loader.create_map(_BPF_MAP_TYPE_RINGBUF, 0, 0, _RING_SIZE)
            code = _program(ip_version, map_fd, _Watch(timers_fd, ring_fd))
            callback = len(code) // 8 - _CALLBACK_LENGTH
            func_info = struct.pack("<IIII", 0, _MAIN_FUNC, callback, _CALLBACK_FUNC)
            # bpf_timer_* are GPL-only helpers: this generated program is offered under MIT
            # or GPL (the kernel's "Dual MIT/GPL"), as eBPF programs of Apache projects are.
            prog_fd = loader.load(code, b"Dual MIT/GPL", func_info, btf_fd)
            page = mmap.PAGESIZE
            consumer = mmap.mmap(ring_fd, page)
            producer = mmap.mmap(ring_fd, page + 2 * _RING_SIZE, prot=mmap.PROT_READ, offset=page)
            ring = (ring_fd, consumer, producer)
        else:
            prog_fd = loader.load(_program(ip_version, map_fd), b"Apache-2.0")
        memory = mmap.mmap(map_fd, _VALUE_SIZE * _ENTRIES)
        # The program keeps its maps alive, but the kernel cancels a map's timers once no
        # descriptor of it is open: the timers' map stays open with the ring buffer's.
        keep = [map_fd] + ([timers_fd, ring[0]] if ring is not None else [])
        loader.close_all(keep=[*keep, prog_fd])
        return cls([*keep, prog_fd], map_fd, memory, ip_version, ring)

    @property
    def watches(self) -> bool:
        """Whether :meth:`watch` works here (the kernel loaded the watchdog)."""
        return self._ring is not None

    @property
    def expiry_fd(self) -> int | None:
        """Readable when :meth:`expired` has VRIDs to report (None without a watchdog)."""
        return None if self._ring is None else self._ring[0]

    def attach(self, sock_fd: int) -> None:
        """Attach the filter to the socket ``sock_fd`` (OSError if refused)."""
        with socket.socket(fileno=sock_fd) as sock:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_BPF, self._prog_fd)
            finally:
                sock.detach()

    def arm(
        self, vrid: int, *, length: bytes, ttl: int, src: bytes, dst: bytes, payload: bytes
    ) -> bool:
        """Absorb the packets identical to this advert from now on; False if it cannot.

        ``length`` is the IP header's length field as received (IPv4 total length, IPv6
        payload length: two bytes, network order), ``ttl`` the TTL or hop limit, ``src`` and
        ``dst`` the packed addresses, ``payload`` the VRRP message. An IPv4 packet with header
        options must not be armed (the filter passes those). Call :meth:`collect` first: the
        repeats of the advert armed before are not counted once another is armed.
        """
        if not 8 <= len(payload) <= CAPACITY or not 0 <= vrid < _ENTRIES:
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
        self._watched_from[vrid] = count  # a new advert: the watch starts again
        _u32.pack_into(memory, at + _ARMED, 1)
        self._armed_with[vrid] = identity
        return True

    def disarm(self, vrids: Iterable[int] | None = None) -> None:
        """Stop absorbing (and watching) for ``vrids`` (all if None); :meth:`collect` still
        counts what came."""
        for vrid in list(self._armed_with) if vrids is None else vrids:
            if self._armed_with.pop(vrid, None) is not None:
                _u32.pack_into(self._memory, vrid * _VALUE_SIZE + _ARMED, 0)
            self.watch(vrid, 0)

    def collect(self) -> list[tuple[int, int, int]]:
        """``(vrid, count, last_ns)`` for each VRID whose advert was absorbed since last time."""
        memory, seen = self._memory, self._seen
        found = []
        for vrid, before in seen.items():
            at = vrid * _VALUE_SIZE
            count = _u64.unpack_from(memory, at)[0]
            if count != before:
                seen[vrid] = count
                found.append((vrid, count - before, _u64.unpack_from(memory, at + _LAST_NS)[0]))
        return found

    def watch(self, vrid: int, nanoseconds: int) -> None:
        """Have each repeat of ``vrid`` restart its kernel timer for ``nanoseconds`` (0: none).

        When the timer runs out, :meth:`expired` reports the VRID. Without a watchdog
        (:attr:`watches` False) this does nothing.
        """
        if self._ring is None or self._watch_ns.get(vrid, 0) == nanoseconds:
            return
        at = vrid * _VALUE_SIZE
        _u64.pack_into(self._memory, at + _WATCH_NS, nanoseconds)
        self._watch_ns[vrid] = nanoseconds
        self._watched_from[vrid] = _u64.unpack_from(self._memory, at + _COUNT)[0]

    def watching(self, vrid: int) -> bool:
        """Whether the kernel's timer for ``vrid`` runs with the current watch interval.

        It runs once a repeat came after :meth:`watch` set the interval. Two must have come:
        the first may have been counted by a filter that read the interval before this
        process's write of it reached that CPU.
        """
        if not self._watch_ns.get(vrid):
            return False
        count = _u64.unpack_from(self._memory, vrid * _VALUE_SIZE + _COUNT)[0]
        watched_from: int = self._watched_from.get(vrid, count)
        return bool(count >= watched_from + 2)

    def expired(self) -> list[int]:
        """The VRIDs whose timer ran out since the last call (their watch starts again)."""
        if self._ring is None:
            return []
        _fd, consumer, producer = self._ring
        page = mmap.PAGESIZE
        position = _u64.unpack_from(consumer, 0)[0]
        end = _u64.unpack_from(producer, 0)[0]
        found = []
        while position < end:
            at = page + (position & (_RING_SIZE - 1))
            length = _u32.unpack_from(producer, at)[0]
            if length & _RINGBUF_BUSY:
                break
            if not length & _RINGBUF_DISCARD and (length & _RINGBUF_LENGTH) >= 4:
                found.append(_u32.unpack_from(producer, at + 8)[0])
            position += (8 + (length & _RINGBUF_LENGTH) + 7) & ~7
        _u64.pack_into(consumer, 0, position)
        for vrid in found:
            if 0 <= vrid < _ENTRIES:
                # No timer runs until the next repeat restarts it.
                count = _u64.unpack_from(self._memory, vrid * _VALUE_SIZE + _COUNT)[0]
                self._watched_from[vrid] = count
        return found

    def close(self) -> None:
        """Release the program and its maps."""
        self._memory.close()
        if self._ring is not None:
            self._ring[1].close()
            self._ring[2].close()
        for fd in self._fds:
            os.close(fd)
