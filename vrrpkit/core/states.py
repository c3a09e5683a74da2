"""The states of a virtual router."""

from __future__ import annotations

import enum

__all__ = ["State"]


class State(enum.Enum):
    """State of one virtual router (RFC 5798 §6.4 plus keepalived's FAULT and STOP).

    INIT, BACKUP and MASTER are the RFC's states. FAULT is keepalived's: a weight-0 tracker is
    failing or the interface is down, so the router neither sends nor listens. STOPPED follows a
    shutdown (keepalived's STOP).
    """

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOPPED = "STOPPED"

    def __str__(self) -> str:
        return self.value
