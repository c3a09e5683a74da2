"""A failing ``vrrp_script`` (``test -e FILE``, weight -100) on either side moves the VIP.

keepalived starts at 150 and vrrpkit at 100. keepalived's check fails (150 -> 50): vrrpkit
preempts it. vrrpkit's check fails too (100 -> 1, priorities are clamped to 1): keepalived,
at 50, preempts it back. vrrpkit's check recovers (100): vrrpkit preempts again. keepalived's
recovers (150): keepalived ends as master. A failing master keeps advertising at its lower
priority; the other node discards those adverts and takes over when its down timer expires.
Both report their effective priority in the notify calls.

VRRPv2 with authentication is left out: tracking does not depend on the packet's
authentication, which the failover tests cover.
"""

from __future__ import annotations

import pytest
from interop_support import HIGH, LOW, V2, V3_VARIANTS, MakePair, Variant, params

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("variant", params([V2, *V3_VARIANTS]))
def test_track_script_failure_on_either_side_moves_the_vip(
    interop: MakePair, variant: Variant
) -> None:
    k, v, io = interop(variant, keepalived=(1, HIGH), vrrpkit=(2, LOW))
    io.start(master=k, backup=v)

    k.set_healthy(False)
    io.wait_master(v)
    v.set_healthy(False)
    io.wait_master(k)
    status = v.status()
    assert status is not None
    assert status["effective_priority"] == 1
    assert status["trackers"]["chk_healthy"] == {"weight": -100, "ok": False, "contribution": -100}

    v.set_healthy(True)
    io.wait_master(v)
    k.set_healthy(True)
    io.wait_master(k)

    io.assert_no_receive_errors()
    io.expect_notifications(
        k, ["BACKUP 150", "MASTER 150", "BACKUP 50", "MASTER 50", "BACKUP 50", "MASTER 150"]
    )
    io.expect_notifications(v, ["BACKUP 100", "MASTER 100", "BACKUP 1", "MASTER 100", "BACKUP 100"])
