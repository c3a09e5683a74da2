"""VRRP advertisement codec: RFC 3768 (VRRPv2) and RFC 5798 (VRRPv3), as keepalived speaks them.

:class:`Advertisement` is the decoded message; :meth:`Advertisement.decode` turns the VRRP payload
of an IP packet (IPv4 header already stripped) into one, and :meth:`Advertisement.encode` is its
exact inverse. Malformed input raises a :class:`PacketError` subclass whose ``counter`` names the
keepalived receive counter it maps to; a bad local value raises
:class:`~vrrpkit.core.errors.ConfigError`.

Wire layout (both versions share the first four bytes)::

    0: version << 4 | type    1: VRID    2: priority    3: count of addresses
    v2: 4: auth type (1 byte)   5: interval, seconds (1 byte)      6: checksum (2 bytes)
    v3: 4: 4 reserved bits + 12-bit interval in centiseconds      6: checksum (2 bytes)
    8: count addresses (4 bytes each for IPv4, 16 for IPv6)
    v2 only: 8 bytes of authentication data
"""

from __future__ import annotations

import enum
import math
import operator
import struct
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import ClassVar, TypeAlias, cast

import attrs

from vrrpkit.core.errors import ConfigError, VrrpError

__all__ = [
    "IPPROTO_VRRP",
    "AddressFamilyError",
    "Advertisement",
    "AuthTypeError",
    "ChecksumError",
    "ChecksumMode",
    "IntervalError",
    "InvalidTypeError",
    "PacketError",
    "PacketLengthError",
    "VersionError",
    "VridError",
    "peek_vrid",
]

IPPROTO_VRRP = 112
"""The IP protocol number of VRRP (RFC 5798 §5.1.1.4), also used in the checksum pseudo-header."""

IPAddress: TypeAlias = IPv4Address | IPv6Address
"""An IP address of either family."""
AddressInput: TypeAlias = IPv4Address | IPv6Address | str
"""What ``src``/``dst`` accept: an ipaddress object (fastest) or its text form."""
Addresses: TypeAlias = tuple[IPv4Address, ...] | tuple[IPv6Address, ...]
"""The type of :attr:`Advertisement.addresses`: one family, 0..255 entries."""

_ADVERTISEMENT = 1  # the only VRRP message type (RFC 5798 §5.2.2)
_AUTH_LEN = 8  # RFC 3768 §5.3.10: authentication data is always 8 bytes on the wire
_NO_AUTH_DATA = bytes(_AUTH_LEN)  # what an IPv6 VRRPv2 advert decodes to (it carries none)
_AUTH_NONE, _AUTH_AH = 0, 2  # and 1, simple password (RFC 2338 §5.3.6)
# keepalived accepts Ethernet minimum-frame padding after the message. Ethernet pads its payload
# to 46 bytes, so padding can only follow a message whose padded total is at most 46 bytes, and it
# is zeros; anything else past the announced length is a length error.
_MAX_PADDED_LEN = 46
_V3_INTERVAL_MASK = 0x0FFF  # RFC 5798 §5.2.7: the top 4 bits are reserved, ignored on receipt

_HEADER = struct.Struct("!BBBBHH")
_unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack

_new = object.__new__
_set = object.__setattr__


class ChecksumMode(enum.Enum):
    """How the VRRPv3 checksum of an IPv4 advertisement is computed.

    * ``PSEUDO_HEADER`` (default): over the IPv4 pseudo-header and the message, as RFC 5798 §5.2.8
      reads and keepalived does by default.
    * ``MESSAGE_ONLY``: over the message alone, like VRRPv2 (RFC 9568; keepalived's
      ``v3_checksum_as_v2``).
    * ``EITHER``: decoding accepts both forms; encoding uses ``PSEUDO_HEADER``.
    * ``AS_V2``: encoding uses ``MESSAGE_ONLY``, decoding accepts both forms: keepalived's
      ``v3_checksum_as_v2`` as it behaves (it checks no v3 IPv4 checksum at all then, so
      it hears peers of either form while the cluster moves from one to the other).

    The mode only matters for VRRPv3 over IPv4. VRRPv2 over IPv4 always sums the message alone
    (RFC 3768 §5.3.8). Over IPv6 the pseudo-header is always used, whatever the version: the
    kernel computes and verifies that checksum itself (keepalived sets ``IPV6_CHECKSUM`` to offset
    6 on every IPv6 VRRP socket), so no other form can be sent or received.
    """

    PSEUDO_HEADER = "pseudo-header"
    MESSAGE_ONLY = "message-only"
    EITHER = "either"
    AS_V2 = "as-v2"


