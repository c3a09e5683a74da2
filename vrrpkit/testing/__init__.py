"""Deterministic testing tools: a cluster simulator, a fake clock and fake transports."""

from vrrpkit.testing.simulation import Impairment, RouterHandle, Simulation, TransitionRecord

__all__ = ["Impairment", "RouterHandle", "Simulation", "TransitionRecord"]
