"""Running programs: exit codes, timeouts that end the whole process group, start failures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from vrrpkit.transports import ProcessResult, SubprocessRunner

pytestmark = pytest.mark.anyio

# Only a guard against a hang; no test asserts anything about timing.
GUARD = 20


def live_members(pgid: int) -> list[int]:
    """Pids of the group's processes that are not zombies."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            pids.append(int(entry))
    return pids


async def test_exit_status() -> None:
    runner = SubprocessRunner()
    ok = await runner.run(["true"])
    assert ok.ok and ok.returncode == 0 and not ok.timed_out and ok.error is None
    failed = await runner.run(["sh", "-c", "exit 3"], timeout=GUARD)
    assert (failed.ok, failed.returncode, failed.timed_out) == (False, 3, False)
    assert failed.argv == ("sh", "-c", "exit 3")


async def test_environment_is_passed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = await SubprocessRunner().run(
        ["sh", "-c", 'printf %s "$VRRP_TEST" > "$OUT"'],
        env={"VRRP_TEST": "backup", "OUT": str(out), "PATH": os.environ["PATH"]},
    )
    assert result.ok
    assert out.read_text() == "backup"


async def test_missing_or_unusable_program_is_a_failed_result(tmp_path: Path) -> None:
    runner = SubprocessRunner()
    missing = await runner.run([str(tmp_path / "no-such-program"), "arg"])
    assert missing.returncode is None and missing.error and not missing.ok
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    denied = await runner.run([str(script)])
    assert denied.returncode is None and denied.error and not denied.ok
    empty = await runner.run([])
    assert empty == ProcessResult(argv=(), returncode=None, error="empty command")


async def test_timeout_terminates_the_whole_group() -> None:
    result = await SubprocessRunner(grace=GUARD).run(
        ["sh", "-c", "sleep 100 & sleep 100"], timeout=0.3
    )
    assert result.timed_out and not result.ok
    assert result.returncode == -signal.SIGTERM
    assert result.pid is not None
    assert live_members(result.pid) == []


async def test_group_ignoring_sigterm_is_killed_after_the_grace() -> None:
    result = await SubprocessRunner(grace=0.3).run(
        ["sh", "-c", "trap '' TERM; sleep 100 & sleep 100"], timeout=0.3
    )
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    assert result.pid is not None
    assert live_members(result.pid) == []


async def test_background_child_of_a_finished_program_is_left_alone() -> None:
    result = await SubprocessRunner().run(["sh", "-c", "sleep 100 & exit 0"], timeout=GUARD)
    assert result.ok and result.pid is not None
    survivors = live_members(result.pid)
    assert len(survivors) == 1
    os.killpg(result.pid, signal.SIGKILL)


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; sleep 100 & sleep 100"
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(SubprocessRunner().run, ["sh", "-c", script])
            while not pidfile.exists():
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    pgid = int(pidfile.read_text())
    assert live_members(pgid) == []


@pytest.mark.netns  # needs root, like the namespace tests (a skip fails under CI=true)
async def test_runs_as_the_requested_user() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    result = await SubprocessRunner().run(
        ["/bin/sh", "-c", f"test $(id -u) = {nobody}"], timeout=10, user="nobody"
    )
    assert result.ok, result


async def test_unknown_user_is_a_failed_result_not_an_exception() -> None:
    result = await SubprocessRunner().run(["/bin/true"], user="no-such-user-vrrpkit")
    assert result.returncode is None and result.error
