"""The command line: help that teaches, and bad arguments that exit non-zero in one line."""

import subprocess
import sys

import pytest

from minibnn.cli import main


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "minibnn", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "bench" in result.stdout and "examples:" in result.stdout


def test_unknown_command_is_one_line_without_traceback():
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_bad_option_value_is_one_line():
    result = run_cli("bench", "autograd", "--batch", "many")
    assert result.returncode == 2
    assert "invalid int value: 'many'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "minibnn" in capsys.readouterr().out


def test_bench_autograd_runs_small_and_checks_agreement(capsys):
    assert main(["bench", "autograd", "--batch", "2", "--channels", "8", "--size", "6",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "minibnn (NumPy)" in out
