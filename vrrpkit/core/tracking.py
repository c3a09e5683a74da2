"""Trackers, keepalived's fall/rise counters and the effective-priority arithmetic.

Everything here is a pure value or a pure function; the router owns the current values.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from vrrpkit.core.errors import ConfigError

__all__ = [
    "MAX_TRACKER_WEIGHT",
    "FallRise",
    "Tracker",
    "effective_priority",
    "tracker_contribution",
    "tracker_faults",
]

#: keepalived accepts +-254 on ``track_script``/``track_interface`` but rewrites it to +-253
#: (vrrp_track.c), so that a single tracker can never move a priority across the whole range.
MAX_TRACKER_WEIGHT = 253


def _weight(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"tracker weight must be an integer, got {value!r}")
    if not -254 <= value <= 254:
        raise ConfigError(f"tracker weight {value} is out of range -254..254")
    return max(-MAX_TRACKER_WEIGHT, min(MAX_TRACKER_WEIGHT, value))


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"tracker {attribute.name} must be an integer >= 1, got {value!r}")


def _name(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"tracker name must be a non-empty string, got {value!r}")


@attrs.frozen
class Tracker:
    """The pure description of something whose health moves a router's priority.

    ``weight`` 0 means "failing puts the router into FAULT"; a positive weight is added while
    the tracker is OK, a negative one while it fails (keepalived's rules). ``reverse`` flips the
    sign of the contribution, and for weight 0 makes an OK result the fault. ``fall``/``rise``
    are the numbers of consecutive failures/successes needed to change the tracker's state;
    ``init_fail`` starts it failed instead of undecided.
    """

    name: str = attrs.field(validator=_name)
    weight: int = attrs.field(default=0, kw_only=True, converter=_weight)
    fall: int = attrs.field(default=1, kw_only=True, validator=_positive)
    rise: int = attrs.field(default=1, kw_only=True, validator=_positive)
    reverse: bool = attrs.field(default=False, kw_only=True, converter=bool)
    init_fail: bool = attrs.field(default=False, kw_only=True, converter=bool)


@attrs.frozen
class FallRise:
    """keepalived's fall/rise counter for one tracker (vrrp_scheduler.c, script child thread).

    ``result`` ranges over ``0 .. rise + fall - 1``. ``up`` is None until the first result
    (unless ``init_fail``), then True/False. Both transitions need N *consecutive* results: a
    failure while down restarts the rise count, a success while up refills the fall count.
    """

    rise: int
    fall: int
    result: int
    up: bool | None

    @classmethod
    def initial(cls, tracker: Tracker) -> FallRise:
        """The counter before any result: one result decides, unless ``init_fail``."""
        if tracker.init_fail:
            return cls(tracker.rise, tracker.fall, 0, False)
        return cls(tracker.rise, tracker.fall, tracker.rise - 1, None)

    def record(self, ok: bool) -> FallRise:
        """Return the counter after one more result (a timeout is a failure: pass False)."""
        rise, fall, result, up = self.rise, self.fall, self.result, self.up
        top = rise + fall - 1
        if ok:
            if result < rise - 1:
                return FallRise(rise, fall, result + 1, up)
            if result == rise - 1:
                up = True
            return FallRise(rise, fall, top, up)
        if result > rise:
            return FallRise(rise, fall, result - 1, up)
        if result == rise or up is None:
            up = False
        return FallRise(rise, fall, 0, up)


def tracker_contribution(tracker: Tracker, up: bool | None) -> int:
    """Priority points a weighted tracker adds in state ``up`` (None: no result yet adds 0)."""
    weight = tracker.weight
    if weight == 0 or up is None:
        return 0
    signed = -weight if tracker.reverse else weight
    if weight > 0:
        return signed if up else 0
    return 0 if up else signed


def tracker_faults(tracker: Tracker, up: bool | None) -> bool:
    """Whether a weight-0 tracker holds its router in FAULT (also while it has no result)."""
    if tracker.weight != 0:
        return False
    if up is None:
        return True
    return up if tracker.reverse else not up


def effective_priority(base: int, contributions: Iterable[int]) -> int:
    """keepalived's effective priority: base plus contributions, clamped to 1..254.

    An address owner (255) is never changed by trackers (vrrp_track.c).
    """
    if base == 255:
        return 255
    return max(1, min(254, base + sum(contributions)))
