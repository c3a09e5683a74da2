"""Deterministic testing tools: a cluster simulator, a fake clock and fake transports."""

from vrrpkit.testing.fakes import (
    FakeAddressManager,
    FakeAdvertSocket,
    FakeAnnouncer,
    FakeClock,
    FakeLinkMonitor,
    FakeNetwork,
    FakeRunner,
    FakeTimer,
)
from vrrpkit.testing.simulation import Impairment, RouterHandle, Simulation, TransitionRecord

__all__ = [
    "FakeAddressManager",
    "FakeAdvertSocket",
    "FakeAnnouncer",
    "FakeClock",
    "FakeTimer",
    "FakeLinkMonitor",
    "FakeNetwork",
    "FakeRunner",
    "Impairment",
    "RouterHandle",
    "Simulation",
    "TransitionRecord",
]
