"""Real-world-shaped keepalived.conf files load, build and describe as keepalived reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vrrpkit import InterfaceTracker, ScriptTracker
from vrrpkit.config import build_instances, describe, load

CORPUS = Path(__file__).with_name("corpus")

# What keepalived would run for each file: instance -> facts.
EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "haproxy-pair.conf": {
        "VI_1": {
            "vrid": 51,
            "priority": 101,
            "version": 2,
            "interval": 1.0,
            "preempt": True,
            "vips": ["192.0.2.100"],
            "auth_data": b"s3cr3tpw",
        },
    },
    "unicast-cloud.conf": {
        "API": {
            "vrid": 10,
            "priority": 120,
            "preempt": False,
            "unicast_peers": ["198.51.100.12", "198.51.100.13"],
            "address": "198.51.100.11",
            "weights": {"check_api": -60},
        },
    },
    "ipv6-v3.conf": {
        "V6": {
            "vrid": 60,
            "priority": 200,
            "version": 3,
            "interval": 0.5,
            "vips": ["fe80::60", "2001:db8:60::1"],
            "garp_refresh": 60.0,
            "weights": {"eth2": -50, "eth3": 0},
        },
    },
    "sync-group.conf": {
        "OUTSIDE": {"vrid": 1, "priority": 150},
        "INSIDE": {"vrid": 2, "priority": 150},
    },
    "lvs-mixed.conf": {
        "VI_LVS": {"vrid": 77, "priority": 255, "preempt_delay": 0.0},
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_builds_the_instances_keepalived_would_run(name: str) -> None:
    config = load(CORPUS / name)
    instances, _groups = build_instances(config)
    assert sorted(i.name for i in instances) == sorted(EXPECTED[name])
    for inst in instances:
        want, cfg = EXPECTED[name][inst.name], inst.config
        for key, value in want.items():
            if key == "vips":
                assert [str(v) for v in cfg.vips] == value
            elif key == "unicast_peers":
                assert [str(p) for p in cfg.unicast_peers] == value
            elif key == "address":
                assert str(cfg.address) == value
            elif key == "weights":
                assert {t.name: t.weight for t in cfg.trackers} == value
            elif key == "garp_refresh":
                assert cfg.garp_refresh == value
            else:
                assert getattr(cfg, key) == value, key
    assert describe(config)


def test_haproxy_pair_runs_its_check_and_notify_scripts_as_argv() -> None:
    config = load(CORPUS / "haproxy-pair.conf")
    (inst,), _ = build_instances(config)
    (check,) = [s for s in inst._specs if isinstance(s, ScriptTracker)]
    assert check.argv == ("/usr/bin/killall", "-0", "haproxy")
    assert (check.interval, check.timeout, check.fall, check.rise, check.weight) == (
        2.0,
        3.0,
        2,
        2,
        2,
    )
    assert inst._notify.master == ("/etc/keepalived/notify.sh", "master")


def test_lvs_blocks_are_reported_as_ignored_not_dropped_silently() -> None:
    config = load(CORPUS / "lvs-mixed.conf")
    assert any(i.keyword == "virtual_server" for i in config.ignored)


def test_track_interface_entries_become_interface_trackers() -> None:
    (inst,), _ = build_instances(load(CORPUS / "ipv6-v3.conf"))
    assert {s.ifname for s in inst._specs if isinstance(s, InterfaceTracker)} == {"eth2", "eth3"}


def test_sync_group_members_lose_weighted_scripts_unless_tracking_weight() -> None:
    instances, groups = build_instances(load(CORPUS / "sync-group.conf"))
    outside = next(i for i in instances if i.name == "OUTSIDE")
    assert all(t.weight == 0 for t in outside.config.trackers)
    assert [g.members for g in groups] == [("OUTSIDE", "INSIDE")]


def test_script_user_and_script_level_user_reach_the_runner() -> None:
    import anyio

    from vrrpkit.config import loads
    from vrrpkit.testing import (
        FakeAddressManager,
        FakeAnnouncer,
        FakeClock,
        FakeLinkMonitor,
        FakeNetwork,
        FakeRunner,
    )

    text = (
        (CORPUS / "haproxy-pair.conf")
        .read_text()
        .replace("    weight 2\n", "    weight 2\n    user nobody\n")
    )
    config = loads(text, "keepalived.conf")
    runner = FakeRunner(
        {"/usr/bin/killall": lambda argv: 0, "/etc/keepalived/notify.sh": lambda argv: 0}
    )
    clock, net = FakeClock(), FakeNetwork()
    (inst,), _ = build_instances(
        config,
        clock=clock,
        socket=net.socket("192.0.2.1"),
        addresses=FakeAddressManager(),
        links=FakeLinkMonitor(),
        announcer=FakeAnnouncer(),
        runner=runner,
    )

    async def main() -> None:
        async with inst:
            await clock.advance(5)

    anyio.run(main)
    by_program = dict(zip((c[0] for c in runner.calls), runner.users, strict=True))
    assert by_program["/usr/bin/killall"] == ("nobody", None)  # vrrp_script's own user
    assert by_program["/etc/keepalived/notify.sh"] == ("root", None)  # global script_user
