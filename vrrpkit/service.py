"""The daemon behind ``vrrpkit run``: a keepalived.conf's VRRP part, run and reloaded live.

It builds every instance and sync group of the configuration, runs them on one
:class:`~vrrpkit.runtime.hub.TransportHub` (one socket per interface and family, as
keepalived), writes keepalived's notify FIFO lines, answers ``status`` on the control socket,
and on SIGHUP reloads the file: instances whose definition did not change keep running (and
keep their mastership); changed ones restart; removed ones stop gracefully; new ones start.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from typing import Any

import anyio
import anyio.abc
import attrs

from vrrpkit.config import GroupDef, KeepalivedConfig, build_instances, load
from vrrpkit.control import DEFAULT_CONTROL_PATH, ControlServer
from vrrpkit.core.actions import GroupStateChanged, SplitBrain, StateChanged
from vrrpkit.core.errors import ConfigError
from vrrpkit.runtime.fifo import NotifyFifo
from vrrpkit.runtime.group import Group
from vrrpkit.runtime.hub import TransportHub
from vrrpkit.runtime.instance import Instance
from vrrpkit.runtime.notify import state_word

__all__ = ["Daemon"]

logger = logging.getLogger("vrrpkit.daemon")


def _signature(definition: Any) -> Any:
    """A definition without its file locations: moving a block in the file changes nothing."""
    return attrs.asdict(definition, filter=lambda a, _v: a.name != "location")


@attrs.frozen
class _Plan:
    """A configuration to apply: the running units it stops, the built ones it starts."""

    config: KeepalivedConfig
    to_stop: list[str]
    to_start: list[tuple[str, _Unit]]


class _Started:
    """The task status a unit's ``run`` reports its start to: sets ``event``."""

    def __init__(self, event: anyio.Event) -> None:
        self._event = event

    def started(self, value: object = None) -> None:
        self._event.set()


def _sole_error(exc: BaseException) -> BaseException:
    """The one exception inside an exception group (groups nested in it opened), else
    ``exc`` itself. Read by its ``exceptions``: Python 3.10 has no ExceptionGroup."""
    leaves: list[BaseException] = []
    pending = [exc]
    while pending:
        item = pending.pop()
        inner = getattr(item, "exceptions", None)
        if isinstance(inner, tuple):
            pending.extend(inner)
        else:
            leaves.append(item)
    return leaves[0] if len(leaves) == 1 else exc


@attrs.define
class _Unit:
    """One thing the daemon runs: a standalone instance, or a sync group with its members."""

    name: str
    runner: Instance | Group
    signature: Any
    instances: tuple[Instance, ...]
    done: anyio.Event = attrs.field(factory=anyio.Event)


