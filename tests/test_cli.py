"""Tests for scratch_gpt.cli (the ``scratch-gpt`` entry point): what every command shares."""

from __future__ import annotations

import pytest
from model_helpers import tiny_config

from scratch_gpt import ScratchGPTForCausalLM
from scratch_gpt.cli import build_parser, main


def test_library_loading_bars_are_hidden_unless_verbose(tmp_path, capsys):
    from transformers.utils import logging as hf_logging

    folder = tmp_path / "model"
    ScratchGPTForCausalLM(tiny_config()).save_pretrained(folder)
    capsys.readouterr()
    argv = ["convert", "--to-gpt2", str(folder), "--output", str(tmp_path / "gpt2")]
    before = hf_logging.is_progress_bar_enabled()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert hf_logging.is_progress_bar_enabled() == before  # the setting is restored after the command
    assert main([*argv[:-1], str(tmp_path / "gpt2-again"), "--verbose"]) == 0
    assert "Loading weights" in capsys.readouterr().err


def test_every_command_has_verbose_and_shows_its_defaults():
    """One switch name everywhere, and no option with a default hides it from --help."""
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = []
    for name, parser in commands.items():
        options = {o for action in parser._actions for o in action.option_strings}
        assert "--verbose" in options, name
        text = " ".join(parser.format_help().split())  # undo the line wrapping
        for action in parser._actions:
            has_default = (
                action.default not in (None, False, [], "", "==SUPPRESS==") and action.option_strings
            )
            if (
                has_default
                and f"(default: {action.default})" not in text
                and "default" not in (action.help or "")
            ):
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, f"options whose --help hides the default: {missing}"


@pytest.mark.parametrize("command", ["pretrain", "demo", "finetune-classifier", "convert", "train-tokenizer"])
def test_output_folder_option_is_called_output(command):
    commands = build_parser()._subparsers._group_actions[0].choices
    options = {o for action in commands[command]._actions for o in action.option_strings}
    assert "--output" in options and "--output-dir" not in options
