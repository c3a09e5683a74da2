"""Compile vrrpkit's bytecode before measuring, as ``pip install`` does.

A process importing modules that have no cached bytecode compiles each one at start-up, and
the compiler's garbage stays in its resident memory (about 1.8 MB for vrrpkit's imports on
the VM of docs/benchmarks.md). An installed package has its ``.pyc`` files; an editable
checkout under ``PYTHONDONTWRITEBYTECODE`` never gets them. Without this the memory figures
would measure the checkout, not the library.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def compile_vrrpkit() -> None:
    """Write the ``__pycache__`` files of the vrrpkit package being measured (quietly).

    In a child process: the memory high-water mark survives ``exec``, so compiling here
    would inflate every later child's ``ru_maxrss`` (``benchmarks.import_memory``).
    """
    spec = importlib.util.find_spec("vrrpkit")
    if spec is None or spec.origin is None:
        return
    package = str(Path(spec.origin).parent)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", package], check=False, capture_output=True
    )
