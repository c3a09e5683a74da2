"""The control protocol: one line command in, one JSON document out, over a Unix socket."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from vrrpkit.core.errors import VrrpError

__all__ = ["DEFAULT_CONTROL_PATH", "ControlError", "ControlServer", "query", "query_sync"]

logger = logging.getLogger("vrrpkit.control")

DEFAULT_CONTROL_PATH = "/run/vrrpkit/vrrpkit.sock"
_MAX_REQUEST = 1024


class ControlError(VrrpError):
    """The control socket could not be reached or answered with an error."""


class ControlServer:
    """Serves ``status`` (and ``ping``) on a Unix socket created with mode 0600.

    ``handlers`` maps a command word to a function returning a JSON-ready value.
    """

    def __init__(self, path: str, handlers: dict[str, Callable[[], Any]]) -> None:
        self.path = path
        self._handlers = {"ping": lambda: "pong", **handlers}

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until cancelled; the socket file is removed on the way out."""
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old_umask = os.umask(0o177)
        try:
            listener = await anyio.create_unix_listener(self.path)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        try:
            async with listener:
                task_status.started()
                await listener.serve(self._handle)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(5):
                    request = await _read_request(stream)
                command = request.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
                await stream.send(json.dumps(self._reply(command)).encode() + b"\n")
            except (anyio.EndOfStream, anyio.BrokenResourceError, TimeoutError):
                pass
            except Exception:  # a bad client must never take the daemon down
                logger.exception("control request failed")

    def _reply(self, command: str) -> dict[str, Any]:
        handler = self._handlers.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            return {"ok": True, "result": handler()}
        except Exception as exc:  # answered, so the client sees why, not an unreadable reply
            logger.exception("control command %r failed", command)
            return {"ok": False, "error": f"{command} failed: {exc}"}


async def _read_request(stream: anyio.abc.SocketStream) -> bytes:
    """One request line; a client that closes its side after the command (no newline)
    is answered too."""
    request = b""
    while b"\n" not in request and len(request) < _MAX_REQUEST:
        try:
            request += await stream.receive(_MAX_REQUEST)
        except anyio.EndOfStream:
            if not request:
                raise
            break
    return request


async def query(
    command: str = "status", path: str = DEFAULT_CONTROL_PATH, timeout: float = 5.0
) -> Any:
    """Send ``command`` to a running daemon and return its result."""
    try:
        with anyio.fail_after(timeout):
            async with await anyio.connect_unix(path) as stream:
                await stream.send(command.encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    try:
                        data += await stream.receive(65536)
                    except anyio.EndOfStream:
                        break
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"cannot reach the vrrpkit daemon at {path}: {exc}") from exc
    try:
        reply = json.loads(data)
    except ValueError as exc:
        raise ControlError(f"unreadable reply from {path}") from exc
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error")))
    return reply["result"]


def query_sync(
    command: str = "status", path: str = DEFAULT_CONTROL_PATH, timeout: float = 5.0
) -> Any:
    """:func:`query` for synchronous callers (starts its own event loop)."""
    return anyio.run(query, command, path, timeout)
