"""The pure model of the VRRP part of a keepalived.conf, with keepalived's defaults applied.

Every value here is already resolved the way keepalived resolves it (``vrrp_parser.c`` and
``vrrp_complete_instance``): an instance's priority, state, version, advert interval and
preemption are the effective ones, not just what the file says. Nothing here does I/O.
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface

import attrs

from vrrpkit.core.addresses import Address

__all__ = [
    "Diagnostic",
    "GlobalDefs",
    "GroupDef",
    "Ignored",
    "InstanceDef",
    "KeepalivedConfig",
    "Location",
    "NotifyDef",
    "ScriptDef",
    "TrackInterface",
    "TrackScript",
    "VipDef",
]


@attrs.frozen(order=True)
class Location:
    """Where something was written: a file name and a 1-based line number."""

    filename: str
    line: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}"


@attrs.frozen
class Diagnostic:
    """A warning: the line was used, but adjusted as keepalived adjusts it, or only partly."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@attrs.frozen
class Ignored:
    """A line that has no effect in vrrpkit: unknown, unsupported, or outside VRRP.

    ``context`` names the enclosing block (``"vrrp_instance VI_1"``), empty at top level.
    """

    location: Location
    keyword: str
    reason: str
    context: str = ""

    def __str__(self) -> str:
        where = f" (in {self.context})" if self.context else ""
        return f"{self.location}: {self.keyword}{where}: {self.reason}"


@attrs.frozen(kw_only=True)
class GlobalDefs:
    """The VRRP-relevant part of ``global_defs``; instance settings default to these."""

    router_id: str | None = None
    vrrp_version: int = 2
    vrrp_strict: bool = False
    garp_master_repeat: int = 5
    garp_master_delay: float = 5.0
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    #: None: the master repeat (keepalived's unset value).
    garp_lower_prio_repeat: int | None = None
    garp_lower_prio_delay: float | None = None
    down_timer_adverts: int = 3
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    check_unicast_src: bool = False
    v3_checksum_as_v2: bool = False
    script_user: str | None = None
    script_group: str | None = None
    enable_script_security: bool = False
    notify_fifo: str | None = None
    vrrp_notify_fifo: str | None = None


@attrs.frozen(kw_only=True)
class ScriptDef:
    """A ``vrrp_script``: a program run every ``interval`` seconds, exit status 0 is OK."""

    name: str
    argv: tuple[str, ...]
    location: Location
    interval: float = 1.0
    #: None: the interval (keepalived's unset ``timeout``).
    timeout: float | None = None
    weight: int = 0
    reverse: bool = False
    rise: int = 1
    fall: int = 1
    init_fail: bool = False
    user: str | None = None
    group: str | None = None

    @property
    def effective_timeout(self) -> float:
        """The time a run may take before it counts as a failure."""
        return self.interval if self.timeout is None else self.timeout


@attrs.frozen(kw_only=True)
class TrackScript:
    """One ``track_script`` entry with its effective weight (its own, or the script's)."""

    name: str
    weight: int
    reverse: bool
    location: Location
    #: Whether the weight came from the ``vrrp_script`` rather than this entry.
    inherited: bool = True


@attrs.frozen(kw_only=True)
class TrackInterface:
    """One ``track_interface`` entry: weight 0 means FAULT while the link is down."""

    ifname: str
    weight: int
    reverse: bool
    location: Location


@attrs.frozen(kw_only=True)
class NotifyDef:
    """A notify program, split into argv as keepalived splits it (no shell)."""

    argv: tuple[str, ...]
    location: Location
    user: str | None = None
    group: str | None = None


@attrs.frozen(kw_only=True)
class VipDef:
    """One ``virtual_ipaddress`` line: the address with its prefix and its options."""

    address: IPv4Interface | IPv6Interface
    location: Location
    dev: str | None = None
    label: str | None = None
    scope: str | None = None
    #: Any other options, verbatim (``brd``, ``no_track``, ``preferred_lft`` ...).
    options: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class InstanceDef:
    """A ``vrrp_instance`` with keepalived's defaults and corrections applied."""

    name: str
    location: Location
    interface: str | None
    vrid: int
    priority: int
    state: str
    #: Whether ``priority`` / ``state`` were written, or derived from each other.
    priority_configured: bool
    state_configured: bool
    version: int
    advert_int: float
    preempt: bool = True
    preempt_delay: float = 0.0
    vips: tuple[VipDef, ...] = ()
    excluded_vips: tuple[VipDef, ...] = ()
    unicast_src_ip: Address | None = None
    mcast_src_ip: Address | None = None
    unicast_peers: tuple[Address, ...] = ()
    #: ``"PASS"`` or ``"AH"`` (v2 only), None without authentication.
    auth_type: str | None = None
    #: The password as keepalived keeps it: at most 8 bytes.
    auth_pass: bytes | None = None
    track_scripts: tuple[TrackScript, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    notify: NotifyDef | None = None
    notify_master: NotifyDef | None = None
    notify_backup: NotifyDef | None = None
    notify_fault: NotifyDef | None = None
    notify_stop: NotifyDef | None = None
    garp_master_repeat: int = 5
    garp_master_delay: float = 5.0
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_repeat: int | None = None
    down_timer_adverts: int = 3
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    check_unicast_src: bool = False
    v3_checksum_as_v2: bool = False
    strict_mode: bool = False
    dont_track_primary: bool = False
    #: None: not written (keepalived then accepts, except non-owners in strict mode).
    accept: bool | None = None
    use_vmac: bool = False

    @property
    def is_owner(self) -> bool:
        """Whether the instance owns the addresses (priority 255)."""
        return self.priority == 255

    @property
    def source(self) -> Address | None:
        """The configured source address (``unicast_src_ip`` or ``mcast_src_ip``), if any."""
        return self.unicast_src_ip if self.unicast_src_ip is not None else self.mcast_src_ip

    @property
    def family(self) -> int:
        """4 or 6, from the first address keepalived would look at (IPv4 if none)."""
        for address in (
            *(v.address.ip for v in self.vips),
            *self.unicast_peers,
            self.unicast_src_ip,
            self.mcast_src_ip,
        ):
            if address is not None:
                return address.version
        return 4


@attrs.frozen(kw_only=True)
class GroupDef:
    """A ``vrrp_sync_group``: instances that are MASTER together or not at all."""

    name: str
    location: Location
    members: tuple[str, ...]
    notify: NotifyDef | None = None
    notify_master: NotifyDef | None = None
    notify_backup: NotifyDef | None = None
    notify_fault: NotifyDef | None = None
    notify_stop: NotifyDef | None = None
    track_scripts: tuple[TrackScript, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    #: keepalived's ``sync_group_tracking_weight``: members keep their weighted trackers.
    tracking_weight: bool = False


@attrs.frozen(kw_only=True)
class KeepalivedConfig:
    """The VRRP configuration of one keepalived.conf (with its includes)."""

    global_defs: GlobalDefs = attrs.field(factory=GlobalDefs)
    scripts: dict[str, ScriptDef] = attrs.field(factory=dict)
    instances: tuple[InstanceDef, ...] = ()
    groups: tuple[GroupDef, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    warnings: tuple[Diagnostic, ...] = ()
    #: The files read, the main file first.
    files: tuple[str, ...] = ()

    def instance(self, name: str) -> InstanceDef:
        """The instance called ``name`` (KeyError if there is none)."""
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def group_of(self, name: str) -> GroupDef | None:
        """The sync group that instance ``name`` belongs to, if any."""
        for group in self.groups:
            if name in group.members:
                return group
        return None
