"""IP address helpers shared by the core: the Address type and the VRRP multicast groups."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, TypeAlias

from vrrpkit.core.errors import ConfigError

__all__ = ["Address", "multicast_group", "to_address", "to_addresses"]

Address: TypeAlias = IPv4Address | IPv6Address

_MCAST4 = IPv4Address("224.0.0.18")
_MCAST6 = IPv6Address("ff02::12")


def multicast_group(address: Address) -> Address:
    """The VRRP multicast group of ``address``'s family (RFC 5798 §5.1.1.2, §5.1.2.2)."""
    return _MCAST4 if address.version == 4 else _MCAST6


def to_address(value: Any) -> Address:
    """An ``ipaddress`` object from a string or an address object (clear error otherwise).

    An IPv6 zone (``fe80::2%eth0``) is dropped: an instance's interface is its zone, and
    received sources carry none (``ipaddress`` compares zones, so a peer with one would
    never match).
    """
    address: Address
    if isinstance(value, (IPv4Address, IPv6Address)):
        address = value
    else:
        try:
            address = ip_address(value)
        except ValueError as exc:
            raise ConfigError(f"not an IP address: {value!r}") from exc
    if type(address) is IPv6Address and address.scope_id is not None:
        return IPv6Address(address.packed)
    return address


def to_addresses(values: Iterable[Any]) -> tuple[Address, ...]:
    """A tuple of ``ipaddress`` objects from strings or address objects."""
    if isinstance(values, (str, bytes)):
        raise ConfigError(f"expected a sequence of addresses, got the string {values!r}")
    return tuple(to_address(v) for v in values)
