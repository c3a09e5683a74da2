"""keepalived.conf's VRRP sections → the pure model, with keepalived's defaults and rules.

Facts followed (keepalived ``vrrp_parser.c``, ``vrrp.c:vrrp_complete_instance``,
``vrrp_track.c``, ``global_parser.c``):

- priority unset: 255 with ``state MASTER``, else 100; state unset: MASTER at priority 255;
- priority and VRID 1..255; ``advert_int`` 0.01..255 s, then whole seconds for VRRPv2
  (rounded half up) or 10 ms steps up to 40.95 s for VRRPv3;
- ``version`` defaults to ``global_defs { vrrp_version }`` (2), and to 3 for IPv6;
- ``nopreempt`` is cleared at priority 255 or with ``state MASTER``; ``preempt_delay``
  (0..1000 s) is cleared with ``state MASTER``, ``nopreempt`` or strict mode;
- ``vrrp_script`` weight -253..253; a ``track_script``/``track_interface`` weight -254..254,
  with +-254 rewritten to +-253; a script's weight applies unless the entry gives one;
- an address owner drops its weighted trackers; the own interface is never a weighted
  ``track_interface``;
- notify and script commands are split like keepalived (quotes and escapes, no shell);
- a ``track_script`` finds only scripts defined before it.

Values out of range are errors (keepalived reports them too, then often guesses); lines
vrrpkit cannot use are recorded in :attr:`KeepalivedConfig.ignored`, and adjustments keepalived
makes silently or with a log line are recorded in :attr:`KeepalivedConfig.warnings`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_interface
from typing import Any

import attrs

from vrrpkit.config.errors import ConfigFileError
from vrrpkit.config.lexer import Line, Token, split_quoted
from vrrpkit.config.model import (
    Diagnostic,
    GlobalDefs,
    GroupDef,
    Ignored,
    InstanceDef,
    KeepalivedConfig,
    Location,
    NotifyDef,
    ScriptDef,
    TrackInterface,
    TrackScript,
    VipDef,
)
from vrrpkit.core.addresses import Address

__all__ = ["Node", "build_tree", "parse_lines"]

logger = logging.getLogger(__name__)

_MAX_DEPTH = 64
_IFNAMSIZ = 16  # Linux interface names are at most 15 characters
_US = 1_000_000
_CS_US = 10_000
_UINT_MAX = 4294967295
_INT_MAX = 2147483647
_GARP_DELAY_MAX = _UINT_MAX // _US  # keepalived stores the delay in microseconds

_TRUE = frozenset({"true", "on", "yes"})
_FALSE = frozenset({"false", "off", "no"})

# Known keepalived keywords that vrrpkit does not use, so the reason names the feature rather
# than suggesting a typo.
_NOT_VRRP = frozenset(
    {
        "virtual_server",
        "virtual_server_group",
        "static_ipaddress",
        "static_routes",
        "static_rules",
        "track_group",
        "net_namespace",
        "net_namespace_ipvs",
        "namespace_with_ipsets",
        "use_pid_dir",
        "instance",
        "child_wait_time",
        "bfd_instance",
        "include_check",
        "seed",
        "random_seed",
    }
)
_UNSUPPORTED_TOP = frozenset(
    {
        "vrrp_track_process",
        "vrrp_track_file",
        "track_file",
        "garp_group",
        "linkbeat_interfaces",
        "interface_up_down_delays",
    }
)
# keepalived's global_defs keywords (global_parser.c), so that an unhandled one is reported
# as unused rather than as a possible typo.
_GLOBAL_KNOWN = frozenset(
    {
        "bfd_cpu_affinity",
        "bfd_no_swap",
        "bfd_priority",
        "bfd_process_name",
        "bfd_rlimit_rtime",
        "bfd_rlimit_rttime",
        "bfd_rt_priority",
        "checker_cpu_affinity",
        "checker_log_all_failures",
        "checker_no_swap",
        "checker_priority",
        "checker_process_name",
        "checker_rlimit_rtime",
        "checker_rlimit_rttime",
        "checker_rt_priority",
        "child_wait_time",
        "config_save_dir",
        "data_use_instance",
        "dbus_no_interface_name",
        "dbus_service_name",
        "default_interface",
        "disable_local_igmp",
        "dynamic_interfaces",
        "enable_dbus",
        "enable_script_security",
        "enable_snmp_checker",
        "enable_snmp_keepalived",
        "enable_snmp_rfc",
        "enable_snmp_rfcv2",
        "enable_snmp_rfcv3",
        "enable_snmp_vrrp",
        "enable_traps",
        "fifo_write_vrrp_states_on_reload",
        "include_check",
        "instance",
        "iproute_etc_dir",
        "iproute_usr_dir",
        "json_dump_file",
        "json_version",
        "linkbeat_use_polling",
        "log_unknown_vrids",
        "lvs_flush",
        "lvs_flush_on_stop",
        "lvs_flush_onstop",
        "lvs_netlink_cmd_rcv_bufs",
        "lvs_netlink_cmd_rcv_bufs_force",
        "lvs_netlink_monitor_rcv_bufs",
        "lvs_netlink_monitor_rcv_bufs_force",
        "lvs_notify_fifo",
        "lvs_notify_fifo_script",
        "lvs_process_name",
        "lvs_sync_daemon",
        "lvs_timeouts",
        "max_auto_priority",
        "min_auto_priority_delay",
        "namespace_with_ipsets",
        "net_namespace",
        "net_namespace_ipvs",
        "nftables",
        "nftables_counters",
        "nftables_ifindex",
        "nftables_ipvs",
        "nftables_ipvs_priority",
        "nftables_ipvs_start_fwmark",
        "nftables_priority",
        "no_checker_emails",
        "no_email_faults",
        "notification_email",
        "notification_email_from",
        "notify_fifo",
        "notify_fifo_script",
        "process_monitor_rcv_bufs",
        "process_monitor_rcv_bufs_force",
        "process_name",
        "process_names",
        "random_seed",
        "reload_check_config",
        "reload_file",
        "reload_repeat",
        "reload_time_file",
        "router_id",
        "rs_init_notifies",
        "script_user",
        "set_supplementary_groups",
        "shutdown_script",
        "shutdown_script_timeout",
        "smtp_alert",
        "smtp_alert_checker",
        "smtp_alert_vrrp",
        "smtp_connect_timeout",
        "smtp_helo_name",
        "smtp_server",
        "snmp_rs_stats_update_interval",
        "snmp_socket",
        "snmp_vs_stats_update_interval",
        "startup_script",
        "startup_script_timeout",
        "state_dump_file",
        "stats_dump_file",
        "tmp_config_directory",
        "umask",
        "use_pid_dir",
        "use_symlink_paths",
        "v3_checksum_as_v2",
        "vmac_addr_prefix",
        "vmac_prefix",
        "vrrp_check_unicast_src",
        "vrrp_cpu_affinity",
        "vrrp_delay_after_boot",
        "vrrp_down_timer_adverts",
        "vrrp_garp_extra_if",
        "vrrp_garp_interval",
        "vrrp_garp_lower_prio_delay",
        "vrrp_garp_lower_prio_repeat",
        "vrrp_garp_master_delay",
        "vrrp_garp_master_refresh",
        "vrrp_garp_master_refresh_repeat",
        "vrrp_garp_master_repeat",
        "vrrp_gna_interval",
        "vrrp_higher_prio_send_advert",
        "vrrp_ipsets",
        "vrrp_iptables",
        "vrrp_lower_prio_no_advert",
        "vrrp_mcast_group4",
        "vrrp_mcast_group6",
        "vrrp_min_garp",
        "vrrp_netlink_cmd_rcv_bufs",
        "vrrp_netlink_cmd_rcv_bufs_force",
        "vrrp_netlink_monitor_rcv_bufs",
        "vrrp_netlink_monitor_rcv_bufs_force",
        "vrrp_no_swap",
        "vrrp_notify_fifo",
        "vrrp_notify_fifo_script",
        "vrrp_notify_priority_changes",
        "vrrp_owner_ignore_adverts",
        "vrrp_priority",
        "vrrp_process_name",
        "vrrp_rlimit_rtime",
        "vrrp_rlimit_rttime",
        "vrrp_rt_priority",
        "vrrp_rx_bufs_multiplier",
        "vrrp_rx_bufs_policy",
        "vrrp_skip_check_adv_addr",
        "vrrp_startup_delay",
        "vrrp_strict",
        "vrrp_version",
        "vrrp_vmac_garp_intvl",
    }
)
_INSTANCE_UNSUPPORTED = frozenset(
    {
        "use_vmac_addr",
        "vmac_xmit_base",
        "use_ipvlan",
        "unicast_fault_no_peer",
        "old_unicast_checksum",
        "native_ipv6",
        "vrf",
        "track_file",
        "track_process",
        "track_bfd",
        "mcast_dst_ip",
        "track_src_ip",
        "unicast_ttl",
        "promote_secondaries",
        "linkbeat_use_polling",
        "virtual_routes",
        "virtual_rules",
        "skip_check_adv_addr",
        "debug",
        "notify_deleted",
        "notify_master_rx_lower_pri",
        "notify_priority_changes",
        "lvs_sync_daemon_interface",
        "garp_lower_prio_delay",
        "timer_expired_backup",
        "thread_timer_expired",
        "garp_extra_if",
        "vmac_garp_intvl",
        "owner_ignore_adverts",
        "kernel_rx_buf_size",
        "auth_hmac",
    }
)
_VIP_FLAGS = frozenset(
    {"home", "-nodad", "mngtmpaddr", "noprefixroute", "autojoin", "no_track", "use_vmac"}
)
# Unsupported keywords that change when a node fails over or what it installs: their reason
# says so, for a user who would otherwise run without a tracker they rely on.
_FAILOVER_DIFFERS = {
    "vrrp_track_process": "processes are not tracked; use a vrrp_script that checks it",
    "track_process": "processes are not tracked, the priority will not follow this one; "
    "use a vrrp_script that checks it",
    "vrrp_track_file": "files are not tracked; use a vrrp_script that reads it",
    "track_file": "files are not tracked, the priority will not follow this one; "
    "use a vrrp_script that reads it",
    "track_bfd": "BFD is not tracked, the priority will not follow it",
    "virtual_routes": "these routes are not added when MASTER",
    "virtual_rules": "these rules are not added when MASTER",
}


def _unsupported(keyword: str) -> str:
    return f"unsupported: {_FAILOVER_DIFFERS.get(keyword, 'vrrpkit has no equivalent')}"


_GROUP_UNSUPPORTED = frozenset(
    {"track_file", "track_process", "track_bfd", "notify_priority_changes", "notify_deleted"}
)


@attrs.define
class Node:
    """One statement: a keyword, its words, its text, and its ``{ }`` block if it has one."""

    keyword: Token
    args: tuple[Token, ...]
    raw: str
    children: list[Node] | None = None

    @property
    def name(self) -> str:
        """The keyword."""
        return self.keyword.value

    @property
    def location(self) -> Location:
        """Where the statement was written."""
        return self.keyword.location

    @property
    def words(self) -> list[str]:
        """The keyword and its words, as keepalived's ``strvec`` of a value-block line."""
        return [self.keyword.value, *(a.value for a in self.args)]


