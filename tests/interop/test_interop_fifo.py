"""vrrpkit writes keepalived's ``notify_fifo`` lines, byte for byte as keepalived does.

Both nodes' configurations name a FIFO in ``global_defs { notify_fifo PATH }``; the test
holds its read end open for the whole test (across restarts). One choreography runs twice
in two labs, with the roles swapped: node A at priority 150 and node B at 100 are first
keepalived and vrrpkit, then vrrpkit and keepalived. A starts and becomes MASTER, B starts;
A's track script fails (150 -> 50) and B takes over; it recovers and A preempts back; A stops
gracefully and B takes over; B stops. So each implementation goes through each role once,
and the lines vrrpkit wrote as A (or B) must be the lines keepalived wrote as A (or B).

keepalived also writes event lines that are not state changes: ``MASTER_RX_LOWER_PRI`` when a
master hears a lower-priority advert (which a preemption can cause, depending on which
advert is on the wire first) and ``*_PRIORITY`` with ``notify_priority_changes`` (not set
here). vrrpkit writes state changes only, so the comparison leaves those events out.
"""

from __future__ import annotations

import pytest
from interop_support import HIGH, LOW, V3_IPV4, Interop, MakePair, Node

pytestmark = pytest.mark.netns

STATES = (b"MASTER", b"BACKUP", b"FAULT", b"STOP")


def state_lines(node: Node) -> list[bytes]:
    """The node's FIFO lines that report a state (keepalived's events left out)."""
    return [line for line in node.fifo_lines() if line.split()[2] in STATES]


#: What node A (priority 150) and node B (100) write, whichever implementation each is.
EXPECTED_A = [
    b'INSTANCE "VI_1" BACKUP 150\n',
    b'INSTANCE "VI_1" MASTER 150\n',
    b'INSTANCE "VI_1" BACKUP 50\n',  # its check failed: effective priority 150 - 100
    b'INSTANCE "VI_1" MASTER 150\n',
    b'INSTANCE "VI_1" STOP 150\n',
]
EXPECTED_B = [
    b'INSTANCE "VI_1" BACKUP 100\n',
    b'INSTANCE "VI_1" MASTER 100\n',
    b'INSTANCE "VI_1" BACKUP 100\n',
    b'INSTANCE "VI_1" MASTER 100\n',
    b'INSTANCE "VI_1" STOP 100\n',
]


def choreography(io: Interop, a: Node, b: Node) -> tuple[list[bytes], list[bytes]]:
    """Run the transitions of the module docstring; return A's and B's state lines."""
    io.start(master=a, backup=b)
    a.set_healthy(False)
    io.wait_master(b)
    a.set_healthy(True)
    io.wait_master(a)
    a.stop()
    io.wait_master(b)
    b.stop()
    io.eventually(
        lambda: len(state_lines(a)) >= len(EXPECTED_A) and len(state_lines(b)) >= len(EXPECTED_B),
        "every FIFO line written",
        10,
    )
    return state_lines(a), state_lines(b)


def test_notify_fifo_lines_match_keepalived_for_the_same_transitions(interop: MakePair) -> None:
    k, v, io = interop(V3_IPV4, keepalived=(1, HIGH), vrrpkit=(2, LOW), notify_fifo=True)
    keepalived_as_a, vrrpkit_as_b = choreography(io, a=k, b=v)

    k2, v2, io2 = interop(V3_IPV4, keepalived=(2, LOW), vrrpkit=(1, HIGH), notify_fifo=True)
    vrrpkit_as_a, keepalived_as_b = choreography(io2, a=v2, b=k2)

    assert vrrpkit_as_a == keepalived_as_a
    assert vrrpkit_as_b == keepalived_as_b
    assert keepalived_as_a == EXPECTED_A
    assert keepalived_as_b == EXPECTED_B


def lower_priority_events(interop: MakePair, high_kind: str) -> list[bytes]:
    """The ``MASTER_RX_LOWER_PRI`` lines of a MASTER at 150 (``high_kind``) that hears the
    adverts of a second master at 100, deaf to multicast so that it never yields."""
    high_is_keepalived = high_kind == "keepalived"
    k, v, io = interop(
        V3_IPV4,
        keepalived=(1, HIGH if high_is_keepalived else LOW),
        vrrpkit=(2, LOW if high_is_keepalived else HIGH),
        notify_fifo=True,
    )
    high, low = (k, v) if high_is_keepalived else (v, k)
    high.start()
    io.wait_master(high)
    io.deafen(low.host)
    low.start()
    io.eventually(lambda: low.state() == "MASTER", "the deaf node is a second master", 10)

    def heard() -> bool:
        if high_is_keepalived:  # an event line at each one ("forcing new election")
            return any(b"MASTER_RX_LOWER_PRI" in line for line in k.fifo_lines())
        return v.counters()["advert_rcvd"] >= 3

    io.eventually(heard, "the master hears the lower-priority adverts", 10)
    assert high.state() == "MASTER"
    assert bool(high.log_lines("with lower priority 100, ours 150")) == high_is_keepalived
    return [line for line in high.fifo_lines() if b"MASTER_RX_LOWER_PRI" in line]


def test_notify_fifo_reports_a_master_hearing_a_lower_priority_advert(interop: MakePair) -> None:
    """keepalived writes ``MASTER_RX_LOWER_PRI`` whenever a master hears a lower priority
    (and answers with an advert, "forcing new election"), whether or not
    ``notify_master_rx_lower_pri`` is set."""
    keepalived = lower_priority_events(interop, "keepalived")
    vrrpkit = lower_priority_events(interop, "vrrpkit")

    assert keepalived[0] == b'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150\n'
    assert vrrpkit and vrrpkit[0] == keepalived[0]
