"""The `makemore` command line, run as a user would: in a subprocess."""

import subprocess
import sys

import pytest


def makemore(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "makemore_wavenet.stages", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("command", ["", "train", "evaluate", "sample", "reproduce", "list", "lesson"])
def test_help(command):
    out = makemore(*command.split(), "--help")
    assert out.returncode == 0 and "usage: makemore" in out.stdout


def test_train_then_evaluate_then_sample(tmp_path):
    out = makemore("train", "3", "--steps", "200", "--runs", str(tmp_path), "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert "val" in out.stdout and (tmp_path / "stage3" / "checkpoint.pt").is_file()
    out = makemore("evaluate", "3", "--runs", str(tmp_path), "--split", "val")
    assert out.returncode == 0 and "val" in out.stdout and "train" not in out.stdout
    out = makemore("sample", "3", "--runs", str(tmp_path), "-n", "7")
    assert out.returncode == 0 and len(out.stdout.split()) == 7


def test_missing_checkpoint_says_how_to_fix_it(tmp_path):
    out = makemore("evaluate", "5", "--runs", str(tmp_path))
    assert out.returncode == 1
    assert "no checkpoint" in out.stderr and "makemore train 5" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_stage_is_rejected():
    out = makemore("train", "9")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_list_shows_every_stage():
    out = makemore("list")
    assert out.returncode == 0 and "76,579" in out.stdout and "hierarchical" in out.stdout
