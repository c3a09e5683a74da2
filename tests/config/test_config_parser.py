"""keepalived's defaults and rules, applied while reading a keepalived.conf."""

from __future__ import annotations

import textwrap

import pytest

from vrrpkit.config import ConfigFileError, InstanceDef, KeepalivedConfig, loads


def parse(text: str, **kwargs: object) -> KeepalivedConfig:
    return loads(textwrap.dedent(text), "keepalived.conf", **kwargs)  # type: ignore[arg-type]


def instance(body: str, *, before: str = "", name: str = "VI_1") -> InstanceDef:
    cfg = parse(before + f"vrrp_instance {name} {{\n{textwrap.dedent(body)}\n}}\n")
    return cfg.instance(name)


def errors(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(ConfigFileError) as info:
        parse(text)
    return [(e.line, e.message) for e in info.value.errors]


BASE = """
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.100/24
    }
"""


def warnings_of(cfg: KeepalivedConfig) -> list[str]:
    return [w.message for w in cfg.warnings]


# -- priority and state ----------------------------------------------------------------------


def test_priority_defaults_to_100_and_state_to_backup() -> None:
    inst = instance(BASE)
    assert (inst.priority, inst.state) == (100, "BACKUP")
    assert not inst.priority_configured and not inst.state_configured


def test_state_master_without_priority_makes_an_address_owner() -> None:
    inst = instance(BASE + "state MASTER")
    assert (inst.priority, inst.state, inst.is_owner) == (255, "MASTER", True)


def test_priority_255_without_state_starts_master() -> None:
    inst = instance(BASE + "priority 255")
    assert inst.state == "MASTER"


def test_state_master_with_a_lower_priority_keeps_both() -> None:
    inst = instance(BASE + "state MASTER\npriority 150")
    assert (inst.priority, inst.state) == (150, "MASTER")


def test_state_backup_after_state_master_is_ignored_as_keepalived_does() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nstate MASTER\nstate BACKUP\n}}\n")
    assert cfg.instance("VI_1").state == "MASTER"
    assert any("already MASTER" in w for w in warnings_of(cfg))


def test_an_owner_with_state_backup_is_warned_about_the_immediate_takeover() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nstate BACKUP\npriority 255\n}}\n")
    assert any("starts an address owner" in w for w in warnings_of(cfg))


# -- ranges ------------------------------------------------------------------------------------


def test_a_priority_out_of_range_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(ConfigFileError) as info:
        parse(
            """
            vrrp_instance VI_1 {
                interface eth0
                virtual_router_id 51
                priority 256
                virtual_ipaddress { 192.0.2.100 }
            }
            """
        )
    error = info.value
    assert (error.filename, error.line) == ("keepalived.conf", 5)
    assert "priority must be 1..255, got 256" in str(error)
    assert str(error).startswith("keepalived.conf:5: ")


@pytest.mark.parametrize("vrid", ["0", "256", "abc", "-1"])
def test_a_vrid_outside_1_to_255_is_an_error(vrid: str) -> None:
    [(line, message)] = errors(
        f"vrrp_instance VI_1 {{\ninterface eth0\nvirtual_router_id {vrid}\n"
        "virtual_ipaddress { 192.0.2.1 }\n}\n"
    )
    assert line == 3
    assert "virtual_router_id" in message


def test_a_missing_vrid_is_an_error_at_the_instance() -> None:
    [(line, message)] = errors("vrrp_instance VI_1 {\ninterface eth0\n}\n")
    assert line == 1
    assert "virtual_router_id must be set" in message


def test_several_errors_are_reported_together_in_file_order() -> None:
    found = errors(
        """
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 300
            priority 0
            advert_int -1
            virtual_ipaddress { 192.0.2.300 }
        }
        """
    )
    assert [line for line, _ in found] == [4, 5, 6, 7]


def test_the_combined_error_lists_every_problem() -> None:
    with pytest.raises(ConfigFileError) as info:
        parse("vrrp_instance A {\n}\nvrrp_instance B {\n}\n")
    text = str(info.value)
    assert "2 errors" in text
    assert "keepalived.conf:1:" in text and "keepalived.conf:3:" in text


def test_preempt_delay_above_1000_seconds_is_an_error() -> None:
    [(line, message)] = errors(f"vrrp_instance VI_1 {{\n{BASE}\npreempt_delay 1001\n}}\n")
    assert line == 9 and "preempt_delay" in message


