"""request_short_slice: a thread asks the scheduler to wake it promptly (Linux 6.12+)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from vrrpkit.transports.scheduling import SHORT_SLICE, request_short_slice

T = TypeVar("T")


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


pytestmark = pytest.mark.skipif(
    kernel_version() < (6, 12), reason="custom slices need Linux 6.12 or later"
)


def in_a_thread(body: Callable[[], T]) -> T:
    """``body()`` run in a fresh thread (whose scheduling the test may change)."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(body()))
    thread.start()
    thread.join()
    return results[0]


def slice_ns(tid: int) -> int | None:
    """The thread's slice as the scheduler reports it (None if it does not)."""
    for line in Path(f"/proc/self/task/{tid}/sched").read_text().splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return None


def test_a_thread_that_asks_gets_a_short_slice() -> None:
    def ask() -> tuple[bool, int | None]:
        return request_short_slice(), slice_ns(threading.get_native_id())

    granted, reported = in_a_thread(ask)
    assert granted
    assert reported in (None, round(SHORT_SLICE * 1e9))


def test_the_threads_nice_value_is_kept() -> None:
    def ask() -> tuple[bool, int]:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 5)
        return request_short_slice(), os.getpriority(os.PRIO_PROCESS, tid)

    assert in_a_thread(ask) == (True, 5)


def test_a_thread_the_application_made_idle_is_left_alone() -> None:
    def ask() -> tuple[bool, int]:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return request_short_slice(), os.sched_getscheduler(0)

    assert in_a_thread(ask) == (False, os.SCHED_IDLE)
