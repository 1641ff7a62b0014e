"""The command-line reference (``docs/cli.md``), generated from the ``scratch-gpt`` argument parser.

The docs must not drift from the code, so the reference is not written by hand: ``cli_reference`` walks the
parser that ``scratch_gpt.cli.build_parser`` builds (every sub-command, its description, its positional
arguments and options with their metavars, defaults and help) and renders Markdown. Regenerate the page with::

    python -m scratch_gpt.cli.reference > docs/cli.md

and ``tests/test_cli_reference.py`` fails, naming that command, whenever the page is out of date.

The usage lines are rendered here from the parser's actions rather than by ``argparse``'s own help formatter,
whose line wrapping depends on the terminal width and whose layout changes between Python versions; so the
page is the same on every machine. Not here: the commands themselves (the sibling modules) and man pages.
"""

from __future__ import annotations

import argparse
import sys

HEADER_COMMENT = (
    "<!-- Generated from the argparse parser by `python -m scratch_gpt.cli.reference > docs/cli.md`; "
    "do not edit by hand. -->"
)
REGENERATE_COMMAND = "python -m scratch_gpt.cli.reference > docs/cli.md"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, sub-parser)`` for every sub-command, in the order they were added."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        raise ValueError(
            f"parser {parser.prog!r} has no sub-commands; pass the parser from scratch_gpt.cli.build_parser()"
        )
    commands = []
    for action in actions:
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen: set[int] = set()
        for name, subparser in action.choices.items():
            if id(subparser) in seen:  # an alias of a command already listed
                continue
            seen.add(id(subparser))
            commands.append((name, helps.get(name, ""), subparser))
    return commands


def _metavar(action: argparse.Action) -> str:
    """How an argument's value is written: its metavar, else the dest (upper-case for options)."""
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _format_values(action: argparse.Action) -> str:
    """The value part after an option (or the whole positional), following its ``nargs``."""
    name = _metavar(action)
    nargs = action.nargs
    if nargs == 0:
        return ""
    if nargs is None:
        return name
    if nargs == "?":
        return f"[{name}]"
    if nargs == "*":
        return f"[{name} ...]"
    if nargs == "+":
        return f"{name} [{name} ...]"
    if isinstance(nargs, int):
        return " ".join([name] * nargs)
    return f"{name} ..."  # argparse.REMAINDER and friends


def _invocation(action: argparse.Action) -> str:
    """``--vocab-size VOCAB_SIZE`` for an option (its first spelling), ``FILE [FILE ...]`` for a positional."""
    if not action.option_strings:
        return _format_values(action)
    longs = [s for s in action.option_strings if s.startswith("--")]
    flag = (longs or action.option_strings)[0]
    values = _format_values(action)
    return f"{flag} {values}" if values else flag


def _is_listed(action: argparse.Action) -> bool:
    return not isinstance(action, argparse._HelpAction) and action.help is not argparse.SUPPRESS


def format_usage(parser: argparse.ArgumentParser) -> str:
    """One-line usage of a (sub-)parser: options first, then positionals, like ``argparse``'s own."""
    groups = {}  # first action of a mutually exclusive group -> that group
    grouped = set()
    for group in parser._mutually_exclusive_groups:
        members = [a for a in group._group_actions if _is_listed(a)]
        if members:
            groups[id(members[0])] = (group, members)
            grouped.update(id(a) for a in members)
    parts = [parser.prog]
    optionals = [a for a in parser._actions if a.option_strings and _is_listed(a)]
    positionals = [a for a in parser._actions if not a.option_strings and _is_listed(a)]
    for action in optionals + positionals:
        if id(action) in groups:
            group, members = groups[id(action)]
            inner = " | ".join(_invocation(a) for a in members)
            parts.append(f"({inner})" if group.required else f"[{inner}]")
        elif id(action) not in grouped:
            text = _invocation(action)
            parts.append(text if action.required or not action.option_strings else f"[{text}]")
    return " ".join(parts)


def _prose(text: str) -> str:
    """Help text as Markdown prose: one line, and ``<`` / ``*`` escaped (``label<TAB>text`` is not an HTML tag)."""
    return " ".join(text.split()).replace("<", "&lt;").replace("*", "\\*")


def _expand_help(action: argparse.Action, prog: str) -> str:
    """The help text with ``%(default)s``-style fields filled in, as ``argparse`` does."""
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        text = text % params
    return _prose(text)


def _default_note(action: argparse.Action, help_text: str) -> str:
    """``(default: X)`` when the option has a meaningful default its help does not already mention."""
    default = action.default
    if action.nargs == 0 or default in (None, argparse.SUPPRESS, [], "") or "default" in help_text:
        return ""
    return f" (default: `{default}`)"


def _argument_lines(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if not _is_listed(action):
            continue
        values = _format_values(action)
        spellings = ", ".join(f"`{s} {values}`" if values else f"`{s}`" for s in action.option_strings)
        name = spellings or f"`{_invocation(action)}`"
        help_text = _expand_help(action, parser.prog)
        notes = []
        if action.option_strings and action.required:
            notes.append("required")
        if isinstance(action, argparse._AppendAction):
            notes.append("repeatable")
        note = f" ({', '.join(notes)})" if notes else ""
        lines.append(f"- {name}{note}: {help_text}{_default_note(action, help_text)}")
    return lines


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown reference of every sub-command of ``parser`` (default: ``scratch-gpt``'s own parser)."""
    if parser is None:
        from . import build_parser

        parser = build_parser()
    commands = _subcommands(parser)
    out = [
        "# Command-line reference",
        "",
        HEADER_COMMENT,
        "",
        f"`{parser.prog}` is installed with the package. {_prose(parser.description or '')}".rstrip(),
        "Every command is a thin wrapper: it parses its arguments, calls one library function and prints the",
        "result, so everything below is also available from Python. Errors are printed as one line naming the",
        "problem and the fix (exit status 1). Every command also takes `-h`/`--help`.",
        "",
        "```text",
        format_usage(parser),
        "```",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    for name, help_text, _ in commands:
        out.append(f"| [`{name}`](#{name}) | {_prose(help_text).replace('|', '&#124;')} |")
    for name, help_text, subparser in commands:
        out += ["", f"## {name}", ""]
        out += [_prose(subparser.description or help_text), ""]
        out += ["```text", format_usage(subparser), "```", ""]
        out += _argument_lines(subparser)
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    """Print the reference (``python -m scratch_gpt.cli.reference > docs/cli.md``)."""
    sys.stdout.write(cli_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
