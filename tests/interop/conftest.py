"""Fixtures of the interop tests: a keepalived node and a vrrpkit node in a fresh lab.

The ``interop`` fixture kills every process it started and removes every node directory
after the test, pass or fail, before the ``make_lab`` fixture deletes the namespaces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import netns
import pytest
from interop_support import (
    Interop,
    KeepalivedNode,
    Node,
    Pair,
    Variant,
    VrrpkitNode,
    require_keepalived,
)


@pytest.fixture
def interop(make_lab: Callable[[int], netns.Lab]) -> Iterator[Callable[..., Pair]]:
    """``interop(variant, keepalived=(host, priority), vrrpkit=(host, priority))`` builds a
    two-host lab and both nodes, not started: keepalived on host 1 or 2, vrrpkit on the
    other. ``notify_fifo=True`` adds ``notify_fifo`` to both configurations."""
    require_keepalived()
    nodes: list[Node] = []

    def make(
        variant: Variant,
        *,
        keepalived: tuple[int, int],
        vrrpkit: tuple[int, int],
        notify_fifo: bool = False,
    ) -> Pair:
        lab = make_lab(2)
        hosts = {host.number: host for host in lab.hosts}
        k_host, v_host = hosts[keepalived[0]], hosts[vrrpkit[0]]
        k = KeepalivedNode(variant, k_host, v_host, keepalived[1], notify_fifo=notify_fifo)
        nodes.append(k)
        v = VrrpkitNode(variant, v_host, k_host, vrrpkit[1], notify_fifo=notify_fifo)
        nodes.append(v)
        return k, v, Interop(lab, [k, v])

    try:
        yield make
    finally:
        for node in nodes:
            node.close()
