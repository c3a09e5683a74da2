"""Running external programs on anyio, with keepalived's way of ending them.

Each program runs without a shell in its own session, hence its own process group. On
timeout the whole group gets SIGTERM, then SIGKILL if anything is left after a grace period
(keepalived: TERM, then KILL 2 s later). If the caller is cancelled the group is killed at
once. A program that cannot be started yields a failed result, never an exception.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

import anyio
import anyio.abc

from vrrpkit.transports.base import ProcessResult

__all__ = ["SubprocessRunner"]

logger = logging.getLogger(__name__)

_POLL_INTERVAL = 0.05
# SIGKILL cannot be ignored; only a process stuck in the kernel outlives this.
_KILL_WAIT = 5.0


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether the group still has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Orphaned members may linger as zombies when PID 1 does not reap (containers); those
    # are dead already and must not hold up the caller for the whole grace period.
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


class SubprocessRunner:
    """:class:`~vrrpkit.transports.base.ProcessRunner` on :func:`anyio.open_process`.

    ``grace`` is the time between SIGTERM and SIGKILL after a timeout. The programs' standard
    streams are connected to /dev/null.
    """

    def __init__(self, *, grace: float = 2.0) -> None:
        if grace < 0:
            raise ValueError(f"grace must not be negative, not {grace}")
        self._grace = grace

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        group: str | None = None,
    ) -> ProcessResult:
        """Run ``argv``; after ``timeout`` seconds end its process group (timed_out=True)."""
        command = tuple(argv)
        if not command:
            return ProcessResult(argv=command, returncode=None, error="empty command")
        try:
            process = await anyio.open_process(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                user=user,
                group=group,
            )
        except (OSError, KeyError, ValueError) as exc:
            # KeyError: an unknown user or group name (pwd/grp lookups), found before fork.
            logger.warning("cannot run %s: %s", command[0], exc)
            return ProcessResult(argv=command, returncode=None, error=str(exc))
        pid = process.pid
        timed_out = False
        try:
            with anyio.move_on_after(timeout) as scope:
                await process.wait()
            if scope.cancelled_caught:
                timed_out = True
                logger.warning("%s (pid %d) timed out after %s s", command[0], pid, timeout)
                await self._terminate(process)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _kill_group(process)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await process.aclose()
        return ProcessResult(
            argv=command, returncode=process.returncode, timed_out=timed_out, pid=pid
        )

    async def _terminate(self, process: anyio.abc.Process) -> None:
        pgid = process.pid
        _signal_group(pgid, signal.SIGTERM)
        if await _wait_group(process, self._grace):
            return
        logger.warning("process group %d survived SIGTERM; sending SIGKILL", pgid)
        await _kill_group(process)


async def _wait_group(process: anyio.abc.Process, limit: float) -> bool:
    """Wait up to ``limit`` seconds for the leader and every other member to end."""
    with anyio.move_on_after(limit):
        await process.wait()
        while _group_alive(process.pid):
            await anyio.sleep(_POLL_INTERVAL)
        return True
    return False


async def _kill_group(process: anyio.abc.Process) -> None:
    _signal_group(process.pid, signal.SIGKILL)
    if not await _wait_group(process, _KILL_WAIT):
        logger.error("process group %d still has live members after SIGKILL", process.pid)
    await process.wait()
