"""Just enough of the ``bpf()`` system call to load socket filters with maps and timers.

No compiler and no libbpf: programs are assembled here instruction by instruction
(:func:`insn` and the opcode constants), their maps created and the type information the
kernel asks for (BTF) built byte by byte. Every failure is an :class:`OSError` from the
kernel (``EPERM`` without ``CAP_BPF``, ``EINVAL`` from the verifier, whose log is written to
the debug log), so a caller can fall back to doing without.
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

__all__ = [
    "BpfLoader",
    "BtfBuilder",
    "RingBuffer",
    "attach_to_socket",
    "insn",
    "supported",
]

logger = logging.getLogger(__name__)

_NR_BPF = {"x86_64": 321}  # the only architecture this was run on

# Commands, map and program types, flags (linux/bpf.h).
_BPF_MAP_CREATE, _BPF_PROG_LOAD, _BPF_BTF_LOAD = 0, 5, 18
MAP_ARRAY, MAP_RINGBUF = 2, 27
F_MMAPABLE = 1 << 10
_PROG_SOCKET_FILTER = 1
_SO_ATTACH_BPF = 50

# Helper functions.
MAP_LOOKUP_ELEM, KTIME_GET_NS, SKB_LOAD_BYTES_RELATIVE, RINGBUF_OUTPUT = 1, 5, 68, 130
TIMER_INIT, TIMER_SET_CALLBACK, TIMER_START = 169, 170, 171
HDR_START_NET = 1  # bpf_skb_load_bytes_relative: offsets from the network header
CLOCK_MONOTONIC = 1

# Opcodes (linux/bpf_common.h, linux/bpf.h) and registers.
LDX_B, LDX_H, LDX_W, LDX_DW = 0x71, 0x69, 0x61, 0x79
STX_W, STX_DW, ST_W, ST_DW = 0x63, 0x7B, 0x62, 0x7A
ATOMIC_ADD_DW = ATOMIC_DW = 0xDB  # the operation is the immediate: 0 (add) or one of these
XCHG, CMPXCHG = 0xE1, 0xF1  # fetch the old value: into the source register, or into R0
MOV_K, MOV_X, ADD_K, ADD_X, SUB_X = 0xB7, 0xBF, 0x07, 0x0F, 0x1F
JA, JEQ_K, JEQ_X, JNE_K, JNE_X = 0x05, 0x15, 0x1D, 0x55, 0x5D
JGT_K, JGT_X, JGE_X, JLT_K, JLE_X, JSGT_K = 0x25, 0x2D, 0x3D, 0xA5, 0xBD, 0x65
CALL, EXIT, LD_IMM64 = 0x85, 0x95, 0x18
PSEUDO_MAP_FD, PSEUDO_FUNC = 1, 4  # LD_IMM64's source register: what the immediate means
FP = 10  # the frame pointer

# BTF kinds (linux/btf.h).
BTF_INT, BTF_PTR, BTF_STRUCT, BTF_FUNC, BTF_FUNC_PROTO = 1, 2, 4, 12, 13

_u64 = struct.Struct("<Q")
_u32 = struct.Struct("<I")


def supported() -> bool:
    """Whether this machine's system call number for ``bpf()`` is known here."""
    return os.uname().machine in _NR_BPF


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte eBPF instruction."""
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


class BtfBuilder:
    """BPF Type Format: the types, in order (ids from 1), and the names they refer to."""

    def __init__(self) -> None:
        self._types: list[bytes] = []
        self._strings = bytearray(b"\0")

    def name(self, text: str) -> int:
        """The offset of ``text`` in the string section (added)."""
        self._strings.extend(text.encode() + b"\0")
        return len(self._strings) - len(text) - 1

    def add(self, name: str, kind: int, vlen: int, size_or_type: int, *extra: int) -> int:
        """Add a type (``extra``: the u32 words after ``struct btf_type``); its id."""
        name_off = self.name(name) if name else 0
        info = (kind << 24) | vlen
        self._types.append(struct.pack(f"<III{len(extra)}I", name_off, info, size_or_type, *extra))
        return len(self._types)

    def blob(self) -> bytes:
        """The BTF object: header, types, strings."""
        types = b"".join(self._types)
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self._strings)
        )
        return header + types + bytes(self._strings)


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


class BpfLoader:
    """``bpf()`` calls through libc; :meth:`close_all` closes every descriptor they opened."""

    def __init__(self) -> None:
        if not supported():
            raise OSError(f"bpf() is not known on {os.uname().machine}")
        self._number = _NR_BPF[os.uname().machine]
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fds: list[int] = []

    def _call(self, command: int, attr: ctypes.Structure) -> int:
        result: int = self._libc.syscall(
            self._number, command, ctypes.byref(attr), ctypes.sizeof(attr)
        )
        if result < 0:
            raise OSError(ctypes.get_errno(), "bpf() failed")
        self._fds.append(result)
        return result

    def create_map(self, kind: int, key: int, value: int, entries: int, **more: Any) -> int:
        """A new map (``more``: map_flags, btf_fd, btf_key_type_id, ...); its descriptor."""
        return self._call(_BPF_MAP_CREATE, _MapCreate(kind, key, value, entries, **more))

    def load_btf(self, blob: bytes) -> int:
        """Load type information (see :class:`BtfBuilder`); its descriptor."""
        buffer = ctypes.create_string_buffer(blob, len(blob))
        return self._call(_BPF_BTF_LOAD, _BtfLoad(btf=ctypes.addressof(buffer), btf_size=len(blob)))

    def load_socket_filter(
        self, code: bytes, license_: bytes, *, func_info: bytes = b"", btf_fd: int = 0
    ) -> int:
        """Load a socket filter program; its descriptor.

        ``func_info``: ``(instruction, BTF function type)`` pairs of u32, one per function,
        needed by programs with callbacks.
        """
        buffer = ctypes.create_string_buffer(code, len(code))
        license_buffer = ctypes.create_string_buffer(license_)
        info = ctypes.create_string_buffer(func_info, max(len(func_info), 1))
        attr = _ProgLoad(
            prog_type=_PROG_SOCKET_FILTER,
            insn_cnt=len(code) // 8,
            insns=ctypes.addressof(buffer),
            license=ctypes.addressof(license_buffer),
            prog_name=b"vrrpkit",
        )
        if func_info:
            attr.prog_btf_fd, attr.func_info_rec_size = btf_fd, 8
            attr.func_info, attr.func_info_cnt = ctypes.addressof(info), len(func_info) // 8
        try:
            return self._call(_BPF_PROG_LOAD, attr)
        except OSError as exc:
            # Say why the verifier refused (the log costs 64 KiB only then).
            log = ctypes.create_string_buffer(65536)
            attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
            with contextlib.suppress(OSError):
                self._call(_BPF_PROG_LOAD, attr)
            logger.debug("eBPF program refused (%s): %s", exc, log.value.decode()[-400:])
            raise

    def close_all(self, keep: Iterable[int] = ()) -> None:
        """Close every descriptor opened so far except ``keep``."""
        for fd in set(self._fds) - set(keep):
            os.close(fd)


class RingBuffer:
    """The reading end of a ``BPF_MAP_TYPE_RINGBUF`` map.

    Its descriptor is readable while records wait (epoll). Reading maps the consumer page
    (written to tell the kernel what was read) and the records, mapped twice in a row by
    the kernel so that none wraps.
    """

    def __init__(self, fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self.fd = fd
        self._size = size
        self._consumer = mmap.mmap(fd, page)
        try:
            self._producer = mmap.mmap(fd, page + 2 * size, prot=mmap.PROT_READ, offset=page)
        except OSError:
            self._consumer.close()
            raise

    def read(self, size: int) -> list[bytes]:
        """The records of ``size`` bytes written since the last call (others are skipped)."""
        busy, discarded, length_mask = 1 << 31, 1 << 30, (1 << 30) - 1
        consumer, producer = self._consumer, self._producer
        position = _u64.unpack_from(consumer, 0)[0]
        end = _u64.unpack_from(producer, 0)[0]
        found = []
        while position < end:
            at = mmap.PAGESIZE + (position & (self._size - 1))
            length = _u32.unpack_from(producer, at)[0]
            if length & busy:
                break  # still being written
            if not length & discarded and (length & length_mask) == size:
                found.append(producer[at + 8 : at + 8 + size])
            position += (8 + (length & length_mask) + 7) & ~7  # header + data, 8-aligned
        _u64.pack_into(consumer, 0, position)
        return found

    def close(self) -> None:
        """Unmap (the descriptor is the caller's)."""
        self._consumer.close()
        self._producer.close()


def attach_to_socket(sock_fd: int, prog_fd: int) -> None:
    """Attach a loaded socket filter to the socket ``sock_fd`` (OSError if refused)."""
    with socket.socket(fileno=sock_fd) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_BPF, prog_fd)
        finally:
            sock.detach()
