"""vrrpkit: embeddable VRRP (RFC 5798 v3, RFC 3768 v2) with keepalived's semantics.

The core (:mod:`vrrpkit.core`) is sans-I/O: routers take inputs with ``now`` and return
actions. :class:`Instance` runs one inside an anyio program on real interfaces;
:mod:`vrrpkit.testing` runs whole clusters on a virtual clock.
"""

from vrrpkit.core.actions import (
    Action,
    AddVips,
    AnnounceVips,
    GroupStateChanged,
    PacketDropped,
    RemoveVips,
    SendAdvertisement,
    SplitBrain,
    StateChanged,
)
from vrrpkit.core.config import AUTH_NONE, AUTH_PASS, RouterConfig
from vrrpkit.core.counters import Counters
from vrrpkit.core.errors import ConfigError, VrrpError
from vrrpkit.core.group import SyncGroup
from vrrpkit.core.packet import (
    AddressFamilyError,
    Advertisement,
    AuthTypeError,
    ChecksumError,
    ChecksumMode,
    IntervalError,
    InvalidTypeError,
    PacketError,
    PacketLengthError,
    VersionError,
    VridError,
)
from vrrpkit.core.router import Router, RouterError
from vrrpkit.core.states import State
from vrrpkit.core.timers import master_down_interval, skew_time
from vrrpkit.core.tracking import FallRise, Tracker, effective_priority
from vrrpkit.core.transitions import TRANSITIONS, Cause, Transition
from vrrpkit.runtime.group import Group
from vrrpkit.runtime.instance import Event, Instance, TransportFailure
from vrrpkit.runtime.trackers import CheckTracker, InterfaceTracker, ScriptTracker

__version__ = "0.1.0.dev0"

__all__ = [
    "AUTH_NONE",
    "AUTH_PASS",
    "TRANSITIONS",
    "Action",
    "AddVips",
    "AddressFamilyError",
    "Advertisement",
    "AnnounceVips",
    "AuthTypeError",
    "Cause",
    "CheckTracker",
    "ChecksumError",
    "ChecksumMode",
    "ConfigError",
    "Counters",
    "Event",
    "FallRise",
    "Group",
    "GroupStateChanged",
    "Instance",
    "InterfaceTracker",
    "IntervalError",
    "InvalidTypeError",
    "PacketDropped",
    "PacketError",
    "PacketLengthError",
    "RemoveVips",
    "Router",
    "RouterConfig",
    "RouterError",
    "ScriptTracker",
    "SendAdvertisement",
    "SplitBrain",
    "State",
    "StateChanged",
    "SyncGroup",
    "Tracker",
    "Transition",
    "TransportFailure",
    "VersionError",
    "VridError",
    "VrrpError",
    "__version__",
    "effective_priority",
    "master_down_interval",
    "skew_time",
]
