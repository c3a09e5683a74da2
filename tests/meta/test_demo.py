"""The README's main demonstration runs and tells the story it promises."""

import io

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
    assert demo.main(["--interval", "0.1"]) == 0
