"""From a keepalived.conf to :class:`vrrpkit.Instance` objects.

:func:`load`/:func:`loads` read a configuration into the pure model; :func:`build_instances`
turns its instances into runtime :class:`~vrrpkit.Instance` objects (building one opens no
socket: transports open when it starts). Sync-group tracking follows keepalived
(``vrrp.c:vrrp_complete_instance`` and ``sync_group_tracking_init``): unless the group sets
``sync_group_tracking_weight``, a member's weighted ``track_script`` entries are removed and
its weighted ``track_interface`` entries become weight 0, because members with differing
priorities would keep re-electing; the group's own trackers apply to every member, with
their weights cleared if a member is an address owner.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import attrs

from vrrpkit.config.errors import ConfigFileError
from vrrpkit.config.lexer import lex_file, lex_string
from vrrpkit.config.model import (
    Diagnostic,
    GroupDef,
    InstanceDef,
    KeepalivedConfig,
    NotifyDef,
    TrackInterface,
    TrackScript,
)
from vrrpkit.config.parser import parse_lines
from vrrpkit.core.config import AUTH_PASS
from vrrpkit.core.errors import ConfigError
from vrrpkit.core.packet import ChecksumMode
from vrrpkit.runtime.instance import Instance
from vrrpkit.runtime.trackers import InterfaceTracker, ScriptTracker, TrackerSpec

__all__ = [
    "Tracking",
    "build_instance",
    "build_instances",
    "effective_tracking",
    "instance_options",
    "load",
    "loads",
]

logger = logging.getLogger(__name__)


def load(path: str | os.PathLike[str], *, config_id: str | None = None) -> KeepalivedConfig:
    """Read the keepalived configuration at ``path`` (with its includes).

    ``config_id`` selects ``@id`` lines (keepalived's ``-i``); without it every ``@id`` line
    is dropped and every ``@^id`` line kept. Raises :class:`ConfigFileError` listing every
    error found.
    """
    result = lex_file(path, config_id=config_id)
    return parse_lines(
        result.lines, files=result.files, errors=result.errors, warnings=result.warnings
    )


def loads(
    text: str, filename: str = "<string>", *, config_id: str | None = None
) -> KeepalivedConfig:
    """Read a keepalived configuration from ``text``; ``filename`` appears in messages.

    Relative includes are resolved against ``filename``'s directory (the current directory
    for a bare name such as the default).
    """
    result = lex_string(text, filename, config_id=config_id)
    return parse_lines(
        result.lines,
        files=(filename, *result.files),
        errors=result.errors,
        warnings=result.warnings,
    )


@attrs.frozen
class Tracking:
    """What one instance tracks once the sync-group rules are applied."""

    scripts: tuple[TrackScript, ...]
    interfaces: tuple[TrackInterface, ...]


def effective_tracking(cfg: KeepalivedConfig) -> tuple[dict[str, Tracking], list[Diagnostic]]:
    """Every instance's trackers after keepalived's sync-group rules, and what changed."""
    tracking = {
        inst.name: Tracking(inst.track_scripts, inst.track_interfaces) for inst in cfg.instances
    }
    notes: list[Diagnostic] = []
    by_name = {inst.name: inst for inst in cfg.instances}
    for group in cfg.groups:
        members = [by_name[m] for m in group.members if m in by_name]
        ctx = f"vrrp_sync_group {group.name}"
        group_scripts = list(group.track_scripts)
        group_ifs = list(group.track_interfaces)
        if any(m.is_owner for m in members):
            for i, tsc in enumerate(group_scripts):
                if tsc.weight:
                    notes.append(
                        Diagnostic(
                            tsc.location,
                            f"{ctx}: weight of track_script {tsc.name} "
                            "cleared: a member has priority 255",
                        )
                    )
                    group_scripts[i] = attrs.evolve(tsc, weight=0)
            for i, tif in enumerate(group_ifs):
                if tif.weight:
                    notes.append(
                        Diagnostic(
                            tif.location,
                            f"{ctx}: weight of track_interface "
                            f"{tif.ifname} cleared: a member has priority 255",
                        )
                    )
                    group_ifs[i] = attrs.evolve(tif, weight=0)
        for member in members:
            own = tracking[member.name]
            scripts = list(own.scripts)
            ifs = list(own.interfaces)
            mctx = f"vrrp_instance {member.name}"
            if not group.tracking_weight:
                for tsc in [t for t in scripts if t.weight]:
                    notes.append(
                        Diagnostic(
                            tsc.location,
                            f"{mctx}: weighted track_script {tsc.name} removed: member of "
                            f"{ctx} without sync_group_tracking_weight",
                        )
                    )
                    scripts.remove(tsc)
                for i, tif in enumerate(ifs):
                    if tif.weight:
                        notes.append(
                            Diagnostic(
                                tif.location,
                                f"{mctx}: track_interface {tif.ifname} weight {tif.weight} "
                                f"set to 0: member of {ctx} without sync_group_tracking_weight",
                            )
                        )
                        ifs[i] = attrs.evolve(tif, weight=0)
            for tsc in group_scripts:
                if any(t.name == tsc.name for t in scripts):
                    notes.append(
                        Diagnostic(
                            tsc.location,
                            f"{ctx}: {member.name} already tracks "
                            f"script {tsc.name}; its own entry is used",
                        )
                    )
                else:
                    scripts.append(tsc)
            for tif in group_ifs:
                if tif.ifname == member.interface:
                    notes.append(
                        Diagnostic(
                            tif.location,
                            f"{ctx}: {member.name} always tracks its own "
                            f"interface {tif.ifname} (weight 0); this entry is not used",
                        )
                    )
                    continue
                if any(t.ifname == tif.ifname for t in ifs):
                    notes.append(
                        Diagnostic(
                            tif.location,
                            f"{ctx}: {member.name} already tracks "
                            f"interface {tif.ifname}; its own entry is used",
                        )
                    )
                else:
                    ifs.append(tif)
            tracking[member.name] = Tracking(tuple(scripts), tuple(ifs))
    return tracking, notes


def instance_options(inst: InstanceDef) -> dict[str, Any]:
    """The :class:`vrrpkit.RouterConfig` options (``**options`` of Instance) of ``inst``."""
    options: dict[str, Any] = {
        "down_timer_adverts": inst.down_timer_adverts,
        "lower_prio_advert": not inst.lower_prio_no_advert,
        "higher_prio_send_advert": inst.higher_prio_send_advert,
        "garp_repeat": inst.garp_master_repeat,
        "garp_delay": inst.garp_master_delay,
        "garp_refresh": inst.garp_master_refresh,
        "garp_refresh_repeat": inst.garp_master_refresh_repeat,
        "garp_lower_prio_repeat": inst.garp_lower_prio_repeat,
        "check_unicast_src": inst.check_unicast_src,
        # keepalived's instances start in one step and so send in step; ours start one
        # after another, so their adverts are put in step explicitly
        # (docs/keepalived-differences.md).
        "align_adverts": True,
    }
    if inst.auth_type == "PASS" and inst.auth_pass:
        options["auth_type"] = AUTH_PASS
        options["auth_data"] = inst.auth_pass
    if inst.v3_checksum_as_v2:
        options["checksum"] = ChecksumMode.AS_V2
    return options


def _trackers(cfg: KeepalivedConfig, tracking: Tracking) -> list[TrackerSpec]:
    specs: list[TrackerSpec] = []
    for tsc in tracking.scripts:
        script = cfg.scripts[tsc.name]
        # ScriptTracker converts argv with tuple(); mypy's attrs plugin then types the
        # parameter with an unsolved type variable, which nothing matches.
        argv: Any = script.argv
        specs.append(
            ScriptTracker(
                tsc.name,
                argv,
                interval=script.interval,
                timeout=script.timeout,
                weight=tsc.weight,
                fall=script.fall,
                rise=script.rise,
                reverse=tsc.reverse,
                init_fail=script.init_fail,
                user=script.user,
                group=script.group,
            )
        )
    for tif in tracking.interfaces:
        specs.append(InterfaceTracker(tif.ifname, weight=tif.weight, reverse=tif.reverse))
    return specs


def build_instance(
    cfg: KeepalivedConfig,
    inst: InstanceDef,
    tracking: Tracking | None = None,
    **transport_kwargs: Any,
) -> Instance:
    """One :class:`~vrrpkit.Instance` for ``inst`` (raises :class:`ConfigFileError`)."""
    ctx = f"vrrp_instance {inst.name}"

    def error(message: str) -> ConfigFileError:
        return ConfigFileError(
            f"{ctx}: {message}", filename=inst.location.filename, line=inst.location.line
        )

    if inst.interface is None:
        raise error("vrrpkit needs an interface")
    if inst.auth_type == "AH":
        # Running without it would be rejected by the peers, and then split the cluster.
        raise error("AH authentication is not supported by vrrpkit")
    if tracking is None:
        tracking = Tracking(inst.track_scripts, inst.track_interfaces)

    def argv(notify: NotifyDef | None) -> tuple[str, ...] | None:
        return None if notify is None else notify.argv

    kwargs: dict[str, Any] = {
        "interface": inst.interface,
        "vrid": inst.vrid,
        "priority": inst.priority,
        "vips": [vip.address for vip in inst.vips],
        "interval": inst.advert_int,
        "version": inst.version,
        "preempt": inst.preempt,
        "preempt_delay": inst.preempt_delay,
        "unicast_peers": inst.unicast_peers,
        "source": inst.source,
        "notify": argv(inst.notify),
        "notify_master": argv(inst.notify_master),
        "notify_backup": argv(inst.notify_backup),
        "notify_fault": argv(inst.notify_fault),
        "notify_stop": argv(inst.notify_stop),
        "script_user": cfg.global_defs.script_user,
        "script_group": cfg.global_defs.script_group,
        **instance_options(inst),
    }
    kwargs.update(transport_kwargs)
    try:
        kwargs.setdefault("trackers", _trackers(cfg, tracking))
        return Instance(inst.name, **kwargs)
    except ConfigError as exc:
        raise error(str(exc)) from exc


def build_instances(
    cfg: KeepalivedConfig, **transport_kwargs: Any
) -> tuple[list[Instance], list[GroupDef]]:
    """Build every instance of ``cfg``; return them with the sync-group definitions.

    ``transport_kwargs`` go to every :class:`~vrrpkit.Instance` (``clock``, ``runner``,
    ``netns``, ``notify_timeout`` ...) and override the values taken from the file.
    Adjustments made by the sync-group rules are logged as warnings. Raises
    :class:`ConfigFileError` listing every instance that cannot be built.
    """
    tracking, notes = effective_tracking(cfg)
    # What keepalived would log at startup: adjusted lines, then lines vrrpkit cannot use.
    for note in (*cfg.warnings, *notes):
        logger.warning("%s", note)
    for ignored in cfg.ignored:
        logger.warning("ignored: %s", ignored)
    instances: list[Instance] = []
    errors: list[ConfigFileError] = []
    for inst in cfg.instances:
        try:
            instances.append(build_instance(cfg, inst, tracking[inst.name], **transport_kwargs))
        except ConfigFileError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigFileError.combine(errors)
    return instances, list(cfg.groups)
