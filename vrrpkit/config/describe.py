"""A readable account of what a keepalived configuration means to vrrpkit (``vrrpkit check``)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from vrrpkit.config.build import Tracking, effective_tracking
from vrrpkit.config.model import (
    GroupDef,
    InstanceDef,
    KeepalivedConfig,
    NotifyDef,
    ScriptDef,
)

__all__ = ["describe"]

_NOTIFIES = ("notify_master", "notify_backup", "notify_fault", "notify_stop")


def _seconds(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return f"{text} s"


def _on(value: bool) -> str:
    return "on" if value else "off"


def _weight(weight: int, reverse: bool, ok: str, failing: str) -> str:
    """What a tracker does to the priority, in keepalived's terms."""
    label = f"weight {weight:+d}" if weight else "weight 0"
    if reverse:
        label += " reverse"
    if weight == 0:
        return f"{label}: FAULT while {ok if reverse else failing}"
    effect = -weight if reverse else weight
    when = ok if weight > 0 else failing
    return f"{label}: {effect:+d} while {when}"


def _command(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def _notify_lines(owner: InstanceDef | GroupDef, kind: str) -> list[str]:
    lines: list[str] = []
    for key in _NOTIFIES:
        notify: NotifyDef | None = getattr(owner, key)
        if notify is not None:
            lines.append(f"  {key}: {_command(notify.argv)}")
    if owner.notify is not None:
        lines.append(
            f"  notify: {_command(owner.notify.argv)} {kind} {owner.name} <STATE> "
            f"<{'priority' if kind == 'INSTANCE' else '0'}>"
        )
    return lines


def _script_line(script: ScriptDef) -> str:
    timeout = _seconds(script.effective_timeout)
    if script.timeout is None:
        timeout += " (= interval)"
    extras = ", init_fail" if script.init_fail else ""
    if script.user is not None:
        extras += f", as user {script.user}"
        if script.group is not None:
            extras += f" group {script.group}"
    return (
        f"{_command(script.argv)}; every {_seconds(script.interval)}, timeout {timeout}, "
        f"rise {script.rise}, fall {script.fall}{extras}"
    )


def _instance(cfg: KeepalivedConfig, inst: InstanceDef, tracking: Tracking) -> list[str]:
    out = [f"vrrp_instance {inst.name}  ({inst.location})"]
    derived_prio = "" if inst.priority_configured else f" (default for state {inst.state})"
    derived_state = "" if inst.state_configured else f" (default for priority {inst.priority})"
    owner = ", address owner" if inst.is_owner else ""
    out.append(
        f"  interface {inst.interface or '-'}, VRID {inst.vrid}, VRRPv{inst.version}, "
        f"IPv{inst.family}, advert_int {_seconds(inst.advert_int)}"
    )
    out.append(
        f"  state {inst.state}{derived_state}, priority {inst.priority}{derived_prio}{owner}"
    )
    preempt = "on" if inst.preempt else "off (nopreempt)"
    out.append(f"  preempt {preempt}, preempt_delay {_seconds(inst.preempt_delay)}")
    if inst.source is not None:
        which = "unicast_src_ip" if inst.unicast_src_ip is not None else "mcast_src_ip"
        out.append(f"  source {inst.source} ({which})")
    if inst.unicast_peers:
        peers = ", ".join(str(p) for p in inst.unicast_peers)
        out.append(f"  unicast peers: {peers}")
    else:
        out.append("  multicast")
    if inst.auth_type is not None:
        size = len(inst.auth_pass or b"")
        out.append(f"  authentication {inst.auth_type} ({size}-byte password)")
    vips = ", ".join(str(v.address) for v in inst.vips) or "none"
    out.append(f"  virtual addresses: {vips}")
    if inst.excluded_vips:
        evips = ", ".join(str(v.address) for v in inst.excluded_vips)
        out.append(f"  excluded addresses (not managed by vrrpkit): {evips}")
    out.append(f"  tracks interface {inst.interface or '-'} (weight 0: FAULT while down)")
    for tsc in tracking.scripts:
        source = "from vrrp_script" if tsc.inherited else "from track_script"
        effect = _weight(tsc.weight, tsc.reverse, "OK", "failing")
        out.append(f"  tracks script {tsc.name}: {effect} ({source})")
        out.append(f"    {_script_line(cfg.scripts[tsc.name])}")
    for tif in tracking.interfaces:
        out.append(
            f"  tracks interface {tif.ifname}: {_weight(tif.weight, tif.reverse, 'up', 'down')}"
        )
    out.extend(_notify_lines(inst, "INSTANCE"))
    lower = "as repeat" if inst.garp_lower_prio_repeat is None else str(inst.garp_lower_prio_repeat)
    refresh = (
        f"every {_seconds(inst.garp_master_refresh)} x{inst.garp_master_refresh_repeat}"
        if inst.garp_master_refresh
        else "off"
    )
    delayed = (
        f"{inst.garp_master_repeat} more after {_seconds(inst.garp_master_delay)}"
        if inst.garp_master_delay
        else "no delayed batch"
    )
    out.append(
        f"  gratuitous ARP/NA: {inst.garp_master_repeat} at once, {delayed}, "
        f"refresh {refresh}, on lower priority {lower}"
    )
    out.append(
        f"  down_timer_adverts {inst.down_timer_adverts}, "
        f"answer lower priority {_on(not inst.lower_prio_no_advert)}, "
        f"higher_prio_send_advert {_on(inst.higher_prio_send_advert)}, "
        f"check_unicast_src {_on(inst.check_unicast_src)}, strict {_on(inst.strict_mode)}"
    )
    if inst.v3_checksum_as_v2:
        out.append("  v3_checksum_as_v2: checksum over the message only")
    return out


def _group(group: GroupDef) -> list[str]:
    out = [f"vrrp_sync_group {group.name}  ({group.location})"]
    out.append(f"  members: {', '.join(group.members)}")
    weights = "kept (sync_group_tracking_weight)" if group.tracking_weight else "removed"
    out.append(f"  weighted member trackers: {weights}")
    for tsc in group.track_scripts:
        out.append(
            f"  every member tracks script {tsc.name}: "
            f"{_weight(tsc.weight, tsc.reverse, 'OK', 'failing')}"
        )
    for tif in group.track_interfaces:
        out.append(
            f"  every member tracks interface {tif.ifname}: "
            f"{_weight(tif.weight, tif.reverse, 'up', 'down')}"
        )
    out.extend(_notify_lines(group, "GROUP"))
    return out


def describe(cfg: KeepalivedConfig) -> str:
    """The effective configuration, as vrrpkit will run it, with what it ignores and why.

    Every instance is shown with its resolved defaults (marked when derived), its trackers
    with their effective weights after keepalived's sync-group rules, its notify commands as
    argv, then the sync groups, the warnings and the ignored lines with their reasons.
    """
    tracking, notes = effective_tracking(cfg)
    g = cfg.global_defs
    out: list[str] = []
    files = f" (read {', '.join(cfg.files)})" if cfg.files else ""
    out.append(
        f"keepalived configuration: {len(cfg.instances)} instance(s), "
        f"{len(cfg.groups)} sync group(s), {len(cfg.scripts)} script(s){files}"
    )
    out.append(
        f"global_defs: router_id {g.router_id or '-'}, vrrp_version {g.vrrp_version}, "
        f"vrrp_strict {_on(g.vrrp_strict)}"
    )
    for inst in cfg.instances:
        out.append("")
        out.extend(_instance(cfg, inst, tracking[inst.name]))
    for group in cfg.groups:
        out.append("")
        out.extend(_group(group))
    warnings = [*cfg.warnings, *notes]
    if warnings:
        out.append("")
        out.append(f"warnings ({len(warnings)}):")
        out.extend(f"  {w}" for w in warnings)
    if cfg.ignored:
        out.append("")
        out.append(f"ignored ({len(cfg.ignored)}):")
        out.extend(f"  {i}" for i in cfg.ignored)
    return "\n".join(out) + "\n"
