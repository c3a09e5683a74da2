"""The eBPF repeat filter and its watchdog, loaded into the kernel (root needed)."""

from __future__ import annotations

import os
import struct

import pytest

from vrrpkit.transports import absorber, ebpf

# Loading eBPF programs needs root (CAP_BPF): those tests are marked as the namespace tests.
root = pytest.mark.netns


def test_an_instruction_is_eight_bytes_with_both_registers_in_one() -> None:
    assert ebpf.insn(ebpf.MOV_X, 6, 1) == bytes([0xBF, 0x16, 0, 0, 0, 0, 0, 0])
    assert struct.unpack("<BBhi", ebpf.insn(ebpf.JNE_K, 1, off=-3, imm=69)) == (0x55, 1, -3, 69)


def test_btf_blob_has_the_kernels_header_and_counts_its_sections() -> None:
    btf = ebpf.BtfBuilder()
    first = btf.add("int", ebpf.BTF_INT, 0, 4, 32)
    second = btf.add("", ebpf.BTF_PTR, 0, first)
    blob = btf.blob()
    magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", blob
    )
    assert (magic, version, hdr_len, type_off) == (0xEB9F, 1, 24, 0)
    assert (first, second) == (1, 2)
    assert type_len == 16 + 12 and str_off == type_len and str_len == len(b"\0int\0")
    assert len(blob) == 24 + type_len + str_len


@root
@pytest.mark.parametrize("ip_version", [4, 6])
def test_the_kernel_loads_the_filter_with_its_watchdog(ip_version: int) -> None:
    loaded = absorber.RepeatAbsorber.create(ip_version)
    assert loaded is not None and loaded.watches and loaded.expiry_fd is not None
    loaded.close()


@root
def test_without_kernel_timers_the_filter_still_absorbs_but_does_not_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on a kernel without eBPF timers: the type information is refused.
    monkeypatch.setattr(absorber, "_btf", lambda: (b"not btf", 1, 3, 7, 9))
    loaded = absorber.RepeatAbsorber.create(4)
    assert loaded is not None and not loaded.watches and loaded.expiry_fd is None
    loaded.watch(51, 10**9)
    assert not loaded.watching(51) and loaded.collect() == ([], [])
    loaded.close()


@root
def test_a_refused_program_gives_no_filter_and_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = set(os.listdir("/proc/self/fd"))
    # A program the verifier refuses (it never returns), with or without the watchdog.
    monkeypatch.setattr(absorber, "_program", lambda *args: (ebpf.insn(ebpf.MOV_K), 0))
    assert absorber.RepeatAbsorber.create(4) is None
    assert set(os.listdir("/proc/self/fd")) <= before


@root
def test_descriptors_are_all_released_on_close() -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        loaded = absorber.RepeatAbsorber.create(6)
        assert loaded is not None
        loaded.close()
    assert set(os.listdir("/proc/self/fd")) <= before


@root
def test_a_timer_that_could_not_be_set_again_leaves_every_watched_vrid_silent_and_untimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = absorber.RepeatAbsorber.create(4)
    assert loaded is not None
    payload = bytes([0x31, 51, 150, 1, 0, 100, 0, 0]) + bytes([192, 0, 2, 100])
    for vrid in (51, 52):
        loaded.arm(vrid, length=b"\x00\x20", ttl=255, src=bytes(4), dst=bytes(4), payload=payload)
        loaded.watch(vrid, 10**9)
    memory = loaded._memory
    for vrid in (51, 52):  # as the filter counts repeats
        struct.pack_into("<Q", memory, vrid * absorber._VALUE_SIZE + absorber._COUNT, 3)
    # The timer's callback reports VRID 0 when it cannot set the timer again.
    assert loaded._ring is not None
    monkeypatch.setattr(loaded._ring, "read", lambda size: [absorber._EXPIRY.pack(0, 0, 0)])
    found, silent = loaded.collect()
    assert sorted(silent) == [51, 52]
    assert [(stretch.vrid, stretch.number, stretch.timed) for stretch in found] == [
        (51, 3, False),
        (52, 3, False),
    ]
    loaded.close()
