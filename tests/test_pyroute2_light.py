"""vrrpkit loads only pyroute2's netlink classes, and pyroute2 still works for the application."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_netlink_transport_does_not_run_pyroute2s_package_init() -> None:
    out = run_python(
        "import sys, vrrpkit.transports.netlink\n"
        "from vrrpkit.transports.pyroute2_light import is_deferred\n"
        "print(is_deferred(sys.modules['pyroute2']), 'pyroute2.ndb' in sys.modules)"
    )
    assert out == "True False"


def test_link_messages_do_not_load_pyroute2s_link_plugins_and_multiprocessing() -> None:
    # pyroute2's ifinfmsg would import its plugins and pyroute2.config, which imports
    # multiprocessing: 0.9 MB of resident memory for the few link fields vrrpkit reads.
    out = run_python(
        "import sys, vrrpkit.transports.netlink\n"
        "print([m for m in ('multiprocessing', 'pyroute2.config', "
        "'pyroute2.netlink.rtnl.ifinfmsg') if m in sys.modules])"
    )
    assert out == "[]"


def test_application_can_still_use_all_of_pyroute2_afterwards() -> None:
    out = run_python(
        "import vrrpkit.transports.netlink\n"
        "import pyroute2\n"
        "from pyroute2 import IPRoute, NDB\n"
        "print(IPRoute.__name__, NDB.__name__, pyroute2.__version__ != 'unknown')"
    )
    assert out == "IPRoute NDB True"


def test_pyroute2_imported_first_is_left_alone() -> None:
    out = run_python(
        "import pyroute2, vrrpkit.transports.netlink\n"
        "from vrrpkit.transports.pyroute2_light import is_deferred\n"
        "print(is_deferred(pyroute2), hasattr(pyroute2, 'IPRoute'))"
    )
    assert out == "False True"


def test_missing_attribute_is_an_attribute_error() -> None:
    out = run_python(
        "import vrrpkit.transports.netlink, pyroute2\n"
        "print(hasattr(pyroute2, 'no_such_thing'), hasattr(pyroute2, 'IPRoute'))"
    )
    assert out == "False True"
