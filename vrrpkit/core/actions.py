"""What the core asks its driver to do, as immutable values, in the order they must happen.

A driver (the simulator or the anyio runtime) performs the actions a router returns, strictly
in order: becoming MASTER yields SendAdvertisement, AddVips, AnnounceVips, StateChanged, as
keepalived does (advert first so the old master drops the addresses before ARP moves them).
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from vrrpkit.core.addresses import Address
from vrrpkit.core.packet import Advertisement
from vrrpkit.core.states import State

__all__ = [
    "Action",
    "AddVips",
    "AnnounceVips",
    "GroupStateChanged",
    "PacketDropped",
    "RemoveVips",
    "SendAdvertisement",
    "SplitBrain",
    "StateChanged",
]


@attrs.frozen
class SendAdvertisement:
    """Send this advertisement now: to the multicast group, or once to each unicast peer."""

    instance: str
    advertisement: Advertisement


@attrs.frozen
class AddVips:
    """Add these virtual addresses to the router's interface (idempotently)."""

    instance: str
    addresses: tuple[Address, ...]


@attrs.frozen
class RemoveVips:
    """Remove these virtual addresses from the router's interface (idempotently)."""

    instance: str
    addresses: tuple[Address, ...]


@attrs.frozen
class AnnounceVips:
    """Send ``repeat`` gratuitous ARPs (IPv4) or unsolicited NAs (IPv6) for each address."""

    instance: str
    addresses: tuple[Address, ...]
    repeat: int


@attrs.frozen
class StateChanged:
    """The router moved from ``old`` to ``new``; ``priority`` is its effective priority."""

    instance: str
    old: State
    new: State
    reason: str
    priority: int


@attrs.frozen
class GroupStateChanged:
    """A sync group moved from ``old`` to ``new`` (after its members' own changes)."""

    group: str
    old: State
    new: State
    reason: str


@attrs.frozen
class SplitBrain:
    """A MASTER heard another MASTER's advertisement for its VRID.

    ``yielded`` tells how it was settled: True if we went BACKUP (the peer wins by priority or
    address), False if we stayed MASTER and answered (keepalived's "forcing new election").
    """

    instance: str
    peer: Address
    peer_priority: int
    our_priority: int
    yielded: bool


@attrs.frozen
class PacketDropped:
    """A received packet was dropped; ``counter`` names the receive counter it incremented."""

    instance: str
    source: Address | None
    counter: str
    detail: str


Action: TypeAlias = (
    SendAdvertisement
    | AddVips
    | RemoveVips
    | AnnounceVips
    | StateChanged
    | GroupStateChanged
    | SplitBrain
    | PacketDropped
)
