"""Per-router receive and transmit counters, named after keepalived's statistics."""

from __future__ import annotations

import attrs

__all__ = ["Counters"]


@attrs.define
class Counters:
    """Counters of one router (keepalived's ``vrrp_print_stats`` names plus a few of ours).

    Ours: ``chk_err``, ``vers_err`` and ``vrid_err`` exist only in keepalived's SNMP builds;
    ``advert_interval_err`` counts v2 interval mismatches that keepalived drops uncounted;
    ``unknown_source`` counts unicast adverts from a source that is not a configured peer;
    ``split_brain`` counts lower-priority adverts heard while MASTER: another router also
    believes it is master (keepalived's MASTER_RX_LOWER_PRI event).
    """

    advert_rcvd: int = 0
    advert_sent: int = 0
    become_master: int = 0
    release_master: int = 0
    packet_len_err: int = 0
    ip_ttl_err: int = 0
    invalid_type_rcvd: int = 0
    advert_interval_err: int = 0
    addr_list_err: int = 0
    invalid_authtype: int = 0
    authtype_mismatch: int = 0
    auth_failure: int = 0
    pri_zero_rcvd: int = 0
    pri_zero_sent: int = 0
    chk_err: int = 0
    vers_err: int = 0
    vrid_err: int = 0
    unknown_source: int = 0
    split_brain: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain, JSON-ready dict."""
        return attrs.asdict(self)
