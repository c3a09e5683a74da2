"""Just enough of the ``bpf()`` system call to load socket filters that use maps.

No compiler and no libbpf: programs are assembled here instruction by instruction
(:func:`insn` and the opcode constants) and their maps created. Every failure is an
:class:`OSError` from the kernel (``EPERM`` without ``CAP_BPF``, ``EINVAL`` from the
verifier, whose log is written to the debug log), so a caller can fall back to doing
without.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

__all__ = ["BpfLoader", "attach_to_socket", "insn", "supported"]

logger = logging.getLogger(__name__)

_NR_BPF = {"x86_64": 321}  # the only architecture this was run on

# Commands, map and program types, flags (linux/bpf.h).
_BPF_MAP_CREATE, _BPF_PROG_LOAD = 0, 5
MAP_ARRAY = 2
F_MMAPABLE = 1 << 10
_PROG_SOCKET_FILTER = 1
_SO_ATTACH_BPF = 50

# Helper functions.
MAP_LOOKUP_ELEM, KTIME_GET_NS, SKB_LOAD_BYTES_RELATIVE = 1, 5, 68
HDR_START_NET = 1  # bpf_skb_load_bytes_relative: offsets from the network header

# Opcodes (linux/bpf_common.h, linux/bpf.h) and registers.
LDX_B, LDX_H, LDX_W, LDX_DW = 0x71, 0x69, 0x61, 0x79
STX_W, STX_DW, ST_DW = 0x63, 0x7B, 0x7A
ATOMIC_ADD_DW = 0xDB
MOV_K, MOV_X, ADD_K = 0xB7, 0xBF, 0x07
JEQ_K, JNE_K, JNE_X, JGT_K, JLT_K = 0x15, 0x55, 0x5D, 0x25, 0xA5
CALL, EXIT, LD_IMM64 = 0x85, 0x95, 0x18
PSEUDO_MAP_FD = 1  # LD_IMM64's source register: the immediate is a map's descriptor
FP = 10  # the frame pointer


def supported() -> bool:
    """Whether this machine's system call number for ``bpf()`` is known here."""
    return os.uname().machine in _NR_BPF


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte eBPF instruction."""
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


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

    def load_socket_filter(self, code: bytes, license_: bytes) -> int:
        """Load a socket filter program; its descriptor."""
        buffer = ctypes.create_string_buffer(code, len(code))
        license_buffer = ctypes.create_string_buffer(license_)
        attr = _ProgLoad(
            prog_type=_PROG_SOCKET_FILTER,
            insn_cnt=len(code) // 8,
            insns=ctypes.addressof(buffer),
            license=ctypes.addressof(license_buffer),
            prog_name=b"vrrpkit",
        )
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


def attach_to_socket(sock_fd: int, prog_fd: int) -> None:
    """Attach a loaded socket filter to the socket ``sock_fd`` (OSError if refused)."""
    with socket.socket(fileno=sock_fd) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_BPF, prog_fd)
        finally:
            sock.detach()
