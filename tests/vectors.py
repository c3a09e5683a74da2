"""Helpers for the packet tests: keepalived's captured adverts and a reference checksum.

The captures are ``tests/keepalived_vectors/*.json``, real keepalived packets taken in the team's
namespace lab (``vrrp_hex`` is the VRRP message, ``src``/``dst`` the IP addresses, plus the
decoded fields); the team's reference copy sits beside the repository in ``shared/vectors``
and a test checks that the two agree wherever both exist. The ``VRRPKIT_VECTORS`` environment
variable points the tests at another folder. A missing or empty folder must fail the tests,
never skip them: :func:`vector_names` then yields a placeholder that :func:`load_vector`
refuses with the path it looked in.
"""

from __future__ import annotations

import json
import os
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

ENV_VAR = "VRRPKIT_VECTORS"
MISSING = "vectors-missing"


def vectors_dir() -> Path:
    """The folder holding the vector files (``$VRRPKIT_VECTORS`` wins)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return IN_REPOSITORY


#: The copy of the captures in this repository.
IN_REPOSITORY = Path(__file__).resolve().parent / "keepalived_vectors"
#: The team's reference copy, beside the repository (absent in a clone of the repository alone).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def vector_names() -> list[str]:
    """Names (file stems) of every vector, or ``[MISSING]`` so that a missing folder fails."""
    folder = vectors_dir()
    names = sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []
    return names or [MISSING]


def load_vector(name: str) -> dict[str, Any]:
    """The decoded JSON of one vector; raises FileNotFoundError naming the folder if absent."""
    folder = vectors_dir()
    path = folder / f"{name}.json"
    if name == MISSING or not path.is_file():
        raise FileNotFoundError(
            f"no keepalived VRRP vector {name!r} in {folder} (tests/keepalived_vectors in the "
            f"repository, or the folder {ENV_VAR} names)"
        )
    vector: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return vector


def payload(vector: dict[str, Any]) -> bytes:
    """The VRRP message of a vector (``vrrp_hex``)."""
    return bytes.fromhex(vector["vrrp_hex"])


def endpoints(
    vector: dict[str, Any],
) -> tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]:
    """The vector's IP source and destination as ipaddress objects."""
    return ip_address(vector["src"]), ip_address(vector["dst"])


# A deliberately naive implementation (RFC 1071 word-by-word sum with end-around carry), to check
# the codec's arithmetic shortcut against.
def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data`` (odd lengths padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, length: int
) -> bytes:
    """IPv4 (RFC 5798 §5.2.8) or IPv6 (RFC 8200 §8.1) pseudo-header for protocol 112."""
    if src.version == 4:
        return src.packed + dst.packed + bytes([0, 112]) + length.to_bytes(2, "big")
    return src.packed + dst.packed + length.to_bytes(4, "big") + bytes([0, 0, 0, 112])


def with_checksum(
    message: bytes,
    src: IPv4Address | IPv6Address | None = None,
    dst: IPv4Address | IPv6Address | None = None,
) -> bytes:
    """``message`` with its checksum field recomputed; over a pseudo-header when src/dst given.

    Messages too short to hold a checksum field are returned unchanged.
    """
    if len(message) < 8:
        return message
    zeroed = message[:6] + b"\0\0" + message[8:]
    prefix = b"" if src is None or dst is None else pseudo_header(src, dst, len(message))
    return zeroed[:6] + internet_checksum(prefix + zeroed).to_bytes(2, "big") + zeroed[8:]
