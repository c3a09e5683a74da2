"""keepalived's notify FIFO: one line per state change, for existing FIFO consumers."""

from __future__ import annotations

import errno
import logging
import os

__all__ = ["NotifyFifo", "fifo_line"]

logger = logging.getLogger("vrrpkit.fifo")


def fifo_line(kind: str, name: str, state: str, priority: int) -> bytes:
    """keepalived's line, ``INSTANCE "VI_1" MASTER 100`` (``%s "%s" %s %d``, vrrp_notify.c)."""
    return f'{kind} "{name}" {state} {priority}\n'.encode()


class NotifyFifo:
    """Writes notify lines to a FIFO without ever blocking the protocol.

    As keepalived, the FIFO is opened non-blocking: with no reader, or a full pipe, the line is
    dropped (counted in :attr:`dropped`) rather than stalling. ``create=True`` makes the FIFO
    (mode 0600) if the path does not exist.
    """

    def __init__(self, path: str, *, create: bool = True) -> None:
        self.path = path
        self.dropped = 0
        self.written = 0
        if create and not os.path.exists(path):
            os.mkfifo(path, 0o600)

    def write(self, kind: str, name: str, state: str, priority: int) -> bool:
        """Write one line; return False if it was dropped."""
        line = fifo_line(kind, name, state, priority)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody is reading, as keepalived tolerates
                logger.warning("notify fifo %s: %s", self.path, exc)
            self.dropped += 1
            return False
        try:
            os.write(fd, line)
        except OSError as exc:
            logger.warning("notify fifo %s: %s", self.path, exc)
            self.dropped += 1
            return False
        finally:
            os.close(fd)
        self.written += 1
        return True
