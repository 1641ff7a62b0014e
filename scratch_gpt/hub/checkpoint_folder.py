"""Reading a saved checkpoint folder: one set of checks, one error for each way a folder can be wrong.

Every command that starts from a ``save_pretrained`` folder (``chat``, ``generate``, ``finetune-classifier``,
``finetune-instruct``, ``convert``) checks it here before loading anything, so the same mistake gets the same
one-line message everywhere:

* the folder does not exist -> ``FileNotFoundError``; it is a file -> ``NotADirectoryError``;
* it has no ``config.json`` -> ``FileNotFoundError``; ``config.json`` is not a JSON object -> ``ValueError``;
* a tokenizer is needed and none is saved there -> ``FileNotFoundError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..constants import TOKENIZER_MARKER_FILES

__all__ = ["check_model_folder", "read_config_json"]


def check_model_folder(path: str | os.PathLike[str], *, tokenizer: bool = False) -> Path:
    """``path`` as a ``Path`` once it is a folder with a ``config.json`` (and, with ``tokenizer``, a tokenizer)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"model folder {path} does not exist; pass a folder written by save_pretrained (e.g. the output of "
            "`scratch-gpt pretrain`)"
        )
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory; pass the checkpoint's folder")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} has no config.json, so it is not a saved model folder; pass a folder written by "
            "model.save_pretrained(folder)"
        )
    if tokenizer and not any((path / name).is_file() for name in TOKENIZER_MARKER_FILES):
        raise FileNotFoundError(
            f"{path} has no tokenizer (no {', '.join(TOKENIZER_MARKER_FILES)}); save one there with "
            f"tokenizer.save_pretrained({str(path)!r}), or copy the tokenizer files of the model it came from"
        )
    return path


def read_config_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of the checkpoint folder ``path`` (checked by ``check_model_folder``) as a dict."""
    config_file = check_model_folder(path) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{config_file} is not valid JSON ({err}); the checkpoint is corrupt, re-save it"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} is not a JSON object; the checkpoint is corrupt, re-save it")
    return config
