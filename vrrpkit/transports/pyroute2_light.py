"""Import pyroute2's netlink message classes without its package ``__init__``.

``pyroute2/__init__.py`` only re-exports the library's public API, and to do so imports all
of it: NDB, IPDB, conntrack, ethtool, nl80211, plan9, multiprocessing and more — about
20 MB of resident memory, two thirds of what a running ``vrrpkit run`` uses besides the
interpreter. vrrpkit needs only ``pyroute2.netlink`` and ``pyroute2.netlink.rtnl``.

:func:`register_lazy_package` puts the ``pyroute2`` package in ``sys.modules`` with its
``__init__`` not yet run (its submodules import normally); the first access to a name that
``__init__`` defines (``pyroute2.IPRoute``, ``from pyroute2 import NDB``,
``pyroute2.__version__``) runs it then, through the module's ``__getattr__`` (PEP 562), so
an application that uses pyroute2 itself sees no difference. If pyroute2 is already
imported, nothing changes. Importing this module registers it.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

__all__ = ["is_deferred", "register_lazy_package"]

_lock = threading.RLock()


def register_lazy_package(name: str = "pyroute2") -> None:
    """Register package ``name`` with its ``__init__`` deferred until first needed."""
    with _lock:
        if name in sys.modules:
            return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return  # not installed or not a package: the real import reports it
        module = importlib.util.module_from_spec(spec)
        loader = spec.loader

        def load_on_first_use(attribute: str) -> object:
            if not attribute.startswith("__"):
                # ``from pyroute2 import config`` asks for a submodule: import just that.
                try:
                    found = importlib.util.find_spec(f"{name}.{attribute}")
                except (ImportError, ValueError):
                    found = None
                if found is not None:
                    return importlib.import_module(f"{name}.{attribute}")
            with _lock:
                if module.__dict__.get("__getattr__") is load_on_first_use:
                    del module.__dict__["__getattr__"]
                    loader.exec_module(module)
            try:
                return module.__dict__[attribute]
            except KeyError:
                raise AttributeError(f"module {name!r} has no attribute {attribute!r}") from None

        module.__dict__["__getattr__"] = load_on_first_use
        sys.modules[name] = module


def is_deferred(module: ModuleType) -> bool:
    """Whether ``module``'s ``__init__`` has not run yet (for tests and diagnostics)."""
    return "__getattr__" in module.__dict__


register_lazy_package()
