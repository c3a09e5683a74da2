"""Equal priorities: when two masters meet, the one with the higher source address stays.

keepalived breaks the tie only in MASTER (a BACKUP accepts an equal-priority advert), so the
two nodes first become masters on a partitioned bridge (links up, no forwarding), both
holding the VIP; when forwarding resumes, the lower address yields. Multicast IPv4 compares
192.0.2.x, multicast IPv6 the link-local fe80::x sources, unicast the unicast_src_ip.

VRRPv2 with authentication is left out: the tie-break does not depend on the packet's
authentication, which the failover tests cover.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from interop_support import LOW, V2, V3_VARIANTS, MakePair, Variant, params

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("winner", ["keepalived", "vrrpkit"])
@pytest.mark.parametrize("variant", params([V2, *V3_VARIANTS]))
def test_equal_priority_masters_keep_the_one_with_the_higher_address(
    interop: MakePair, variant: Variant, winner: str
) -> None:
    # Host 2's addresses are above host 1's: the winner runs on host 2.
    k_host = 2 if winner == "keepalived" else 1
    k, v, io = interop(variant, keepalived=(k_host, LOW), vrrpkit=(3 - k_host, LOW))
    win, lose = (k, v) if winner == "keepalived" else (v, k)
    assert ip_address(variant.address(win.host)) > ip_address(variant.address(lose.host))

    io.partition(True)
    k.start()
    v.start()
    io.eventually(
        lambda: all(n.state() == "MASTER" and n.holds_vip() for n in (k, v)),
        "both MASTER with the VIP while partitioned",
        variant.timeout,
    )

    io.partition(False)
    io.wait_master(win)
    io.assert_no_receive_errors()
    io.expect_notifications(win, ["BACKUP 100", "MASTER 100"])  # never left MASTER
    io.expect_notifications(lose, ["BACKUP 100", "MASTER 100", "BACKUP 100"])
