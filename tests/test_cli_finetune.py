"""Tests for ``scratch-gpt finetune-classifier``: the command runs the library function and prints its results;
library errors come out as one line without a traceback."""

from __future__ import annotations

import json

import pytest
from test_classifier_pipeline import make_tiny_checkpoint, write_sms_tsv

from scratch_gpt.cli import build_parser, main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_finetune")
    make_tiny_checkpoint(root / "lm")
    write_sms_tsv(root / "sms.tsv")
    return root


def test_finetune_classifier_command(workdir, tmp_path, capsys):
    out = tmp_path / "clf"
    argv = ["finetune-classifier", "--model", str(workdir / "lm"), "--data", str(workdir / "sms.tsv")]
    argv += [
        "--output",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--eval-freq",
        "1",
    ]
    argv += ["--freeze", "all", "--lr", "1e-3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["freeze"] == "all" and results["settings"]["lr"] == 1e-3
    assert results["history"]["global_step"] == 2
    assert "Ep 1 (Step 000000): Train loss" in printed  # the book's progress lines
    before, same = (
        results["accuracy_before"]["test"] * 100,
        results["accuracy_after_same_batches"]["test"] * 100,
    )
    assert "accuracy on the first 10 batches of each split, before -> after fine-tuning" in printed
    assert (
        f"test: {before:6.2f}% -> {same:6.2f}%; whole split {results['accuracy']['test'] * 100:6.2f}%"
        in printed
    )
    assert f"trained {results['trainable_params']:,} of {results['total_params']:,} parameters" in printed


def test_defaults_are_the_books():
    from scratch_gpt.cli.finetune import _config_from_args
    from scratch_gpt.finetune.classifier_pipeline import ClassifierFinetuneConfig
    from scratch_gpt.finetune.instruction_pipeline import InstructFinetuneConfig

    args = build_parser().parse_args(["finetune-classifier", "-m", "m", "--data", "d", "-o", "o"])
    config = _config_from_args(ClassifierFinetuneConfig, args)
    assert config == ClassifierFinetuneConfig("m", "d", "o")  # the CLI's defaults are the config's
    assert (config.epochs, config.batch_size, config.lr, config.weight_decay) == (5, 8, 5e-5, 0.1)
    assert (config.freeze, config.pooling, config.seed, config.eval_freq, config.eval_iter) == (
        "last_block",
        "last_real",
        123,
        50,
        5,
    )
    args = build_parser().parse_args(["finetune-instruct", "-m", "m", "--data", "d", "-o", "o"])
    config = _config_from_args(InstructFinetuneConfig, args, on_error="raise")
    assert config == InstructFinetuneConfig("m", "d", "o")
    assert (config.epochs, config.batch_size, config.lr, config.weight_decay, config.eval_freq) == (
        2,
        8,
        5e-5,
        0.1,
        5,
    )
    args = build_parser().parse_args(
        ["finetune-classifier", "-m", "m", "--data", "d", "-o", "o", "--epochs", "2", "--lr", "1e-3"]
    )
    assert _config_from_args(ClassifierFinetuneConfig, args) == ClassifierFinetuneConfig(
        "m", "d", "o", epochs=2, lr=1e-3
    )


def test_help_shows_the_config_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["finetune-classifier", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    assert "passes over the training split (default: 5)" in printed
    assert "evaluate the loss every N steps (default: 50)" in printed
    with pytest.raises(SystemExit):
        main(["finetune-instruct", "--help"])
    printed = " ".join(capsys.readouterr().out.split())
    assert "passes over the training split (default: 2)" in printed


def test_errors_print_one_line(workdir, tmp_path, capsys):
    argv = ["finetune-classifier", "--model", str(tmp_path / "missing"), "--data", str(workdir / "sms.tsv")]
    assert main(argv + ["--output", str(tmp_path / "out")]) == 2  # a failed load, as for every command
    err = capsys.readouterr().err
    assert err.startswith("scratch-gpt finetune-classifier: error:") and "does not exist" in err
    assert "Traceback" not in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    argv = ["finetune-classifier", "--model", str(workdir / "lm"), "--data", str(workdir / "sms.tsv")]
    assert main(argv + ["--output", str(tmp_path / "busy")]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_bad_choice_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune-classifier", "-m", "m", "--data", "d", "-o", "o", "--freeze", "everything"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err
