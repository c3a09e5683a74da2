"""Group: keepalived's vrrp_sync_group at runtime, over several :class:`Instance` objects.

An input to one member and the transitions it forces on the others happen in one synchronous
step; each forced action is performed by the member it belongs to (its own socket and
interface). Group state changes go to the group's callbacks and to keepalived's
GROUP notify programs once every member has performed what it queued before the change.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
import attrs

from vrrpkit.core.actions import Action, GroupStateChanged
from vrrpkit.core.errors import ConfigError, VrrpError
from vrrpkit.core.group import SyncGroup
from vrrpkit.core.states import State
from vrrpkit.runtime.callbacks import CallbackRegistry, StateCallbacks, timeout_seconds
from vrrpkit.runtime.hosting import Hosted
from vrrpkit.runtime.instance import Instance, _ForGroup
from vrrpkit.runtime.notify import NotifyScripts

__all__ = ["Group"]

logger = logging.getLogger("vrrpkit.group")


@attrs.define
class _Pending:
    """A group state change waiting for the members to perform what came before it."""

    change: GroupStateChanged
    waiting: int = 0
    #: Set once the change is delivered (or abandoned): members' later changes wait for it.
    done: anyio.Event = attrs.field(factory=anyio.Event)


class Group(StateCallbacks, Hosted):
    """Instances that are MASTER together or not at all.

    ``async with Group(...)`` (or ``await group.run()``) runs every member; stopping the group
    (even before ``run`` has started) stops them all together, as keepalived's shutdown does:
    every member goes to STOPPED, none to FAULT, then the group does. One member stopped on
    its own counts as faulty for the others. Callbacks receive
    :class:`vrrpkit.GroupStateChanged`.

    GROUP notify programs run with the members' script credentials (their ``script_user``
    and ``script_group``, keepalived's global ``script_user``), so every member must have the
    same; a failed one is logged and counted in ``status()["notify_failures"]``.
    """

    def __init__(
        self,
        name: str,
        members: Sequence[Instance],
        *,
        notify: Sequence[str] | None = None,
        notify_master: Sequence[str] | None = None,
        notify_backup: Sequence[str] | None = None,
        notify_fault: Sequence[str] | None = None,
        notify_stop: Sequence[str] | None = None,
        notify_timeout: float = 10.0,
        callback_timeout: float | None = 10.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        notify_timeout = timeout_seconds("notify_timeout", notify_timeout)
        self._shutdown_timeout = timeout_seconds("shutdown_timeout", shutdown_timeout)
        callbacks = CallbackRegistry(timeout=callback_timeout, owner=name)
        self.members = tuple(members)
        if not self.members:
            raise ConfigError(f"group {name!r} needs at least one member")
        credentials = {m._script_credentials for m in self.members}
        if len(credentials) > 1:
            raise ConfigError(
                f"group {name!r}: members run scripts as different users "
                "(GROUP notifies need one script_user and script_group)"
            )
        self._notify = NotifyScripts(
            notify=notify,
            master=notify_master,
            backup=notify_backup,
            fault=notify_fault,
            stop=notify_stop,
        )
        for member in self.members:
            if member._in_group:
                raise ConfigError(f"instance {member.name!r} is already in a group")
        if self._notify and any(m._given_fakes and m._runner is None for m in self.members):
            raise ConfigError(
                f"group {name!r} has notify programs and members given fakes but no runner: "
                "the real one would run them; give the members a FakeRunner"
            )
        self.name = name
        self._by_name = {m.name: m for m in self.members}
        self._notify_timeout = notify_timeout
        self._script_user, self._script_group = credentials.pop()
        self._notify_failures = 0
        self._callbacks = callbacks
        self._in_hook = False
        self._stop = anyio.Event()
        self._pending: list[_Pending] = []
        self._wakeup: anyio.Event | None = None
        self._running = False
        self._stopping = False
        self._started: set[Instance] = set()  # the members this run started
        self._starting: Instance | None = None
        self._ran = False  # a run has ended (a stop() then is for that run: nothing to do)
        self._members_scope: anyio.CancelScope | None = None
        self._notifier_scope: anyio.CancelScope | None = None
        self._current: _Pending | None = None  # the change being delivered
        # The delivery in progress (shielded, so that a stop lets it finish): cancelled only
        # when stopping outlasts shutdown_timeout.
        self._delivering: anyio.CancelScope | None = None
        self._abandoned = False
        #: Group state changes so far, in order.
        self.transitions: list[GroupStateChanged] = []
        # Bound last, once nothing can be refused: a refusal leaves every member free.
        self._sync = SyncGroup(name, [m.router for m in self.members])
        for member in self.members:
            member._join_group(self._after_member_actions)

    @property
    def state(self) -> State:
        """The group's state."""
        return self._sync.state

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot of the group and its members."""
        return {
            "name": self.name,
            "state": self.state.value,
            "members": [m.status() for m in self.members],
            "callback_errors": self._callbacks.errors,
            "callback_timeouts": self._callbacks.timeouts,
            "notify_failures": self._notify_failures,
        }

    def stop(self) -> None:
        """Ask the group (every member) to stop gracefully.

        Asked before the first ``run`` has started, the request waits for it: ``run`` stops
        the members as soon as they have started. Asked after a run has ended, it does
        nothing (it was for that run).
        """
        if not self._running and self._ran:
            return
        self._stop.set()

    def _stop_members(self) -> None:
        self._sync.begin_stop()
        self._stopping = True  # members not started yet are not started (_run_members)
        # Only those this run started (or is starting): a stop() asked of another would wait
        # for its next run, in this group or alone.
        for member in self.members:
            if member in self._started or member is self._starting:
                member.stop()

    def _after_member_actions(self, member: Instance, actions: list[Action]) -> None:
        # Runs right after a member performed its own actions, in the same step: perform what
        # the group forced on the other members, each through its own transports.
        if self._in_hook:
            return
        self._in_hook = True
        try:
            while True:
                forced = self._sync.take_actions()
                if not forced:
                    break
                for action in forced:
                    if isinstance(action, GroupStateChanged):
                        self.transitions.append(action)
                        logger.info(
                            "group %s: %s -> %s (%s)",
                            action.group,
                            action.old,
                            action.new,
                            action.reason,
                        )
                        self._queue(action)
                    else:
                        self._by_name[action.instance]._perform_forced([action])
        finally:
            self._in_hook = False
        for other in self.members:
            other._group_step_done()

    def _queue(self, change: GroupStateChanged) -> None:
        """Hold ``change`` until every running member has performed what it queued before it.

        keepalived runs group notifies after the members' addresses and notifies; the change
        usually involves all members, not only the one whose input caused it.
        """
        if not self._running:
            return  # no run to deliver it (a member run on its own): its transitions only
        entry = _Pending(change)
        self._pending.append(entry)
        for member in self.members:
            marker = _ForGroup(self._passing_once(entry), functools.partial(self._delivered, entry))
            if member._after_own_effects(marker):
                entry.waiting += 1
        self._wake()

    def _passing_once(self, entry: _Pending) -> Callable[[], None]:
        """One member's pass of ``entry``: counted once however often it is called (an
        abandoned shutdown releases every marker it drops, passed or not)."""
        passed = False

        def passing() -> None:
            nonlocal passed
            if not passed:
                passed = True
                entry.waiting -= 1
                self._wake()

        return passing

    async def _delivered(self, entry: _Pending) -> None:
        if not self._running:
            # Nobody delivers group changes while the group does not run (a member run on
            # its own): nothing to wait for.
            await anyio.lowlevel.checkpoint()
            return
        await entry.done.wait()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _notifier(self) -> None:
        while True:
            if not self._pending or self._pending[0].waiting > 0:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            entry = self._pending.pop(0)
            with anyio.CancelScope(shield=True) as scope:
                self._delivering = scope
                self._current = entry
                try:
                    await self._deliver(entry.change)
                finally:
                    self._delivering = self._current = None
                    entry.done.set()

    async def _deliver(self, change: GroupStateChanged) -> None:
        await anyio.lowlevel.checkpoint()
        self._callbacks.clock = self.members[0]._clock  # the members' clock, once they run
        await self._callbacks.deliver(change, change.new)
        runner = self.members[0]._script_runner
        if not self._notify or runner is None:
            return
        for argv in self._notify.commands("GROUP", self.name, change.new, 0):
            result = await runner.run(
                argv,
                timeout=self._notify_timeout,
                user=self._script_user,
                group=self._script_group,
            )
            if not result.ok:
                self._notify_failures += 1
                logger.warning(
                    "group %s: notify %s failed: %s",
                    self.name,
                    argv[0],
                    result.error
                    or f"exit {result.returncode}" + (" (timed out)" if result.timed_out else ""),
                )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Group] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every member until :meth:`stop` or cancellation; then stop them all together.

        Stopping waits for the members' own shutdowns and the group callbacks and notifies
        under way, for ``shutdown_timeout`` at most: then what is left is abandoned.
        """
        if self._running:
            raise VrrpError(f"group {self.name!r} is already running")
        self._running = True
        self._abandoned = False
        self._sync.begin_run()
        self._stopping = False
        self._started = set()
        self._starting = None
        # Changes queued while the group did not run (a member run alone) are not this run's.
        for entry in self._pending:
            entry.done.set()
        self._pending = []
        members_started, members_done = anyio.Event(), anyio.Event()
        notifier_done = anyio.Event()
        # Shielded like the members: they wait for its deliveries while they stop, so it
        # ends after them (or when their stopping is abandoned), not with a cancellation.
        notifier = self._notifier_scope = anyio.CancelScope(shield=True)
        self._members_scope = members_scope = anyio.CancelScope(shield=True)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._notify_until, notifier, notifier_done)
                tg.start_soon(self._run_members, members_scope, members_started, members_done)
                try:
                    await members_started.wait()
                    task_status.started(self)
                    await self._stop.wait()
                finally:
                    # Cancelled while members were still starting too: they stop together,
                    # as they do on stop(), none of them counting as faulty for the others.
                    self._stop_members()
                    with anyio.CancelScope(shield=True):
                        await self._stopped_in_time(members_done, notifier, notifier_done)
        finally:
            self._running = False
            self._ran = True
            self._stop = anyio.Event()  # a stop() from now on is for the next run
            pending, self._pending = self._pending, []
            if not self._abandoned:
                with anyio.CancelScope(shield=True):
                    # What the notifier had no time for, including changes whose members were
                    # abandoned before performing everything (a shutdown that timed out).
                    with anyio.move_on_after(self._shutdown_timeout) as deadline:
                        for entry in pending:
                            await self._deliver(entry.change)
                            entry.done.set()
                    if deadline.cancelled_caught:
                        self._abandon()
            for entry in pending:
                entry.done.set()  # whatever was abandoned: no member waits for it

    async def _stopped_in_time(
        self, members_done: anyio.Event, notifier: anyio.CancelScope, notifier_done: anyio.Event
    ) -> None:
        """Wait for the members to stop, then for the notifier to end; or abandon them."""
        with anyio.move_on_after(self._shutdown_timeout) as deadline:
            await members_done.wait()
            # The notifier lives as long as the run, not as the members' first runs: a
            # member stopped on its own may be run again, and its group changes delivered.
            notifier.cancel()
            await notifier_done.wait()
        if deadline.cancelled_caught:
            self._abandon()

    def _abandon(self) -> None:
        self._abandoned = True
        for entry in (*self._pending, *([self._current] if self._current else [])):
            entry.done.set()  # members' callbacks go on without what is abandoned
        if self._notifier_scope is not None:
            self._notifier_scope.cancel()
        logger.error(
            "group %s: stopping took over %s s; abandoning its callbacks and notifies",
            self.name,
            self._shutdown_timeout,
        )
        if self._delivering is not None:
            self._delivering.cancel()
        if self._members_scope is not None:
            self._members_scope.cancel()  # a member that never finished starting or stopping

    async def _notify_until(self, scope: anyio.CancelScope, finished: anyio.Event) -> None:
        try:
            with scope:
                await self._notifier()
        finally:
            finished.set()

    async def _run_members(
        self, scope: anyio.CancelScope, started: anyio.Event, done: anyio.Event
    ) -> None:
        try:
            # Shielded from the start: members stop only together (_stop_members), since
            # cancelled one by one each would count as faulty for those still running. Only
            # an abandoned shutdown cancels this scope.
            with scope:
                async with anyio.create_task_group() as members:
                    for member in self.members:
                        if self._stopping:
                            break
                        self._starting = member
                        try:
                            await members.start(member.run)
                        except Exception:
                            self._starting = None  # not ours to stop (running already, say)
                            raise
                        self._starting = None
                        self._started.add(member)
                    started.set()
        finally:
            done.set()
