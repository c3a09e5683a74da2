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

import ctypes
import logging
import mmap
import os
import socket
import struct
from collections.abc import Iterable

__all__ = ["CAPACITY", "RepeatAbsorber"]

logger = logging.getLogger(__name__)

#: Largest VRRP message the filter can hold (v3 with 30 IPv4 or 7 IPv6 addresses).
CAPACITY = 128

_NR_BPF = 321  # x86_64; other architectures get None from create()
_BPF_MAP_CREATE = 0
_BPF_PROG_LOAD = 5
_BPF_MAP_TYPE_ARRAY = 2
_BPF_F_MMAPABLE = 1 << 10
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_SO_ATTACH_BPF = 50
_BPF_HDR_START_NET = 1
_ACCEPT = 0x40000

# Helpers (linux/bpf.h).
_MAP_LOOKUP_ELEM = 1
_KTIME_GET_NS = 5
_SKB_LOAD_BYTES_RELATIVE = 68

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
_VALUE_SIZE = _PAYLOAD + CAPACITY
_ENTRIES = 256

_FP = 10
_PAYLOAD_BUF = -8 - CAPACITY  # below the 4-byte map key at fp-8

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


def _program(ip_version: int, map_fd: int) -> bytes:
    """The filter: drop (count) a packet identical to its VRID's armed advert, pass the rest."""
    f = _Family(ip_version)
    code: list[bytes | str] = []  # "pass" marks a jump to the passing exit, patched below

    def jump_to_pass(opcode: int, dst: int, src: int = 0, imm: int = 0) -> None:
        code.append(f"{opcode}:{dst}:{src}:{imm}")

    def load_relative(offset: int, buffer: int, size_reg: int | None, size: int = 0) -> None:
        code.append(_insn(_MOV_X, 1, 6))
        code.append(_insn(_MOV_K, 2, imm=offset))
        code.append(_insn(_MOV_X, 3, _FP))
        code.append(_insn(_ADD_K, 3, imm=buffer))
        if size_reg is None:
            code.append(_insn(_MOV_K, 4, imm=size))
        code.append(_insn(_MOV_K, 5, imm=_BPF_HDR_START_NET))
        code.append(_insn(_CALL, imm=_SKB_LOAD_BYTES_RELATIVE))
        jump_to_pass(_JNE_K, 0, imm=0)

    code.append(_insn(_MOV_X, 6, 1))  # r6 = the packet
    for word in range(CAPACITY // 8):  # compared whole: bytes past the message must be zero
        code.append(_insn(_ST_DW, _FP, off=_PAYLOAD_BUF + 8 * word, imm=0))
    load_relative(0, f.base, None, f.header_len)
    code.append(_insn(_LDX_B, 1, _FP, off=f.base + f.check_at))
    jump_to_pass(_JNE_K, 1, imm=f.check_value)
    load_relative(f.header_len, _PAYLOAD_BUF, None, 8)  # the VRRP header: its VRID
    code.append(_insn(_LDX_B, 1, _FP, off=_PAYLOAD_BUF + 1))
    code.append(_insn(_STX_W, _FP, 1, off=-8))
    code.append(_insn(_LD_IMM64, 1, 1, imm=map_fd))  # src 1: BPF_PSEUDO_MAP_FD
    code.append(_insn(0))
    code.append(_insn(_MOV_X, 2, _FP))
    code.append(_insn(_ADD_K, 2, imm=-8))
    code.append(_insn(_CALL, imm=_MAP_LOOKUP_ELEM))
    jump_to_pass(_JEQ_K, 0, imm=0)
    code.append(_insn(_MOV_X, 7, 0))  # r7 = this VRID's entry
    code.append(_insn(_LDX_W, 1, 7, off=_ARMED))
    jump_to_pass(_JEQ_K, 1, imm=0)
    code.append(_insn(_LDX_H, 1, _FP, off=f.base + f.length_at))
    code.append(_insn(_LDX_H, 2, 7, off=_LENGTH_FIELD))
    jump_to_pass(_JNE_X, 1, 2)
    code.append(_insn(_LDX_B, 1, _FP, off=f.base + f.ttl_at))
    code.append(_insn(_LDX_B, 2, 7, off=_TTL))
    jump_to_pass(_JNE_X, 1, 2)
    for word in range(f.address_words):
        code.append(_insn(_LDX_DW, 1, _FP, off=f.base + f.addresses_at + 8 * word))
        code.append(_insn(_LDX_DW, 2, 7, off=_ADDRESSES + 8 * word))
        jump_to_pass(_JNE_X, 1, 2)
    code.append(_insn(_LDX_W, 4, 7, off=_PLEN))
    jump_to_pass(_JGT_K, 4, imm=CAPACITY)
    jump_to_pass(_JLT_K, 4, imm=8)
    load_relative(f.header_len, _PAYLOAD_BUF, 4)
    for word in range(CAPACITY // 8):
        code.append(_insn(_LDX_DW, 1, _FP, off=_PAYLOAD_BUF + 8 * word))
        code.append(_insn(_LDX_DW, 2, 7, off=_PAYLOAD + 8 * word))
        jump_to_pass(_JNE_X, 1, 2)
    code.append(_insn(_CALL, imm=_KTIME_GET_NS))
    code.append(_insn(_STX_DW, 7, 0, off=_LAST_NS))
    code.append(_insn(_MOV_K, 1, imm=1))
    code.append(_insn(_ATOMIC_ADD_DW, 7, 1, off=_COUNT))
    code.append(_insn(_MOV_K, 0, imm=0))
    code.append(_insn(_EXIT))
    passing = len(code)
    code.append(_insn(_MOV_K, 0, imm=_ACCEPT))
    code.append(_insn(_EXIT))
    out = []
    for index, item in enumerate(code):
        if isinstance(item, str):
            opcode, dst, src, imm = (int(part) for part in item.split(":"))
            item = _insn(opcode, dst, src, off=passing - index - 1, imm=imm)
        out.append(item)
    return b"".join(out)


class _MapCreate(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint8 * 108),
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
        ("pad", ctypes.c_uint8 * 104),
    ]


def _bpf(libc: ctypes.CDLL, command: int, attr: ctypes.Structure) -> int:
    result: int = libc.syscall(_NR_BPF, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        raise OSError(ctypes.get_errno(), "bpf() failed")
    return result


class RepeatAbsorber:
    """The loaded filter and its map for one raw socket's address family.

    :meth:`arm` gives a VRID the advert to absorb; :meth:`collect` returns, per VRID, how many
    identical packets the kernel dropped since the last call and when the last came.
    """

    def __init__(self, prog_fd: int, map_fd: int, memory: mmap.mmap, ip_version: int) -> None:
        self._prog_fd = prog_fd
        self._map_fd = map_fd
        self._memory = memory
        self._ip_version = ip_version
        self._seen: dict[int, int] = {}  # armed VRID -> count already collected
        self._armed_with: dict[int, bytes] = {}

    @classmethod
    def create(cls, ip_version: int) -> RepeatAbsorber | None:
        """Load the filter, or None where the kernel or the process's privileges refuse."""
        if os.uname().machine != "x86_64":
            return None
        libc = ctypes.CDLL(None, use_errno=True)
        map_fd = prog_fd = -1
        try:
            map_fd = _bpf(
                libc,
                _BPF_MAP_CREATE,
                _MapCreate(_BPF_MAP_TYPE_ARRAY, 4, _VALUE_SIZE, _ENTRIES, _BPF_F_MMAPABLE),
            )
            code = _program(ip_version, map_fd)
            buffer = ctypes.create_string_buffer(code, len(code))
            license_ = ctypes.create_string_buffer(b"Apache-2.0")
            attr = _ProgLoad(
                _BPF_PROG_TYPE_SOCKET_FILTER,
                len(code) // 8,
                ctypes.addressof(buffer),
                ctypes.addressof(license_),
                0,
                0,
                0,
            )
            try:
                prog_fd = _bpf(libc, _BPF_PROG_LOAD, attr)
            except OSError as exc:
                # Say why the verifier refused (the log costs 64 KiB only then).
                log = ctypes.create_string_buffer(65536)
                attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
                try:
                    prog_fd = _bpf(libc, _BPF_PROG_LOAD, attr)
                except OSError:
                    tail = log.value.decode(errors="replace")[-400:]
                    logger.debug("repeat filter refused (%s): %s", exc, tail)
                    raise exc from None
            memory = mmap.mmap(map_fd, _VALUE_SIZE * _ENTRIES)
        except OSError as exc:
            logger.debug("no repeat filter for IPv%d: %s", ip_version, exc)
            for fd in (prog_fd, map_fd):
                if fd >= 0:
                    os.close(fd)
            return None
        return cls(prog_fd, map_fd, memory, ip_version)

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
        self._seen[vrid] = _u64.unpack_from(memory, at + _COUNT)[0]
        _u32.pack_into(memory, at + _ARMED, 1)
        self._armed_with[vrid] = identity
        return True

    def disarm(self, vrids: Iterable[int] | None = None) -> None:
        """Stop absorbing for ``vrids`` (all if None); :meth:`collect` still counts what came."""
        for vrid in list(self._armed_with) if vrids is None else vrids:
            if self._armed_with.pop(vrid, None) is not None:
                _u32.pack_into(self._memory, vrid * _VALUE_SIZE + _ARMED, 0)

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

    def close(self) -> None:
        """Release the program and its map."""
        self._memory.close()
        for fd in (self._prog_fd, self._map_fd):
            os.close(fd)