# -- advert_int ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "effective"), [("1", 1.0), ("1.5", 2.0), ("2.4", 2.0), ("0.3", 1.0)]
)
def test_vrrpv2_advert_int_is_rounded_to_whole_seconds(written: str, effective: float) -> None:
    inst = instance(BASE + f"advert_int {written}")
    assert inst.version == 2
    assert inst.advert_int == effective


@pytest.mark.parametrize(
    ("written", "effective"), [("0.5", 0.5), ("0.014", 0.01), ("0.015", 0.02), ("40.95", 40.95)]
)
def test_vrrpv3_advert_int_is_rounded_to_10_ms(written: str, effective: float) -> None:
    inst = instance(BASE + f"version 3\nadvert_int {written}")
    assert inst.advert_int == effective


def test_rounding_an_advert_int_is_a_warning() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nadvert_int 1.5\n}}\n")
    assert any("rounded to 2 s" in w for w in warnings_of(cfg))


def test_a_vrrpv3_advert_int_above_40_95_seconds_is_an_error() -> None:
    [(_, message)] = errors(f"vrrp_instance VI_1 {{\n{BASE}\nversion 3\nadvert_int 41\n}}\n")
    assert "0.01..40.95" in message


def test_advert_int_below_10_ms_is_an_error() -> None:
    [(_, message)] = errors(f"vrrp_instance VI_1 {{\n{BASE}\nadvert_int 0.001\n}}\n")
    assert "advert_int" in message


def test_an_advert_int_in_whole_tens_of_seconds_is_reported_as_written() -> None:
    [(_, message)] = errors(f"vrrp_instance VI_1 {{\n{BASE}\nversion 3\nadvert_int 50\n}}\n")
    assert message.endswith("got 50 s")


def test_a_rounded_advert_int_warning_gives_the_value_used() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nadvert_int 9.6\n}}\n")
    assert cfg.instance("VI_1").advert_int == 10
    assert any(
        w.endswith("advert_int 9.6 s must be whole seconds; rounded to 10 s")
        for w in warnings_of(cfg)
    )


def test_a_rounded_vrrpv3_advert_int_warning_keeps_its_fraction() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nversion 3\nadvert_int 0.105\n}}\n")
    assert any(
        "advert_int 0.105 s" in w and w.endswith("rounded to 0.11 s") for w in warnings_of(cfg)
    )


# -- version ---------------------------------------------------------------------------------


def test_version_defaults_to_2_then_to_global_vrrp_version() -> None:
    assert instance(BASE).version == 2
    inst = instance(BASE, before="global_defs {\n vrrp_version 3\n}\n")
    assert inst.version == 3


def test_an_ipv6_instance_defaults_to_version_3() -> None:
    inst = instance(
        """
        interface eth0
        virtual_router_id 52
        virtual_ipaddress {
            fe80::52
            2001:db8::52/64
        }
        """
    )
    assert (inst.version, inst.family) == (3, 6)
    assert [str(v.address) for v in inst.vips] == ["fe80::52/128", "2001:db8::52/64"]


def test_mixing_address_families_in_one_instance_is_an_error() -> None:
    [(line, message)] = errors(
        "vrrp_instance VI_1 {\ninterface eth0\nvirtual_router_id 5\n"
        "virtual_ipaddress {\n192.0.2.1\n2001:db8::1\n}\n}\n"
    )
    assert line == 6 and "IPv6" in message


# -- preemption --------------------------------------------------------------------------------


def test_nopreempt_is_kept_on_a_backup() -> None:
    assert instance(BASE + "nopreempt").preempt is False


def test_nopreempt_is_cleared_with_state_master() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nstate MASTER\npriority 150\nnopreempt\n}}\n")
    assert cfg.instance("VI_1").preempt is True
    assert any("nopreempt does not work with state MASTER" in w for w in warnings_of(cfg))


def test_nopreempt_is_cleared_at_priority_255() -> None:
    assert instance(BASE + "priority 255\nnopreempt").preempt is True


def test_preempt_delay_is_kept_for_a_preempting_backup() -> None:
    assert instance(BASE + "preempt_delay 12.5").preempt_delay == 12.5