# Enum member lookups through the class cost ~100 ns each; the hot paths compare with these.
_PSEUDO_HEADER = ChecksumMode.PSEUDO_HEADER
_MESSAGE_ONLY = ChecksumMode.MESSAGE_ONLY
_AS_V2 = ChecksumMode.AS_V2


class PacketError(VrrpError):
    """A received VRRP message is malformed; never raised itself, only through a subclass.

    ``counter`` names the keepalived receive counter (``vrrp_print_stats``/SNMP) that a router
    increments for this cause; ``str(error)`` says what was wrong.
    """

    counter: ClassVar[str]


class PacketLengthError(PacketError):
    """The message is shorter or longer than its header and address count announce."""

    counter: ClassVar[str] = "packet_len_err"


class VersionError(PacketError):
    """The version field is neither 2 nor 3."""

    counter: ClassVar[str] = "vers_err"


class VridError(PacketError):
    """The VRID field is 0, which no virtual router can use (RFC 5798 §5.2.3)."""

    counter: ClassVar[str] = "vrid_err"


class InvalidTypeError(PacketError):
    """The type field is not 1 (ADVERTISEMENT)."""

    counter: ClassVar[str] = "invalid_type_rcvd"


class ChecksumError(PacketError):
    """The checksum does not verify in the requested :class:`ChecksumMode`."""

    counter: ClassVar[str] = "chk_err"


class IntervalError(PacketError):
    """The advertisement interval field is 0."""

    counter: ClassVar[str] = "advert_interval_err"


class AuthTypeError(PacketError):
    """A VRRPv2 authentication type other than 0 (none), 1 (password) or 2 (IPsec AH)."""

    counter: ClassVar[str] = "invalid_authtype"


class AddressFamilyError(PacketError):
    """The source and destination IP addresses are of different families."""

    counter: ClassVar[str] = "addr_list_err"


def peek_vrid(data: bytes) -> int | None:
    """Return the VRID byte of a raw VRRP message without validating anything, or None if short."""
    return data[1] if len(data) > 1 else None


# --- converters and validators (construction path, not the decode hot path) -----------------


