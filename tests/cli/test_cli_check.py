"""`vrrpkit check -f FILE` validates a keepalived.conf and prints the effective configuration."""

from pathlib import Path

import pytest

from vrrpkit.cli import main

VALID = """
vrrp_script chk_web {
    script "/usr/bin/curl -sf http://192.0.2.10/health"
    interval 2
    fall 3
    rise 2
    weight -30
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        192.0.2.100/24
    }
    track_script {
        chk_web
    }
}
"""


def test_check_prints_the_effective_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VALID)
    assert main(["check", "-f", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "vrrp_instance VI_1" in out
    assert "VRID 51" in out and "priority 150" in out
    assert "chk_web" in out and "-30" in out


def test_check_lists_an_ignored_line_once_on_stdout_not_again_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VALID.replace("    advert_int 1\n", "    advert_int 1\n    use_vmac\n"))
    assert main(["check", "-f", str(conf)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("use_vmac") == 1
    assert "use_vmac" not in captured.err


def test_check_rejects_an_invalid_file_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VALID.replace("priority 150", "priority 300"))
    assert main(["check", "-f", str(conf)]) == 1
    err = capsys.readouterr().err
    assert f"{conf}:12" in err and "priority" in err


def test_check_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-f", str(tmp_path / "absent.conf")]) == 1
    assert "absent.conf" in capsys.readouterr().err


def test_python_dash_m_vrrpkit_is_the_same_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    conf = tmp_path / "keepalived.conf"
    conf.write_text(VALID)
    done = subprocess.run(
        [sys.executable, "-m", "vrrpkit", "check", "-f", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "VI_1" in done.stdout


def test_check_prints_bytes_that_are_not_utf8_back_as_they_were(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    conf = tmp_path / "keepalived.conf"
    conf.write_bytes(VALID.replace("VI_1", "VI_\xff").encode("latin-1"))
    done = subprocess.run(
        [sys.executable, "-m", "vrrpkit", "check", "-f", str(conf)],
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert done.returncode == 0, done.stderr
    assert b"vrrp_instance VI_\xff" in done.stdout