@pytest.mark.parametrize("extra", ["nopreempt", "state MASTER\npriority 200"])
def test_preempt_delay_is_cleared_with_nopreempt_or_state_master(extra: str) -> None:
    assert instance(BASE + f"preempt_delay 30\n{extra}").preempt_delay == 0.0


# -- trackers and weights --------------------------------------------------------------------

SCRIPT = """
vrrp_script chk_haproxy {
    script "/usr/bin/pgrep -x haproxy"
    interval 2
    weight -20
    fall 3
    rise 2
}
"""


def test_vrrp_script_defaults_follow_keepalived() -> None:
    cfg = parse('vrrp_script chk {\n script "/usr/local/bin/check"\n}\n')
    script = cfg.scripts["chk"]
    assert script.argv == ("/usr/local/bin/check",)
    assert (script.interval, script.timeout, script.effective_timeout) == (1.0, None, 1.0)
    assert (script.weight, script.rise, script.fall, script.init_fail) == (0, 1, 1, False)


def test_a_script_timeout_defaults_to_its_interval() -> None:
    cfg = parse(SCRIPT)
    assert cfg.scripts["chk_haproxy"].effective_timeout == 2.0


def test_the_script_weight_is_used_unless_track_script_gives_one() -> None:
    inst = instance(BASE + "track_script {\n chk_haproxy\n}", before=SCRIPT)
    [tsc] = inst.track_scripts
    assert (tsc.weight, tsc.inherited) == (-20, True)
    inst = instance(BASE + "track_script {\n chk_haproxy weight 10\n}", before=SCRIPT)
    [tsc] = inst.track_scripts
    assert (tsc.weight, tsc.inherited) == (10, False)


@pytest.mark.parametrize(("written", "effective"), [("254", 253), ("-254", -253)])
def test_a_track_weight_of_254_is_rewritten_to_253(written: str, effective: int) -> None:
    inst = instance(
        BASE + f"track_script {{\n chk_haproxy weight {written}\n}}\n"
        f"track_interface {{\n eth1 weight {written}\n}}",
        before=SCRIPT,
    )
    assert inst.track_scripts[0].weight == effective
    assert inst.track_interfaces[0].weight == effective


def test_a_track_weight_beyond_254_is_an_error() -> None:
    [(line, message)] = errors(
        SCRIPT
        + f"vrrp_instance VI_1 {{\n{BASE}\ntrack_script {{\n chk_haproxy weight 255\n}}\n}}\n"
    )
    assert line == 18 and "-254..254" in message


def test_a_vrrp_script_weight_beyond_253_is_an_error() -> None:
    [(line, message)] = errors('vrrp_script chk {\n script "/bin/true"\n weight 254\n}\n')
    assert line == 3 and "-253..253" in message


def test_reverse_comes_from_the_script_unless_the_entry_says_noreverse() -> None:
    before = 'vrrp_script chk {\n script "/bin/true"\n weight 10 reverse\n}\n'
    inst = instance(BASE + "track_script {\n chk\n}", before=before)
    assert inst.track_scripts[0].reverse is True
    inst = instance(BASE + "track_script {\n chk weight 5 noreverse\n}", before=before)
    assert inst.track_scripts[0].reverse is False


def test_track_interface_defaults_to_weight_0() -> None:
    inst = instance(BASE + "track_interface {\n eth1\n eth2 weight -30 reverse\n}")
    assert [(t.ifname, t.weight, t.reverse) for t in inst.track_interfaces] == [
        ("eth1", 0, False),
        ("eth2", -30, True),
    ]


def test_tracking_the_own_interface_is_dropped_with_a_warning() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\ntrack_interface {{\n eth0 weight 10\n}}\n}}\n")
    assert cfg.instance("VI_1").track_interfaces == ()
    assert any("own interface" in w for w in warnings_of(cfg))


def test_an_address_owner_drops_weighted_trackers_but_keeps_unweighted_ones() -> None:
    inst = instance(
        BASE
        + "priority 255\ntrack_script {\n chk_haproxy\n}\n"
        + "track_interface {\n eth1\n eth2 weight 10\n}",
        before=SCRIPT,
    )
    assert inst.track_scripts == ()
    assert [t.ifname for t in inst.track_interfaces] == ["eth1"]


