"""The control socket: one command in, one JSON reply out, readable only by its owner."""

import os
import stat
from pathlib import Path

import anyio
import pytest

from vrrpkit.control import ControlError, ControlServer, query

pytestmark = pytest.mark.anyio


async def test_status_is_served_as_json_on_a_0600_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")
    server = ControlServer(path, {"status": lambda: {"instances": [], "pid": 1}})
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert await query("status", path) == {"instances": [], "pid": 1}
        assert await query("ping", path) == "pong"
        tg.cancel_scope.cancel()
    assert not os.path.exists(path)


async def test_unknown_command_is_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")
    async with anyio.create_task_group() as tg:
        await tg.start(ControlServer(path, {}).serve)
        with pytest.raises(ControlError, match="unknown command"):
            await query("reboot", path)
        tg.cancel_scope.cancel()


async def test_a_handler_that_raises_does_not_stop_the_server(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")

    def broken() -> object:
        raise RuntimeError("boom")

    async with anyio.create_task_group() as tg:
        await tg.start(ControlServer(path, {"status": broken}).serve)
        with pytest.raises(ControlError, match="status failed: boom"):
            await query("status", path, timeout=2)
        assert await query("ping", path) == "pong"
        tg.cancel_scope.cancel()


async def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="cannot reach"):
        await query("status", str(tmp_path / "absent.sock"))


async def test_a_command_without_a_newline_is_answered_once_the_client_closes_its_side(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "ctl.sock")
    async with anyio.create_task_group() as tg:
        await tg.start(ControlServer(path, {}).serve)
        async with await anyio.connect_unix(path) as stream:
            await stream.send(b"ping")
            await stream.send_eof()
            assert await stream.receive() == b'{"ok": true, "result": "pong"}\n'
        tg.cancel_scope.cancel()
