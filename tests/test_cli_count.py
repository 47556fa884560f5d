"""``python -m suite count`` prints the paper's counts from config.json alone."""

from __future__ import annotations

import pytest
from conftest import SHARED_BACKBONES

from suite.cli import main

T5_LARGE = str(SHARED_BACKBONES / "t5-large")
pytestmark = pytest.mark.skipif(not (SHARED_BACKBONES / "t5-large").is_dir(), reason="../shared/backbones absent")


@pytest.mark.parametrize("method, expected", [
    ("lora", "1,572,864 trainable parameters (21.32‱"),
    ("adapter", "4,819,200 trainable parameters (65.33‱"),
    ("bitfit", "599,396 trainable parameters (8.13‱"),
    ("lnfit", "124,928 trainable parameters (1.69‱"),
])
def test_count_manual(capsys, method, expected):
    assert main(["count", "--backbone", T5_LARGE, "--vocab-size", "32100", "--method", method]) == 0
    out = capsys.readouterr().out
    assert "737,639,424 parameters" in out and expected in out


def test_count_space_and_budget(capsys):
    assert main(["count", "--backbone", T5_LARGE, "--vocab-size", "32100", "--space", "s2", "--budget", "1.39e-4"]) == 0
    out = capsys.readouterr().out
    assert "916 modules (384 with a size" in out
    assert "9,493,504" in out
    assert "budget: 102,532 parameters (1.39‱" in out


@pytest.mark.parametrize("argv, message", [
    (["--space", "s3"], "unknown space 's3'"),
    (["--method", "lorra"], "Did you mean: lora"),
    (["--space", "s2", "--budget", "0"], "--budget must be a fraction > 0"),
    (["--space", "s2", "--budget=-1e-4"], "--budget must be a fraction > 0"),
    (["--space", "s2", "--method", "lora"], "exactly one of --space NAME or --method NAME"),
])
def test_count_bad_input(capsys, argv, message):
    assert main(["count", "--backbone", T5_LARGE, *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_count_missing_backbone(capsys, tmp_path):
    assert main(["count", "--backbone", str(tmp_path / "missing"), "--space", "s2"]) == 2
    assert "does not exist" in capsys.readouterr().err
