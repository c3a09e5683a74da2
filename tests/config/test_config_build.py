"""A user's keepalived.conf, unchanged, becomes running vrrpkit Instances."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_address
from pathlib import Path

import anyio
import pytest

from vrrpkit import AUTH_PASS, ChecksumMode, Instance, State, Tracker
from vrrpkit.config import (
    ConfigFileError,
    KeepalivedConfig,
    build_instances,
    describe,
    effective_tracking,
    load,
    loads,
)
from vrrpkit.testing.fakes import (
    FakeAddressManager,
    FakeAnnouncer,
    FakeClock,
    FakeLinkMonitor,
    FakeNetwork,
    FakeRunner,
)

# One file for both load balancers, as keepalived users write it: `keepalived -i lb1` on the
# first, `-i lb2` on the second. The health check lives in an included file.
KEEPALIVED_CONF = """\
! Configuration File for keepalived (lb1 and lb2)
global_defs {
    @lb1 router_id lb1
    @lb2 router_id lb2
    script_user keepalived_script
    enable_script_security
    vrrp_garp_master_refresh 60
    notification_email {
        ops@example.org
    }
}

include conf.d/*.conf

vrrp_instance VI_4 {
    @lb1 state MASTER
    @lb2 state BACKUP
    interface eth0
    virtual_router_id 51
    @lb1 priority 150
    @lb2 priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass k33pal1v3d        # keepalived uses the first 8 characters
    }
    @lb1 unicast_src_ip 192.0.2.11
    @lb2 unicast_src_ip 192.0.2.12
    unicast_peer {
        @^lb1 192.0.2.11
        @^lb2 192.0.2.12
    }
    virtual_ipaddress {
        192.0.2.100/24 dev eth0
    }
    track_script {
        chk_haproxy
    }
    track_interface {
        eth1 weight -30
    }
    notify_master "/etc/keepalived/notify.sh MASTER VI_4"
    notify_backup "/etc/keepalived/notify.sh BACKUP VI_4"
    notify_fault "/etc/keepalived/notify.sh FAULT VI_4"
    notify /etc/keepalived/notify-all.sh
    smtp_alert
}

vrrp_instance VI_6 {
    state BACKUP
    interface eth0
    virtual_router_id 61
    @lb1 priority 120
    @lb2 priority 110
    nopreempt
    advert_int 0.5
    virtual_ipaddress {
        fe80::61/64
        2001:db8:10::100/64
    }
    track_script {
        chk_haproxy weight 0
    }
}

virtual_server 192.0.2.100 443 {
    lb_algo rr
    real_server 198.51.100.21 443 {
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"""

CHK_HAPROXY = """\
vrrp_script chk_haproxy {
    script "/usr/bin/pgrep -x haproxy"
    interval 2
    timeout 1.5
    weight -20
    fall 3
    rise 2
}
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-checks.conf").write_text(CHK_HAPROXY)
    path = tmp_path / "keepalived.conf"
    path.write_text(KEEPALIVED_CONF)
    return path


def by_name(instances: list[Instance]) -> dict[str, Instance]:
    return {inst.name: inst for inst in instances}


@pytest.mark.parametrize(
    ("node", "priority", "source", "peer"),
    [("lb1", 150, "192.0.2.11", "192.0.2.12"), ("lb2", 100, "192.0.2.12", "192.0.2.11")],
)
def test_a_two_node_config_builds_the_instances_keepalived_would_run(
    conf: Path, node: str, priority: int, source: str, peer: str
) -> None:
    cfg = load(conf, config_id=node)
    assert cfg.global_defs.router_id == node
    instances, groups = build_instances(cfg)
    assert groups == []
    vi4 = by_name(instances)["VI_4"]
    assert vi4.interface == "eth0"
    c = vi4.config
    assert (c.vrid, c.priority, c.version, c.interval, c.preempt) == (51, priority, 2, 1.0, True)
    assert c.vips == (ip_address("192.0.2.100"),)
    assert c.address == ip_address(source)
    assert c.unicast_peers == (ip_address(peer),)
    assert (c.auth_type, c.auth_data) == (AUTH_PASS, b"k33pal1v")
    assert c.trackers == (
        Tracker("chk_haproxy", weight=-20, fall=3, rise=2),
        Tracker("eth1", weight=-30),
    )
    assert (c.garp_repeat, c.garp_delay, c.garp_refresh) == (5, 5.0, 60.0)


def test_the_ipv6_instance_is_vrrpv3_multicast_with_a_fault_tracker(conf: Path) -> None:
    instances, _ = build_instances(load(conf, config_id="lb1"))
    c = by_name(instances)["VI_6"].config
    assert (c.version, c.interval, c.priority, c.preempt) == (3, 0.5, 120, False)
    assert c.vips == (ip_address("fe80::61"), ip_address("2001:db8:10::100"))
    assert c.unicast_peers == ()
    assert c.address.version == 6
    assert c.trackers == (Tracker("chk_haproxy", weight=0, fall=3, rise=2),)


def test_the_model_keeps_script_argv_timeout_and_notify_argvs(conf: Path) -> None:
    cfg = load(conf, config_id="lb1")
    script = cfg.scripts["chk_haproxy"]
    assert script.argv == ("/usr/bin/pgrep", "-x", "haproxy")
    assert (script.interval, script.timeout) == (2.0, 1.5)
    assert script.location.filename.endswith("conf.d/10-checks.conf")
    vi4 = cfg.instance("VI_4")
    assert vi4.notify_master is not None and vi4.notify is not None
    assert vi4.notify_master.argv == ("/etc/keepalived/notify.sh", "MASTER", "VI_4")
    assert vi4.notify.argv == ("/etc/keepalived/notify-all.sh",)
    assert [str(f).rsplit("/", 1)[-1] for f in cfg.files] == ["keepalived.conf", "10-checks.conf"]


class Host:
    """One load balancer built from the shared file, on the fake network."""

    def __init__(self, net: FakeNetwork, clock: FakeClock, conf: Path, node: str) -> None:
        self.runner = FakeRunner(
            {
                "/usr/bin/pgrep": lambda argv: 0,
                "/etc/keepalived/notify.sh": lambda argv: 0,
                "/etc/keepalived/notify-all.sh": lambda argv: 0,
            }
        )
        self.addresses = FakeAddressManager(["eth0"])
        cfg = load(conf, config_id=node)
        vi4 = cfg.instance("VI_4")
        assert vi4.unicast_src_ip is not None
        instances, _ = build_instances(
            loads(conf.read_text(), str(conf), config_id=node),
            clock=clock,
            socket=net.socket(vi4.unicast_src_ip),
            addresses=self.addresses,
            links=FakeLinkMonitor(),
            announcer=FakeAnnouncer(),
            runner=self.runner,
        )
        self.vi4 = by_name(instances)["VI_4"]


@asynccontextmanager
async def running(*instances: Instance) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for inst in instances:
            await tg.start(inst.run)
        yield
        for inst in instances:
            inst.stop()


@pytest.mark.anyio
async def test_the_built_instances_elect_lb1_and_run_its_scripts(conf: Path) -> None:
    net, clock = FakeNetwork(), FakeClock()
    lb1, lb2 = Host(net, clock, conf, "lb1"), Host(net, clock, conf, "lb2")
    async with running(lb1.vi4, lb2.vi4):
        await clock.advance(10)
        assert lb1.vi4.state is State.MASTER
        assert lb2.vi4.state is State.BACKUP
        assert lb1.addresses.holds("eth0", "192.0.2.100")
    assert ("/usr/bin/pgrep", "-x", "haproxy") in lb1.runner.calls
    assert ("/etc/keepalived/notify.sh", "MASTER", "VI_4") in lb1.runner.calls
    assert (
        "/etc/keepalived/notify-all.sh",
        "INSTANCE",
        "VI_4",
        "MASTER",
        "150",
    ) in lb1.runner.calls
    assert ("/etc/keepalived/notify.sh", "BACKUP", "VI_4") in lb2.runner.calls


# -- sync groups ---------------------------------------------------------------------------------

GROUPED = """
vrrp_script chk_db {
    script "/usr/local/bin/chk_db"
    weight -40
}
vrrp_script chk_link {
    script "/usr/local/bin/chk_link"
}
vrrp_instance EXT {
    interface eth0
    virtual_router_id 10
    priority 150
    virtual_ipaddress { 192.0.2.10/24 }
    track_script {
        chk_db
        chk_link
    }
    track_interface {
        eth2 weight -50
        eth3
    }
}
vrrp_instance INT {
    interface eth1
    virtual_router_id 11
    priority 150
    virtual_ipaddress { 198.51.100.10/24 }
}
vrrp_sync_group G {
    group {
        EXT
        INT
    }
    track_interface {
        eth4 weight -10
    }
    notify_master "/usr/local/bin/group-master"
    %s
}
"""


def trackers(cfg: KeepalivedConfig, name: str) -> list[tuple[str, int]]:
    instances, _ = build_instances(cfg)
    return [(t.name, t.weight) for t in by_name(instances)[name].config.trackers]


def test_a_sync_group_removes_weighted_scripts_and_zeroes_interface_weights(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = loads(GROUPED % "")
    with caplog.at_level(logging.WARNING, logger="vrrpkit.config.build"):
        assert trackers(cfg, "EXT") == [
            ("chk_link", 0),
            ("eth2", 0),
            ("eth3", 0),
            ("eth4", -10),
        ]
    assert any("weighted track_script chk_db removed" in r.message for r in caplog.records)
    assert any("eth2 weight -50 set to 0" in r.message for r in caplog.records)
    # The group's own trackers apply to every member.
    assert trackers(cfg, "INT") == [("eth4", -10)]


def test_sync_group_tracking_weight_keeps_member_weights() -> None:
    cfg = loads(GROUPED % "sync_group_tracking_weight")
    assert trackers(cfg, "EXT") == [
        ("chk_db", -40),
        ("chk_link", 0),
        ("eth2", -50),
        ("eth3", 0),
        ("eth4", -10),
    ]


def test_group_tracker_weights_are_cleared_when_members_are_owners() -> None:
    cfg = loads((GROUPED % "").replace("priority 150", "priority 255"))
    tracking, notes = effective_tracking(cfg)
    assert [(t.ifname, t.weight) for t in tracking["INT"].interfaces] == [("eth4", 0)]
    assert any("a member has priority 255" in n.message for n in notes)


def test_build_returns_the_group_definitions() -> None:
    _, groups = build_instances(loads(GROUPED % ""))
    [group] = groups
    assert (group.name, group.members) == ("G", ("EXT", "INT"))
    assert group.notify_master is not None
    assert group.notify_master.argv == ("/usr/local/bin/group-master",)


# -- builder options and errors --------------------------------------------------------------


def test_keepalived_options_map_to_router_config_fields() -> None:
    cfg = loads(
        """
        global_defs {
            vrrp_garp_lower_prio_repeat 2
        }
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 51
            version 3
            virtual_ipaddress { 192.0.2.100 }
            down_timer_adverts 5
            lower_prio_no_advert
            higher_prio_send_advert
            garp_master_repeat 3
            garp_master_delay 0
            garp_master_refresh 30
            garp_master_refresh_repeat 2
            check_unicast_src
            v3_checksum_as_v2
        }
        """
    )
    [inst], _ = build_instances(cfg)
    c = inst.config
    assert (c.down_timer_adverts, c.lower_prio_advert, c.higher_prio_send_advert) == (
        5,
        False,
        True,
    )
    assert (c.garp_repeat, c.garp_delay, c.garp_refresh, c.garp_refresh_repeat) == (3, 0.0, 30.0, 2)
    assert (c.garp_lower_prio_repeat, c.check_unicast_src) == (2, True)
    assert c.checksum is ChecksumMode.AS_V2


def test_transport_keywords_override_the_file() -> None:
    cfg = loads(
        "vrrp_instance VI_1 {\ninterface eth0\nvirtual_router_id 51\n"
        "virtual_ipaddress { 192.0.2.100 }\n}\n"
    )
    [inst], _ = build_instances(cfg, garp_repeat=1, netns="blue")
    assert inst.config.garp_repeat == 1


def test_ah_authentication_is_refused_at_build_time_for_every_instance() -> None:
    text = "".join(
        f"vrrp_instance VI_{n} {{\ninterface eth0\nvirtual_router_id {n}\n"
        "virtual_ipaddress { 192.0.2.100 }\n"
        "authentication {\nauth_type AH\nauth_pass secret\n}\n}\n"
        for n in (1, 2)
    )
    cfg = loads(text, "ah.conf")
    with pytest.raises(ConfigFileError) as info:
        build_instances(cfg)
    assert [(e.line, "AH" in e.message) for e in info.value.errors] == [(1, True), (10, True)]


def test_an_instance_without_interface_cannot_be_built() -> None:
    cfg = loads(
        "vrrp_instance VI_1 {\nvirtual_router_id 51\nunicast_src_ip 192.0.2.1\n"
        "unicast_peer {\n192.0.2.2\n}\nvirtual_ipaddress { 192.0.2.100 }\n}\n"
    )
    with pytest.raises(ConfigFileError, match="needs an interface"):
        build_instances(cfg)


# -- describe ------------------------------------------------------------------------------------


def test_describe_shows_the_effective_configuration_and_what_is_ignored(conf: Path) -> None:
    text = describe(load(conf, config_id="lb1"))
    expected = [
        "vrrp_instance VI_4",
        "interface eth0, VRID 51, VRRPv2, IPv4, advert_int 1 s",
        "state MASTER, priority 150",
        "source 192.0.2.11 (unicast_src_ip)",
        "unicast peers: 192.0.2.12",
        "authentication PASS (8-byte password)",
        "virtual addresses: 192.0.2.100/24",
        "tracks script chk_haproxy: weight -20: -20 while failing (from vrrp_script)",
        "/usr/bin/pgrep -x haproxy; every 2 s, timeout 1.5 s, rise 2, fall 3",
        "tracks interface eth1: weight -30: -30 while down",
        "notify_master: /etc/keepalived/notify.sh MASTER VI_4",
        "notify: /etc/keepalived/notify-all.sh INSTANCE VI_4 <STATE> <priority>",
        "vrrp_instance VI_6",
        "state BACKUP, priority 120",
        "preempt off (nopreempt)",
        "tracks script chk_haproxy: weight 0: FAULT while failing (from track_script)",
        "auth_pass longer than 8 bytes; truncated to 8",
        "smtp_alert (in vrrp_instance VI_4): unsupported: e-mail alerts",
        "virtual_server: not part of VRRP; vrrpkit ignores it",
        "notification_email (in global_defs): not used by vrrpkit",
    ]
    for fact in expected:
        assert fact in text, fact
    assert "k33pal1v" not in text  # the password is not printed


def test_describe_marks_derived_defaults_and_group_rules() -> None:
    cfg = loads(
        textwrap.dedent(GROUPED % "").replace(
            "priority 150\n    virtual_ipaddress { 198", "virtual_ipaddress { 198"
        )
    )
    text = describe(cfg)
    assert (
        "state BACKUP (default for priority 100), priority 100 (default for state BACKUP)" in text
    )
    assert "vrrp_sync_group G" in text and "members: EXT, INT" in text
    assert "weighted track_script chk_db removed" in text
    assert "notify_master: /usr/local/bin/group-master" in text


def test_describe_names_the_user_and_group_a_script_runs_as() -> None:
    cfg = loads(
        'vrrp_script chk {\n script "/bin/true"\n user nobody nogroup\n}\n'
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n"
        " virtual_ipaddress { 192.0.2.1 }\n track_script { chk }\n}\n"
    )
    text = describe(cfg)
    assert "rise 1, fall 1, as user nobody group nogroup" in text
    assert "user (in vrrp_script chk)" not in text
