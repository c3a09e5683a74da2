"""Group: keepalived's vrrp_sync_group at runtime, over several :class:`Instance` objects.

An input to one member and the transitions it forces on the others happen in one synchronous
step; each forced action is performed by the member it belongs to (its own socket and
interface). Group state changes go to the group's callbacks and to keepalived's
GROUP notify programs after the members' own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import anyio
import anyio.abc

from vrrpkit.core.actions import Action, GroupStateChanged
from vrrpkit.core.errors import ConfigError
from vrrpkit.core.group import SyncGroup
from vrrpkit.core.states import State
from vrrpkit.runtime.callbacks import CallbackRegistry, StateCallbacks
from vrrpkit.runtime.hosting import Hosted
from vrrpkit.runtime.instance import Instance, _ForGroup
from vrrpkit.runtime.notify import NotifyScripts

__all__ = ["Group"]

logger = logging.getLogger("vrrpkit.group")


class Group(StateCallbacks, Hosted):
    """Instances that are MASTER together or not at all.

    ``async with Group(...)`` (or ``await group.run()``) runs every member; stopping the group
    stops them all. Callbacks receive :class:`vrrpkit.GroupStateChanged`.
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
    ) -> None:
        self.members = tuple(members)
        if not self.members:
            raise ConfigError(f"group {name!r} needs at least one member")
        self.name = name
        self._sync = SyncGroup(name, [m.router for m in self.members])
        self._by_name = {m.name: m for m in self.members}
        for member in self.members:
            if member._group_hook is not None:
                raise ConfigError(f"instance {member.name!r} is already in a group")
            member._group_hook = self._after_member_actions
        self._notify = NotifyScripts(
            notify=notify,
            master=notify_master,
            backup=notify_backup,
            fault=notify_fault,
            stop=notify_stop,
        )
        self._notify_timeout = notify_timeout
        self._callbacks = CallbackRegistry(timeout=callback_timeout, owner=name)
        self._in_hook = False
        self._stop = anyio.Event()
        self._pending: list[GroupStateChanged] = []
        self._wakeup: anyio.Event | None = None
        #: Group state changes so far, in order.
        self.transitions: list[GroupStateChanged] = []

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
        }

    def stop(self) -> None:
        """Ask the group (every member) to stop gracefully."""
        self._stop.set()

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
                        # Queued behind the member's own effects: keepalived runs group
                        # notifies after the members' addresses and notifies.
                        member._effects.put(_ForGroup(functools.partial(self._pend, action)))
                    else:
                        self._by_name[action.instance]._perform_now([action])
        finally:
            self._in_hook = False
        for other in self.members:
            other._rearm()

    def _pend(self, change: GroupStateChanged) -> None:
        self._pending.append(change)
        if self._wakeup is not None:
            self._wakeup.set()

    async def _notifier(self) -> None:
        # keepalived sends group notifies after the members' instance notifies.
        while True:
            if not self._pending:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            change = self._pending.pop(0)
            with anyio.CancelScope(shield=True):
                await self._deliver(change)

    async def _deliver(self, change: GroupStateChanged) -> None:
        await anyio.lowlevel.checkpoint()
        await self._callbacks.deliver(change, change.new)
        runner = self.members[0]._runner
        if not self._notify or runner is None:
            return
        for argv in self._notify.commands("GROUP", self.name, change.new, 0):
            result = await runner.run(argv, timeout=self._notify_timeout)
            if not result.ok:
                logger.warning("group %s: notify %s failed", self.name, argv[0])

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Group] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every member until :meth:`stop` or cancellation; then stop them all."""
        self._stop = anyio.Event()
        try:
            async with anyio.create_task_group() as outer:
                notifier = anyio.CancelScope()

                async def notify_loop() -> None:
                    with notifier:
                        await self._notifier()

                outer.start_soon(notify_loop)
                async with anyio.create_task_group() as members:
                    for member in self.members:
                        await members.start(member.run)
                    task_status.started(self)
                    await self._stop.wait()
                    for member in self.members:
                        member.stop()
                notifier.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for change in self._pending:
                    await self._deliver(change)
                self._pending.clear()
