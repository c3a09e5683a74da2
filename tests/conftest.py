"""Shared fixtures: the anyio backends, and network-namespace labs for transport tests.

Tests marked ``netns`` need root and ``ip netns``; they skip without them, except under
``CI=true`` where a skip would hide a broken CI runner, so they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import netns
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every anyio test on both backends."""
    backend: str = request.param
    return backend


def _require_netns() -> None:
    reason = netns.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"netns test cannot run, and skipping is not allowed with CI=true: {reason}")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or, under CI=true, fail) netns tests where namespaces are unavailable."""
    if item.get_closest_marker("netns") is not None:
        _require_netns()


@pytest.fixture
def make_lab() -> Iterator[Callable[[int], netns.Lab]]:
    """A factory of labs with N hosts; every lab is deleted after the test, pass or fail."""
    _require_netns()
    labs: list[netns.Lab] = []

    def make(count: int = 2) -> netns.Lab:
        lab = netns.create_lab(count)
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.destroy()


@pytest.fixture
def lab(make_lab: Callable[[int], netns.Lab]) -> netns.Lab:
    """Two hosts (192.0.2.1/.2, 2001:db8::1/::2, fe80::1/::2) on one bridge."""
    return make_lab(2)


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_namespaces() -> Iterator[None]:
    """Last resort: remove any namespace of this run that a crash left behind."""
    yield
    netns.remove_leftovers()