def _int_in(low: int, high: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    """Validator: an int (not a bool) in ``low..high``, else ConfigError naming the field."""

    def check(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"{attribute.name} must be an int in {low}..{high}, got {type(value).__name__} "
                f"{value!r}"
            )
        if not low <= value <= high:
            raise ConfigError(f"{attribute.name} {value} is out of range {low}..{high}")

    return check


def _to_interval(value: float) -> float:
    """Normalise an interval in seconds to exactly ``centiseconds / 100``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"interval must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigError(f"interval {value!r} is not a finite number of seconds")
    centis = round(value * 100)
    # VRRPv3 carries centiseconds and VRRPv2 whole seconds, so anything finer cannot be sent.
    if abs(value * 100 - centis) > 1e-4:
        raise ConfigError(f"interval {value!r} s is not a multiple of 0.01 s")
    return centis / 100


def _to_ip(value: object, what: str) -> IPAddress:
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    if isinstance(value, str):
        try:
            return ip_address(value)
        except ValueError:
            raise ConfigError(f"{what} {value!r} is not an IPv4 or IPv6 address") from None
    raise ConfigError(
        f"{what} must be an IPv4Address, IPv6Address or str, got {type(value).__name__}"
    )


def _to_addresses(value: Iterable[AddressInput]) -> Addresses:
    """Turn an iterable of addresses (objects or strings) into a tuple of one family."""
    if type(value) is tuple and len(value) <= 255:
        kinds = {type(item) for item in value}
        # Fast path: already a tuple of one ipaddress class, as decode and evolve() produce.
        if kinds == {IPv4Address} or kinds == {IPv6Address} or not kinds:
            return cast(Addresses, value)
    if isinstance(value, (str, bytes)):
        raise ConfigError(f"addresses must be an iterable of addresses, got the string {value!r}")
    try:
        items = tuple(_to_ip(item, "address") for item in value)
    except TypeError:
        raise ConfigError(
            f"addresses must be an iterable of addresses, got {type(value).__name__}"
        ) from None
    if len(items) > 255:
        raise ConfigError(f"addresses holds {len(items)} entries, at most 255 fit in a message")
    if len({item.version for item in items}) > 1:
        raise ConfigError(f"addresses mixes IPv4 and IPv6: {', '.join(map(str, items))}")
    return cast(Addresses, items)


def _to_auth_data(value: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ConfigError(f"auth_data must be bytes, got {type(value).__name__}")
    return bytes(value)


def _endpoints(src: object, dst: object) -> tuple[IPAddress, IPAddress]:
    source = _to_ip(src, "src")
    destination = _to_ip(dst, "dst")
    if source.version != destination.version:
        raise AddressFamilyError(
            f"src {source} is IPv{source.version} but dst {destination} is IPv{destination.version}"
        )
    return source, destination


# Remote peers repeat the same address list in every advert, so a cache keyed by the raw bytes
# turns the costly ipaddress constructors into one dict lookup. A plain dict emptied when full is
# cheaper to consult than functools.lru_cache; the bound keeps hostile input harmless.
_CACHE_SIZE = 512
_ipv4_cache: dict[bytes, tuple[IPv4Address, ...]] = {}
_ipv6_cache: dict[bytes, tuple[IPv6Address, ...]] = {}


def _parse_ipv4(raw: bytes) -> tuple[IPv4Address, ...]:
    if len(_ipv4_cache) >= _CACHE_SIZE:
        _ipv4_cache.clear()
    addresses = _ipv4_cache[raw] = tuple(IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4))
    return addresses


def _parse_ipv6(raw: bytes) -> tuple[IPv6Address, ...]:
    if len(_ipv6_cache) >= _CACHE_SIZE:
        _ipv6_cache.clear()
    addresses = _ipv6_cache[raw] = tuple(
        IPv6Address(raw[i : i + 16]) for i in range(0, len(raw), 16)
    )
    return addresses


def _int_of(address: IPAddress) -> int:
    return int(address)


# The pseudo-header sum needs the integer value of src and dst; int() on an ipaddress object
# goes through a Python-level __int__ costing ~3x the direct read of its "_ip" slot, which every
# CPython since 3.3 has. Fall back to int() should an implementation lack the slot.
_address_int: Callable[[IPAddress], int] = operator.attrgetter("_ip")
try:
    if _address_int(IPv6Address(1)) != 1 or _address_int(IPv4Address(2)) != 2:  # pragma: no cover
        _address_int = _int_of
except AttributeError:  # pragma: no cover
    _address_int = _int_of


@attrs.frozen
class Advertisement:
    """One VRRP ADVERTISEMENT message (RFC 3768 §5.3, RFC 5798 §5.2).

    ``interval`` is in seconds: whole seconds 1..255 for version 2, 0.01..40.95 in steps of
    0.01 for version 3; it is normalised to exactly ``centiseconds / 100``. ``addresses`` (any
    iterable of address strings or objects, stored as a tuple) are all of one family, at most
    255, possibly none. ``auth_type``/``auth_data`` exist only in version 2: 0 none, 1 simple
    password, 2 IPsec AH (decode only); ``auth_data`` is stored padded with zeros to its 8 wire
    bytes. Over IPv6 a version 2 message has no authentication field (keepalived's layout):
    it encodes only with ``auth_type == 0`` and decodes with ``auth_data`` all zeros. Version 3
    requires ``auth_type == 0`` and ``auth_data == b""``.
    """

    version: int = attrs.field(validator=_int_in(2, 3))
    vrid: int = attrs.field(validator=_int_in(1, 255))
    priority: int = attrs.field(validator=_int_in(0, 255))
    interval: float = attrs.field(converter=_to_interval)
    addresses: Addresses = attrs.field(converter=_to_addresses)
    auth_type: int = attrs.field(default=0, validator=_int_in(0, 2))
    auth_data: bytes = attrs.field(default=b"", converter=_to_auth_data)

    def __attrs_post_init__(self) -> None:
        centis = round(self.interval * 100)
        if self.version == 2:
            if centis % 100 or not 1 <= centis // 100 <= 255:
                raise ConfigError(
                    f"interval {self.interval!r} s is out of range for VRRPv2: "
                    "whole seconds 1..255 expected"
                )
            if len(self.auth_data) > _AUTH_LEN:
                raise ConfigError(
                    f"auth_data is {len(self.auth_data)} bytes, VRRPv2 carries at most 8"
                )
            if len(self.auth_data) < _AUTH_LEN:
                _set(self, "auth_data", self.auth_data.ljust(_AUTH_LEN, b"\0"))
        else:
            if not 1 <= centis <= _V3_INTERVAL_MASK:
                raise ConfigError(
                    f"interval {self.interval!r} s is out of range for VRRPv3: 0.01..40.95 expected"
                )
            if self.auth_type != _AUTH_NONE:
                raise ConfigError(f"auth_type {self.auth_type} is VRRPv2 only; VRRPv3 needs 0")
            if self.auth_data:
                raise ConfigError("auth_data is VRRPv2 only; VRRPv3 needs b''")

    @property
    def interval_cs(self) -> int:
        """The interval in centiseconds."""
        return round(self.interval * 100)

    @property
    def family(self) -> int | None:
        """4 or 6, the family of ``addresses``; None when there are none."""
        return self.addresses[0].version if self.addresses else None

    @classmethod
    def decode(
        cls,
        data: bytes,
        *,
        src: AddressInput,
        dst: AddressInput,
        checksum: ChecksumMode = ChecksumMode.PSEUDO_HEADER,
        verify_checksum: bool = True,
    ) -> Advertisement:
        """Parse and verify the VRRP payload ``data`` received from ``src`` sent to ``dst``.

        The addresses in the message are of the family of ``src``. Checks run in keepalived's
        order (``vrrp_check_packet``): length, VRID, version, exact length, v2 auth type, type,
        checksum (unless ``verify_checksum`` is false), then interval. Any malformed ``data``
        raises a :class:`PacketError` subclass; a ``src``/``dst`` that is not an address
        raises ``ConfigError``.
        """
        if type(data) is not bytes:
            data = bytes(data)
        if type(src) is IPv4Address and type(dst) is IPv4Address:
            ipv6 = False
        elif type(src) is IPv6Address and type(dst) is IPv6Address:
            ipv6 = True
        else:
            src, dst = _endpoints(src, dst)
            ipv6 = src.version == 6

        size = len(data)
        if size < 8:
            raise PacketLengthError(
                f"VRRP message of {size} bytes is shorter than its 8-byte header"
            )
        version_type, vrid, priority, count, word, _ = _unpack_header(data)
        if not vrid:
            raise VridError("VRID 0 is not a valid virtual router identifier")
        version = version_type >> 4
        if version == 3:
            length = 8 + count * (16 if ipv6 else 4)
        elif version == 2:
            # No authentication field over IPv6: keepalived sends and expects none there.
            length = 8 + (0 if ipv6 else _AUTH_LEN) + count * (16 if ipv6 else 4)
        else:
            raise VersionError(f"VRRP version {version} is not supported (2 or 3 expected)")
        if size != length:
            if size < length or size > _MAX_PADDED_LEN or data.count(0, length) != size - length:
                raise PacketLengthError(
                    f"VRRPv{version} message with {count} IPv{6 if ipv6 else 4} addresses must be "
                    f"{length} bytes, got {size}"
                )
            data = data[:length]
        if version == 2:
            auth_type = word >> 8
            if auth_type > _AUTH_AH:
                raise AuthTypeError(f"VRRPv2 auth type {auth_type} is not 0, 1 or 2")
        if version_type & 0x0F != _ADVERTISEMENT:
            raise InvalidTypeError(f"VRRP type {version_type & 0x0F} is not 1 (ADVERTISEMENT)")

        # The Internet checksum is the ones' complement sum of 16-bit words; since
        # 2**16 == 1 (mod 0xFFFF), that sum is the big-endian integer modulo 0xFFFF, and a message
        # verifies when it is 0. Pseudo-headers (RFC 5798 §5.2.8; RFC 8200 §8.1 for IPv6) add
        # src + dst + protocol + length: the same integer for both families.
        if verify_checksum:
            total = int.from_bytes(data, "big")
            if ipv6 or (version == 3 and checksum is not _MESSAGE_ONLY):
                with_pseudo = total + _address_int(src) + _address_int(dst) + IPPROTO_VRRP + length
                if with_pseudo % 0xFFFF and (ipv6 or checksum is _PSEUDO_HEADER or total % 0xFFFF):
                    raise ChecksumError(
                        f"VRRPv{version} checksum {data[6:8].hex()} does not verify with the "
                        f"pseudo-header for {src} -> {dst}"
                    )
            elif total % 0xFFFF:
                raise ChecksumError(
                    f"VRRPv{version} checksum {data[6:8].hex()} does not verify over the message"
                )

        if version == 3:
            centis = word & _V3_INTERVAL_MASK
            if not centis:
                raise IntervalError("VRRPv3 advertisement interval is 0 centiseconds")
            interval = centis / 100
            auth_data = b""
            auth_type = _AUTH_NONE
        else:
            seconds = word & 0xFF
            if not seconds:
                raise IntervalError("VRRPv2 advertisement interval is 0 seconds")
            interval = float(seconds)
            auth_data = _NO_AUTH_DATA if ipv6 else data[length - _AUTH_LEN :]
        raw = data[8 : 8 + count * (16 if ipv6 else 4)]
        if ipv6:
            addresses: Addresses | None = _ipv6_cache.get(raw)
            if addresses is None:
                addresses = _parse_ipv6(raw)
        else:
            addresses = _ipv4_cache.get(raw)
            if addresses is None:
                addresses = _parse_ipv4(raw)

        # Every field is in range by construction above, so skip the validators: this path has to
        # decode hundreds of thousands of adverts a second. The result equals (and hashes like) an
        # instance built through __init__ with the same values.
        advert = _new(cls)
        _set_version(advert, version)
        _set_vrid(advert, vrid)
        _set_priority(advert, priority)
        _set_interval(advert, interval)
        _set_addresses(advert, addresses)
        _set_auth_type(advert, auth_type)
        _set_auth_data(advert, auth_data)
        return advert

    def encode(
        self,
        *,
        src: AddressInput,
        dst: AddressInput,
        checksum: ChecksumMode = ChecksumMode.PSEUDO_HEADER,
    ) -> bytes:
        """Return the VRRP payload for an IP packet from ``src`` to ``dst``, checksum included.

        ``src`` and ``dst`` must be of the family of ``addresses``. VRRPv2 messages with IPsec AH
        (``auth_type`` 2) cannot be encoded: vrrpkit does not build AH headers.
        """
        if type(src) is IPv4Address and type(dst) is IPv4Address:
            ipv6 = False
        elif type(src) is IPv6Address and type(dst) is IPv6Address:
            ipv6 = True
        else:
            src, dst = _endpoints(src, dst)
            ipv6 = src.version == 6
        addresses = self.addresses
        if addresses and (addresses[0].version == 6) is not ipv6:
            raise ConfigError(
                f"cannot send IPv{addresses[0].version} addresses from {src} to {dst}: "
                "src and dst must be of the family of the addresses"
            )
        count = len(addresses)
        body = b"".join([address.packed for address in addresses])
        if self.version == 2:
            if self.auth_type == _AUTH_AH:
                raise ConfigError("auth_type 2 (IPsec AH) can be decoded but not encoded")
            word = self.auth_type << 8 | round(self.interval)
            if not ipv6:
                body += self.auth_data
            elif self.auth_type != _AUTH_NONE:
                raise ConfigError("VRRPv2 over IPv6 has no authentication field")
            pseudo = ipv6
        else:
            word = round(self.interval * 100)
            pseudo = ipv6 or (checksum is not _MESSAGE_ONLY and checksum is not _AS_V2)
        header = _pack_header(
            self.version << 4 | _ADVERTISEMENT, self.vrid, self.priority, count, word, 0
        )
        total = int.from_bytes(header, "big") + int.from_bytes(body, "big")
        if pseudo:
            total += _address_int(src) + _address_int(dst) + IPPROTO_VRRP + 8 + len(body)
        # A folded ones' complement sum of non-zero data is never 0, so "0 modulo 0xFFFF" is a sum
        # of 0xFFFF and its complement, the checksum, is 0 (what keepalived and the kernel send).
        folded = total % 0xFFFF
        csum = 0xFFFF - folded if folded else 0
        return header[:6] + csum.to_bytes(2, "big") + body


# Slot descriptors of the frozen class: calling their __set__ directly is the cheapest way to
# fill a new instance (half the cost of object.__setattr__), used only by the trusted decode path.
_set_version = Advertisement.__dict__["version"].__set__
_set_vrid = Advertisement.__dict__["vrid"].__set__
_set_priority = Advertisement.__dict__["priority"].__set__
_set_interval = Advertisement.__dict__["interval"].__set__
_set_addresses = Advertisement.__dict__["addresses"].__set__
_set_auth_type = Advertisement.__dict__["auth_type"].__set__
_set_auth_data = Advertisement.__dict__["auth_data"].__set__
