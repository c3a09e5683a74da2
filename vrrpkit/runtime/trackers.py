"""How tracker results are produced at runtime: Python checks, scripts and interfaces.

Each runtime tracker carries the pure :class:`vrrpkit.Tracker` (weight, fall, rise, reverse,
init_fail) that the core applies, plus what produces its results.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

import attrs

from vrrpkit.core.errors import ConfigError
from vrrpkit.core.tracking import Tracker

__all__ = ["CheckTracker", "InterfaceTracker", "ScriptTracker", "TrackerSpec"]

Check: TypeAlias = Callable[[], "bool | Awaitable[bool]"]


def _interval(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.001 <= value < math.inf  # NaN too
    ):
        raise ConfigError(f"{attribute.name} must be finite seconds >= 0.001, got {value!r}")


def _argv(value: object) -> tuple[str, ...]:
    # A string is iterable too: "/bin/true" would run as ("/", "b", "i", ...).
    if isinstance(value, (str, bytes)):
        raise ConfigError(f"argv must be a sequence of str, not a string: {value!r}")
    try:
        return tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"argv must be a sequence of str, got {value!r}") from None


def _timeout(_inst: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None:
        _interval(_inst, attribute, value)  # type: ignore[arg-type]


@attrs.frozen
class _Periodic:
    name: str
    interval: float = attrs.field(default=1.0, kw_only=True, validator=_interval)
    #: None: the interval, as keepalived's ``timeout 0``.
    timeout: float | None = attrs.field(default=None, kw_only=True, validator=_timeout)
    weight: int = attrs.field(default=0, kw_only=True)
    fall: int = attrs.field(default=1, kw_only=True)
    rise: int = attrs.field(default=1, kw_only=True)
    reverse: bool = attrs.field(default=False, kw_only=True)
    init_fail: bool = attrs.field(default=False, kw_only=True)

    @property
    def tracker(self) -> Tracker:
        """The pure tracker the core applies."""
        return Tracker(
            self.name,
            weight=self.weight,
            fall=self.fall,
            rise=self.rise,
            reverse=self.reverse,
            init_fail=self.init_fail,
        )

    @property
    def effective_timeout(self) -> float:
        """The time a run may take before it counts as a failure."""
        return self.timeout if self.timeout is not None else self.interval


@attrs.frozen
class CheckTracker(_Periodic):
    """An in-process health check: ``check()`` (sync or async) returns True when healthy.

    It runs first at start, then ``interval`` seconds after each start. A check that raises,
    returns a falsy value or exceeds ``timeout`` counts as a failure. A sync check runs on the
    event loop and must be quick (deterministic under a fake clock); set ``in_thread=True``
    for a blocking one, which then runs in a worker thread and is abandoned on timeout.
    """

    check: Check = attrs.field()
    in_thread: bool = attrs.field(default=False, kw_only=True)

    @check.validator
    def _callable(self, _attribute: attrs.Attribute[Check], value: Check) -> None:
        if not callable(value):
            raise ConfigError(f"tracker {self.name!r}: check must be callable, got {value!r}")

    def __attrs_post_init__(self) -> None:
        _ = self.tracker  # validate weight/fall/rise now, with the tracker's clear errors


@attrs.frozen
class ScriptTracker(_Periodic):
    """keepalived's ``vrrp_script``: ``argv`` run without a shell; exit status 0 is success.

    A timeout kills the script's process group and counts as a failure, as in keepalived; a
    script that cannot be started also counts as a failure (keepalived counts it a success).
    """

    argv: tuple[str, ...] = attrs.field(converter=_argv)
    #: Run as this user/group (keepalived's ``vrrp_script { user }``); None: the instance's
    #: ``script_user``, else ours.
    user: str | None = attrs.field(default=None, kw_only=True)
    group: str | None = attrs.field(default=None, kw_only=True)

    @argv.validator
    def _argv(self, _attribute: attrs.Attribute[Sequence[str]], value: tuple[str, ...]) -> None:
        if not value or not all(isinstance(a, str) for a in value):
            raise ConfigError(f"tracker {self.name!r}: argv must be a non-empty list of str")

    def __attrs_post_init__(self) -> None:
        _ = self.tracker


@attrs.frozen
class InterfaceTracker:
    """keepalived's ``track_interface``: the link being up and running is OK.

    ``weight`` 0 puts the instance into FAULT while the link is down.
    """

    ifname: str
    weight: int = attrs.field(default=0, kw_only=True)
    reverse: bool = attrs.field(default=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        _ = self.tracker

    @property
    def name(self) -> str:
        """The tracker's name: the interface's name."""
        return self.ifname

    @property
    def tracker(self) -> Tracker:
        """The pure tracker the core applies."""
        return Tracker(self.ifname, weight=self.weight, reverse=self.reverse)


TrackerSpec: TypeAlias = Tracker | CheckTracker | ScriptTracker | InterfaceTracker
