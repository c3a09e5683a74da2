"""The docs stay true: generated pages are current and Python examples run."""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_state_diagram_page_is_generated_from_the_current_table() -> None:
    module = runpy.run_path(str(ROOT / "docs" / "make_state_diagram.py"))
    assert (ROOT / "docs" / "state-machine.md").read_text() == module["render"](), (
        "run: python docs/make_state_diagram.py"
    )


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in PAGES:
        for i, match in enumerate(re.finditer(r"```python\n(.*?)```", page.read_text(), re.S)):
            blocks.append((f"{page.name}#{i}", match.group(1)))
    return blocks


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[b[0] for b in python_blocks()])
def test_documented_python_example_runs(where: str, code: str) -> None:
    exec(compile(code, where, "exec"), {"__name__": "__doc_example__"})
