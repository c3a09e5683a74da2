"""I/O for vrrpkit: raw sockets, netlink, gratuitous ARP/NA frames, processes and the clock.

Nothing here knows VRRP's rules: transports move bytes and :mod:`ipaddress` values. The
Protocols in :mod:`vrrpkit.transports.base` are what the runtime depends on; the classes
below implement them on Linux and work under both anyio backends (asyncio and trio).
"""

from vrrpkit.transports.base import (
    AddressManager,
    AdvertSocket,
    Announcer,
    Clock,
    IPAddress,
    IPInterface,
    LinkEvent,
    LinkMonitor,
    ProcessResult,
    ProcessRunner,
    ReceivedPacket,
    TransportError,
)
from vrrpkit.transports.clock import AnyioClock, PreciseClock
from vrrpkit.transports.garp import GarpSender, build_gratuitous_arp, build_unsolicited_na
from vrrpkit.transports.netlink import NetlinkAddressManager, NetlinkError, NetlinkLinkMonitor
from vrrpkit.transports.netns import call_in_netns, run_in_netns
from vrrpkit.transports.process import SubprocessRunner
from vrrpkit.transports.rawsocket import VRRP_GROUP_V4, VRRP_GROUP_V6, RawAdvertSocket

__all__ = [
    "VRRP_GROUP_V4",
    "VRRP_GROUP_V6",
    "AddressManager",
    "AdvertSocket",
    "Announcer",
    "AnyioClock",
    "Clock",
    "GarpSender",
    "IPAddress",
    "IPInterface",
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