def test_a_track_script_must_name_a_script_defined_before_it() -> None:
    [(line, message)] = errors(
        f"vrrp_instance VI_1 {{\n{BASE}\ntrack_script {{\n chk_haproxy\n}}\n}}\n" + SCRIPT
    )
    assert line == 10
    assert "defined only later" in message


def test_a_track_script_naming_no_script_is_an_error() -> None:
    [(_, message)] = errors(f"vrrp_instance VI_1 {{\n{BASE}\ntrack_script {{\n nothing\n}}\n}}\n")
    assert "no vrrp_script called 'nothing'" in message


def test_a_vrrp_script_without_script_is_an_error() -> None:
    [(line, message)] = errors("vrrp_script chk {\n interval 2\n}\n")
    assert line == 1 and "has no script" in message


def test_a_script_interval_of_0_becomes_1_second() -> None:
    cfg = parse('vrrp_script chk {\n script "/bin/true"\n interval 0\n timeout 0\n}\n')
    script = cfg.scripts["chk"]
    assert (script.interval, script.timeout) == (1.0, 1.0)


def test_a_vrrp_script_runs_as_its_user_and_group_not_ignored() -> None:
    cfg = parse('vrrp_script chk {\n script "/bin/true"\n user nobody nogroup\n}\n')
    script = cfg.scripts["chk"]
    assert (script.user, script.group) == ("nobody", "nogroup")
    assert cfg.ignored == ()


def test_a_vrrp_script_user_without_a_group_leaves_the_group_unset() -> None:
    script = parse('vrrp_script chk {\n script "/bin/true"\n user nobody\n}\n').scripts["chk"]
    assert (script.user, script.group) == ("nobody", None)


def test_an_unquoted_script_runs_only_its_first_word_as_in_keepalived() -> None:
    cfg = parse("vrrp_script chk {\n script /usr/bin/pgrep haproxy\n}\n")
    assert cfg.scripts["chk"].argv == ("/usr/bin/pgrep",)
    assert any("quote the whole command" in w for w in warnings_of(cfg))


# -- notify -------------------------------------------------------------------------------------


def test_notify_commands_are_split_like_keepalived_without_a_shell() -> None:
    inst = instance(
        BASE
        + "notify_master \"/etc/keepalived/notify.sh master 'two words'\"\n"
        + "notify_backup /etc/keepalived/backup.sh\n"
        + 'notify "/etc/keepalived/all.sh --from=keepalived"'
    )
    assert inst.notify_master is not None and inst.notify_backup is not None
    assert inst.notify_master.argv == ("/etc/keepalived/notify.sh", "master", "two words")
    assert inst.notify_backup.argv == ("/etc/keepalived/backup.sh",)
    assert inst.notify is not None
    assert inst.notify.argv == ("/etc/keepalived/all.sh", "--from=keepalived")


def test_words_after_a_notify_command_are_its_user_and_group() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\nnotify_fault /bin/fault.sh nobody nogroup\n}}\n")
    notify = cfg.instance("VI_1").notify_fault
    assert notify is not None
    assert (notify.argv, notify.user, notify.group) == (("/bin/fault.sh",), "nobody", "nogroup")
    assert any(i.keyword == "notify_fault" for i in cfg.ignored)


# -- addresses and authentication -------------------------------------------------------------


def test_virtual_addresses_keep_their_prefix_or_default_to_a_host_prefix() -> None:
    inst = instance(
        """
        interface eth0
        virtual_router_id 51
        virtual_ipaddress {
            192.0.2.100/24 dev eth0
            192.0.2.101
        }
        """
    )
    assert [str(v.address) for v in inst.vips] == ["192.0.2.100/24", "192.0.2.101/32"]
    assert inst.vips[0].dev == "eth0"


def test_a_vip_on_another_device_is_a_warning() -> None:
    cfg = parse(
        "vrrp_instance VI_1 {\ninterface eth0\nvirtual_router_id 51\n"
        "virtual_ipaddress {\n 192.0.2.100/24 dev eth1\n}\n}\n"
    )
    [warning] = cfg.warnings
    assert warning.location.line == 5 and "dev eth1 is unsupported" in warning.message


