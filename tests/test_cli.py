"""The `makemore` command line, run as a user would: in a subprocess."""

import subprocess
import sys

import pytest


def makemore(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "makemore_wavenet.stages", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("command", ["", "train", "evaluate", "sample", "reproduce", "list", "lesson", "challenge"])
def test_help(command):
    out = makemore(*command.split(), "--help")
    assert out.returncode == 0 and "usage: makemore" in out.stdout


def test_train_then_evaluate_then_sample(tmp_path):
    out = makemore("train", "3", "--steps", "200", "--runs", str(tmp_path), "--device", "cpu", "--threads", "1")
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


def test_challenge_trains_entries_and_writes_the_table(tmp_path):
    entry = tmp_path / "tiny.toml"
    entry.write_text("[model]\nn_embd = 4\nn_hidden = 8\ndilations = [1, 2]\n\n[train]\nsteps = 20\nbatch_size = 4\n")
    out = makemore("challenge", str(entry), "--seeds", "1", "2", "--runs", str(tmp_path), "--out",
                   str(tmp_path / "challenge.md"))
    assert out.returncode == 0, out.stderr
    assert "tiny" in out.stdout and "2 runs" in out.stdout
    assert "| tiny " in (tmp_path / "challenge.md").read_text()
    assert (tmp_path / "challenge" / "tiny" / "seed2" / "checkpoint.pt").is_file()


def test_challenge_with_a_bad_entry_says_what_is_wrong(tmp_path):
    (tmp_path / "bad.toml").write_text("[model]\nwidth = 3\n")
    out = makemore("challenge", str(tmp_path / "bad.toml"))
    assert out.returncode == 1 and "no setting width" in out.stderr and "Traceback" not in out.stderr
    out = makemore("challenge", "no_such_entry")
    assert out.returncode == 1 and "ablations/base" in out.stderr
