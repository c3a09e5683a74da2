"""keepalived's notify FIFO line format, written without ever blocking."""

import contextlib
import os
import threading
from pathlib import Path

from vrrpkit.runtime.fifo import NotifyFifo, fifo_line


def test_line_format_is_keepalived_s() -> None:
    assert fifo_line("INSTANCE", "VI_1", "MASTER", 100) == b'INSTANCE "VI_1" MASTER 100\n'
    assert fifo_line("GROUP", "G1", "BACKUP", 0) == b'GROUP "G1" BACKUP 0\n'


def test_lines_reach_a_reader(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.fifo")
    fifo = NotifyFifo(path)
    received: list[bytes] = []
    opened = threading.Event()

    def reader() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        opened.set()
        data = b""
        for _ in range(200):
            with contextlib.suppress(BlockingIOError):
                data += os.read(fd, 4096)
            if data.count(b"\n") >= 2:
                break
            threading.Event().wait(0.01)
        os.close(fd)
        received.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    opened.wait(5)
    assert fifo.write("INSTANCE", "VI_1", "BACKUP", 150)
    assert fifo.write("INSTANCE", "VI_1", "MASTER", 150)
    thread.join(5)
    assert received == [b'INSTANCE "VI_1" BACKUP 150\nINSTANCE "VI_1" MASTER 150\n']


def test_without_a_reader_lines_are_dropped_and_counted(tmp_path: Path) -> None:
    fifo = NotifyFifo(str(tmp_path / "notify.fifo"))
    assert not fifo.write("INSTANCE", "VI_1", "MASTER", 150)
    assert fifo.dropped == 1
