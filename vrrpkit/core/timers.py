"""Timer formulas of RFC 5798 §6.1 and RFC 3768 §6.1, in keepalived's integer microseconds.

keepalived keeps every timer in whole microseconds (``TIMER_HZ``); computing the same way makes
a simulated failover land on the exact microsecond a keepalived user would compute.
"""

from __future__ import annotations

__all__ = ["master_down_interval", "skew_time", "to_centiseconds"]


def to_centiseconds(interval: float) -> int:
    """An advertisement interval in whole centiseconds (the v3 wire unit)."""
    return round(interval * 100)


def skew_time(version: int, priority: int, master_adver_interval: float) -> float:
    """Skew_Time in seconds for ``priority`` (the effective one).

    v2: ``(256 - p) / 256`` s, independent of the interval (RFC 3768 §6.1).
    v3: ``((256 - p) * Master_Adver_Interval) / 256`` with the interval in centiseconds
    (RFC 5798 §6.1), truncated to whole microseconds as keepalived does.
    """
    if version == 2:
        return ((256 - priority) * 15625 // 4) / 1_000_000
    return ((256 - priority) * to_centiseconds(master_adver_interval) * 625 // 16) / 1_000_000


def master_down_interval(
    version: int, priority: int, master_adver_interval: float, down_adverts: int = 3
) -> float:
    """Master_Down_Interval in seconds: ``down_adverts * interval + skew`` (3 in the RFCs)."""
    interval_us = to_centiseconds(master_adver_interval) * 10_000
    skew_us = round(skew_time(version, priority, master_adver_interval) * 1_000_000)
    return (down_adverts * interval_us + skew_us) / 1_000_000
