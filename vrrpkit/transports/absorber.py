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

import logging
import mmap
import os
import struct
from collections.abc import Iterable

from vrrpkit.transports import ebpf as E

__all__ = ["CAPACITY", "RepeatAbsorber"]

logger = logging.getLogger(__name__)

#: Largest VRRP message the filter can hold (v3 with 30 IPv4 or 7 IPv6 addresses).
CAPACITY = 128

_ACCEPT = 0x40000  # a socket filter's verdict: keep up to this many bytes (all)

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
_VALUE_SIZE = _FIRST_NS + 8
_ENTRIES = 256

_KEY = -8  # stack offset of the VRID, as a 4-byte map key
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


def _program(ip_version: int, map_fd: int) -> bytes:
    """The filter: drop (count) a packet identical to its VRID's armed advert, pass the rest."""
    f = _Family(ip_version)
    # Jumps to the label "pass" are patched once the program is laid out.
    code: list[bytes | tuple[str, int, int, int, int]] = []

    def jump(label: str, opcode: int, dst: int, src: int = 0, imm: int = 0) -> None:
        code.append((label, opcode, dst, src, imm))

    def load_map(register: int, fd: int) -> None:
        code.append(E.insn(E.LD_IMM64, register, E.PSEUDO_MAP_FD, imm=fd))
        code.append(E.insn(0))

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

    code.append(E.insn(E.MOV_X, 6, 1))  # r6 = the packet
    for word in range(CAPACITY // 8):  # compared whole: bytes past the message must be zero
        code.append(E.insn(E.ST_DW, E.FP, off=_PAYLOAD_BUF + 8 * word, imm=0))
    load_relative(0, f.base, None, f.header_len)
    code.append(E.insn(E.LDX_B, 1, E.FP, off=f.base + f.check_at))
    jump("pass", E.JNE_K, 1, imm=f.check_value)
    load_relative(f.header_len, _PAYLOAD_BUF, None, 8)  # the VRRP header: its VRID
    code.append(E.insn(E.LDX_B, 1, E.FP, off=_PAYLOAD_BUF + 1))
    code.append(E.insn(E.STX_W, E.FP, 1, off=_KEY))
    load_map(1, map_fd)
    code.append(E.insn(E.MOV_X, 2, E.FP))
    code.append(E.insn(E.ADD_K, 2, imm=_KEY))
    code.append(E.insn(E.CALL, imm=E.MAP_LOOKUP_ELEM))
    jump("pass", E.JEQ_K, 0, imm=0)
    code.append(E.insn(E.MOV_X, 7, 0))  # r7 = this VRID's entry
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
    code.append(E.insn(E.ATOMIC_ADD_DW, 7, 1, off=_COUNT))
    code.append(E.insn(E.MOV_K, 0, imm=0))  # dropped: counted
    code.append(E.insn(E.EXIT))
    labels = {"pass": len(code)}
    code.append(E.insn(E.MOV_K, 0, imm=_ACCEPT))
    code.append(E.insn(E.EXIT))
    out = []
    for index, item in enumerate(code):
        if isinstance(item, tuple):
            label, opcode, dst, src, imm = item
            item = E.insn(opcode, dst, src, off=labels[label] - index - 1, imm=imm)
        out.append(item)
    return b"".join(out)


class RepeatAbsorber:
    """The loaded filter and its map for one raw socket's address family.

    :meth:`arm` gives a VRID the advert to absorb; :meth:`collect` returns, per VRID, how many
    identical packets the kernel dropped since the last call and when the last came.
    """

    def __init__(self, fds: list[int], memory: mmap.mmap) -> None:
        self._fds = fds
        self._prog_fd = fds[-1]
        self._memory = memory
        self._seen: dict[int, int] = {}  # armed VRID -> count already collected
        self._armed_with: dict[int, bytes] = {}

    @classmethod
    def create(cls, ip_version: int) -> RepeatAbsorber | None:
        """Load the filter, or None where the kernel or the process's privileges refuse."""
        if not E.supported():
            return None
        loader = E.BpfLoader()
        try:
            map_fd = loader.create_map(
                E.MAP_ARRAY, 4, _VALUE_SIZE, _ENTRIES, map_flags=E.F_MMAPABLE
            )
            prog_fd = loader.load_socket_filter(_program(ip_version, map_fd), b"Apache-2.0")
            memory = mmap.mmap(map_fd, _VALUE_SIZE * _ENTRIES)
        except OSError as exc:
            loader.close_all()
            logger.debug("no repeat filter for IPv%d: %s", ip_version, exc)
            return None
        loader.close_all(keep=[map_fd, prog_fd])
        return cls([map_fd, prog_fd], memory)

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

    def collect(self) -> list[tuple[int, int, int, int]]:
        """``(vrid, count, first_ns, last_ns)`` for each VRID whose advert was absorbed since
        last time: how many, and the receive times of the first and the last of them.

        ``first_ns`` is 0 when unknown (a repeat counted while the previous call read it).
        """
        memory, seen = self._memory, self._seen
        found = []
        for vrid, before in seen.items():
            at = vrid * _VALUE_SIZE
            count = _u64.unpack_from(memory, at)[0]
            if count != before:
                seen[vrid] = count
                first = _u64.unpack_from(memory, at + _FIRST_NS)[0]
                _u64.pack_into(memory, at + _FIRST_NS, 0)
                last = _u64.unpack_from(memory, at + _LAST_NS)[0]
                found.append((vrid, count - before, first, last))
        return found

    def close(self) -> None:
        """Release the program and its map."""
        self._memory.close()
        for fd in self._fds:
            os.close(fd)
