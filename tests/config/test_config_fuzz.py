"""Whatever the text, reading it raises ConfigFileError or nothing."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vrrpkit.config import ConfigFileError, build_instances, describe, loads

# Relative includes (if any) resolve against a directory that does not exist.
FILENAME = "/nonexistent-vrrpkit-fuzz/keepalived.conf"

WORDS = [
    "global_defs",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "virtual_server",
    "interface",
    "eth0",
    "eth1",
    "virtual_router_id",
    "priority",
    "state",
    "MASTER",
    "BACKUP",
    "advert_int",
    "version",
    "nopreempt",
    "preempt_delay",
    "unicast_src_ip",
    "unicast_peer",
    "mcast_src_ip",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "track_script",
    "track_interface",
    "weight",
    "reverse",
    "noreverse",
    "authentication",
    "auth_type",
    "PASS",
    "AH",
    "auth_pass",
    "notify",
    "notify_master",
    "notify_backup",
    "script",
    "interval",
    "timeout",
    "rise",
    "fall",
    "init_fail",
    "user",
    "group",
    "vrrp_strict",
    "strict_mode",
    "sync_group_tracking_weight",
    "vrrp_version",
    "router_id",
    "dev",
    "label",
    "min_ttl",
    "VI_1",
    "VI_2",
    "chk",
    "G1",
    "{",
    "}",
    "{ ",
    " }",
    '"',
    "'",
    "#",
    "!",
    "\\",
    "@a",
    "@^a",
    "$X=",
    "$X",
    "${X}",
    "${_HASH}",
    "~SEQ(I,1,2)",
    "0",
    "1",
    "2",
    "3",
    "51",
    "100",
    "254",
    "255",
    "256",
    "-254",
    "0.5",
    "1.5",
    "40.96",
    "1e3",
    "192.0.2.1",
    "192.0.2.2/24",
    "198.51.100.7",
    "2001:db8::1",
    "fe80::1/64",
    "192.0.2.300",
    "::",
    "/bin/true",
    '"/bin/check a b"',
    "'x y'",
    "\\x41",
    "true",
    "off",
]


def lines() -> st.SearchStrategy[str]:
    line = st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join)
    return st.lists(line, max_size=40).map("\n".join)


def check(text: str) -> None:
    assume("include" not in text)
    try:
        cfg = loads(text, FILENAME, config_id="a")
    except ConfigFileError as error:
        assert error.errors
        assert all(e.message for e in error.errors)
        return
    assert isinstance(describe(cfg), str)
    with contextlib.suppress(ConfigFileError):
        build_instances(cfg)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_raises_nothing_but_config_file_error(text: str) -> None:
    check(text)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(lines())
def test_keepalived_like_text_raises_nothing_but_config_file_error(text: str) -> None:
    check(text)


VALID = """
vrrp_script chk {
    script "/bin/true"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100/24
    }
    track_script {
        chk
    }
}
"""


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_valid_config_with_one_line_changed_raises_nothing_but_config_file_error(
    data: st.DataObject,
) -> None:
    rows = VALID.splitlines()
    index = data.draw(st.integers(0, len(rows) - 1))
    rows[index] = data.draw(st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join))
    check("\n".join(rows))
