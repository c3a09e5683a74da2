"""Sync groups: several routers that are MASTER together or not at all (keepalived vrrp_sync.c).

Rules:
- MASTER is all-or-nothing: a member whose down timer fires becomes MASTER only when every
  other member also wants to (or the group already is MASTER); otherwise it waits in BACKUP.
- A member that falls back from MASTER to BACKUP pulls every other member to BACKUP.
- The first member to enter FAULT (or stop) puts every other member into FAULT; the group
  comes back, to BACKUP, only when no member is faulty any more.
- Stopping the whole group (:meth:`SyncGroup.begin_stop`, then each member's shutdown) is
  not a fault: every member goes to STOPPED, then the group does.

A member's input may change other members; their actions wait in their own queues, which the
driver drains with :meth:`SyncGroup.take_actions` after each input to any member.
"""

from __future__ import annotations

from collections.abc import Iterable

from vrrpkit.core.actions import Action, GroupStateChanged
from vrrpkit.core.errors import ConfigError
from vrrpkit.core.router import Router
from vrrpkit.core.states import State
from vrrpkit.core.transitions import Cause

__all__ = ["SyncGroup"]


class SyncGroup:
    """A keepalived ``vrrp_sync_group``: its members change state together."""

    def __init__(self, name: str, members: Iterable[Router]) -> None:
        self.name = name
        self.members: tuple[Router, ...] = tuple(members)
        if not self.members:
            raise ConfigError(f"sync group {name!r} needs at least one member")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ConfigError(f"sync group {name!r} lists a member twice")
        owners = {m.config.is_owner for m in self.members}
        if len(owners) > 1:
            # keepalived flags a mix of owner and non-owner members as a configuration error.
            raise ConfigError(f"sync group {name!r} mixes address owners and non-owners")
        for member in self.members:
            if member._group is not None:
                raise ConfigError(
                    f"router {member.name!r} is already in sync group {member._group.name!r}"
                )
        # Joined only once every member may: a refusal leaves none of them bound.
        for member in self.members:
            member._group = self
        self._state = State.INIT
        self._outbox: list[Action] = []
        self._stopping = False

    @property
    def state(self) -> State:
        """The group's state (INIT until a member starts)."""
        return self._state

    def take_actions(self) -> list[Action]:
        """Drain every member's queued actions, then the group's own notifications."""
        actions: list[Action] = []
        for member in self.members:
            actions.extend(member.take_actions())
        actions.extend(self._outbox)
        self._outbox = []
        return actions

    def begin_stop(self) -> None:
        """Every member is about to stop: until the last one has, none counts as faulty.

        keepalived stops all members at once, so a running member never sees another one
        stopped; without this, the first member to stop would pull the others into FAULT.
        """
        self._stopping = True

    def begin_run(self) -> None:
        """The members are about to start together: a member stopping from now on counts as
        faulty again, whatever a previous stop of the whole group left behind."""
        self._stopping = False

    # -- called by members -----------------------------------------------------------------

    def member_started(self, member: Router, now: float) -> None:
        """A member started: it joins the group's FAULT, or the group leaves INIT."""
        if self._state is State.STOPPED:
            self._stopping = False  # a new run; not a member starting while the group stops
        if self._faulty(member):
            self.member_fault(member, now)
        elif self._state is State.FAULT:
            if any(self._faulty(m) for m in self.members):
                if member.state is not State.FAULT:
                    member._group_fault = True
                    member._enter_fault(now, Cause.GROUP_FAULT)
            else:
                self.member_recovered(member, now)
        elif self._state is State.INIT or self._state is State.STOPPED:
            self._set(member.state if member.state is State.MASTER else State.BACKUP, "startup")

    def holds_in_fault(self, member: Router) -> bool:
        """Whether ``member``, starting, is to start in the group's FAULT: another member is
        faulty (or stopped) now."""
        return self._state is State.FAULT and any(
            self._faulty(m) for m in self.members if m is not member
        )

    def member_ready(self, member: Router, now: float, cause: Cause) -> bool:
        """``member`` wants MASTER; return False to hold it in BACKUP.

        When it is the last member to be ready, every member becomes MASTER here.
        """
        if self._state is State.MASTER:
            return True
        others = [m for m in self.members if m is not member]
        if cause is Cause.STARTUP_OWNER and all(
            m.state is State.INIT or m.state is State.STOPPED for m in others
        ):
            # keepalived starts a group of owners MASTER together (vrrp_init_state); members
            # here start one after another, and the first must not report BACKUP (and run
            # notify_backup) while the others have yet to start. They follow it as they do.
            self._set(State.MASTER, "owners starting")
            return True
        if any(
            m.wantstate is not State.MASTER or m.state in (State.FAULT, State.STOPPED, State.INIT)
            for m in others
        ):
            return False  # a member not running (yet) is not ready either
        if member.state is State.INIT or member.state is State.STOPPED:
            member._become_master(now, cause)
        for m in self.members:
            if m.state is not State.MASTER:
                m._protocol_deadline = None
                m._become_master(now, cause if m is member else Cause.GROUP_MASTER)
        self._set(State.MASTER, "all members ready")
        return True

    def member_left_master(self, member: Router, now: float) -> None:
        """``member`` went MASTER -> BACKUP: pull every other MASTER to BACKUP."""
        for m in self.members:
            if m is not member and m.state is State.MASTER:
                m._leave_master(now, State.BACKUP, Cause.GROUP_BACKUP)
        self._set(State.BACKUP, f"{member.name} fell back")

    def member_fault(self, member: Router, now: float) -> None:
        """``member`` entered FAULT: every other running member follows it."""
        for m in self.members:
            if m is not member and m.state in (State.BACKUP, State.MASTER):
                m._group_fault = True
                m._enter_fault(now, Cause.GROUP_FAULT)
        self._set(State.FAULT, f"{member.name} fault")

    def member_stopped(self, member: Router, now: float) -> None:
        """A stopped member can no longer be MASTER, so the others hold in FAULT.

        Not while the whole group stops (:meth:`begin_stop`): the others are stopping too.
        """
        if all(
            m.state is State.STOPPED or (self._stopping and m.state is State.INIT)
            for m in self.members
        ):  # (a member stopped before it started, with the group, never leaves INIT)
            self._stopping = False
            self._set(State.STOPPED, "all members stopped")
        elif not self._stopping:
            self.member_fault(member, now)

    def member_recovered(self, member: Router, now: float) -> None:
        """``member``'s own faults cleared: the group recovers once no member is faulty."""
        if any(self._faulty(m) for m in self.members):
            return
        all_owners = all(m.config.is_owner for m in self.members)
        for m in self.members:
            if m.state is State.FAULT:
                m._group_fault = False
                m._leave_fault(
                    now,
                    owner_cause=Cause.GROUP_FAULT_CLEARED,
                    cause=Cause.FAULT_CLEARED if m is member else Cause.GROUP_FAULT_CLEARED,
                )
        if all_owners:
            # Owners come back MASTER together (keepalived's vrrp_sync_master): one that was
            # held in BACKUP meanwhile (started again while the group was in FAULT) too.
            for m in self.members:
                if m.state is State.BACKUP:
                    m._protocol_deadline = None
                    m._become_master(now, Cause.GROUP_MASTER)
        self._set(State.MASTER if all_owners else State.BACKUP, f"{member.name} recovered")

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _faulty(member: Router) -> bool:
        return bool(member.faults) or member.state is State.STOPPED

    def _set(self, new: State, reason: str) -> None:
        if new is not self._state:
            self._outbox.append(GroupStateChanged(self.name, self._state, new, reason))
            self._state = new

    def __repr__(self) -> str:
        return f"<SyncGroup {self.name} {self._state} members={[m.name for m in self.members]}>"
