"""The README's main demonstration runs and tells the story it promises."""

import io

import pytest

from vrrpkit import demo


def test_demo_prints_election_crash_failover_preemption_and_hand_back() -> None:
    out = io.StringIO()
    sim = demo.run(out=out)
    text = out.getvalue()
    for heading in ("1. Election", "2. r1 crashes", "3. r1 comes back", "4. r1 stops"):
        assert heading in text
    assert "r2 took over 3.414062 s after r1's last advert" in text
    assert sim.masters() == ["r2"]


def test_demo_main_exits_zero() -> None:
    assert demo.main(["--simulate", "--interval", "0.1"]) == 0


@pytest.mark.netns
def test_namespace_demo_measures_failover_against_the_formulas() -> None:
    from vrrpkit import demo_netns

    out = io.StringIO()
    demo_netns.run(interval=0.1, out=out)
    text = out.getvalue()
    assert "r2's first advert" in text and "theory Master_Down_Interval 341.4 ms" in text
    assert "priority-0 advert (theory skew 41.4 ms)" in text
    assert "Lab deleted." in text
