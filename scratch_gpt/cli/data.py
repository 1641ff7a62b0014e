"""``scratch-gpt data``: fetch the book's data sets and GPT-2's BPE files into the data folder, verified.

Calls ``scratch_gpt.data.downloads.fetch_data`` (download from the public sources, or ``--from DIR`` to copy
from a local folder) and prints one line per file; ``--list`` shows what is there, ``--where`` the folder.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` to the ``scratch-gpt`` parser."""
    from ..data.downloads import DATA_FILES, ENV_VAR

    p = subparsers.add_parser(
        "data",
        help="fetch the book's data sets and GPT-2's BPE files (sha256-checked) into the data folder",
        description="Download the-verdict.txt, the SMS Spam Collection, the instruction data, tinyshakespeare "
        "and OpenAI's GPT-2 encoder.json + vocab.bpe from their public sources (or copy them from a folder with "
        f"--from) into the data folder: ${ENV_VAR} if set, else scratch_gpt/data in your cache folder. Every "
        "file is checked against its pinned sha256 before it is renamed into place; files already there with the "
        "right bytes are kept. Recipes, examples and tests read the files from there.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"which files (default: all): {', '.join(DATA_FILES)}")  # fmt: skip
    p.add_argument("--from", dest="source_dir", metavar="DIR",
                   help="copy the files from this folder instead of downloading (e.g. ../shared/data)")  # fmt: skip
    p.add_argument(
        "--mirror", metavar="URL", help="download URL/NAME from a mirror instead of the public sources"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each server")
    show = p.add_mutually_exclusive_group()
    show.add_argument(
        "--list", action="store_true", help="only show which files are there (ok/missing/corrupt)"
    )
    show.add_argument("--where", action="store_true", help="only print the data folder's path")
    p.set_defaults(func=_data)


def _data(args: argparse.Namespace) -> int:
    from ..data.downloads import DATA_FILES, data_dir, fetch_data, file_status

    folder = data_dir()
    if args.where:
        print(folder)
        return 0
    if args.list:
        statuses = {name: file_status(name, folder) for name in DATA_FILES}
        print(f"data folder: {folder}")
        for name, status in statuses.items():
            print(f"  {status:<8} {name:<30} {DATA_FILES[name].what}")
        return 0 if all(s == "ok" for s in statuses.values()) else 1
    print(f"data folder: {folder}")
    fetch_data(
        args.names or None,
        folder=folder,
        source_dir=args.source_dir,
        mirror=args.mirror,
        timeout=args.timeout,
        log=lambda line: print(f"  {line}", flush=True),
    )
    print(f"all {len(args.names or DATA_FILES)} files in place")
    return 0
