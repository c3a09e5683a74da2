"""The validated configuration of one virtual router."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from vrrpkit.core.addresses import Address, to_address, to_addresses
from vrrpkit.core.errors import ConfigError
from vrrpkit.core.packet import ChecksumMode
from vrrpkit.core.tracking import Tracker

__all__ = ["AUTH_NONE", "AUTH_PASS", "RouterConfig"]

AUTH_NONE = 0
AUTH_PASS = 1  # RFC 2338 simple text password, still what keepalived's v2 `auth_type PASS` is


def _int_range(low: int, high: int) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{attribute.name} must be an integer {low}..{high}, got {value!r}")

    return check


def _float_range(low: float, high: float) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{attribute.name} must be a number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{attribute.name} must be within {low}..{high}, got {value!r}")

    return check


def _trackers(values: Iterable[Tracker]) -> tuple[Tracker, ...]:
    trackers = tuple(values)
    for tracker in trackers:
        if not isinstance(tracker, Tracker):
            raise ConfigError(f"trackers must be vrrpkit.Tracker values, got {tracker!r}")
    names = [t.name for t in trackers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"tracker names must be unique, repeated: {', '.join(duplicates)}")
    return trackers


@attrs.frozen(kw_only=True)
class RouterConfig:
    """Everything one virtual router needs to know, validated on construction.

    ``address`` is the router's own source address on the segment (its primary IPv4 address
    or IPv6 link-local); it is also the tie-break address (keepalived compares the packet's
    source with it as an unsigned integer). Defaults follow keepalived; the options that
    deviate from RFC 5798 say so.
    """

    name: str = attrs.field()
    vrid: int = attrs.field(validator=_int_range(1, 255))
    priority: int = attrs.field(validator=_int_range(1, 255))
    address: Address = attrs.field(converter=to_address)
    vips: tuple[Address, ...] = attrs.field(default=(), converter=to_addresses)
    interval: float = attrs.field(default=1.0)
    version: int = attrs.field(default=3, validator=_int_range(2, 3))
    preempt: bool = attrs.field(default=True, converter=bool)
    preempt_delay: float = attrs.field(default=0.0, validator=_float_range(0.0, 1000.0))
    trackers: tuple[Tracker, ...] = attrs.field(default=(), converter=_trackers)
    #: Unicast peers: adverts go to each of them instead of the multicast group, and the
    #: TTL/hop-limit 255 check is skipped (keepalived sends IPv6 unicast with hop limit 64).
    unicast_peers: tuple[Address, ...] = attrs.field(default=(), converter=to_addresses)
    #: Drop unicast adverts whose source is not a configured peer (keepalived's
    #: ``check_unicast_src``; off by default there too).
    check_unicast_src: bool = attrs.field(default=False, converter=bool)
    auth_type: int = attrs.field(default=AUTH_NONE, validator=_int_range(0, 1))
    auth_data: bytes = attrs.field(default=b"")
    #: Adverts missed before the master is declared down (keepalived ``down_timer_adverts``).
    down_timer_adverts: int = attrs.field(default=3, validator=_int_range(1, 100))
    #: A MASTER answers a lower-priority advert with its own advert at once (keepalived's
    #: default and RFC 9568). False is RFC 5798's "discard" (keepalived ``lower_prio_no_advert``).
    lower_prio_advert: bool = attrs.field(default=True, converter=bool)
    #: A MASTER sends one advert before yielding to a higher priority (keepalived extension).
    higher_prio_send_advert: bool = attrs.field(default=False, converter=bool)
    garp_repeat: int = attrs.field(default=5, validator=_int_range(0, 255))
    garp_delay: float = attrs.field(default=5.0, validator=_float_range(0.0, 86400.0))
    garp_refresh: float = attrs.field(default=0.0, validator=_float_range(0.0, 86400.0))
    garp_refresh_repeat: int = attrs.field(default=1, validator=_int_range(1, 255))
    #: GARPs sent when a MASTER answers a lower-priority advert; None means ``garp_repeat``.
    garp_lower_prio_repeat: int | None = attrs.field(default=None)
    checksum: ChecksumMode = attrs.field(default=ChecksumMode.PSEUDO_HEADER)
    #: A MASTER sends on the clock's grid of its interval (times that are multiples of it),
    #: so that instances of one process with the same interval send in the same wake-up;
    #: only the first interval after becoming MASTER is shorter. Off: keepalived's timing.
    align_adverts: bool = attrs.field(default=False, converter=bool)

    @name.validator
    def _check_name(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"name must be a non-empty string, got {value!r}")

    @interval.validator
    def _check_interval(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"interval must be a number of seconds, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"interval must be a finite number of seconds, got {value!r}")
        if self.version == 2:
            if value != int(value) or not 1 <= value <= 255:
                raise ConfigError(f"VRRPv2 interval must be whole seconds 1..255, got {value!r}")
        else:
            centis = round(value * 100)
            if abs(value * 100 - centis) > 1e-6 or not 1 <= centis <= 4095:
                raise ConfigError(
                    f"VRRPv3 interval must be 0.01..40.95 s in 0.01 s steps, got {value!r}"
                )

    @vips.validator
    def _check_vips(self, _attribute: attrs.Attribute[Any], value: tuple[Address, ...]) -> None:
        if len(value) > 255:
            raise ConfigError(f"at most 255 virtual addresses fit in an advert, got {len(value)}")
        for vip in value:
            if vip.version != self.address.version:
                raise ConfigError(
                    f"virtual address {vip} is not of the family of the router address "
                    f"{self.address}"
                )
        if len(set(value)) != len(value):
            raise ConfigError("virtual addresses must be unique")

    @unicast_peers.validator
    def _check_peers(self, _attribute: attrs.Attribute[Any], value: tuple[Address, ...]) -> None:
        for peer in value:
            if peer.version != self.address.version:
                raise ConfigError(f"unicast peer {peer} is not of the family of {self.address}")
            if peer.is_multicast:
                raise ConfigError(f"unicast peer {peer} is a multicast address")

    @auth_data.validator
    def _check_auth(self, _attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) > 8:
            raise ConfigError("auth_data must be bytes of at most 8 (the v2 password field)")
        if self.auth_type != AUTH_NONE and self.version != 2:
            raise ConfigError("authentication exists only in VRRPv2 (RFC 5798 removed it)")
        if self.auth_type != AUTH_NONE and self.address.version == 6:
            # keepalived sends no password over IPv6 and then fails every advert's check.
            raise ConfigError("VRRPv2 over IPv6 has no authentication field")
        if self.auth_type == AUTH_NONE and value:
            raise ConfigError("auth_data given without auth_type=AUTH_PASS")

    @garp_lower_prio_repeat.validator
    def _check_lower(self, _attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None:
            _int_range(0, 255)(self, _attribute, value)

    @checksum.validator
    def _check_checksum(self, _attribute: attrs.Attribute[Any], value: ChecksumMode) -> None:
        if not isinstance(value, ChecksumMode):
            raise ConfigError(f"checksum must be a vrrpkit.ChecksumMode, got {value!r}")

    @property
    def is_owner(self) -> bool:
        """Whether this router owns the addresses (priority 255)."""
        return self.priority == 255

    @property
    def is_unicast(self) -> bool:
        """Whether adverts go to unicast peers instead of the multicast group."""
        return bool(self.unicast_peers)

    @property
    def lower_prio_garp_repeat(self) -> int:
        """GARPs sent when answering a lower-priority advert."""
        return (
            self.garp_repeat
            if self.garp_lower_prio_repeat is None
            else (self.garp_lower_prio_repeat)
        )