class Daemon:
    """Runs the VRRP part of a keepalived.conf until SIGTERM/SIGINT; SIGHUP reloads it.

    ``instance_options`` go to every :class:`~vrrpkit.Instance` (for example ``netns`` in
    tests). An invalid configuration raises :class:`vrrpkit.config.ConfigFileError` before
    anything starts; an invalid one at reload is logged and the running one kept.
    ``freeze_gc=True`` (what ``vrrpkit run`` passes, as the process is its own) calls
    ``gc.freeze()`` once everything has started (once: see ``_freeze_gc``).
    """

    def __init__(
        self,
        config_path: str,
        *,
        control_path: str | None = DEFAULT_CONTROL_PATH,
        config_id: str | None = None,
        freeze_gc: bool = False,
        **instance_options: Any,
    ) -> None:
        self.config_path = config_path
        self.control_path = control_path
        self.config_id = config_id
        #: Whether to ``gc.freeze()`` what start-up made (the process is ours).
        self.freeze_gc = freeze_gc
        self._options = instance_options
        self._units: dict[str, _Unit] = {}
        self._fifos: list[NotifyFifo] = []
        self._config: KeepalivedConfig | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._hub: TransportHub | None = None
        self._stop = anyio.Event()
        #: Completed reloads.
        self.reloads = 0

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Live state of every instance and group, JSON-ready (what ``vrrpkit status`` shows)."""
        instances = [inst.status() for unit in self._units.values() for inst in unit.instances]
        groups = [
            {
                **{k: v for k, v in u.runner.status().items() if k != "members"},
                "members": [i.name for i in u.instances],
            }
            for u in self._units.values()
            if isinstance(u.runner, Group)
        ]
        return {
            "pid": os.getpid(),
            "config": os.path.abspath(self.config_path),
            "reloads": self.reloads,
            "instances": sorted(instances, key=lambda s: str(s["name"])),
            "groups": groups,
            "notify_fifos": [
                {"path": f.path, "written": f.written, "dropped": f.dropped} for f in self._fifos
            ],
        }

    def stop(self) -> None:
        """Stop every instance gracefully and return from :meth:`run`."""
        self._stop.set()

    # -- running -------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Load, start everything, serve the control socket, handle signals until stopped."""
        config = load(self.config_path, config_id=self.config_id)
        # Built once before anything starts: what only building finds (an authentication
        # type vrrpkit lacks, say) refuses the file as itself, as `vrrpkit check` does.
        build_instances(config, **self._options)
        self._stop = anyio.Event()
        try:
            await self._serve(config, task_status)
        except Exception as exc:
            # One failure (the control socket's directory cannot be made, say) raises as
            # itself, not wrapped in the exception groups of the task groups it crossed.
            sole = _sole_error(exc)
            if sole is exc:
                raise
            raise sole from None

    async def _serve(
        self, config: KeepalivedConfig, task_status: anyio.abc.TaskStatus[Daemon]
    ) -> None:
        async with TransportHub() as hub, anyio.create_task_group() as tg:
            self._hub, self._tg = hub, tg
            self._open_fifos(config)
            await self._apply(self._plan(config))
            if self.control_path:
                server = ControlServer(self.control_path, {"status": self.status})
                await tg.start(server.serve)
            tg.start_soon(self._signals)
            logger.info(
                "vrrpkit running %d instance(s) from %s",
                sum(len(u.instances) for u in self._units.values()),
                self.config_path,
            )
            self._freeze_gc()
            task_status.started(self)
            await self._stop.wait()
            with anyio.CancelScope(shield=True):
                for name in list(self._units):
                    await self._stop_unit(name)
            tg.cancel_scope.cancel()

    async def reload(self) -> bool:
        """Re-read the configuration and apply the differences; False if it is invalid."""
        try:
            config = load(self.config_path, config_id=self.config_id)
            plan = self._plan(config)
        except ConfigError as exc:
            logger.error("reload refused, keeping the running configuration: %s", exc)
            return False
        self._open_fifos(config)
        await self._apply(plan)
        self.reloads += 1
        logger.info("configuration reloaded from %s", self.config_path)
        return True

    def _freeze_gc(self) -> None:
        if self.freeze_gc:
            # What start-up made (modules, configuration, instances) lives as long as the
            # process. Frozen, it is left out of every later collection: a full collection
            # otherwise scans it all, a pause of 17-64 ms measured with 20-255 instances
            # (docs/instance.md), longer than a Master_Down_Interval at 0.01 s adverts.
            # Only once: the cycle collector never frees a frozen object, so reference cycles
            # that a reload replaces would stay for good if reloads froze too; this way at
            # most those of the start-up units do. Collected first: start-up leaves garbage
            # cycles too (parsed netlink replies), which frozen would never be freed.
            gc.collect()
            gc.freeze()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    logger.info("SIGHUP: reloading")
                    await self.reload()
                else:
                    logger.info("%s: stopping", signal.Signals(signum).name)
                    self.stop()
                    return

    # -- applying a configuration ----------------------------------------------------------

    def _units_of(self, config: KeepalivedConfig) -> dict[str, tuple[Any, GroupDef | None]]:
        grouped = {m: g for g in config.groups for m in g.members}
        wanted: dict[str, tuple[Any, GroupDef | None]] = {}
        for group in config.groups:
            members = [d for d in config.instances if d.name in group.members]
            # The group's own track_script entries too: a script only the group tracks runs
            # in its members' trackers all the same.
            tracked = [*group.track_scripts, *(t for d in members for t in d.track_scripts)]
            group_scripts = sorted({t.name for t in tracked})
            signature: Any = (
                _signature(group),
                [_signature(d) for d in members],
                [_signature(config.scripts[s]) for s in group_scripts if s in config.scripts],
                _signature(config.global_defs),
            )
            wanted[f"group:{group.name}"] = (signature, group)
        for definition in config.instances:
            if definition.name in grouped:
                continue
            scripts = sorted(t.name for t in definition.track_scripts)
            signature = (
                _signature(definition),
                [_signature(config.scripts[s]) for s in scripts if s in config.scripts],
                _signature(config.global_defs),
            )
            wanted[f"instance:{definition.name}"] = (signature, None)
        return wanted

    def _plan(self, config: KeepalivedConfig) -> _Plan:
        """What applying ``config`` stops and starts, its units built: a ConfigError raises
        here, before anything running is touched."""
        wanted = self._units_of(config)
        changed = [
            k for k, u in self._units.items() if k not in wanted or wanted[k][0] != u.signature
        ]
        to_start = [k for k in wanted if k not in self._units or k in changed]
        units: list[tuple[str, _Unit]] = []
        if to_start:
            options: dict[str, Any] = {"hub": self._hub, **self._options}
            instances, _groups = build_instances(config, **options)
            by_name = {inst.name: inst for inst in instances}
            for key in to_start:
                signature, group = wanted[key]
                if group is None:
                    inst = by_name[key.split(":", 1)[1]]
                    units.append((key, _Unit(inst.name, inst, signature, (inst,))))
                else:
                    members = tuple(by_name[m] for m in group.members if m in by_name)
                    runner = Group(group.name, members, **_group_notify(group))
                    units.append((key, _Unit(group.name, runner, signature, members)))
        return _Plan(config, changed, units)

    async def _apply(self, plan: _Plan) -> None:
        for key in plan.to_stop:
            await self._stop_unit(key)
        for key, unit in plan.to_start:
            for inst in unit.instances:
                self._attach_fifo(inst)
            if isinstance(unit.runner, Group):
                self._attach_group_fifo(unit.runner)
            await self._start_unit(unit, key)
        self._config = plan.config

    async def _start_unit(self, unit: _Unit, key: str) -> None:
        """Start ``unit`` and wait until it runs, or has failed: a unit that cannot start
        (its interface is missing, say) is logged and left out, for a reload to try again;
        the others run on."""
        assert self._tg is not None
        self._units[key] = unit
        settled = anyio.Event()

        async def run() -> None:
            try:
                await unit.runner.run(task_status=_Started(settled))
            except Exception:
                logger.exception("%s stopped with an error", unit.name)
                if self._units.get(key) is unit:
                    del self._units[key]  # not running: a reload starts it again
            finally:
                unit.done.set()
                settled.set()

        self._tg.start_soon(run)
        await settled.wait()

    async def _stop_unit(self, key: str) -> None:
        unit = self._units.pop(key, None)
        if unit is None:
            return
        unit.runner.stop()
        await unit.done.wait()

    # -- notify FIFO -------------------------------------------------------------------------

    def _open_fifos(self, config: KeepalivedConfig) -> None:
        paths = {
            p for p in (config.global_defs.notify_fifo, config.global_defs.vrrp_notify_fifo) if p
        }
        if {f.path for f in self._fifos} == paths:
            return
        fifos = []
        for path in sorted(paths):
            try:
                fifos.append(NotifyFifo(path))
            except OSError as exc:
                logger.error("cannot create notify fifo %s: %s", path, exc)
        self._fifos = fifos

    def _attach_fifo(self, inst: Instance) -> None:
        def write(change: StateChanged) -> None:
            word = state_word(change.new)
            if word is not None:
                for fifo in self._fifos:
                    fifo.write("INSTANCE", change.instance, word, change.priority)

        inst.on_transition(write)

        def lower_priority_heard(report: SplitBrain) -> None:
            # keepalived's FIFO event for a master hearing a lower priority (vrrp.c).
            if not report.yielded:
                for fifo in self._fifos:
                    fifo.write(
                        "INSTANCE", report.instance, "MASTER_RX_LOWER_PRI", report.our_priority
                    )

        inst.on_split_brain(lower_priority_heard)

    def _attach_group_fifo(self, group: Group) -> None:
        def write(change: GroupStateChanged) -> None:
            word = state_word(change.new)
            if word is not None:
                for fifo in self._fifos:
                    fifo.write("GROUP", change.group, word, 0)

        group.on_transition(write)


def _group_notify(group: GroupDef) -> dict[str, Any]:
    def argv(notify: Any) -> tuple[str, ...] | None:
        return None if notify is None else tuple(notify.argv)

    return {
        "notify": argv(group.notify),
        "notify_master": argv(group.notify_master),
        "notify_backup": argv(group.notify_backup),
        "notify_fault": argv(group.notify_fault),
        "notify_stop": argv(group.notify_stop),
    }