def build_tree(lines: Iterable[Line], errors: list[ConfigFileError]) -> list[Node]:
    """Nest lexed lines into statements with ``{ }`` blocks (errors are appended)."""
    top: list[Node] = []
    stack: list[tuple[list[Node], Location]] = []
    current = top
    last: Node | None = None
    too_deep = False

    def error(message: str, where: Location) -> None:
        errors.append(ConfigFileError(message, filename=where.filename, line=where.line))

    for line in lines:
        if line.is_open:
            if len(stack) >= _MAX_DEPTH:
                if not too_deep:
                    error(f"blocks nested more than {_MAX_DEPTH} deep", line.location)
                    too_deep = True
                block: list[Node] = []
            elif last is None or last.children is not None:
                error("unexpected '{' (no keyword before it)", line.location)
                block = []
            else:
                last.children = block = []
            stack.append((current, line.location))
            current = block
            last = None
        elif line.is_close:
            if not stack:
                error("unexpected '}' (no block is open)", line.location)
            else:
                current, _ = stack.pop()
            last = None
        else:
            last = Node(line.tokens[0], line.tokens[1:], line.raw)
            current.append(last)
    for _, opened in reversed(stack):
        error("this '{' is never closed", opened)
    return top


def _format_seconds(us: int) -> str:
    """Microseconds as seconds, without trailing fractional zeros: 50 s, 1.5 s, 0.01 s."""
    whole, fraction = divmod(us, _US)
    return f"{whole}.{fraction:06d}".rstrip("0") if fraction else str(whole)


@attrs.define
class _InstanceDraft:
    name: str
    location: Location
    interface: str | None = None
    vrid: int | None = None
    priority: int | None = None
    state: str | None = None
    state_location: Location | None = None
    version: int | None = None
    advert_us: int | None = None
    advert_location: Location | None = None
    nopreempt: bool = False
    preempt_delay_us: int = 0
    vips: list[VipDef] = attrs.field(factory=list)
    excluded_vips: list[VipDef] = attrs.field(factory=list)
    unicast_src_ip: Address | None = None
    mcast_src_ip: Address | None = None
    unicast_peers: list[Address] = attrs.field(factory=list)
    unicast_configured: bool = False
    family: int | None = None
    auth_type: str | None = None
    auth_pass: bytes | None = None
    auth_location: Location | None = None
    track_scripts: list[TrackScript] = attrs.field(factory=list)
    track_interfaces: list[TrackInterface] = attrs.field(factory=list)
    notifies: dict[str, NotifyDef] = attrs.field(factory=dict)
    garp_master_repeat: int = 5
    garp_master_delay: float = 5.0
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_repeat: int | None = None
    down_timer_adverts: int = 3
    lower_prio_no_advert: bool | None = None
    higher_prio_send_advert: bool | None = None
    check_unicast_src: bool = False
    v3_checksum_as_v2: bool = False
    strict_mode: bool | None = None
    dont_track_primary: bool = False
    accept: bool | None = None
    use_vmac: bool = False
    no_vips: bool = False


@attrs.define
class _GroupDraft:
    name: str
    location: Location
    members: list[Token] | None = None
    notifies: dict[str, NotifyDef] = attrs.field(factory=dict)
    track_scripts: list[TrackScript] = attrs.field(factory=list)
    track_interfaces: list[TrackInterface] = attrs.field(factory=list)
    tracking_weight: bool = False