def test_vip_labels_and_scopes_are_recorded_as_not_applied() -> None:
    cfg = parse(
        "vrrp_instance VI_1 {\ninterface eth0\nvirtual_router_id 51\n"
        "virtual_ipaddress {\n 192.0.2.100/24 label eth0:vip scope global\n}\n}\n"
    )
    vip = cfg.instance("VI_1").vips[0]
    assert (vip.label, vip.scope) == ("eth0:vip", "global")
    [ignored] = cfg.ignored
    assert "label eth0:vip" in ignored.reason


def test_a_bad_prefix_length_is_an_error() -> None:
    [(_, message)] = errors(
        "vrrp_instance VI_1 {\ninterface eth0\nvirtual_router_id 51\n"
        "virtual_ipaddress {\n 192.0.2.100/33\n}\n}\n"
    )
    assert "prefix length" in message


def test_unicast_peers_and_source() -> None:
    inst = instance(BASE + "unicast_src_ip 192.0.2.1\nunicast_peer {\n 192.0.2.2\n 192.0.2.3\n}")
    assert [str(p) for p in inst.unicast_peers] == ["192.0.2.2", "192.0.2.3"]
    assert str(inst.source) == "192.0.2.1"


def test_a_prefix_after_a_unicast_peer_or_source_is_ignored_with_a_warning() -> None:
    cfg = parse(
        f"vrrp_instance VI_1 {{\n{BASE}\nunicast_src_ip 192.0.2.1/24\n"
        "unicast_peer {\n 192.0.2.2/24\n 192.0.2.3\n}\n}\n"
    )
    inst = cfg.instance("VI_1")
    assert (str(inst.source), [str(p) for p in inst.unicast_peers]) == (
        "192.0.2.1",
        ["192.0.2.2", "192.0.2.3"],
    )
    assert [w.message for w in cfg.warnings if "ignored, as keepalived does" in w.message] == [
        "unicast_src_ip 192.0.2.1/24: '/24' ignored, as keepalived does",
        "unicast peer 192.0.2.2/24: '/24' ignored, as keepalived does",
    ]


def test_a_range_after_mcast_src_ip_is_ignored_as_keepalived_does() -> None:
    inst = instance(BASE + "mcast_src_ip 192.0.2.1-5")
    assert str(inst.mcast_src_ip) == "192.0.2.1"


def test_a_prefix_after_an_ipv6_unicast_peer_is_ignored() -> None:
    inst = instance(
        "interface eth0\nvirtual_router_id 51\nvirtual_ipaddress {\n 2001:db8::100\n}\n"
        "unicast_peer {\n 2001:db8::2/64\n}"
    )
    assert [str(p) for p in inst.unicast_peers] == ["2001:db8::2"]


def test_an_address_that_is_wrong_before_its_suffix_is_still_an_error() -> None:
    [(_, message)] = errors(f"vrrp_instance VI_1 {{\n{BASE}\nunicast_src_ip 192.0.2/24\n}}\n")
    assert message == "unicast_src_ip is not an IP address: '192.0.2/24'"


def test_two_peers_on_one_line_is_an_error_as_keepalived_drops_the_second() -> None:
    [(_, message)] = errors(
        f"vrrp_instance VI_1 {{\n{BASE}\nunicast_peer {{ 192.0.2.2 192.0.2.3 }}\n}}\n"
    )
    assert "one peer per line" in message


def test_auth_pass_is_truncated_to_8_bytes() -> None:
    cfg = parse(
        f"vrrp_instance VI_1 {{\n{BASE}\nauthentication {{\n auth_type PASS\n"
        " auth_pass s3cr3tpassword\n}\n}\n"
    )
    inst = cfg.instance("VI_1")
    assert (inst.auth_type, inst.auth_pass) == ("PASS", b"s3cr3tpa")
    assert any("truncated to 8" in w for w in warnings_of(cfg))


def test_authentication_is_dropped_for_vrrpv3_as_keepalived_does() -> None:
    inst = instance(BASE + "version 3\nauthentication {\n auth_type PASS\n auth_pass abc\n}")
    assert (inst.auth_type, inst.auth_pass) == (None, None)


# -- strict mode -------------------------------------------------------------------------------


