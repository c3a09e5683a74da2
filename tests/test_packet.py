"""Specification of the VRRP advertisement codec (vrrpkit.core.packet)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import attrs
import pytest
from vectors import (
    IN_REPOSITORY,
    MISSING,
    REFERENCE,
    endpoints,
    internet_checksum,
    load_vector,
    payload,
    pseudo_header,
    vector_names,
    vectors_dir,
    with_checksum,
)

from vrrpkit.core.errors import ConfigError, VrrpError
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
    peek_vrid,
)

V4_SRC, V4_DST = ip_address("192.0.2.1"), ip_address("224.0.0.18")
V6_SRC, V6_DST = ip_address("fe80::1"), ip_address("ff02::12")

ALL_VECTORS = vector_names()


def vector_decoding(name: str) -> tuple[dict[str, Any], bytes, Advertisement]:
    vector = load_vector(name)
    src, dst = endpoints(vector)
    return vector, payload(vector), Advertisement.decode(payload(vector), src=src, dst=dst)


def v3_ipv4(**changes: Any) -> Advertisement:
    fields: dict[str, Any] = {
        "version": 3,
        "vrid": 51,
        "priority": 150,
        "interval": 1,
        "addresses": ["192.0.2.100"],
    }
    fields.update(changes)
    return Advertisement(**fields)


def v2_ipv4(**changes: Any) -> Advertisement:
    return v3_ipv4(version=2, **changes)


# --- the keepalived captures -------------------------------------------------------------------


def test_vector_folder_holds_v2_and_v3_captures_for_both_families() -> None:
    assert ALL_VECTORS != [MISSING], f"no vectors found in {vectors_dir()}"
    kinds = {(load_vector(name)["version"], load_vector(name)["family"]) for name in ALL_VECTORS}
    assert {(2, 4), (3, 4), (3, 6)} <= kinds


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_decodes_every_keepalived_vector_to_its_fields(name: str) -> None:
    vector, data, adv = vector_decoding(name)
    assert adv.version == vector["version"]
    assert data[0] & 0x0F == vector["type"] == 1
    assert adv.vrid == vector["vrid"]
    assert adv.priority == vector["priority"]
    assert adv.addresses == tuple(ip_address(address) for address in vector["addrs"])
    assert len(adv.addresses) == vector["count"]
    assert adv.family == vector["family"]
    assert len(data) == vector["vrrp_len"]
    assert int.from_bytes(data[6:8], "big") == vector["checksum"]
    if adv.version == 2:
        assert adv.interval == vector["adver_int"]
        assert adv.interval_cs == vector["adver_int"] * 100
        assert adv.auth_type == vector["auth_type"]
        assert adv.auth_data == bytes.fromhex(vector["auth_data"])
    else:
        assert adv.interval_cs == vector["max_adver_int_cs"]
        assert adv.interval == vector["max_adver_int_cs"] / 100
        assert (adv.auth_type, adv.auth_data) == (0, b"")


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_reencodes_every_vector_byte_for_byte(name: str) -> None:
    vector, data, adv = vector_decoding(name)
    src, dst = endpoints(vector)
    assert adv.encode(src=src, dst=dst) == data
    assert adv.encode(src=vector["src"], dst=vector["dst"]) == data


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_decoded_vector_equals_and_hashes_like_a_constructed_advertisement(name: str) -> None:
    _, _, adv = vector_decoding(name)
    built = Advertisement(
        version=adv.version,
        vrid=adv.vrid,
        priority=adv.priority,
        interval=adv.interval,
        addresses=[str(address) for address in adv.addresses],
        auth_type=adv.auth_type,
        auth_data=adv.auth_data,
    )
    assert adv == built
    assert hash(adv) == hash(built)
    assert attrs.evolve(adv) == adv


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_reference_pseudo_header_matches_the_vectors(name: str) -> None:
    # Guards the reference helper the other tests use to forge checksums.
    vector = load_vector(name)
    src, dst = endpoints(vector)
    expected = bytes.fromhex(vector["pseudo_header_hex"])
    if vector["version"] == 3:
        assert pseudo_header(src, dst, vector["vrrp_len"]) == expected
        assert internet_checksum(expected + payload(vector)) == 0
    else:
        assert expected == b""
        assert internet_checksum(payload(vector)) == 0


def test_decode_accepts_address_strings_and_byte_buffers() -> None:
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    expected = Advertisement.decode(data, src=V4_SRC, dst=V4_DST)
    assert Advertisement.decode(data, src="192.0.2.1", dst="224.0.0.18") == expected
    assert Advertisement.decode(bytearray(data), src=V4_SRC, dst=V4_DST) == expected
    assert Advertisement.decode(memoryview(data), src=V4_SRC, dst=V4_DST) == expected


# --- checksums ---------------------------------------------------------------------------------


def test_v3_ipv4_message_only_checksum_is_rejected_in_pseudo_header_mode() -> None:
    message_only = v3_ipv4().encode(src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.MESSAGE_ONLY)
    assert internet_checksum(message_only) == 0
    with pytest.raises(ChecksumError) as error:
        Advertisement.decode(message_only, src=V4_SRC, dst=V4_DST)
    assert error.value.counter == "chk_err"


def test_v3_ipv4_pseudo_header_checksum_is_rejected_in_message_only_mode() -> None:
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    with pytest.raises(ChecksumError):
        Advertisement.decode(data, src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.MESSAGE_ONLY)


def test_either_mode_accepts_both_checksum_forms() -> None:
    adv = v3_ipv4()
    for form in (ChecksumMode.PSEUDO_HEADER, ChecksumMode.MESSAGE_ONLY):
        data = adv.encode(src=V4_SRC, dst=V4_DST, checksum=form)
        assert Advertisement.decode(data, src=V4_SRC, dst=V4_DST, checksum=form) == adv
        assert (
            Advertisement.decode(data, src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.EITHER) == adv
        )


def test_as_v2_mode_sends_the_message_only_form_and_accepts_both() -> None:
    adv = v3_ipv4()
    data = adv.encode(src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.AS_V2)
    assert data == adv.encode(src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.MESSAGE_ONLY)
    pseudo = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    for received in (data, pseudo):
        Advertisement.decode(received, src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.AS_V2)


def test_either_mode_still_rejects_a_checksum_valid_in_neither_form() -> None:
    data = bytearray(v3_ipv4().encode(src=V4_SRC, dst=V4_DST))
    data[7] ^= 0x01
    with pytest.raises(ChecksumError):
        Advertisement.decode(bytes(data), src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.EITHER)


def test_encoding_in_either_mode_uses_the_pseudo_header() -> None:
    adv = v3_ipv4()
    either = adv.encode(src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.EITHER)
    assert either == adv.encode(src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.PSEUDO_HEADER)


@pytest.mark.parametrize("mode", list(ChecksumMode))
def test_ipv6_vector_verifies_with_the_pseudo_header_in_every_mode(mode: ChecksumMode) -> None:
    # The kernel computes IPv6 checksums (IPV6_CHECKSUM), always over the pseudo-header.
    vector = load_vector("v3-ipv6-adv100cs-prio150")
    data = payload(vector)
    adv = Advertisement.decode(data, src=V6_SRC, dst=V6_DST, checksum=mode)
    assert adv.addresses == (IPv6Address("2001:db8::100"),)
    assert adv.encode(src=V6_SRC, dst=V6_DST, checksum=mode) == data


def test_ipv6_checksum_covers_source_and_destination() -> None:
    data = payload(load_vector("v3-ipv6-adv100cs-prio150"))
    with pytest.raises(ChecksumError):
        Advertisement.decode(data, src=ip_address("fe80::2"), dst=V6_DST)
    with pytest.raises(ChecksumError):
        Advertisement.decode(data, src=V6_SRC, dst=ip_address("2001:db8::2"))


def test_v3_unicast_checksum_uses_the_peer_address_not_the_multicast_group() -> None:
    vector = load_vector("v3-ipv4-unicast-prio150")
    data = payload(vector)
    Advertisement.decode(data, src=V4_SRC, dst=ip_address(vector["dst"]))
    with pytest.raises(ChecksumError):
        Advertisement.decode(data, src=V4_SRC, dst=V4_DST)


@pytest.mark.parametrize("mode", list(ChecksumMode))
def test_v2_ipv4_checksum_covers_the_message_only_in_every_mode(mode: ChecksumMode) -> None:
    data = payload(load_vector("v2-ipv4-master-prio150"))
    anywhere = (ip_address("198.51.100.7"), ip_address("198.51.100.8"))
    adv = Advertisement.decode(data, src=anywhere[0], dst=anywhere[1], checksum=mode)
    assert adv.encode(src=anywhere[0], dst=anywhere[1], checksum=mode) == data


def test_v2_over_ipv6_carries_no_authentication_field_as_keepalived_sends_it() -> None:
    adv = Advertisement(version=2, vrid=7, priority=100, interval=1, addresses=["2001:db8::1"])
    data = adv.encode(src=V6_SRC, dst=V6_DST)
    assert len(data) == 8 + 16
    assert Advertisement.decode(data, src=V6_SRC, dst=V6_DST) == adv


def test_v2_over_ipv6_refuses_to_encode_a_password() -> None:
    adv = Advertisement(
        version=2, vrid=7, priority=100, interval=1, addresses=["2001:db8::1"],
        auth_type=1, auth_data=b"secret",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="IPv6"):
        adv.encode(src=V6_SRC, dst=V6_DST)


def test_v2_over_ipv6_uses_the_pseudo_header_like_the_kernel() -> None:
    adv = Advertisement(version=2, vrid=7, priority=100, interval=1, addresses=["2001:db8::1"])
    data = adv.encode(src=V6_SRC, dst=V6_DST)
    assert internet_checksum(pseudo_header(V6_SRC, V6_DST, len(data)) + data) == 0
    assert Advertisement.decode(data, src=V6_SRC, dst=V6_DST) == adv


@pytest.mark.parametrize(
    ("adv", "src", "dst", "mode"),
    [
        (v3_ipv4(), V4_SRC, V4_DST, ChecksumMode.PSEUDO_HEADER),
        (v3_ipv4(), V4_SRC, V4_DST, ChecksumMode.MESSAGE_ONLY),
        (v3_ipv4(addresses=[]), V4_SRC, V4_DST, ChecksumMode.PSEUDO_HEADER),
        (v2_ipv4(auth_type=1, auth_data=b"secret"), V4_SRC, V4_DST, ChecksumMode.PSEUDO_HEADER),
        (v3_ipv4(addresses=["2001:db8::1", "2001:db8::2"]), V6_SRC, V6_DST, ChecksumMode.EITHER),
    ],
)
def test_checksum_matches_the_rfc_1071_reference(
    adv: Advertisement,
    src: IPv4Address | IPv6Address,
    dst: IPv4Address | IPv6Address,
    mode: ChecksumMode,
) -> None:
    data = adv.encode(src=src, dst=dst, checksum=mode)
    use_pseudo = src.version == 6 or (adv.version == 3 and mode is not ChecksumMode.MESSAGE_ONLY)
    if use_pseudo:
        assert data == with_checksum(data, src, dst)
    else:
        assert data == with_checksum(data)


def test_checksum_is_zero_when_the_words_sum_to_all_ones() -> None:
    # 0x31CE + 0xCE00 + 0x0031 == 0xFFFF: the folded sum is all ones, so the checksum keepalived
    # (and the kernel) send is 0x0000; 0xFFFF, its other ones' complement form, also verifies.
    adv = v3_ipv4(vrid=0xCE, priority=0xCE, interval=0.49, addresses=[])
    data = adv.encode(src=V4_SRC, dst=V4_DST, checksum=ChecksumMode.MESSAGE_ONLY)
    assert data == bytes.fromhex("31ce ce00 0031 0000")
    mode = ChecksumMode.MESSAGE_ONLY
    assert Advertisement.decode(data, src=V4_SRC, dst=V4_DST, checksum=mode) == adv
    other_form = data[:6] + b"\xff\xff"
    assert Advertisement.decode(other_form, src=V4_SRC, dst=V4_DST, checksum=mode) == adv


def test_bad_checksum_raises_checksum_error() -> None:
    for name in ALL_VECTORS:
        vector = load_vector(name)
        src, dst = endpoints(vector)
        data = bytearray(payload(vector))
        data[6] ^= 0x40
        with pytest.raises(ChecksumError) as error:
            Advertisement.decode(bytes(data), src=src, dst=dst)
        assert error.value.counter == "chk_err"


# --- malformed messages ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_VECTORS)
def test_truncated_packet_raises_packet_length_error(name: str) -> None:
    vector = load_vector(name)
    src, dst = endpoints(vector)
    data = payload(vector)
    for size in range(len(data)):
        with pytest.raises(PacketLengthError) as error:
            Advertisement.decode(data[:size], src=src, dst=dst)
        assert error.value.counter == "packet_len_err"
        assert str(error.value)


def test_count_larger_than_the_addresses_present_raises_packet_length_error() -> None:
    data = bytearray(payload(load_vector("v3-ipv4-adv10cs-prio150")))
    data[3] = 2
    with pytest.raises(PacketLengthError, match="must be 16 bytes, got 12"):
        Advertisement.decode(with_checksum(bytes(data), V4_SRC, V4_DST), src=V4_SRC, dst=V4_DST)


def test_count_smaller_than_the_addresses_present_raises_packet_length_error() -> None:
    data = v3_ipv4(addresses=["192.0.2.100", "192.0.2.101"]).encode(src=V4_SRC, dst=V4_DST)
    forged = bytearray(data)
    forged[3] = 1
    with pytest.raises(PacketLengthError):
        Advertisement.decode(with_checksum(bytes(forged), V4_SRC, V4_DST), src=V4_SRC, dst=V4_DST)


def test_ipv4_sized_message_from_an_ipv6_source_raises_packet_length_error() -> None:
    # The addresses take the family of the IP source, so the length no longer adds up.
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    with pytest.raises(PacketLengthError):
        Advertisement.decode(data, src=V6_SRC, dst=V6_DST)


def test_trailing_zero_padding_up_to_the_ethernet_minimum_is_accepted() -> None:
    for name in ALL_VECTORS:
        vector = load_vector(name)
        src, dst = endpoints(vector)
        data = payload(vector)
        expected = Advertisement.decode(data, src=src, dst=dst)
        padded = data + bytes(46 - len(data))
        assert Advertisement.decode(padded, src=src, dst=dst) == expected


def test_trailing_bytes_that_are_not_zero_raise_packet_length_error() -> None:
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    with pytest.raises(PacketLengthError):
        Advertisement.decode(data + b"\0\0\x01\0", src=V4_SRC, dst=V4_DST)


def test_zero_padding_beyond_46_bytes_raises_packet_length_error() -> None:
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    with pytest.raises(PacketLengthError):
        Advertisement.decode(data + bytes(47 - len(data)), src=V4_SRC, dst=V4_DST)


@pytest.mark.parametrize("version", [0, 1, *range(4, 16)])
def test_unknown_version_raises_version_error(version: int) -> None:
    data = bytearray(payload(load_vector("v3-ipv4-adv10cs-prio150")))
    data[0] = version << 4 | 1
    with pytest.raises(VersionError) as error:
        Advertisement.decode(with_checksum(bytes(data), V4_SRC, V4_DST), src=V4_SRC, dst=V4_DST)
    assert error.value.counter == "vers_err"
    assert str(version) in str(error.value)


@pytest.mark.parametrize("packet_type", [0, *range(2, 16)])
def test_wrong_type_raises_invalid_type_error(packet_type: int) -> None:
    for name in ("v2-ipv4-master-prio150", "v3-ipv4-adv10cs-prio150"):
        vector = load_vector(name)
        data = bytearray(payload(vector))
        data[0] = vector["version"] << 4 | packet_type
        if vector["version"] == 3:
            forged = with_checksum(bytes(data), V4_SRC, V4_DST)
        else:
            forged = with_checksum(bytes(data))
        with pytest.raises(InvalidTypeError) as error:
            Advertisement.decode(forged, src=V4_SRC, dst=V4_DST)
        assert error.value.counter == "invalid_type_rcvd"


def test_vrid_zero_raises_vrid_error() -> None:
    data = bytearray(payload(load_vector("v3-ipv4-adv10cs-prio150")))
    data[1] = 0
    with pytest.raises(VridError) as error:
        Advertisement.decode(with_checksum(bytes(data), V4_SRC, V4_DST), src=V4_SRC, dst=V4_DST)
    assert error.value.counter == "vrid_err"


def test_zero_interval_raises_interval_error() -> None:
    v3 = bytearray(payload(load_vector("v3-ipv4-adv10cs-prio150")))
    v3[4:6] = b"\x00\x00"
    v2 = bytearray(payload(load_vector("v2-ipv4-master-prio150")))
    v2[5] = 0
    for forged in (with_checksum(bytes(v3), V4_SRC, V4_DST), with_checksum(bytes(v2))):
        with pytest.raises(IntervalError) as error:
            Advertisement.decode(forged, src=V4_SRC, dst=V4_DST)
        assert error.value.counter == "advert_interval_err"


def test_v3_reserved_interval_bits_are_ignored_on_decode() -> None:
    data = bytearray(payload(load_vector("v3-ipv4-adv10cs-prio150")))
    data[4] |= 0xF0
    forged = with_checksum(bytes(data), V4_SRC, V4_DST)
    adv = Advertisement.decode(forged, src=V4_SRC, dst=V4_DST)
    assert adv.interval_cs == 10
    assert adv.encode(src=V4_SRC, dst=V4_DST)[4] == 0x00


def test_reserved_bits_with_only_zero_in_the_low_twelve_still_mean_zero_interval() -> None:
    data = bytearray(payload(load_vector("v3-ipv4-adv10cs-prio150")))
    data[4:6] = b"\xf0\x00"
    with pytest.raises(IntervalError):
        Advertisement.decode(with_checksum(bytes(data), V4_SRC, V4_DST), src=V4_SRC, dst=V4_DST)


@pytest.mark.parametrize("auth_type", [3, 4, 0x80, 0xFF])
def test_invalid_v2_auth_type_raises_auth_type_error(auth_type: int) -> None:
    data = bytearray(payload(load_vector("v2-ipv4-master-prio150")))
    data[4] = auth_type
    with pytest.raises(AuthTypeError) as error:
        Advertisement.decode(with_checksum(bytes(data)), src=V4_SRC, dst=V4_DST)
    assert error.value.counter == "invalid_authtype"


def test_v2_ah_auth_type_decodes_but_cannot_be_encoded() -> None:
    data = bytearray(payload(load_vector("v2-ipv4-master-prio150")))
    data[4] = 2
    adv = Advertisement.decode(with_checksum(bytes(data)), src=V4_SRC, dst=V4_DST)
    assert adv.auth_type == 2
    with pytest.raises(ConfigError, match="AH"):
        adv.encode(src=V4_SRC, dst=V4_DST)


def test_mixed_src_and_dst_families_raise_address_family_error() -> None:
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    with pytest.raises(AddressFamilyError) as error:
        Advertisement.decode(data, src=V4_SRC, dst=V6_DST)
    assert error.value.counter == "addr_list_err"
    with pytest.raises(AddressFamilyError):
        Advertisement.decode(data, src="fe80::1", dst="224.0.0.18")


def test_src_that_is_not_an_address_raises_config_error() -> None:
    data = payload(load_vector("v3-ipv4-adv10cs-prio150"))
    with pytest.raises(ConfigError, match="src"):
        Advertisement.decode(data, src="not-an-address", dst=V4_DST)
    with pytest.raises(ConfigError, match="dst"):
        Advertisement.decode(data, src=V4_SRC, dst=3232235521)  # type: ignore[arg-type]


def test_every_packet_error_names_its_keepalived_counter() -> None:
    expected = {
        PacketLengthError: "packet_len_err",
        VersionError: "vers_err",
        VridError: "vrid_err",
        InvalidTypeError: "invalid_type_rcvd",
        ChecksumError: "chk_err",
        IntervalError: "advert_interval_err",
        AuthTypeError: "invalid_authtype",
        AddressFamilyError: "addr_list_err",
    }
    assert set(PacketError.__subclasses__()) == set(expected)
    for cls, counter in expected.items():
        assert issubclass(cls, PacketError)
        assert issubclass(cls, VrrpError)
        assert not issubclass(cls, ValueError)
        assert cls.counter == counter
        assert cls("message").counter == counter


def test_peek_vrid_reads_the_second_byte_without_validation() -> None:
    assert peek_vrid(payload(load_vector("v2-ipv4-prio0"))) == 51
    assert peek_vrid(b"\xff\x07") == 7
    assert peek_vrid(b"\x31") is None
    assert peek_vrid(b"") is None


# --- building advertisements -------------------------------------------------------------------


def test_v2_password_is_padded_to_eight_bytes() -> None:
    adv = v2_ipv4(auth_type=1, auth_data=b"pass")
    assert adv.auth_data == b"pass\0\0\0\0"
    data = adv.encode(src=V4_SRC, dst=V4_DST)
    assert data[4] == 1
    assert data[-8:] == b"pass\0\0\0\0"
    assert Advertisement.decode(data, src=V4_SRC, dst=V4_DST) == adv
    assert adv == v2_ipv4(auth_type=1, auth_data=b"pass\0\0\0\0")


def test_v2_without_auth_data_carries_eight_zero_bytes() -> None:
    assert v2_ipv4().auth_data == bytes(8)


def test_v2_password_longer_than_eight_bytes_is_rejected() -> None:
    with pytest.raises(ConfigError, match="auth_data"):
        v2_ipv4(auth_type=1, auth_data=b"123456789")


def test_v3_rejects_v2_authentication_fields() -> None:
    with pytest.raises(ConfigError, match="auth_type"):
        v3_ipv4(auth_type=1)
    with pytest.raises(ConfigError, match="auth_data"):
        v3_ipv4(auth_data=b"x")


@pytest.mark.parametrize(
    ("given", "centis"),
    [(0.1, 10), (0.1000000001, 10), (0.3, 30), (0.05, 5), (1, 100), (40.95, 4095), (0.01, 1)],
)
def test_interval_is_normalised_to_centiseconds(given: float, centis: int) -> None:
    adv = v3_ipv4(interval=given)
    assert adv.interval == centis / 100
    assert adv.interval_cs == centis
    assert type(adv.interval) is float


@pytest.mark.parametrize("given", [0.105, 1.001, 0.0001])
def test_interval_that_is_not_a_whole_number_of_centiseconds_is_rejected(given: float) -> None:
    with pytest.raises(ConfigError, match=r"multiple of 0\.01"):
        v3_ipv4(interval=given)


@pytest.mark.parametrize(("version", "interval"), [(3, 0), (3, 40.96), (3, -1), (2, 0), (2, 256)])
def test_interval_out_of_range_is_rejected(version: int, interval: float) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        v3_ipv4(version=version, interval=interval)


def test_v2_interval_must_be_whole_seconds() -> None:
    with pytest.raises(ConfigError, match="whole seconds"):
        v2_ipv4(interval=1.5)
    assert v2_ipv4(interval=3.0).interval == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1", None, True])
def test_interval_must_be_a_finite_number(bad: object) -> None:
    with pytest.raises(ConfigError, match="interval"):
        v3_ipv4(interval=bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 1),
        ("version", 4),
        ("vrid", 0),
        ("vrid", 256),
        ("priority", -1),
        ("priority", 256),
        ("priority", True),
        ("priority", 1.0),
        ("auth_type", 3),
    ],
)
def test_field_out_of_range_raises_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field) as error:
        v3_ipv4(**{field: value})
    assert isinstance(error.value, ValueError)


def test_addresses_accept_strings_and_objects_and_become_a_tuple() -> None:
    adv = v3_ipv4(addresses=iter(["192.0.2.1", IPv4Address("192.0.2.2")]))
    assert adv.addresses == (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
    assert adv.family == 4
    assert v3_ipv4(addresses=["2001:db8::1"]).family == 6


def test_rejects_mixed_families() -> None:
    with pytest.raises(ConfigError, match="mixes IPv4 and IPv6"):
        v3_ipv4(addresses=["192.0.2.1", "2001:db8::1"])


@pytest.mark.parametrize("bad", ["192.0.2.1", ["not-an-ip"], [3232235521], 5])
def test_rejects_addresses_that_are_not_an_iterable_of_addresses(bad: object) -> None:
    with pytest.raises(ConfigError, match="address"):
        v3_ipv4(addresses=bad)


def test_rejects_more_than_255_addresses() -> None:
    many = [IPv4Address(0x0A000000 + i) for i in range(256)]
    assert len(v3_ipv4(addresses=many[:255]).addresses) == 255
    with pytest.raises(ConfigError, match="255"):
        v3_ipv4(addresses=many)
    with pytest.raises(ConfigError, match="255"):
        v3_ipv4(addresses=tuple(many))


def test_advertisement_without_addresses_round_trips_and_has_no_family() -> None:
    adv = v3_ipv4(addresses=[])
    assert adv.family is None
    data = adv.encode(src=V4_SRC, dst=V4_DST)
    assert len(data) == 8
    assert Advertisement.decode(data, src=V4_SRC, dst=V4_DST) == adv


def test_encode_rejects_endpoints_of_another_family_than_the_addresses() -> None:
    with pytest.raises(ConfigError, match="family"):
        v3_ipv4().encode(src=V6_SRC, dst=V6_DST)
    with pytest.raises(AddressFamilyError):
        v3_ipv4().encode(src=V4_SRC, dst=V6_DST)


def test_advertisement_is_immutable() -> None:
    adv = v3_ipv4()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        adv.priority = 1  # type: ignore[misc]


def test_vectors_in_the_repository_match_the_reference_copy_beside_it() -> None:
    if not REFERENCE.is_dir():
        pytest.skip(f"no reference copy at {REFERENCE} (a clone of the repository alone)")
    reference = {path.name: path.read_bytes() for path in REFERENCE.glob("*.json")}
    ours = {path.name: path.read_bytes() for path in IN_REPOSITORY.glob("*.json")}
    assert ours == reference
