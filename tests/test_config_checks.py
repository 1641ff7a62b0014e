"""Tests for scratch_gpt.training.config_checks: the one-line errors of the pipelines' settings objects."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from scratch_gpt.training.config_checks import (
    check_choice,
    check_int,
    check_number,
    config_to_json,
    reject_non_finite,
)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_int("epochs", 0), "epochs must be a positive integer, got 0"),
        (lambda: check_int("epochs", True), "epochs must be a positive integer, got True"),
        (lambda: check_int("epochs", 2.0), "epochs must be a positive integer, got 2.0"),
        (lambda: check_int("seed", -1, minimum=0), "seed must be an integer >= 0, got -1"),
        (lambda: check_int("steps", 0, optional=True), "steps must be a positive integer or None, got 0"),
        (lambda: check_number("lr", 0.0, above=0), "lr must be a positive number, got 0.0"),
        (lambda: check_number("lr", math.nan, above=0), "lr must be a positive number, got nan"),
        (
            lambda: check_number("wd", -0.1, minimum=0, hint="try 0.1"),
            "wd must be a finite number >= 0, got -0.1; try 0.1",
        ),
        (
            lambda: check_number("p", 1.0, minimum=0, below=1),
            "p must be a finite number >= 0 and < 1, got 1.0",
        ),
        (lambda: check_number("x", math.inf), "x must be a finite number, got inf"),
        (lambda: check_number("x", "1"), "x must be a finite number, got '1'"),
        (lambda: check_choice("mode", "c", ("a", "b")), r"mode must be one of \('a', 'b'\), got 'c'"),
    ],
)
def test_errors_name_the_field_the_value_and_the_need(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


def test_valid_values_pass():
    check_int("epochs", 3)
    check_int("steps", None, optional=True)
    check_number("lr", 5e-5, above=0)
    check_number("dropout", None, minimum=0, below=1, optional=True)
    check_choice("mode", "a", ("a", "b"))


@dataclass
class Settings:
    output_dir: Path
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    name: str = "x"


def test_reject_non_finite_and_config_to_json(tmp_path):
    reject_non_finite(Settings(tmp_path))
    with pytest.raises(ValueError, match="^lr must be a finite number, got nan$"):
        reject_non_finite(Settings(tmp_path, lr=math.nan))
    with pytest.raises(ValueError, match="^betas must be a finite number"):
        reject_non_finite(Settings(tmp_path, betas=(0.9, math.inf)))
    assert config_to_json(Settings(tmp_path)) == {
        "output_dir": str(tmp_path),
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "name": "x",
    }
