"""The eBPF repeat filter, loaded into the kernel (root needed)."""

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


@root
@pytest.mark.parametrize("ip_version", [4, 6])
def test_the_kernel_loads_the_filter(ip_version: int) -> None:
    loaded = absorber.RepeatAbsorber.create(ip_version)
    assert loaded is not None
    loaded.close()


@root
def test_a_refused_program_gives_no_filter_and_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = set(os.listdir("/proc/self/fd"))
    # A program the verifier refuses (it never returns).
    monkeypatch.setattr(absorber, "_program", lambda ip_version, map_fd: ebpf.insn(ebpf.MOV_K))
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
