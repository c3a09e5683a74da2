"""I/O for vrrpkit: raw sockets, netlink, gratuitous ARP/NA frames, processes and the clock.

Nothing here knows VRRP's rules: transports move bytes and :mod:`ipaddress` values. The
Protocols in :mod:`vrrpkit.transports.base` are what the runtime depends on; the classes
below implement them on Linux and work under both anyio backends (asyncio and trio).
"""

import importlib
from typing import TYPE_CHECKING, Any

from vrrpkit.transports.base import (
    AddressManager,
    AddressRemoved,
    AdvertSocket,
    Announcer,
    Clock,
    IPAddress,
    IPInterface,
    LinkChange,
    LinkEvent,
    LinkMonitor,
    ProcessResult,
    ProcessRunner,
    ReceivedPacket,
    TransportError,
)
from vrrpkit.transports.clock import AnyioClock, PreciseClock

# The Linux implementations load on first use: pyroute2's package import alone costs about
# 20 MB and 0.15 s, which a program using only the core or the simulator should not pay.
_LAZY = {
    "GarpSender": "vrrpkit.transports.garp",
    "build_gratuitous_arp": "vrrpkit.transports.garp",
    "build_unsolicited_na": "vrrpkit.transports.garp",
    "NetlinkAddressManager": "vrrpkit.transports.netlink",
    "NetlinkError": "vrrpkit.transports.netlink",
    "NetlinkLinkMonitor": "vrrpkit.transports.netlink",
    "call_in_netns": "vrrpkit.transports.netns",
    "run_in_netns": "vrrpkit.transports.netns",
    "SubprocessRunner": "vrrpkit.transports.process",
    "VRRP_GROUP_V4": "vrrpkit.transports.rawsocket",
    "VRRP_GROUP_V6": "vrrpkit.transports.rawsocket",
    "RawAdvertSocket": "vrrpkit.transports.rawsocket",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from vrrpkit.transports.garp import GarpSender, build_gratuitous_arp, build_unsolicited_na
    from vrrpkit.transports.netlink import (
        NetlinkAddressManager,
        NetlinkError,
        NetlinkLinkMonitor,
    )
    from vrrpkit.transports.netns import call_in_netns, run_in_netns
    from vrrpkit.transports.process import SubprocessRunner
    from vrrpkit.transports.rawsocket import VRRP_GROUP_V4, VRRP_GROUP_V6, RawAdvertSocket

__all__ = [
    "VRRP_GROUP_V4",
    "VRRP_GROUP_V6",
    "AddressManager",
    "AddressRemoved",
    "AdvertSocket",
    "Announcer",
    "AnyioClock",
    "Clock",
    "GarpSender",
    "IPAddress",
    "IPInterface",
    "LinkChange",
    "LinkEvent",
    "LinkMonitor",
    "NetlinkAddressManager",
    "NetlinkError",
    "NetlinkLinkMonitor",
    "PreciseClock",
    "ProcessResult",
    "ProcessRunner",
    "RawAdvertSocket",
    "ReceivedPacket",
    "SubprocessRunner",
    "TransportError",
    "build_gratuitous_arp",
    "build_unsolicited_na",
    "call_in_netns",
    "run_in_netns",
]
