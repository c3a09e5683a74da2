"""`vrrpkit run -f keepalived.conf` on real interfaces: status, reload, graceful stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns import Host, Lab

pytestmark = pytest.mark.netns

CONF = """
global_defs {{
    notify_fifo {fifo}
}}
vrrp_script chk {{
    script "/bin/sh -c 'test -e {flag}'"
    interval 0.2
    weight -150
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    version 3
    virtual_ipaddress {{
        192.0.2.100/24
    }}
    track_script {{
        chk
    }}
}}
"""


def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def status(sock: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "vrrpkit", "status", "--json", "--control", str(sock)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {}
    result: dict[str, object] = json.loads(done.stdout)
    return result


def state(sock: Path) -> str | None:
    instances = status(sock).get("instances")
    return instances[0]["state"] if instances else None  # type: ignore[index]


def holds(host: Host, vip: str = "192.0.2.100") -> bool:
    return any(entry.get("local") == vip for entry in host.addresses())


class Node:
    def __init__(self, host: Host, directory: Path, priority: int) -> None:
        directory.mkdir()
        self.host = host
        self.flag = directory / "healthy"
        self.flag.touch()
        self.fifo = directory / "notify.fifo"
        self.conf = directory / "keepalived.conf"
        self.sock = directory / "ctl.sock"
        self.log = directory / "vrrpkit.log"
        self.write(priority)
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, priority: int) -> None:
        self.conf.write_text(CONF.format(fifo=self.fifo, flag=self.flag, priority=priority))

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "vrrpkit",
            "run",
            "-f",
            str(self.conf),
            "--control",
            str(self.sock),
            "--netns",
            self.host.netns,
        ]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        eventually(lambda: state(self.sock) is not None)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait(15)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def nodes(lab: Lab, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a = Node(lab.hosts[0], tmp_path / "a", 200)
    b = Node(lab.hosts[1], tmp_path / "b", 100)
    try:
        yield a, b
    finally:
        a.kill()
        b.kill()


def test_run_elects_and_status_reports_live_state_and_trackers(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    a.start()
    b.start()
    eventually(lambda: state(a.sock) == "MASTER" and holds(a.host))
    eventually(lambda: state(b.sock) == "BACKUP")
    inst = status(a.sock)["instances"][0]  # type: ignore[index]
    assert inst["trackers"]["chk"]["ok"] is True
    assert inst["effective_priority"] == 200
    assert status(b.sock)["instances"][0]["master_address"] == "192.0.2.1"  # type: ignore[index]
    human = subprocess.run(
        [sys.executable, "-m", "vrrpkit", "status", "--control", str(a.sock)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "VI_1: MASTER" in human and "tracker chk: OK" in human


def test_sighup_reload_keeps_mastership_of_an_unchanged_instance(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    a.start()
    b.start()
    eventually(lambda: state(a.sock) == "MASTER")
    sent = status(a.sock)["instances"][0]["counters"]["become_master"]  # type: ignore[index]
    a.signal(signal.SIGHUP)
    eventually(lambda: status(a.sock).get("reloads") == 1)
    assert state(a.sock) == "MASTER"
    assert status(a.sock)["instances"][0]["counters"]["become_master"] == sent  # type: ignore[index]


def test_sighup_applies_a_changed_priority(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.start()
    b.start()
    eventually(lambda: state(a.sock) == "MASTER")
    b.write(250)
    b.signal(signal.SIGHUP)
    eventually(lambda: state(b.sock) == "MASTER" and holds(b.host) and not holds(a.host))


def test_invalid_config_at_reload_is_refused_and_the_old_one_keeps_running(
    nodes: tuple[Node, Node],
) -> None:
    a, _b = nodes
    a.start()
    eventually(lambda: state(a.sock) == "MASTER")
    a.conf.write_text(a.conf.read_text().replace("priority 200", "priority 999"))
    a.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert status(a.sock).get("reloads") == 0
    assert state(a.sock) == "MASTER"


def test_sigterm_stops_gracefully_and_the_backup_takes_over(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.start()
    b.start()
    eventually(lambda: state(a.sock) == "MASTER" and holds(a.host))
    a.signal(signal.SIGTERM)
    assert a.wait() == 0
    assert not holds(a.host)
    eventually(lambda: state(b.sock) == "MASTER" and holds(b.host))
    assert status(b.sock)["instances"][0]["counters"]["pri_zero_rcvd"] == 1  # type: ignore[index]


def test_failing_track_script_moves_the_vip(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.start()
    b.start()
    eventually(lambda: state(a.sock) == "MASTER")
    a.flag.unlink()
    eventually(lambda: state(b.sock) == "MASTER" and holds(b.host) and not holds(a.host))


def test_invalid_config_starts_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 0\n}\n")
    done = subprocess.run(
        [sys.executable, "-m", "vrrpkit", "run", "-f", str(conf), "--control", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 1
    assert "nothing started" in done.stderr and f"{conf}:3" in done.stderr


def test_notify_fifo_gets_keepalived_lines(nodes: tuple[Node, Node]) -> None:
    a, _b = nodes
    os.mkfifo(a.fifo, 0o600)
    fd = os.open(a.fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        a.start()
        data = b""

        def read() -> bool:
            nonlocal data
            with contextlib.suppress(BlockingIOError):
                data += os.read(fd, 4096)
            return b"MASTER" in data

        eventually(read)
        assert data.startswith(b'INSTANCE "VI_1" BACKUP 200\n')
        assert b'INSTANCE "VI_1" MASTER 200\n' in data
    finally:
        os.close(fd)


GROUP_CONF = """
vrrp_script chk {{
    script "/bin/sh -c 'test -e {flag}'"
    interval 0.2
}}
vrrp_sync_group G1 {{
    group {{
        VI_1
        VI_2
    }}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    version 3
    virtual_ipaddress {{
        192.0.2.100/24
    }}
    track_script {{
        chk
    }}
}}
vrrp_instance VI_2 {{
    interface eth0
    virtual_router_id 52
    priority {priority}
    advert_int 0.1
    version 3
    virtual_ipaddress {{
        198.51.100.100/24
    }}
}}
"""


def test_sync_group_from_the_config_fails_over_as_a_whole(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    for node, priority in ((a, 200), (b, 100)):
        node.conf.write_text(GROUP_CONF.format(flag=node.flag, priority=priority))
        node.start()
    eventually(lambda: holds(a.host) and holds(a.host, "198.51.100.100"))
    groups = status(a.sock)["groups"]
    assert [(g["name"], g["state"], g["members"]) for g in groups] == [
        ("G1", "MASTER", ["VI_1", "VI_2"])
    ]
    assert groups[0]["notify_failures"] == 0
    a.flag.unlink()  # VI_1's weight-0 check fails: the whole group goes FAULT
    eventually(lambda: holds(b.host) and holds(b.host, "198.51.100.100"))
    assert not holds(a.host, "198.51.100.100")
    assert {i["state"] for i in status(a.sock)["instances"]} == {"FAULT"}  # type: ignore[union-attr]


def test_sighup_applies_a_changed_script_that_only_the_sync_group_tracks(
    nodes: tuple[Node, Node],
) -> None:
    a, _b = nodes
    conf = GROUP_CONF.replace("    track_script {{\n        chk\n    }}\n", "")
    conf = conf.replace(
        "        VI_2\n    }}\n", "        VI_2\n    }}\n    track_script {{\n        chk\n    }}\n"
    )
    a.conf.write_text(conf.format(flag=a.flag, priority=200))
    a.start()
    eventually(lambda: holds(a.host) and holds(a.host, "198.51.100.100"))
    a.conf.write_text(conf.format(flag=a.flag.with_name("missing"), priority=200))
    a.signal(signal.SIGHUP)
    eventually(lambda: {i["state"] for i in status(a.sock)["instances"]} == {"FAULT"})  # type: ignore[union-attr]
    assert not holds(a.host)


def test_config_that_only_building_refuses_is_refused_at_reload_and_the_old_one_runs_on(
    nodes: tuple[Node, Node],
) -> None:
    a, _b = nodes
    a.start()
    eventually(lambda: state(a.sock) == "MASTER")
    a.conf.write_text(a.conf.read_text().replace("    version 3\n", AH))
    a.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert a.process is not None and a.process.poll() is None
    assert status(a.sock).get("reloads") == 0
    assert state(a.sock) == "MASTER"


AH = "    version 2\n    authentication {\n        auth_type AH\n        auth_pass secret\n    }\n"


def run_briefly(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vrrpkit", "run", *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_config_that_only_building_refuses_starts_nothing_and_says_why(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(
        "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n"
        + AH
        + "    virtual_ipaddress {\n        192.0.2.100/24\n    }\n}\n"
    )
    done = run_briefly("-f", str(conf), "--control", str(tmp_path / "s"))
    assert done.returncode == 1
    assert "nothing started" in done.stderr and "AH" in done.stderr
    assert "Traceback" not in done.stderr


def test_control_socket_that_cannot_be_made_is_reported_in_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text("global_defs {\n}\n")
    done = run_briefly("-f", str(conf), "--control", "/proc/vrrpkit-test/ctl.sock")
    assert done.returncode == 1
    assert "/proc/vrrpkit-test" in done.stderr and "Traceback" not in done.stderr


def test_instance_on_a_missing_interface_leaves_the_others_running(
    nodes: tuple[Node, Node],
) -> None:
    a, _b = nodes
    missing = CONF.split("vrrp_instance")[1].replace("VI_1", "VI_2").replace("eth0", "nosuch0")
    missing = missing.replace("virtual_router_id 51", "virtual_router_id 52")
    a.conf.write_text(
        a.conf.read_text() + "vrrp_instance" + missing.format(flag=a.flag, priority=200)
    )
    a.start()
    eventually(lambda: state(a.sock) == "MASTER" and holds(a.host))
    assert [i["name"] for i in status(a.sock)["instances"]] == ["VI_1"]  # type: ignore[union-attr]
