"""Tests for ``scratch_gpt.cli.reference``: docs/cli.md is generated from the parser and kept up to date."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from scratch_gpt.cli import build_parser
from scratch_gpt.cli.reference import REGENERATE_COMMAND, cli_reference, format_usage, main

CLI_DOC = REPO_ROOT / "docs" / "cli.md"


def toy_parser() -> argparse.ArgumentParser:
    """A small parser with every kind of argument the generator renders."""
    parser = argparse.ArgumentParser(prog="toy", description="A toy program.")
    parser.add_argument("--version", action="version", version="1")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run things", description="Run the things.")
    run.add_argument("files", nargs="+", metavar="FILE", help="label<TAB>text  *.tsv\n files")
    run.add_argument("extra", nargs="?", help="an optional positional")
    run.add_argument("--steps", "-n", type=int, default=3, help="how many steps")
    run.add_argument("--rate", type=float, default=0.5, help="the rate (default: %(default)s)")
    run.add_argument("--tag", action="append", default=[], help="a tag")
    run.add_argument("--out", required=True, metavar="DIR", help="output | folder")
    run.add_argument("--hidden", help=argparse.SUPPRESS)
    mode = run.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fast", action="store_true", help="go fast")
    mode.add_argument("--slow", action="store_true", help="go slow")
    sub.add_parser("idle", aliases=["wait"], help="do nothing | at all")
    return parser


def test_docs_cli_md_is_up_to_date():
    expected = cli_reference()
    actual = CLI_DOC.read_text(encoding="utf-8") if CLI_DOC.is_file() else ""
    assert actual == expected, (
        f"docs/cli.md is out of date with the parser: regenerate it with `{REGENERATE_COMMAND}`"
    )


def test_every_command_and_option_is_documented():
    text = cli_reference()
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert subparsers.choices, "the parser has no commands"
    for name, subparser in subparsers.choices.items():
        assert f"\n## {name}\n" in text
        assert f"](#{name})" in text  # linked from the command table
        for action in subparser._actions:
            for spelling in action.option_strings:
                if spelling not in ("-h", "--help"):
                    assert f"`{spelling}" in text, f"{name} {spelling} missing from the reference"


def test_toy_parser_known_output():
    text = cli_reference(toy_parser())
    assert text.startswith("# Command-line reference\n")
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "toy [--version] COMMAND ...\n" in text
    assert "| [`run`](#run) | run things |" in text
    # an alias is listed once, under its first name; a pipe in a table cell is escaped
    assert "| [`idle`](#idle) | do nothing &#124; at all |" in text
    assert "## wait" not in text
    assert (
        "toy run [--steps STEPS] [--rate RATE] [--tag TAG] --out DIR (--fast | --slow) FILE [FILE ...] [extra]"
        in text
    )
    assert "- `FILE [FILE ...]`: label&lt;TAB>text \\*.tsv files" in text  # not an HTML tag, not emphasis
    assert "- `[extra]`: an optional positional" in text
    assert "- `--steps STEPS`, `-n STEPS`: how many steps (default: `3`)" in text
    assert "- `--rate RATE`: the rate (default: 0.5)" in text  # %(default)s expanded, not repeated
    assert "- `--tag TAG` (repeatable): a tag" in text
    assert "- `--out DIR` (required): output | folder" in text
    assert "- `--fast`: go fast" in text
    assert "hidden" not in text


def test_usage_of_optional_group_and_flag():
    parser = argparse.ArgumentParser(prog="p")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--a", action="store_true")
    group.add_argument("--b", metavar="X")
    parser.add_argument("pair", nargs=2)
    parser.add_argument("rest", nargs="*")
    assert format_usage(parser) == "p [--a | --b X] pair pair [rest ...]"


def test_parser_without_commands_raises():
    with pytest.raises(ValueError, match="no sub-commands.*build_parser"):
        cli_reference(argparse.ArgumentParser(prog="flat"))


def test_main_prints_the_reference(capsys):
    assert main() == 0
    assert capsys.readouterr().out == cli_reference()


@pytest.mark.slow
def test_module_runs_as_script():
    result = subprocess.run(
        [sys.executable, "-m", "scratch_gpt.cli.reference"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert result.stdout == cli_reference()
