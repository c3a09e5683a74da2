"""The code stays mypy-strict and ruff clean, and the core stays free of I/O imports."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict_is_clean() -> None:
    result = run("mypy", "vrrpkit")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    result = run("ruff", "check", "vrrpkit", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run("ruff", "format", "--check", "vrrpkit", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_imports_no_io_modules() -> None:
    forbidden = re.compile(
        r"^\s*(import|from)\s+(socket|subprocess|asyncio|anyio|trio|time|pyroute2|os|threading"
        r"|select|logging|random|vrrpkit\.(transports|runtime|testing))\b",
        re.M,
    )
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in sorted((ROOT / "vrrpkit" / "core").glob("*.py"))
        for match in forbidden.finditer(path.read_text())
    ]
    assert offenders == []


def test_package_ships_py_typed() -> None:
    assert (ROOT / "vrrpkit" / "py.typed").exists()
