"""``scratch-gpt push`` / ``pull`` / ``model-card``: share a checkpoint on the Hugging Face Hub.

Each command parses its arguments, calls one function of ``scratch_gpt.hub.sharing`` or ``scratch_gpt.hub.model_card``,
and prints the result. The Hub token comes from ``HF_TOKEN`` or ``hf auth login`` (never from the command
line, where it would land in the shell history).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the Hub commands to the ``scratch-gpt`` parser."""
    push = subparsers.add_parser(
        "push",
        help="upload a saved checkpoint folder (weights, tokenizer, remote code, model card) to the Hub",
        description="Upload a checkpoint folder written by save_pretrained to NAMESPACE/REPO as one commit. "
        "The repo is created if needed; a model card is generated when the folder has no README.md.",
    )
    push.add_argument("directory", help="the checkpoint folder (what model.save_pretrained wrote)")
    push.add_argument("repo_id", metavar="NAMESPACE/REPO", help="the Hub repo to upload to")
    push.add_argument("--private", action="store_true", help="create the repo as private (if it is new)")
    push.add_argument("--revision", help="branch to commit to (created from main if missing; default: main)")
    push.add_argument("--message", default=None, help="commit message")
    push.add_argument(
        "--ignore", action="append", default=[], metavar="GLOB", help="do not upload these files"
    )
    push.set_defaults(func=_push)

    pull = subparsers.add_parser(
        "pull",
        help="download a Hub repo into the local cache (or a folder) and print where it is",
        description="Download NAMESPACE/REPO; the printed folder loads with from_pretrained.",
    )
    pull.add_argument("repo_id", metavar="NAMESPACE/REPO", help="the Hub repo to download")
    pull.add_argument("--revision", help="branch, tag or commit id (default: main)")
    pull.add_argument("--local-dir", help="download into this folder instead of the Hub cache")
    pull.set_defaults(func=_pull)

    card = subparsers.add_parser(
        "model-card",
        help="write README.md (the model card) into a checkpoint folder",
        description="Generate a model card from config.json, the weights and training_history.json.",
    )
    card.add_argument("directory", help="the checkpoint folder")
    card.add_argument("--repo-id", help="NAMESPACE/REPO it will live at (used in the title and snippets)")
    card.add_argument("--license", default="apache-2.0", help="Hub licence id (default: apache-2.0)")
    card.add_argument("--dataset", action="append", default=[], help="Hub dataset id it was trained on")
    card.add_argument("--base-model", help="Hub id of the model it was fine-tuned from")
    card.add_argument("--tag", action="append", default=[], help="extra tag")
    card.add_argument("--language", action="append", default=[], help="language code of the training text")
    card.add_argument("--overwrite", action="store_true", help="replace an existing README.md")
    card.set_defaults(func=_model_card)


def _push(args: argparse.Namespace) -> int:
    from ..hub.sharing import DEFAULT_COMMIT_MESSAGE, push

    url = push(
        args.directory,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.message or DEFAULT_COMMIT_MESSAGE,
        ignore_patterns=args.ignore,
    )
    print(f"pushed {args.directory} to {args.repo_id}: {url}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from ..hub.sharing import pull

    print(pull(args.repo_id, revision=args.revision, local_dir=args.local_dir))
    return 0


def _model_card(args: argparse.Namespace) -> int:
    from ..hub.model_card import write_model_card

    path = write_model_card(
        args.directory,
        repo_id=args.repo_id,
        overwrite=args.overwrite,
        license=args.license,
        datasets=args.dataset,
        base_model=args.base_model,
        tags=args.tag,
        language=args.language or None,
    )
    print(f"wrote {path}")
    return 0
