"""pytest plugin (registered through the ``pytest11`` entry point): simulator fixtures.

``simulation`` gives a fresh :class:`vrrpkit.testing.Simulation` seeded from the test's name,
so every test is reproducible and different tests do not share a random sequence.
"""

from __future__ import annotations

import zlib

import pytest

from vrrpkit.testing.simulation import Simulation


@pytest.fixture
def simulation(request: pytest.FixtureRequest) -> Simulation:
    """A fresh simulation, seeded deterministically from the test's node id."""
    return Simulation(seed=zlib.crc32(request.node.nodeid.encode()))
