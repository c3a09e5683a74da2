"""Classic BPF socket filters: let the kernel wake a process only for the packets that matter.

A backup needs its adverts only when its down timer is due, except for a master's
resignation (priority 0, RFC 5798 §6.4.2), which must be acted on within Skew_Time. A second
raw socket with :func:`priority_zero_filter` attached is readable only for those, so a backup
can read its ordinary adverts in batches and still hear a resignation at once.
"""

from __future__ import annotations

import ctypes
import socket
import struct

__all__ = ["attach_filter", "priority_zero_filter"]

_SO_ATTACH_FILTER = 26
_instruction = struct.Struct("@HBBI")
_program = struct.Struct("@HP")

# Opcodes from linux/filter.h.
_LD_B_ABS = 0x30  # A = packet[k]
_LD_B_IND = 0x50  # A = packet[X + k]
_LDX_B_MSH = 0xB1  # X = 4 * (packet[k] & 0x0F): the IPv4 header length
_JEQ_K = 0x15  # if A == k: skip jt else skip jf
_RET_K = 0x06  # accept k bytes (0: drop)
_ACCEPT = 0x40000
_VRRP_PRIORITY = 2  # offset in the VRRP header, version 2 and 3 alike


def priority_zero_filter(ip_version: int) -> list[tuple[int, int, int, int]]:
    """The program accepting only VRRP messages with priority 0.

    An IPv4 raw socket's filter sees the IP header first; an IPv6 raw socket's sees the
    payload (the VRRP header) at offset 0.
    """
    load = (
        [(_LDX_B_MSH, 0, 0, 0), (_LD_B_IND, 0, 0, _VRRP_PRIORITY)]
        if ip_version == 4
        else [(_LD_B_ABS, 0, 0, _VRRP_PRIORITY)]
    )
    return [*load, (_JEQ_K, 0, 1, 0), (_RET_K, 0, 0, _ACCEPT), (_RET_K, 0, 0, 0)]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach ``program`` (``(code, jt, jf, k)`` instructions) to ``sock``; OSError if refused."""
    code = b"".join(_instruction.pack(*instruction) for instruction in program)
    # The kernel copies the program during the call: the buffer only has to outlive it.
    buffer = ctypes.create_string_buffer(code, len(code))
    sock.setsockopt(
        socket.SOL_SOCKET, _SO_ATTACH_FILTER, _program.pack(len(program), ctypes.addressof(buffer))
    )
