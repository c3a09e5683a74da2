"""Asking the kernel's scheduler to wake a thread promptly: a short time slice.

Linux's fair scheduler (EEVDF, 6.6 and later) lets a task that wakes up preempt the one
running on its CPU only if its virtual deadline comes first, and a running task keeps the
CPU for its slice (1.4 ms by default on 2 CPUs). A thread woken to send adverts on a CPU
busy with another task (a packet capture, ``ksoftirqd``) can thus wait about a millisecond.
Since Linux 6.12 a task may ask for a shorter slice (``sched_setattr`` with
``sched_runtime``, no privilege needed): its deadlines come sooner, and its wake-ups preempt.
Its share of the CPU is unchanged. Older kernels ignore the request.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct
import threading

__all__ = ["SHORT_SLICE", "request_short_slice"]

logger = logging.getLogger(__name__)

#: The shortest slice the kernel grants (0.1 ms): what a thread that only sends asks for.
SHORT_SLICE = 0.0001

_SCHED_OTHER = 0
# struct sched_attr (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice, priority, runtime,
# deadline, period, util_min, util_max.
_SCHED_ATTR = struct.Struct("=IIQiIQQQII")
_NR_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_NR_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}


def request_short_slice(seconds: float = SHORT_SLICE) -> bool:
    """Ask for a slice of ``seconds`` for the calling thread; True if the kernel took it.

    Only a thread of the default policy (``SCHED_OTHER``) is changed, at its current nice
    value: one the application made real-time or idle is left alone. False on kernels
    before 6.12, architectures whose system call numbers are not known here, and refusals.
    """
    machine = platform.machine()
    if machine not in _NR_SCHED_SETATTR:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        tid = threading.get_native_id()
        current = _get_attr(libc, _NR_SCHED_GETATTR[machine], tid)
        if current is None or current[1] != _SCHED_OTHER:
            return False
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        wanted = round(seconds * 1e9)
        attr = _SCHED_ATTR.pack(_SCHED_ATTR.size, _SCHED_OTHER, 0, nice, 0, wanted, 0, 0, 0, 0)
        buffer = ctypes.create_string_buffer(attr, _SCHED_ATTR.size)
        if libc.syscall(ctypes.c_long(_NR_SCHED_SETATTR[machine]), tid, buffer, 0) != 0:
            logger.debug("no short slice: %s", os.strerror(ctypes.get_errno()))
            return False
        granted = _get_attr(libc, _NR_SCHED_GETATTR[machine], tid)
    except (OSError, AttributeError) as exc:
        logger.debug("no short slice: %s", exc)
        return False
    # A kernel without custom slices takes the call and ignores the runtime.
    return granted is not None and granted[5] == wanted


def _get_attr(libc: ctypes.CDLL, number: int, tid: int) -> tuple[int, ...] | None:
    buffer = ctypes.create_string_buffer(_SCHED_ATTR.size)
    if libc.syscall(ctypes.c_long(number), tid, buffer, _SCHED_ATTR.size, 0) != 0:
        return None
    return _SCHED_ATTR.unpack(buffer.raw)