class _Parser:
    def __init__(self) -> None:
        self.errors: list[ConfigFileError] = []
        self.warnings: list[Diagnostic] = []
        self.ignored: list[Ignored] = []
        self.globals: dict[str, Any] = {}
        self.defaults = GlobalDefs()
        self.scripts: dict[str, ScriptDef] = {}
        # vrrp_script names not read yet: keepalived resolves track_script while parsing,
        # so a script defined below its first use is not found.
        self.later_scripts: dict[str, Location] = {}
        self.instances: list[InstanceDef] = []
        self.instance_sites: dict[str, Location] = {}
        self.groups: list[_GroupDraft] = []

    # -- reporting -------------------------------------------------------------------------

    def error(self, where: Location | Token | Node, message: str) -> None:
        loc = where if isinstance(where, Location) else where.location
        self.errors.append(ConfigFileError(message, filename=loc.filename, line=loc.line))

    def warn(self, where: Location | Token | Node, message: str) -> None:
        loc = where if isinstance(where, Location) else where.location
        self.warnings.append(Diagnostic(loc, message))
        logger.debug("%s: %s", loc, message)

    def ignore(self, where: Node | Token, reason: str, context: str = "") -> None:
        keyword = where.name if isinstance(where, Node) else where.value
        self.ignored.append(Ignored(where.location, keyword, reason, context))

    def extra(self, node: Node, used: int, context: str) -> None:
        """Record words after the ``used`` ones as ignored, as keepalived ignores them."""
        if len(node.args) > used:
            words = " ".join(a.value for a in node.args[used:])
            self.ignored.append(
                Ignored(
                    node.args[used].location,
                    words,
                    f"extra words after {node.name} are ignored (keepalived ignores them too)",
                    context,
                )
            )

    # -- value readers ---------------------------------------------------------------------

    def arg(self, node: Node, context: str) -> Token | None:
        if node.children is not None:
            self.error(node, f"{node.name} does not take a {{ }} block")
            return None
        if not node.args:
            self.error(node, f"{node.name} needs a value")
            return None
        self.extra(node, 1, context)
        return node.args[0]

    def block(self, node: Node) -> list[Node] | None:
        if node.children is None:
            self.error(node, f"{node.name} needs a {{ }} block")
            return None
        if node.args:
            self.error(node.args[0], f"unexpected words before the block of {node.name}")
        return node.children

    def flag(self, node: Node, context: str) -> None:
        if node.children is not None:
            self.error(node, f"{node.name} does not take a {{ }} block")
        self.extra(node, 0, context)

    def integer(self, tok: Token, low: int, high: int, what: str) -> int | None:
        if re.fullmatch(r"[+-]?[0-9]{1,18}", tok.value) is None:
            self.error(tok, f"{what} must be an integer {low}..{high}, got {tok.value!r}")
            return None
        value = int(tok.value)
        if not low <= value <= high:
            self.error(tok, f"{what} must be {low}..{high}, got {value}")
            return None
        return value

    def unsigned(self, tok: Token, low: int, high: int, what: str) -> int | None:
        if tok.value.startswith("-"):
            self.error(tok, f"{what} must be {low}..{high}, got {tok.value!r}")
            return None
        return self.integer(tok, low, high, what)

    def decimal(self, tok: Token, digits: int, low: int, high: int, what: str) -> int | None:
        """keepalived's read_decimal_unsigned: value x 10**digits, range in those units."""
        text = tok.value
        match = re.fullmatch(r"\+?([0-9]{0,12})(?:\.([0-9]*))?", text)
        if match is None or not (match.group(1) or match.group(2)):
            self.error(tok, f"{what} must be a non-negative number, got {text!r}")
            return None
        fraction = match.group(2) or ""
        try:
            number = Decimal(f"{match.group(1) or '0'}.{fraction or '0'}")
        except InvalidOperation:  # pragma: no cover - the regex only lets digits through
            self.error(tok, f"{what} must be a number, got {text!r}")
            return None
        scaled = number.scaleb(digits)
        value = int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if len(fraction) > digits:
            self.warn(tok, f"{what} {text} has more than {digits} decimal places; rounded")
        if not low <= value <= high:
            unit = Decimal(10) ** digits
            self.error(
                tok, f"{what} must be {Decimal(low) / unit:f}..{Decimal(high) / unit:f}, got {text}"
            )
            return None
        return value

    def boolean(self, node: Node, context: str) -> bool | None:
        """``keyword`` alone is true; otherwise true/on/yes or false/off/no."""
        if node.children is not None:
            self.error(node, f"{node.name} does not take a {{ }} block")
            return None
        if not node.args:
            return True
        self.extra(node, 1, context)
        word = node.args[0].value
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        self.error(node.args[0], f"{node.name} takes true/false (on/off, yes/no), got {word!r}")
        return None

    def address(self, tok: Token, what: str) -> Address | None:
        """A source or peer address; keepalived's inet_stosockaddr ignores a ``-range`` or
        ``/prefix`` suffix (cut at the first ``-`` if there is one, else at the first ``/``)."""
        text = tok.value
        cut = text.find("-")
        if cut < 0:
            cut = text.find("/")
        written = text if cut < 0 else text[:cut]
        try:
            if "%" in written:
                raise ValueError(written)
            address = ip_address(written)
        except ValueError:
            self.error(tok, f"{what} is not an IP address: {text!r}")
            return None
        if cut >= 0:
            self.warn(tok, f"{what} {text}: {text[cut:]!r} ignored, as keepalived does")
        return address

    def ifname(self, tok: Token, what: str) -> str | None:
        name = tok.value
        if not name or len(name) >= _IFNAMSIZ or "/" in name or any(c in name for c in " \t"):
            self.error(tok, f"{what} {name!r} is not a valid interface name")
            return None
        return name

    def command(self, node: Node, what: str) -> NotifyDef | None:
        """A script or notify line: keepalived re-splits the line itself, quotes included."""
        if node.children is not None:
            self.error(node, f"{node.name} does not take a {{ }} block")
            return None
        try:
            words = split_quoted(node.raw, escapes=False)
            argv = split_quoted(words[1], escapes=True) if len(words) > 1 else []
        except ValueError as exc:
            self.error(node, f"cannot split {what}: {exc}")
            return None
        if not argv or not argv[0]:
            self.error(node, f"{node.name} needs a command")
            return None
        user = words[2] if len(words) > 2 else None
        group = words[3] if len(words) > 3 else None
        if len(words) > 4:
            self.warn(node, f"{node.name}: words after the user and group are ignored")
        return NotifyDef(argv=tuple(argv), location=node.location, user=user, group=group)

    # -- top level -------------------------------------------------------------------------

    def parse(self, nodes: Sequence[Node]) -> None:
        # keepalived reads global_defs into the defaults of every instance; reading them
        # first makes their position in the file irrelevant.
        for node in nodes:
            if node.name == "global_defs":
                self.global_defs(node)
        self.defaults = self.make_globals()
        for node in reversed(nodes):
            if node.name == "vrrp_script" and len(node.args) == 1:
                self.later_scripts[node.args[0].value] = node.location
        for node in nodes:
            name = node.name
            if name == "global_defs":
                continue
            if name == "vrrp_script":
                self.vrrp_script(node)
                if len(node.args) == 1:
                    self.later_scripts.pop(node.args[0].value, None)
            elif name == "vrrp_instance":
                self.vrrp_instance(node)
            elif name == "vrrp_sync_group":
                self.vrrp_sync_group(node)
            elif name in _NOT_VRRP:
                self.ignore(node, "not part of VRRP; vrrpkit ignores it")
            elif name in _UNSUPPORTED_TOP:
                self.ignore(node, _unsupported(name))
            else:
                self.ignore(node, "unknown keyword")

    # -- global_defs -----------------------------------------------------------------------

    def global_defs(self, node: Node) -> None:
        children = self.block(node)
        if children is None:
            return
        ctx = "global_defs"
        for child in children:
            name = child.name
            handler = _GLOBAL_HANDLERS.get(name)
            if handler is None:
                reason = "not used by vrrpkit" if name in _GLOBAL_KNOWN else "unknown keyword"
                self.ignore(child, reason, ctx)
                continue
            handler(self, child)

    def set_global(self, node: Node, key: str, value: Any) -> None:
        if value is not None:
            self.globals[key] = value

    def make_globals(self) -> GlobalDefs:
        values = dict(self.globals)
        if values.pop("vrrp_min_garp", False):
            # keepalived's vrrp_min_garp: 1 GARP, no delayed batch, no refresh, unless set.
            values.setdefault("garp_master_repeat", 1)
            values.setdefault("garp_master_delay", 0.0)
            values.setdefault("garp_master_refresh", 0.0)
        return GlobalDefs(**values)

    # -- vrrp_script -----------------------------------------------------------------------

    def vrrp_script(self, node: Node) -> None:
        children = node.children
        if len(node.args) != 1:
            self.error(node, "vrrp_script needs exactly one name")
            return
        name = node.args[0].value
        ctx = f"vrrp_script {name}"
        if children is None:
            self.error(node, f"{ctx} needs a {{ }} block")
            return
        values: dict[str, Any] = {}
        argv: tuple[str, ...] | None = None
        for child in children:
            key = child.name
            if key == "script":
                cmd = self.command(child, "the script")
                if cmd is not None:
                    argv = cmd.argv
                    if cmd.user is not None:
                        # keepalived takes only the first word of the line as the command
                        # (vrrp_vscript_script_handler); it ignores the rest.
                        self.warn(
                            child,
                            f"{ctx}: keepalived runs only {cmd.argv[0]!r} and ignores the "
                            "words after it; quote the whole command to pass arguments",
                        )
            elif key in ("interval", "timeout"):
                tok = self.arg(child, ctx)
                ms = None if tok is None else self.decimal(tok, 3, 0, _UINT_MAX // _US * 1000, key)
                if ms == 0:
                    self.warn(child, f"{ctx}: {key} must be greater than 0; using 1 s")
                    ms = 1000
                if ms is not None:
                    values[key] = ms / 1000
            elif key == "weight":
                if not child.args or child.children is not None:
                    self.error(child, f"{ctx}: weight needs a value")
                    continue
                weight = self.integer(child.args[0], -253, 253, f"{ctx} weight")
                if weight is not None:
                    values["weight"] = weight
                if len(child.args) > 1:
                    if child.args[1].value == "reverse":
                        values["reverse"] = True
                    else:
                        self.error(child.args[1], f"{ctx}: unknown weight option")
                    self.extra(child, 2, ctx)
            elif key in ("rise", "fall"):
                tok = self.arg(child, ctx)
                count = None if tok is None else self.unsigned(tok, 1, _INT_MAX, f"{ctx} {key}")
                if count is not None:
                    values[key] = count
            elif key == "user":
                if not child.args:
                    self.error(child, f"{ctx}: user needs a user name")
                    continue
                values["user"] = child.args[0].value
                if len(child.args) > 1:
                    values["group"] = child.args[1].value
                self.extra(child, 2, ctx)
            elif key == "init_fail":
                self.flag(child, ctx)
                values["init_fail"] = True
            else:
                self.ignore(child, "unknown keyword", ctx)
        if argv is None:
            self.error(node, f"{ctx} has no script")
            return
        if name in self.scripts:
            # find_script_by_name returns the first definition; later ones are dead.
            self.warn(node, f"{ctx} is already defined at {self.scripts[name].location}; ignored")
            return
        self.scripts[name] = ScriptDef(name=name, argv=argv, location=node.location, **values)

    # -- trackers (instances and groups) ---------------------------------------------------

    def weight_override(self, node: Node, ctx: str, what: str) -> tuple[int, bool] | None:
        """``weight W [reverse|noreverse]`` after a tracker name (-254..254, +-254 -> +-253)."""
        args = node.args
        if args[0].value != "weight":
            self.error(args[0], f"{ctx}: unknown {what} option {args[0].value!r}")
            return None
        if len(args) < 2:
            self.error(args[0], f"{ctx}: weight without a value for {what} {node.name}")
            return None
        weight = self.integer(args[1], -254, 254, f"{ctx} {what} {node.name} weight")
        if weight is None:
            return None
        if abs(weight) == 254:
            # vrrp_track.c: +-254 is accepted but rewritten so that one tracker alone cannot
            # move a priority across the whole range.
            weight = 253 if weight > 0 else -253
            self.warn(
                args[1],
                f"{ctx}: weight {args[1].value} for {node.name} is not allowed; "
                f"using {weight}, as keepalived does",
            )
        reverse: bool | None = None
        if len(args) > 2:
            option = args[2].value
            if option == "reverse":
                reverse = True
            elif option == "noreverse" and what == "track_script":
                reverse = False
            else:
                self.error(args[2], f"{ctx}: unknown {what} weight option {option!r}")
                return None
            self.extra(node, 3, ctx)
        return weight, bool(reverse)

    def track_scripts(self, node: Node, ctx: str, into: list[TrackScript]) -> None:
        children = self.block(node)
        for child in children or ():
            name = child.name
            script = self.scripts.get(name)
            if script is None:
                later = self.later_scripts.get(name)
                if later is not None:
                    self.error(
                        child,
                        f"{ctx}: vrrp_script {name} is defined only later, at {later}; "
                        "keepalived finds only scripts defined before their use",
                    )
                else:
                    self.error(child, f"{ctx}: no vrrp_script called {name!r}")
                continue
            if any(t.name == name for t in into):
                self.warn(child, f"{ctx}: duplicate track_script {name}; ignored")
                continue
            weight, reverse, inherited = script.weight, script.reverse, True
            if child.args:
                override = self.weight_override(child, ctx, "track_script")
                if override is None:
                    continue
                weight, explicit_reverse = override
                inherited = False
                # vrrp_track.c: the script's "reverse" stays unless the entry says otherwise.
                reverse = explicit_reverse if len(child.args) > 2 else script.reverse
            into.append(
                TrackScript(
                    name=name,
                    weight=weight,
                    reverse=reverse,
                    location=child.location,
                    inherited=inherited,
                )
            )

    def track_interfaces(self, node: Node, ctx: str, into: list[TrackInterface]) -> None:
        children = self.block(node)
        for child in children or ():
            ifname = self.ifname(child.keyword, "track_interface")
            if ifname is None:
                continue
            if any(t.ifname == ifname for t in into):
                self.warn(child, f"{ctx}: duplicate track_interface {ifname}; ignored")
                continue
            weight, reverse = 0, False
            if child.args:
                override = self.weight_override(child, ctx, "track_interface")
                if override is None:
                    continue
                weight, reverse = override
            into.append(
                TrackInterface(
                    ifname=ifname, weight=weight, reverse=reverse, location=child.location
                )
            )

    def notify(self, node: Node, ctx: str, notifies: dict[str, NotifyDef]) -> None:
        cmd = self.command(node, f"{node.name} command")
        if cmd is None:
            return
        if node.name in notifies:
            self.warn(node, f"{ctx}: {node.name} already given; this one is ignored")
            return
        if cmd.user is not None:
            self.ignore(
                node,
                "unsupported: vrrpkit runs notify programs as the global script_user "
                f"(keepalived would use {cmd.user} for this one)",
                ctx,
            )
        notifies[node.name] = cmd

    # -- vrrp_instance ---------------------------------------------------------------------

    def vrrp_instance(self, node: Node) -> None:
        if len(node.args) != 1:
            self.error(node, "vrrp_instance needs exactly one name")
            return
        name = node.args[0].value
        if node.children is None:
            self.error(node, f"vrrp_instance {name} needs a {{ }} block")
            return
        if name in self.instance_sites:
            self.error(
                node, f"vrrp_instance {name} is already defined at {self.instance_sites[name]}"
            )
            return
        self.instance_sites[name] = node.location
        g = self.defaults
        draft = _InstanceDraft(
            name=name,
            location=node.location,
            garp_master_repeat=g.garp_master_repeat,
            garp_master_delay=g.garp_master_delay,
            garp_master_refresh=g.garp_master_refresh,
            garp_master_refresh_repeat=g.garp_master_refresh_repeat,
            garp_lower_prio_repeat=g.garp_lower_prio_repeat,
            down_timer_adverts=g.down_timer_adverts,
            check_unicast_src=g.check_unicast_src,
            v3_checksum_as_v2=g.v3_checksum_as_v2,
        )
        errors_before = len(self.errors)
        ctx = f"vrrp_instance {name}"
        for child in node.children:
            handler = _INSTANCE_HANDLERS.get(child.name)
            if handler is not None:
                handler(self, child, draft, ctx)
            elif child.name in _INSTANCE_UNSUPPORTED:
                self.ignore(child, _unsupported(child.name), ctx)
            else:
                self.ignore(child, "unknown keyword", ctx)
        if len(self.errors) > errors_before:
            return  # completing would only repeat them ("virtual_router_id must be set")
        instance = self.complete_instance(draft, ctx)
        if instance is not None:
            self.instances.append(instance)

    def family_of(self, draft: _InstanceDraft, address: Address, tok: Token, what: str) -> bool:
        if draft.family is None:
            draft.family = address.version
            return True
        if address.version != draft.family:
            self.error(
                tok,
                f"{what} {address} is IPv{address.version} but the instance is "
                f"IPv{draft.family} (every address of an instance has one family)",
            )
            return False
        return True

    def vip_block(self, node: Node, draft: _InstanceDraft, ctx: str, excluded: bool) -> None:
        children = self.block(node)
        for child in children or ():
            vip = self.vip(child, ctx)
            if vip is None:
                continue
            if excluded:
                draft.excluded_vips.append(vip)
                continue
            if not self.family_of(draft, vip.address.ip, child.keyword, "virtual address"):
                continue
            if any(v.address.ip == vip.address.ip for v in draft.vips):
                self.warn(child, f"{ctx}: duplicate virtual address {vip.address.ip}; ignored")
                continue
            draft.vips.append(vip)

    def vip(self, node: Node, ctx: str) -> VipDef | None:
        if node.children is not None:
            self.error(node, "a virtual address does not take a { } block")
            return None
        text = node.keyword.value
        family6 = ":" in text  # keepalived's parse_ipaddress decides the family this way
        addr_text, _, prefix_text = text.partition("/")
        maximum = 128 if family6 else 32
        try:
            if "%" in addr_text:
                raise ValueError(addr_text)
            ip = ip_address(addr_text)
        except ValueError:
            self.error(node, f"{ctx}: not an IP address: {text!r}")
            return None
        prefix = maximum
        if prefix_text or text.endswith("/"):
            tok = Token(prefix_text, node.keyword.filename, node.keyword.line)
            value = self.unsigned(tok, 0, maximum, f"prefix length of {addr_text}")
            if value is None:
                return None
            prefix = value
        address: IPv4Interface | IPv6Interface = ip_interface(f"{ip}/{prefix}")
        dev = label = scope = None
        options: list[str] = []
        args = node.args
        i = 0
        takes_value = {"dev", "scope", "broadcast", "brd", "label", "peer", "preferred_lft"}
        while i < len(args):
            word = args[i].value
            if word in takes_value:
                if i + 1 >= len(args):
                    self.error(args[i], f"{ctx}: {word} needs a value for {text}")
                    return None
                value_text = args[i + 1].value
                if word == "dev":
                    if self.ifname(args[i + 1], "dev") is None:
                        return None
                    dev = value_text
                elif word == "label":
                    label = value_text
                elif word == "scope":
                    scope = value_text
                else:
                    options.append(f"{word} {value_text}")
                i += 2
                continue
            if word in _VIP_FLAGS:
                options.append(word)
            else:
                self.ignore(args[i], f"unknown option of virtual address {text}", ctx)
            i += 1
        if address.version == 6 and (label is not None or scope is not None):
            # vrrp_ipaddress.c drops label and scope of IPv6 addresses with an error.
            self.warn(node, f"{ctx}: label and scope do not apply to IPv6 {text}; ignored")
            label = scope = None
        return VipDef(
            address=address,
            location=node.location,
            dev=dev,
            label=label,
            scope=scope,
            options=tuple(options),
        )

    def unicast_peers(self, node: Node, draft: _InstanceDraft, ctx: str) -> None:
        draft.unicast_configured = True
        children = self.block(node)
        for child in children or ():
            if child.children is not None:
                self.error(child, "a unicast peer does not take a { } block")
                continue
            peer = self.address(child.keyword, "unicast peer")
            if peer is None or not self.family_of(draft, peer, child.keyword, "unicast peer"):
                continue
            if peer.is_multicast:
                self.error(child, f"{ctx}: unicast peer {peer} is a multicast address")
                continue
            args = child.args
            for i in range(0, len(args), 2):
                option = args[i]
                if i + 1 >= len(args):
                    self.error(
                        option,
                        f"{ctx}: {option.value!r} after unicast peer {peer} has no value "
                        "(one peer per line; keepalived ignores this word)",
                    )
                    break
                if option.value not in ("min_ttl", "max_ttl"):
                    self.error(option, f"{ctx}: unknown unicast_peer option {option.value!r}")
                    break
                if self.unsigned(args[i + 1], 0, 255, option.value) is None:
                    break
                # vrrp_data.c: a TTL range turns on the source check for all peers.
                draft.check_unicast_src = True
                self.ignore(
                    option,
                    "unsupported: per-peer TTL ranges (check_unicast_src is turned on, "
                    "as keepalived does)",
                    ctx,
                )
            if peer in draft.unicast_peers:
                self.warn(child, f"{ctx}: duplicate unicast peer {peer}; ignored")
                continue
            draft.unicast_peers.append(peer)

    def authentication(self, node: Node, draft: _InstanceDraft, ctx: str) -> None:
        children = self.block(node)
        for child in children or ():
            if child.name == "auth_type":
                tok = self.arg(child, ctx)
                if tok is None:
                    continue
                if tok.value not in ("PASS", "AH"):
                    self.error(tok, f"{ctx}: auth_type must be PASS or AH, got {tok.value!r}")
                    continue
                draft.auth_type = tok.value
                draft.auth_location = child.location
            elif child.name == "auth_pass":
                tok = self.arg(child, ctx)
                if tok is None:
                    continue
                secret = tok.value.encode("utf-8", "surrogateescape")
                if len(secret) > 8:
                    # vrrp_auth_pass_handler keeps the first 8 bytes (the v2 auth field).
                    self.warn(child, f"{ctx}: auth_pass longer than 8 bytes; truncated to 8")
                    secret = secret[:8]
                draft.auth_pass = secret
            else:
                self.ignore(child, "unknown keyword", f"{ctx} authentication")

    def complete_instance(self, d: _InstanceDraft, ctx: str) -> InstanceDef | None:
        g = self.defaults
        where = d.location
        if d.vrid is None:
            self.error(where, f"{ctx}: virtual_router_id must be set")
            return None
        if d.interface is None and not d.unicast_configured:
            self.error(where, f"{ctx}: interface must be set")
            return None
        if d.interface is None and d.unicast_src_ip is None and d.mcast_src_ip is None:
            self.error(where, f"{ctx}: an instance without interface needs unicast_src_ip")
            return None
        strict = g.vrrp_strict if d.strict_mode is None else d.strict_mode
        family = d.family or 4

        version = d.version
        if family == 6:
            if version == 2 and strict:
                self.warn(where, f"{ctx}: strict mode cannot use IPv6 with VRRPv2; using v3")
                version = 3
            elif version == 2:
                self.warn(where, f"{ctx}: VRRPv2 over IPv6 is a keepalived extension")
            elif version is None:
                version = 3
        if version is None:
            version = g.vrrp_version

        priority_configured = d.priority is not None
        state_configured = d.state is not None
        # vrrp_complete_instance: an unset priority follows the state, and vice versa.
        default_priority = 255 if d.state == "MASTER" else 100
        priority = default_priority if d.priority is None else d.priority
        if d.state is None:
            state = "MASTER" if priority == 255 else "BACKUP"
        else:
            state = d.state
            if strict and (state == "MASTER") != (priority == 255):
                self.warn(where, f"{ctx}: strict mode: state MASTER must match priority 255")
                state = "MASTER" if priority == 255 else "BACKUP"
        if priority == 255 and state == "BACKUP":
            self.warn(
                d.state_location or where,
                f"{ctx}: priority 255 with state BACKUP: vrrpkit starts an address owner "
                "as MASTER at once (keepalived waits for its skew time first)",
            )

        auth_type, auth_pass = d.auth_type, d.auth_pass
        auth_where = d.auth_location or where
        if auth_type is not None:
            reason = None
            if strict:
                reason = "strict mode does not support authentication"
            elif version == 3:
                reason = "VRRPv3 has no authentication"
            elif not auth_pass:
                reason = "authentication without auth_pass"
            elif family == 6 and auth_type == "AH":
                reason = "AH authentication is IPv4 only"
            if reason is not None:
                self.warn(auth_where, f"{ctx}: {reason}; authentication ignored")
                auth_type = auth_pass = None
            elif auth_type == "AH" and state == "MASTER" and priority != 255:
                self.warn(auth_where, f"{ctx}: state MASTER is incompatible with AH; BACKUP")
                state = "BACKUP"
        elif auth_pass is not None:
            self.warn(where, f"{ctx}: auth_pass without auth_type is ignored")
            auth_pass = None

        peers = tuple(d.unicast_peers)
        if d.unicast_configured and not peers and d.interface is not None:
            self.warn(where, f"{ctx}: a unicast keyword without unicast_peer: using multicast")
        if strict and peers:
            self.error(where, f"{ctx}: unicast peers are not allowed in strict mode")
            return None
        if d.interface is None and family == 6:
            src = d.unicast_src_ip or d.mcast_src_ip
            if src is not None and src.is_link_local:
                self.error(where, f"{ctx}: without interface the source must not be link-local")
                return None

        if family == 6 and not peers and d.vips and not d.vips[0].address.ip.is_link_local:
            self.warn(
                d.vips[0].location,
                f"{ctx}: the first IPv6 virtual address should be link-local (RFC 5798 5.2.9)",
            )

        preempt = not d.nopreempt
        preempt_delay_us = d.preempt_delay_us
        if priority == 255 and not preempt:
            self.warn(where, f"{ctx}: nopreempt does not work with priority 255; cleared")
            preempt = True
        if state == "MASTER":
            if not preempt:
                self.warn(where, f"{ctx}: nopreempt does not work with state MASTER; cleared")
                preempt = True
            if preempt_delay_us:
                self.warn(where, f"{ctx}: preempt_delay does not work with state MASTER; cleared")
                preempt_delay_us = 0
        if preempt_delay_us and strict:
            self.warn(where, f"{ctx}: preempt_delay is incompatible with strict mode; cleared")
            preempt_delay_us = 0
        if preempt_delay_us and not preempt:
            self.warn(where, f"{ctx}: preempt_delay is incompatible with nopreempt; cleared")
            preempt_delay_us = 0

        down_timer_adverts = d.down_timer_adverts
        if down_timer_adverts != 3 and strict:
            self.warn(where, f"{ctx}: strict mode needs down_timer_adverts 3; reset")
            down_timer_adverts = 3
        lower_repeat = d.garp_lower_prio_repeat
        if strict:
            if lower_repeat:
                self.warn(where, f"{ctx}: strict mode: no lower priority GARP repeats; 0")
            lower_repeat = 0
        lower_no_advert = d.lower_prio_no_advert
        if lower_no_advert is None:
            lower_no_advert = True if strict else g.lower_prio_no_advert
        elif strict and not lower_no_advert:
            self.warn(where, f"{ctx}: strict mode needs lower_prio_no_advert; set")
            lower_no_advert = True
        higher_send = d.higher_prio_send_advert
        if higher_send is None:
            higher_send = False if strict else g.higher_prio_send_advert
        elif strict and higher_send:
            self.warn(where, f"{ctx}: strict mode forbids higher_prio_send_advert; cleared")
            higher_send = False
        accept = d.accept
        if strict and priority != 255 and accept is not False:
            self.warn(
                where,
                f"{ctx}: strict mode implies no_accept, but vrrpkit installs no firewall "
                "rules: the virtual addresses accept traffic",
            )

        advert_int = self.advert_interval(d, version, ctx)
        if advert_int is None:
            return None

        no_vips = d.no_vips
        if no_vips and strict:
            self.warn(where, f"{ctx}: no_virtual_ipaddress is incompatible with strict mode")
            no_vips = False
        if not d.vips and not no_vips:
            if version == 3 or strict:
                self.error(where, f"{ctx}: no virtual_ipaddress; at least one is required")
                return None
            self.warn(where, f"{ctx}: no virtual_ipaddress; at least one is sensible")
        for vip in d.vips:
            if vip.dev is not None and vip.dev != d.interface:
                self.warn(
                    vip.location,
                    f"{ctx}: dev {vip.dev} is unsupported: vrrpkit adds {vip.address} on the "
                    f"instance's interface {d.interface}",
                )
            unused = [
                *([f"label {vip.label}"] if vip.label else []),
                *([f"scope {vip.scope}"] if vip.scope else []),
                *vip.options,
            ]
            if unused:
                self.ignore(
                    Token(str(vip.address), vip.location.filename, vip.location.line),
                    f"unsupported address options, not applied: {', '.join(unused)}",
                    ctx,
                )

        track_scripts = list(d.track_scripts)
        track_interfaces = list(d.track_interfaces)
        for tif in list(track_interfaces):
            if tif.ifname == d.interface:
                # vrrp_complete_instance: the own interface is always tracked, weight 0.
                self.warn(
                    tif.location,
                    f"{ctx}: track_interface {tif.ifname} is the own "
                    "interface, always tracked; ignored",
                )
                track_interfaces.remove(tif)
        if priority == 255:
            # An address owner's priority never moves, so keepalived drops weighted trackers.
            for tsc in [t for t in track_scripts if t.weight]:
                self.warn(
                    tsc.location, f"{ctx}: weighted track_script {tsc.name} ignored at priority 255"
                )
                track_scripts.remove(tsc)
            for tif in [t for t in track_interfaces if t.weight]:
                self.warn(
                    tif.location,
                    f"{ctx}: weighted track_interface {tif.ifname} ignored at priority 255",
                )
                track_interfaces.remove(tif)

        return InstanceDef(
            name=d.name,
            location=d.location,
            interface=d.interface,
            vrid=d.vrid,
            priority=priority,
            state=state,
            priority_configured=priority_configured,
            state_configured=state_configured,
            version=version,
            advert_int=advert_int,
            preempt=preempt,
            preempt_delay=preempt_delay_us / _US,
            vips=tuple(d.vips),
            excluded_vips=tuple(d.excluded_vips),
            unicast_src_ip=d.unicast_src_ip,
            mcast_src_ip=d.mcast_src_ip,
            unicast_peers=peers,
            auth_type=auth_type,
            auth_pass=auth_pass,
            track_scripts=tuple(track_scripts),
            track_interfaces=tuple(track_interfaces),
            notify=d.notifies.get("notify"),
            notify_master=d.notifies.get("notify_master"),
            notify_backup=d.notifies.get("notify_backup"),
            notify_fault=d.notifies.get("notify_fault"),
            notify_stop=d.notifies.get("notify_stop"),
            garp_master_repeat=d.garp_master_repeat,
            garp_master_delay=d.garp_master_delay,
            garp_master_refresh=d.garp_master_refresh,
            garp_master_refresh_repeat=d.garp_master_refresh_repeat,
            garp_lower_prio_repeat=lower_repeat,
            down_timer_adverts=down_timer_adverts,
            lower_prio_no_advert=lower_no_advert,
            higher_prio_send_advert=higher_send,
            check_unicast_src=d.check_unicast_src,
            v3_checksum_as_v2=d.v3_checksum_as_v2,
            strict_mode=strict,
            dont_track_primary=d.dont_track_primary,
            accept=accept,
            use_vmac=d.use_vmac,
        )

    def advert_interval(self, d: _InstanceDraft, version: int, ctx: str) -> float | None:
        us = _US if d.advert_us is None else d.advert_us
        where = d.advert_location or d.location
        if version == 2:
            if us % _US:
                # vrrp_complete_instance rounds to whole seconds, half up, at least 1 s.
                rounded = max(_US, (us + _US // 2) // _US * _US)
                self.warn(
                    where,
                    f"{ctx}: VRRPv2 advert_int {_format_seconds(us)} s must be whole "
                    f"seconds; rounded to {_format_seconds(rounded)} s",
                )
                us = rounded
            return us / _US
        if us >= 4096 * _CS_US:
            self.error(
                where,
                f"{ctx}: VRRPv3 advert_int must be 0.01..40.95 s, got {_format_seconds(us)} s",
            )
            return None
        if us % _CS_US:
            rounded = min(4095 * _CS_US, max(_CS_US, (us + _CS_US // 2) // _CS_US * _CS_US))
            self.warn(
                where,
                f"{ctx}: VRRPv3 advert_int {_format_seconds(us)} s is not a multiple of "
                f"10 ms; rounded to {_format_seconds(rounded)} s",
            )
            us = rounded
        return (us // _CS_US) / 100

    # -- vrrp_sync_group -------------------------------------------------------------------

    def vrrp_sync_group(self, node: Node) -> None:
        if len(node.args) != 1:
            self.error(node, "vrrp_sync_group needs exactly one name")
            return
        name = node.args[0].value
        ctx = f"vrrp_sync_group {name}"
        if node.children is None:
            self.error(node, f"{ctx} needs a {{ }} block")
            return
        for other in self.groups:
            if other.name == name:
                self.error(node, f"{ctx} is already defined at {other.location}")
                return
        draft = _GroupDraft(name=name, location=node.location)
        for child in node.children:
            key = child.name
            if key == "group":
                children = self.block(child)
                if children is None:
                    continue
                if draft.members is not None:
                    self.error(child, f"{ctx}: group already given")
                    continue
                draft.members = [tok for c in children for tok in (c.keyword, *c.args)]
            elif key in ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop"):
                self.notify(child, ctx, draft.notifies)
            elif key == "track_script":
                self.track_scripts(child, ctx, draft.track_scripts)
            elif key == "track_interface":
                self.track_interfaces(child, ctx, draft.track_interfaces)
            elif key == "sync_group_tracking_weight":
                self.flag(child, ctx)
                draft.tracking_weight = True
            elif key == "global_tracking":
                self.flag(child, ctx)
                self.warn(
                    child,
                    f"{ctx}: global_tracking is deprecated; same as sync_group_tracking_weight",
                )
                draft.tracking_weight = True
            elif key == "smtp_alert":
                self.ignore(child, "unsupported: e-mail alerts", ctx)
            elif key in _GROUP_UNSUPPORTED:
                self.ignore(child, _unsupported(key), ctx)
            else:
                self.ignore(child, "unknown keyword", ctx)
        if not draft.members:
            self.error(node, f"{ctx} has no members (group {{ ... }})")
            return
        self.groups.append(draft)

    def finish_groups(self) -> list[GroupDef]:
        by_name = {inst.name: inst for inst in self.instances}
        taken: dict[str, str] = {}
        groups: list[GroupDef] = []
        for draft in self.groups:
            ctx = f"vrrp_sync_group {draft.name}"
            members: list[str] = []
            for tok in draft.members or ():
                name = tok.value
                if name not in by_name:
                    if name not in self.instance_sites:
                        self.error(tok, f"{ctx}: no vrrp_instance called {name!r}")
                    continue
                if name in taken:
                    self.error(tok, f"{ctx}: {name} is already in vrrp_sync_group {taken[name]}")
                    continue
                if name in members:
                    self.warn(tok, f"{ctx}: {name} listed twice")
                    continue
                taken[name] = draft.name
                members.append(name)
            if len(members) == 1:
                self.warn(draft.location, f"{ctx} has only one member; probably not intended")
            owners = {by_name[m].is_owner for m in members}
            if len(owners) > 1:
                self.error(
                    draft.location,
                    f"{ctx} mixes address owners (priority 255) and other members; "
                    "keepalived warns this won't work",
                )
            groups.append(
                GroupDef(
                    name=draft.name,
                    location=draft.location,
                    members=tuple(members),
                    notify=draft.notifies.get("notify"),
                    notify_master=draft.notifies.get("notify_master"),
                    notify_backup=draft.notifies.get("notify_backup"),
                    notify_fault=draft.notifies.get("notify_fault"),
                    notify_stop=draft.notifies.get("notify_stop"),
                    track_scripts=tuple(draft.track_scripts),
                    track_interfaces=tuple(draft.track_interfaces),
                    tracking_weight=draft.tracking_weight,
                )
            )
        return groups

    def check_vrids(self) -> None:
        seen: dict[tuple[str, int, int], InstanceDef] = {}
        for inst in self.instances:
            if inst.interface is None:
                continue
            key = (inst.interface, inst.vrid, inst.family)
            other = seen.get(key)
            if other is not None:
                self.error(
                    inst.location,
                    f"vrrp_instance {inst.name}: VRID {inst.vrid} on {inst.interface} is "
                    f"already used by {other.name} ({other.location})",
                )
            else:
                seen[key] = inst


# -- per-keyword handlers ------------------------------------------------------------------


def _g_string(key: str) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        tok = p.arg(node, "global_defs")
        if tok is not None:
            p.set_global(node, key, tok.value)

    return handler


def _g_bool(key: str) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        p.set_global(node, key, p.boolean(node, "global_defs"))

    return handler


def _g_flag(key: str) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        p.flag(node, "global_defs")
        p.set_global(node, key, True)

    return handler


def _g_int(
    key: str, low: int, high: int, zero_is_one: bool = False
) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        tok = p.arg(node, "global_defs")
        if tok is None:
            return
        value = p.unsigned(tok, 0 if zero_is_one else low, high, node.name)
        if value == 0 and zero_is_one:
            # global_parser.c keeps pre-2.0.7 configurations working: 0 means 1.
            p.warn(node, f"{node.name} must be greater than 0; using 1")
            value = 1
        p.set_global(node, key, value)

    return handler


def _g_seconds(key: str, high: int) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        tok = p.arg(node, "global_defs")
        if tok is None:
            return
        value = p.unsigned(tok, 0, high, f"{node.name} (whole seconds)")
        p.set_global(node, key, None if value is None else float(value))

    return handler


def _g_version(p: _Parser, node: Node) -> None:
    tok = p.arg(node, "global_defs")
    if tok is not None:
        p.set_global(node, "vrrp_version", p.integer(tok, 2, 3, "vrrp_version"))


def _g_script_user(p: _Parser, node: Node) -> None:
    if not node.args:
        p.error(node, "script_user needs a user name")
        return
    p.set_global(node, "script_user", node.args[0].value)
    if len(node.args) > 1:
        p.set_global(node, "script_group", node.args[1].value)
    p.extra(node, 2, "global_defs")


def _g_fifo(key: str) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        if not node.args:
            p.error(node, f"{node.name} needs a path")
            return
        p.set_global(node, key, node.args[0].value)

    return handler


def _g_unsupported_value(key: str, reason: str) -> Callable[[_Parser, Node], None]:
    def handler(p: _Parser, node: Node) -> None:
        tok = p.arg(node, "global_defs")
        if tok is None:
            return
        value = p.unsigned(tok, 0, 86400, node.name)
        p.set_global(node, key, None if value is None else float(value))
        p.ignore(node, reason, "global_defs")

    return handler


def _g_security(p: _Parser, node: Node) -> None:
    p.flag(node, "global_defs")
    p.set_global(node, "enable_script_security", True)
    p.ignore(node, "unsupported: vrrpkit does not check script ownership", "global_defs")


def _g_strict(p: _Parser, node: Node) -> None:
    p.set_global(node, "vrrp_strict", p.boolean(node, "global_defs"))


def _g_min_garp(p: _Parser, node: Node) -> None:
    value = p.boolean(node, "global_defs")
    if value:
        p.globals["vrrp_min_garp"] = True


_GLOBAL_HANDLERS: dict[str, Callable[[_Parser, Node], None]] = {
    "router_id": _g_string("router_id"),
    "vrrp_version": _g_version,
    "vrrp_strict": _g_strict,
    "vrrp_garp_master_repeat": _g_int("garp_master_repeat", 1, 255, zero_is_one=True),
    "vrrp_garp_master_delay": _g_seconds("garp_master_delay", _GARP_DELAY_MAX),
    "vrrp_garp_master_refresh": _g_seconds("garp_master_refresh", 86400),
    "vrrp_garp_master_refresh_repeat": _g_int(
        "garp_master_refresh_repeat", 1, 255, zero_is_one=True
    ),
    "vrrp_garp_lower_prio_repeat": _g_int("garp_lower_prio_repeat", 0, 255),
    "vrrp_garp_lower_prio_delay": _g_unsupported_value(
        "garp_lower_prio_delay", "unsupported: no delayed lower-priority GARP batch"
    ),
    "vrrp_down_timer_adverts": _g_int("down_timer_adverts", 1, 100),
    "vrrp_lower_prio_no_advert": _g_bool("lower_prio_no_advert"),
    "vrrp_higher_prio_send_advert": _g_bool("higher_prio_send_advert"),
    "vrrp_check_unicast_src": _g_flag("check_unicast_src"),
    "v3_checksum_as_v2": _g_bool("v3_checksum_as_v2"),
    "vrrp_min_garp": _g_min_garp,
    "script_user": _g_script_user,
    "enable_script_security": _g_security,
    "notify_fifo": _g_fifo("notify_fifo"),
    "vrrp_notify_fifo": _g_fifo("vrrp_notify_fifo"),
}


_InstanceHandler = Callable[[_Parser, Node, _InstanceDraft, str], None]


def _i_state(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is None:
        return
    if tok.value not in ("MASTER", "BACKUP"):
        p.error(tok, f"{ctx}: state must be MASTER or BACKUP, got {tok.value!r}")
        return
    if tok.value == "BACKUP" and d.state == "MASTER":
        p.warn(node, f"{ctx}: state already MASTER; BACKUP ignored (as keepalived does)")
        return
    d.state = tok.value
    d.state_location = node.location


def _i_interface(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is not None:
        d.interface = p.ifname(tok, "interface") or d.interface


def _i_vrid(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is not None:
        d.vrid = p.unsigned(tok, 1, 255, f"{ctx}: virtual_router_id") or d.vrid


def _i_priority(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is not None:
        d.priority = p.unsigned(tok, 1, 255, f"{ctx}: priority") or d.priority


def _i_advert(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is None:
        return
    us = p.decimal(tok, 6, _US // 100, 255 * _US, f"{ctx}: advert_int")
    if us is not None:
        d.advert_us = us
        d.advert_location = node.location


def _i_version(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is not None:
        d.version = p.integer(tok, 2, 3, f"{ctx}: version") or d.version


def _i_nopreempt(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.flag(node, ctx)
    d.nopreempt = True


def _i_preempt(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.flag(node, ctx)
    d.nopreempt = False


def _i_preempt_delay(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    tok = p.arg(node, ctx)
    if tok is not None:
        us = p.decimal(tok, 6, 0, 1000 * _US, f"{ctx}: preempt_delay")
        if us is not None:
            d.preempt_delay_us = us


def _i_src(unicast: bool) -> _InstanceHandler:
    def handler(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
        if unicast:
            d.unicast_configured = True
        tok = p.arg(node, ctx)
        if tok is None:
            return
        address = p.address(tok, node.name)
        if address is None or not p.family_of(d, address, tok, node.name):
            return
        if unicast:
            d.unicast_src_ip = address
        else:
            d.mcast_src_ip = address

    return handler


def _i_peers(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.unicast_peers(node, d, ctx)


def _i_auth(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.authentication(node, d, ctx)


def _i_vips(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.vip_block(node, d, ctx, excluded=False)


def _i_evips(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.vip_block(node, d, ctx, excluded=True)
    p.ignore(node, "unsupported: vrrpkit manages only advertised addresses", ctx)


def _i_track_script(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.track_scripts(node, ctx, d.track_scripts)


def _i_track_interface(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.track_interfaces(node, ctx, d.track_interfaces)


def _i_notify(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.notify(node, ctx, d.notifies)


def _i_int(attr: str, low: int, high: int, zero_is_one: bool = False) -> _InstanceHandler:
    def handler(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
        tok = p.arg(node, ctx)
        if tok is None:
            return
        value = p.unsigned(tok, 0 if zero_is_one else low, high, f"{ctx}: {node.name}")
        if value == 0 and zero_is_one:
            # vrrp_parser.c keeps pre-2.0.7 configurations working: 0 means 1.
            p.warn(node, f"{ctx}: {node.name} must be greater than 0; using 1")
            value = 1
        if value is not None:
            setattr(d, attr, value)

    return handler


def _i_seconds(attr: str, high: int) -> _InstanceHandler:
    def handler(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
        tok = p.arg(node, ctx)
        if tok is None:
            return
        value = p.unsigned(tok, 0, high, f"{ctx}: {node.name} (whole seconds)")
        if value is not None:
            setattr(d, attr, float(value))

    return handler


def _i_bool(attr: str) -> _InstanceHandler:
    def handler(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
        value = p.boolean(node, ctx)
        if value is not None:
            setattr(d, attr, value)

    return handler


def _i_check_unicast_src(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.flag(node, ctx)
    d.unicast_configured = True
    d.check_unicast_src = True


def _i_dont_track_primary(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.flag(node, ctx)
    d.dont_track_primary = True
    p.ignore(node, "unsupported: vrrpkit always tracks the instance's interface", ctx)


def _i_accept(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.flag(node, ctx)
    d.accept = node.name == "accept"
    if not d.accept:
        p.ignore(
            node,
            "unsupported: vrrpkit installs no firewall rules, so the addresses accept traffic",
            ctx,
        )


def _i_use_vmac(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    d.use_vmac = True
    p.ignore(
        node,
        "unsupported: no virtual MAC interface; adverts and GARPs use the interface's own MAC",
        ctx,
    )


def _i_no_vips(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.flag(node, ctx)
    d.no_vips = True


def _i_smtp(p: _Parser, node: Node, d: _InstanceDraft, ctx: str) -> None:
    p.ignore(node, "unsupported: e-mail alerts", ctx)


_INSTANCE_HANDLERS: dict[str, _InstanceHandler] = {
    "state": _i_state,
    "interface": _i_interface,
    "virtual_router_id": _i_vrid,
    "priority": _i_priority,
    "advert_int": _i_advert,
    "version": _i_version,
    "nopreempt": _i_nopreempt,
    "preempt": _i_preempt,
    "preempt_delay": _i_preempt_delay,
    "unicast_src_ip": _i_src(unicast=True),
    "mcast_src_ip": _i_src(unicast=False),
    "unicast_peer": _i_peers,
    "authentication": _i_auth,
    "virtual_ipaddress": _i_vips,
    "virtual_ipaddress_excluded": _i_evips,
    "track_script": _i_track_script,
    "track_interface": _i_track_interface,
    "notify": _i_notify,
    "notify_master": _i_notify,
    "notify_backup": _i_notify,
    "notify_fault": _i_notify,
    "notify_stop": _i_notify,
    "garp_master_repeat": _i_int("garp_master_repeat", 1, 255, zero_is_one=True),
    "garp_master_delay": _i_seconds("garp_master_delay", _GARP_DELAY_MAX),
    "garp_master_refresh": _i_seconds("garp_master_refresh", 86400),
    "garp_master_refresh_repeat": _i_int("garp_master_refresh_repeat", 1, 255, zero_is_one=True),
    "garp_lower_prio_repeat": _i_int("garp_lower_prio_repeat", 0, 255),
    "down_timer_adverts": _i_int("down_timer_adverts", 1, 100),
    "lower_prio_no_advert": _i_bool("lower_prio_no_advert"),
    "higher_prio_send_advert": _i_bool("higher_prio_send_advert"),
    "v3_checksum_as_v2": _i_bool("v3_checksum_as_v2"),
    "strict_mode": _i_bool("strict_mode"),
    "check_unicast_src": _i_check_unicast_src,
    "dont_track_primary": _i_dont_track_primary,
    "accept": _i_accept,
    "no_accept": _i_accept,
    "use_vmac": _i_use_vmac,
    "no_virtual_ipaddress": _i_no_vips,
    "smtp_alert": _i_smtp,
}


def parse_lines(
    lines: Iterable[Line],
    *,
    files: Sequence[str] = (),
    errors: Sequence[ConfigFileError] = (),
    warnings: Sequence[Diagnostic] = (),
) -> KeepalivedConfig:
    """Parse lexed lines into a :class:`KeepalivedConfig`.

    ``errors`` and ``warnings`` found while lexing are merged with the parser's own; if there
    is any error, one :class:`ConfigFileError` listing all of them is raised.
    """
    parser = _Parser()
    parser.errors.extend(errors)
    parser.warnings.extend(warnings)
    nodes = build_tree(lines, parser.errors)
    parser.parse(nodes)
    groups = parser.finish_groups()
    parser.check_vrids()
    if parser.errors:
        raise ConfigFileError.combine(_in_file_order(parser.errors, files))
    return KeepalivedConfig(
        global_defs=parser.defaults,
        scripts=dict(parser.scripts),
        instances=tuple(parser.instances),
        groups=tuple(groups),
        ignored=tuple(sorted(parser.ignored, key=lambda i: _order(i.location, files))),
        warnings=tuple(sorted(parser.warnings, key=lambda w: _order(w.location, files))),
        files=tuple(files),
    )


def _order(location: Location, files: Sequence[str]) -> tuple[int, str, int]:
    rank = files.index(location.filename) if location.filename in files else len(files)
    return (rank, location.filename, location.line)


def _in_file_order(
    errors: Sequence[ConfigFileError], files: Sequence[str]
) -> list[ConfigFileError]:
    """Errors sorted by the order the files were read, then by line, without repeats."""

    def key(error: ConfigFileError) -> tuple[int, str, int]:
        if error.filename is None:
            return (-1, "", 0)
        return _order(Location(error.filename, error.line or 0), files)

    unique: dict[str, ConfigFileError] = {}
    for error in sorted(errors, key=key):
        unique.setdefault(str(error), error)
    return list(unique.values())