def test_strict_mode_implies_keepalived_rfc_settings() -> None:
    cfg = parse(
        "global_defs {\n vrrp_strict\n}\n"
        f"vrrp_instance VI_1 {{\n{BASE}\npreempt_delay 10\ndown_timer_adverts 5\n"
        "authentication {\n auth_type PASS\n auth_pass abc\n}\n}\n"
    )
    inst = cfg.instance("VI_1")
    assert inst.strict_mode is True
    assert (inst.preempt_delay, inst.down_timer_adverts) == (0.0, 3)
    assert inst.auth_type is None
    assert (inst.lower_prio_no_advert, inst.garp_lower_prio_repeat) == (True, 0)


def test_strict_mode_rejects_unicast_peers() -> None:
    [(_, message)] = errors(
        f"vrrp_instance VI_1 {{\n{BASE}\nstrict_mode\nunicast_peer {{\n 192.0.2.2\n}}\n}}\n"
    )
    assert "strict mode" in message


def test_vrrpv3_needs_a_virtual_address() -> None:
    [(_, message)] = errors(
        "vrrp_instance VI_1 {\ninterface eth0\nvirtual_router_id 5\nversion 3\n}\n"
    )
    assert "at least one is required" in message


# -- global_defs -------------------------------------------------------------------------------


def test_global_garp_and_advert_settings_become_instance_defaults() -> None:
    inst = instance(
        BASE,
        before=textwrap.dedent(
            """
            global_defs {
                router_id node-a
                vrrp_garp_master_repeat 3
                vrrp_garp_master_delay 10
                vrrp_garp_master_refresh 60
                vrrp_garp_master_refresh_repeat 2
                vrrp_garp_lower_prio_repeat 1
                vrrp_higher_prio_send_advert
                vrrp_lower_prio_no_advert true
                vrrp_check_unicast_src
            }
            """
        ),
    )
    assert (inst.garp_master_repeat, inst.garp_master_delay) == (3, 10.0)
    assert (inst.garp_master_refresh, inst.garp_master_refresh_repeat) == (60.0, 2)
    assert inst.garp_lower_prio_repeat == 1
    assert (inst.higher_prio_send_advert, inst.lower_prio_no_advert) == (True, True)
    assert inst.check_unicast_src is True


def test_instance_settings_override_global_defaults() -> None:
    inst = instance(
        BASE + "garp_master_repeat 2\nlower_prio_no_advert off\ndown_timer_adverts 4",
        before="global_defs {\n vrrp_garp_master_repeat 3\n vrrp_lower_prio_no_advert\n}\n",
    )
    assert (inst.garp_master_repeat, inst.lower_prio_no_advert, inst.down_timer_adverts) == (
        2,
        False,
        4,
    )


def test_global_defs_records_scripts_and_fifo_settings() -> None:
    cfg = parse(
        """
        global_defs {
            script_user keepalived_script
            enable_script_security
            notify_fifo /run/keepalived.fifo
            vrrp_notify_fifo /run/keepalived_vrrp.fifo
            vrrp_strict
        }
        """
    )
    g = cfg.global_defs
    assert (g.script_user, g.enable_script_security, g.vrrp_strict) == (
        "keepalived_script",
        True,
        True,
    )
    assert (g.notify_fifo, g.vrrp_notify_fifo) == (
        "/run/keepalived.fifo",
        "/run/keepalived_vrrp.fifo",
    )
    ignored = {i.keyword for i in cfg.ignored}
    assert "enable_script_security" in ignored  # path checks are not done (yet)
    assert "script_user" not in ignored  # scripts and notify programs run as that user
    assert "notify_fifo" not in ignored  # written by vrrpkit run (keepalived's line format)


# -- what is ignored --------------------------------------------------------------------------


def test_unknown_keywords_are_recorded_not_fatal() -> None:
    cfg = parse(
        """
        global_defs {
            notification_email {
                admin@example.org
            }
            smtp_server 192.0.2.25
        }
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 51
            virtual_ipaddress { 192.0.2.100 }
            priorty 120
            use_vmac
            smtp_alert
        }
        """
    )
    reasons = {(i.location.line, i.keyword): i.reason for i in cfg.ignored}
    assert reasons[(12, "priorty")] == "unknown keyword"
    assert reasons[(13, "use_vmac")].startswith("unsupported")
    assert (3, "notification_email") in reasons and (6, "smtp_server") in reasons
    assert cfg.instance("VI_1").use_vmac is True
    ignored = next(i for i in cfg.ignored if i.keyword == "priorty")
    assert ignored.context == "vrrp_instance VI_1"
    assert str(ignored) == "keepalived.conf:12: priorty (in vrrp_instance VI_1): unknown keyword"


