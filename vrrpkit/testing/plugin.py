"""pytest plugin (registered through the ``pytest11`` entry point): simulator fixtures.

``simulation`` gives a fresh :class:`vrrpkit.testing.Simulation` seeded from the test's file
name and name, so every test is reproducible wherever pytest runs from, and different tests
do not share a random sequence. A failing test's report shows its seed;
``--simulation-seed=N`` runs every test with seed N instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator
from pathlib import Path

import pytest

from vrrpkit.testing.simulation import Simulation

_SEED = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--simulation-seed``."""
    parser.addoption(
        "--simulation-seed",
        type=int,
        default=None,
        help="seed every vrrpkit `simulation` fixture with this value (default: per test)",
    )


@pytest.fixture
def simulation(request: pytest.FixtureRequest) -> Simulation:
    """A fresh simulation, seeded deterministically from the test's file and name."""
    seed = request.config.getoption("--simulation-seed")
    if seed is None:
        # Not the node id: that is relative to pytest's rootdir, which moves with where
        # pytest is started.
        seed = zlib.crc32(f"{Path(str(request.node.path)).name}::{request.node.name}".encode())
    request.node.stash[_SEED] = seed
    return Simulation(seed=seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Show a failing test's simulation seed in its report."""
    outcome = yield
    report = outcome.get_result()
    seed = item.stash.get(_SEED, None)
    if seed is not None and report.failed:
        report.sections.append(
            ("vrrpkit simulation", f"seed {seed} (rerun with --simulation-seed={seed})")
        )
