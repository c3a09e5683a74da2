"""Every state change a virtual router can make, as a table.

Rule 1 (after h11's ``_state.py``): a router changes state only through a row of this table;
the router asserts each change against it, tests enumerate it, and the docs' state diagram is
generated from it (``docs/make_state_diagram.py``).
"""

from __future__ import annotations

import enum

import attrs

from vrrpkit.core.states import State

__all__ = ["TRANSITIONS", "Cause", "Transition", "is_allowed"]


class Cause(enum.Enum):
    """Why a router changed state; the value is the ``reason`` reported with the change."""

    STARTUP = "startup"
    STARTUP_OWNER = "startup_as_owner"
    STARTUP_FAULT = "startup_in_fault"
    #: FAULT only because a weight-0 tracker has no result yet: not announced (no callbacks,
    #: no notify), as keepalived sends no FAULT notify for a script still pending.
    STARTUP_AWAITING = "startup_awaiting_trackers"
    MASTER_DOWN = "master_down_timer"
    PRIORITY_ZERO = "master_released"
    HIGHER_PRIORITY = "higher_priority_advert"
    FAULT = "fault"
    FAULT_CLEARED = "fault_cleared"
    FAULT_CLEARED_OWNER = "fault_cleared_as_owner"
    GROUP_MASTER = "sync_group_master"
    GROUP_BACKUP = "sync_group_backup"
    GROUP_FAULT = "sync_group_fault"
    GROUP_FAULT_CLEARED = "sync_group_fault_cleared"
    SHUTDOWN = "shutdown"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Transition:
    """One allowed change: from ``source`` on ``cause`` to ``target``, and the rule behind it."""

    source: State
    cause: Cause
    target: State
    rule: str


_S = State
_C = Cause

TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        _S.INIT,
        _C.STARTUP,
        _S.BACKUP,
        "RFC 5798 6.4.1: not the owner, so wait Master_Down_Interval for a master",
    ),
    Transition(
        _S.INIT,
        _C.STARTUP_OWNER,
        _S.MASTER,
        "RFC 5798 6.4.1: the address owner (priority 255) becomes MASTER at once",
    ),
    Transition(
        _S.INIT,
        _C.STARTUP_FAULT,
        _S.FAULT,
        "keepalived: interface down, or a weight-0 tracker failing",
    ),
    Transition(
        _S.INIT,
        _C.STARTUP_AWAITING,
        _S.FAULT,
        "keepalived (num_script_init): a weight-0 tracker has no result yet; not announced",
    ),
    Transition(
        _S.FAULT,
        _C.FAULT,
        _S.FAULT,
        "keepalived (down_instance): the first result of a tracker awaited at startup "
        "fails, and the FAULT held quietly until then is announced",
    ),
    Transition(
        _S.BACKUP,
        _C.MASTER_DOWN,
        _S.MASTER,
        "RFC 5798 6.4.2: Master_Down_Timer fired (no acceptable advert heard)",
    ),
    Transition(
        _S.BACKUP,
        _C.PRIORITY_ZERO,
        _S.MASTER,
        "RFC 5798 6.4.2: the master sent priority 0; we waited only Skew_Time",
    ),
    Transition(
        _S.MASTER,
        _C.HIGHER_PRIORITY,
        _S.BACKUP,
        "RFC 5798 6.4.3: advert with higher priority, or equal priority and higher source address",
    ),
    Transition(
        _S.BACKUP, _C.FAULT, _S.FAULT, "keepalived: weight-0 tracker failed or interface went down"
    ),
    Transition(
        _S.MASTER,
        _C.FAULT,
        _S.FAULT,
        "keepalived: weight-0 tracker failed or interface went down; sends priority 0",
    ),
    Transition(
        _S.FAULT,
        _C.FAULT_CLEARED,
        _S.BACKUP,
        "keepalived: every fault cleared; wait a fresh Master_Down_Interval",
    ),
    Transition(
        _S.FAULT,
        _C.FAULT_CLEARED_OWNER,
        _S.MASTER,
        "keepalived: every fault cleared on an address owner that still wants MASTER (a "
        "startup fault); one that fell into FAULT comes back through BACKUP",
    ),
    Transition(
        _S.BACKUP,
        _C.GROUP_MASTER,
        _S.MASTER,
        "keepalived sync group: every member is ready to be MASTER",
    ),
    Transition(
        _S.MASTER,
        _C.GROUP_BACKUP,
        _S.BACKUP,
        "keepalived sync group: another member fell back to BACKUP",
    ),
    Transition(
        _S.BACKUP,
        _C.GROUP_FAULT,
        _S.FAULT,
        "keepalived sync group: another member entered FAULT or stopped",
    ),
    Transition(
        _S.MASTER,
        _C.GROUP_FAULT,
        _S.FAULT,
        "keepalived sync group: another member entered FAULT or stopped; sends priority 0",
    ),
    Transition(
        _S.INIT,
        _C.GROUP_FAULT,
        _S.FAULT,
        "keepalived sync group (vrrp_init_state): a member starts in its group's FAULT",
    ),
    Transition(
        _S.STOPPED,
        _C.GROUP_FAULT,
        _S.FAULT,
        "keepalived sync group: a member restarts in its group's FAULT",
    ),
    Transition(
        _S.FAULT,
        _C.GROUP_FAULT_CLEARED,
        _S.BACKUP,
        "keepalived sync group: no member is faulty any more",
    ),
    Transition(
        _S.FAULT,
        _C.GROUP_FAULT_CLEARED,
        _S.MASTER,
        "keepalived sync group: no member is faulty any more and all are owners",
    ),
    Transition(_S.INIT, _C.SHUTDOWN, _S.STOPPED, "shutdown before start"),
    Transition(_S.BACKUP, _C.SHUTDOWN, _S.STOPPED, "shutdown"),
    Transition(
        _S.MASTER,
        _C.SHUTDOWN,
        _S.STOPPED,
        "shutdown: priority-0 advert, then the addresses are removed",
    ),
    Transition(_S.FAULT, _C.SHUTDOWN, _S.STOPPED, "shutdown"),
    Transition(_S.STOPPED, _C.STARTUP, _S.BACKUP, "restart after a shutdown"),
    Transition(_S.STOPPED, _C.STARTUP_OWNER, _S.MASTER, "restart of the address owner"),
    Transition(_S.STOPPED, _C.STARTUP_FAULT, _S.FAULT, "restart while a fault holds"),
    Transition(
        _S.STOPPED,
        _C.STARTUP_AWAITING,
        _S.FAULT,
        "restart while a weight-0 tracker has no result yet; not announced",
    ),
)

_ALLOWED = frozenset((t.source, t.cause, t.target) for t in TRANSITIONS)


def is_allowed(source: State, cause: Cause, target: State) -> bool:
    """Whether the table has the row ``source --cause--> target``."""
    return (source, cause, target) in _ALLOWED