def test_an_unsupported_tracker_says_failover_will_not_follow_it() -> None:
    cfg = parse(
        """
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 51
            virtual_ipaddress { 192.0.2.100 }
            track_process { nginx }
            track_file { /run/maintenance }
        }
        """
    )
    reasons = {i.keyword: i.reason for i in cfg.ignored}
    assert "priority will not follow" in reasons["track_process"]
    assert "priority will not follow" in reasons["track_file"]


def test_unused_global_keywords_are_told_apart_from_typos() -> None:
    cfg = parse("global_defs {\n vrrp_garp_interval 0.001\n vrrp_garp_master_repat 2\n}\n")
    assert [(i.keyword, i.reason) for i in cfg.ignored] == [
        ("vrrp_garp_interval", "not used by vrrpkit"),
        ("vrrp_garp_master_repat", "unknown keyword"),
    ]


def test_everything_outside_vrrp_is_ignored_with_a_note() -> None:
    cfg = parse(
        """
        virtual_server 192.0.2.100 80 {
            delay_loop 6
            real_server 198.51.100.10 80 {
                TCP_CHECK { connect_timeout 3 }
            }
        }
        static_ipaddress {
            192.0.2.50/24 dev eth0
        }
        """
    )
    assert [(i.keyword, i.reason) for i in cfg.ignored] == [
        ("virtual_server", "not part of VRRP; vrrpkit ignores it"),
        ("static_ipaddress", "not part of VRRP; vrrpkit ignores it"),
    ]
    assert cfg.instances == ()


def test_extra_words_are_recorded_as_ignored() -> None:
    cfg = parse(f"vrrp_instance VI_1 {{\n{BASE}\npriority 120 130\n}}\n")
    assert cfg.instance("VI_1").priority == 120
    assert [i.keyword for i in cfg.ignored] == ["130"]


def test_unbalanced_braces_are_errors() -> None:
    assert errors("vrrp_instance VI_1 {\ninterface eth0\n")[0][1] == "this '{' is never closed"
    assert errors("}\n")[0][1] == "unexpected '}' (no block is open)"


# -- sync groups -------------------------------------------------------------------------------

TWO = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress { 192.0.2.100 }
}
vrrp_instance VI_2 {
    interface eth1
    virtual_router_id 52
    virtual_ipaddress { 198.51.100.100 }
}
"""


def test_a_sync_group_lists_its_members_notify_and_trackers() -> None:
    cfg = parse(
        SCRIPT
        + TWO
        + """
        vrrp_sync_group G1 {
            group {
                VI_1
                VI_2
            }
            notify_master "/etc/keepalived/group.sh master"
            track_script {
                chk_haproxy
            }
            track_interface {
                eth2 weight 10
            }
        }
        """
    )
    [group] = cfg.groups
    assert group.members == ("VI_1", "VI_2")
    assert group.notify_master is not None
    assert group.notify_master.argv == ("/etc/keepalived/group.sh", "master")
    assert [t.name for t in group.track_scripts] == ["chk_haproxy"]
    assert [(t.ifname, t.weight) for t in group.track_interfaces] == [("eth2", 10)]
    assert group.tracking_weight is False
    assert cfg.group_of("VI_2") is group


def test_a_sync_group_member_must_exist() -> None:
    [(_, message)] = errors(TWO + "vrrp_sync_group G1 {\n group {\n VI_1\n VI_3\n }\n}\n")
    assert "no vrrp_instance called 'VI_3'" in message


def test_an_instance_can_be_in_only_one_sync_group() -> None:
    [(_, message)] = errors(
        TWO + "vrrp_sync_group G1 {\n group { VI_1 VI_2 }\n}\n"
        "vrrp_sync_group G2 {\n group { VI_1 }\n}\n"
    )
    assert "already in vrrp_sync_group G1" in message


def test_the_same_vrid_twice_on_one_interface_is_an_error() -> None:
    body = "\n interface eth0\n virtual_router_id 7\n virtual_ipaddress { %s }\n}\n"
    [(line, message)] = errors(
        "vrrp_instance A {" + body % "192.0.2.1" + "vrrp_instance B {" + body % "192.0.2.2"
    )
    assert line == 6 and "already used by A" in message
