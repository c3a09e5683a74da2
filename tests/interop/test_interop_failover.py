"""keepalived and vrrpkit in one VRRP group: a dead or stopped master is replaced by the
other implementation, and the higher-priority node takes the VIP back when it returns.

The hard-kill tests also check, for longer than a down timer, that the backup keeps
accepting the master's adverts; the graceful-stop tests that the priority-0 advert of the
stopping master is what the backup acts on.

Every protocol variant: VRRPv2 IPv4 (with and without PASS authentication, 1 s adverts),
VRRPv3 IPv4 and IPv6 multicast, VRRPv3 IPv4 and IPv6 unicast (0.1 s adverts).
"""

from __future__ import annotations

import pytest
from interop_support import (
    ALL_VARIANTS,
    HIGH,
    LOW,
    V2_IPV6,
    V3_IPV4,
    V3_IPV6,
    MakePair,
    Variant,
    params,
)

pytestmark = pytest.mark.netns

#: What keepalived logs (with -D) when, as BACKUP, it hears a priority-0 advert.
PRI_ZERO_RECEIVED = "Backup received priority 0 advertisement"


@pytest.mark.parametrize("variant", params([*ALL_VARIANTS, V2_IPV6]))
def test_keepalived_master_hard_kill_then_preemption_back(
    interop: MakePair, variant: Variant
) -> None:
    k, v, io = interop(variant, keepalived=(1, HIGH), vrrpkit=(2, LOW))
    io.start(master=k, backup=v, hold=True)
    pri_zero = v.counters()["pri_zero_rcvd"]

    k.hard_kill()
    io.wait_master(v)
    # SIGKILL: no priority-0 advert, and the dead node's VIP stays on its interface.
    assert v.counters()["pri_zero_rcvd"] == pri_zero
    assert k.holds_vip()

    k.start()  # keepalived removes its stale VIP at startup, then preempts
    io.wait_master(k)
    io.assert_no_receive_errors()
    io.expect_notifications(k, ["BACKUP 150", "MASTER 150", "BACKUP 150", "MASTER 150"])
    io.expect_notifications(v, ["BACKUP 100", "MASTER 100", "BACKUP 100"])


@pytest.mark.parametrize("variant", params(ALL_VARIANTS))
def test_keepalived_master_graceful_stop_then_preemption_back(
    interop: MakePair, variant: Variant
) -> None:
    k, v, io = interop(variant, keepalived=(1, HIGH), vrrpkit=(2, LOW))
    io.start(master=k, backup=v)
    pri_zero = v.counters()["pri_zero_rcvd"]

    k.stop()
    io.wait_master(v)
    assert v.counters()["pri_zero_rcvd"] == pri_zero + 1
    assert not k.holds_vip()

    k.start()
    io.wait_master(k)
    io.assert_no_receive_errors()
    io.expect_notifications(k, ["BACKUP 150", "MASTER 150", "STOP 150", "BACKUP 150", "MASTER 150"])
    io.expect_notifications(v, ["BACKUP 100", "MASTER 100", "BACKUP 100"])


@pytest.mark.parametrize("variant", params([*ALL_VARIANTS, V2_IPV6]))
def test_vrrpkit_master_hard_kill_then_preemption_back(interop: MakePair, variant: Variant) -> None:
    k, v, io = interop(variant, keepalived=(1, LOW), vrrpkit=(2, HIGH))
    io.start(master=v, backup=k, hold=True)

    v.hard_kill()
    io.wait_master(k)
    assert v.holds_vip()  # SIGKILL: nothing removed it
    assert k.log_lines(PRI_ZERO_RECEIVED) == []

    v.start()
    io.wait_master(v)
    io.assert_no_receive_errors()
    io.expect_notifications(k, ["BACKUP 100", "MASTER 100", "BACKUP 100"])
    io.expect_notifications(v, ["BACKUP 150", "MASTER 150", "BACKUP 150", "MASTER 150"])


@pytest.mark.parametrize("variant", params(ALL_VARIANTS))
def test_vrrpkit_master_graceful_stop_then_preemption_back(
    interop: MakePair, variant: Variant
) -> None:
    k, v, io = interop(variant, keepalived=(1, LOW), vrrpkit=(2, HIGH))
    io.start(master=v, backup=k)

    v.stop()
    io.wait_master(k)
    assert not v.holds_vip()
    assert len(k.log_lines(PRI_ZERO_RECEIVED)) == 1

    v.start()
    io.wait_master(v)
    io.assert_no_receive_errors()
    io.expect_notifications(k, ["BACKUP 100", "MASTER 100", "BACKUP 100"])
    io.expect_notifications(v, ["BACKUP 150", "MASTER 150", "STOP 150", "BACKUP 150", "MASTER 150"])


@pytest.mark.parametrize("variant", params([V3_IPV4, V3_IPV6]))
def test_vrrpkit_restarted_after_a_hard_kill_drops_the_vip_it_left_behind(
    interop: MakePair, variant: Variant
) -> None:
    """As keepalived removes its VIPs at startup, a vrrpkit killed while MASTER and restarted
    as BACKUP does not keep the stale VIP (two hosts answering for it)."""
    k, v, io = interop(variant, keepalived=(1, HIGH), vrrpkit=(2, LOW))
    io.start(master=k, backup=v)
    k.hard_kill()
    io.wait_master(v)
    # Notify programs run after the VIPs are up; let MASTER's run before killing the process.
    io.expect_notifications(v, ["BACKUP 100", "MASTER 100"])
    v.hard_kill()
    assert k.holds_vip() and v.holds_vip()  # both killed, both left the VIP behind

    k.start()
    io.wait_master(k)
    v.start()
    io.wait_master(k)  # vrrpkit BACKUP without the VIP
    io.expect_notifications(v, ["BACKUP 100", "MASTER 100", "BACKUP 100"])
