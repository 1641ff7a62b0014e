"""Loading a checkpoint folder with one error policy: every way it can fail is one ``CheckpointLoadError`` line.

``from_pretrained`` on a damaged folder fails in many voices: a misspelt ``config.json`` key silently builds a
model with default (random) blocks, a foreign ``model_type`` builds a random model of that class, a missing one
ends in an interactive remote-code prompt, missing or unexpected weights are a table on stderr, a truncated
``model.safetensors`` or weights of the wrong shape are deep tracebacks. ``load_checked`` checks the folder and
``config.json`` first, then loads and turns each failure into a ``CheckpointLoadError`` (a ``ValueError`` or ``FileNotFoundError``) that
names the file and the fix; the CLI prints it as one line and exits with status 2.

Pickled weights (``pytorch_model.bin``) are only ever loaded with ``weights_only=True`` (transformers' default):
one that needs more is refused, so its payload never runs.

Deliberately not here: the models themselves and GPT-2 conversion (``convert_gpt2.load_gpt2`` reads GPT-2 folders).
"""

from __future__ import annotations

import difflib
import json
import os
import pickle
from pathlib import Path
from typing import Any

from ..constants import TOKENIZER_MARKER_FILES

__all__ = [
    "CheckpointLoadError",
    "CheckpointFileError",
    "CheckpointNotFoundError",
    "check_checkpoint_config",
    "check_tokenizer_files",
    "read_checkpoint_config",
    "load_checked",
]

CAUSAL_LM_TYPES = ("scratch_gpt", "gpt2")  # what generate/chat/finetune-instruct load with the Auto classes
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class CheckpointLoadError(Exception):
    """A checkpoint folder cannot be loaded. The message names the file and what to do (the CLI: status 2).

    Raised as ``CheckpointFileError`` (also a ``ValueError``) or ``CheckpointNotFoundError`` (also a
    ``FileNotFoundError``)."""


class CheckpointFileError(CheckpointLoadError, ValueError):
    """A file of the checkpoint is corrupt, of another model, or refused."""


class CheckpointNotFoundError(CheckpointLoadError, FileNotFoundError):
    """The folder, its ``config.json`` or its weights are missing."""


def read_checkpoint_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``model_dir``'s ``config.json`` as a dict, once the folder and the file are there and the file is a JSON
    object (nothing about its contents is checked: ``check_checkpoint_config`` does that)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise CheckpointNotFoundError(
            f"model folder {path} does not exist{' (it is a file)' if path.exists() else ''}; pass a folder written "
            "by save_pretrained (e.g. the output of `scratch-gpt pretrain`)"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointNotFoundError(f"{path} has no config.json, so it is not a saved model folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointFileError(
            f"{config_file} is not valid JSON ({err}); the checkpoint is corrupt, re-save it"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointFileError(
            f"{config_file} is not a JSON object; the checkpoint is corrupt, re-save it"
        )
    return config


def check_checkpoint_config(
    model_dir: str | os.PathLike[str], allowed_types: tuple[str, ...] = CAUSAL_LM_TYPES
) -> dict[str, Any]:
    """Check ``model_dir``'s ``config.json`` (exists, JSON, a known ``model_type``, no misspelt scratch_gpt
    setting) and that weights are there; returns the config as a dict."""
    path = Path(model_dir)
    config = read_checkpoint_config(path)
    config_file = path / "config.json"
    expected = " or ".join(repr(t) for t in allowed_types)
    model_type = config.get("model_type")
    if model_type is None:
        raise CheckpointFileError(
            f'{config_file} has no model_type; a scratch_gpt checkpoint has "model_type": "scratch_gpt" '
            f"(expected {expected}); re-save it with save_pretrained"
        )
    if model_type not in allowed_types:
        raise CheckpointFileError(
            f"{config_file} has model_type {model_type!r}, expected {expected}: this command does not load "
            f"{model_type!r} models"
        )
    if model_type == "scratch_gpt":
        _check_keys(config, config_file)
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise CheckpointNotFoundError(
            f"{path} has no weights (no model.safetensors); copy the weights file next to config.json, or "
            "re-save the model with save_pretrained"
        )
    return config


def check_tokenizer_files(model_dir: str | os.PathLike[str]) -> None:
    """``FileNotFoundError`` (one line, with the fix) unless ``model_dir`` holds a saved tokenizer."""
    path = Path(model_dir)
    if not any((path / name).is_file() for name in TOKENIZER_MARKER_FILES):
        raise FileNotFoundError(
            f"{path} has no tokenizer (no {', '.join(TOKENIZER_MARKER_FILES)}); save one there with "
            f"tokenizer.save_pretrained({str(path)!r}), or copy the tokenizer files of the model it came from"
        )


def _check_keys(config: dict[str, Any], config_file: Path) -> None:
    """An unknown key that is close to a scratch_gpt setting missing from the file is a misspelling: without
    it, from_pretrained would silently use that setting's default."""
    from ..configuration_scratch_gpt import ScratchGPTConfig

    reference = ScratchGPTConfig()
    known = set(reference.to_dict()) | set(getattr(reference, "attribute_map", {}))
    fields = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "dropout", "qkv_bias",
              "layer_norm_epsilon", "initializer_range", "tie_word_embeddings")  # fmt: skip
    absent = [f for f in fields if f not in config]
    for key in config:
        if key in known:
            continue
        close = difflib.get_close_matches(key, absent, n=1, cutoff=0.75)
        if close:
            raise CheckpointFileError(
                f"{config_file} has an unknown key {key!r}; did you mean {close[0]!r}? (without it the model "
                f"would silently use the default {close[0]}={getattr(reference, close[0])!r}); fix config.json"
            )


def load_checked(model_class: Any, model_dir: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``model_class.from_pretrained(model_dir, **kwargs)`` with every failure as a ``CheckpointLoadError``,
    and missing or unexpected weights as errors. ``ignore_keys`` (a keyword of this function) lists prefixes of
    weights that may be missing or left unused (e.g. a new classification head ``"score."``, an unused ``"lm_head."``)."""
    from transformers.utils import logging as hf_logging

    ignore = tuple(kwargs.pop("ignore_keys", ()))
    path = Path(model_dir)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report table: turned into an error below
    try:
        model, info = model_class.from_pretrained(str(path), output_loading_info=True, **kwargs)
    except pickle.UnpicklingError as err:
        raise CheckpointFileError(
            f"{path / 'pytorch_model.bin'} was refused by weights_only loading ({str(err).splitlines()[0][:120]}): it "
            "is a pickle that could run code; convert trusted weights to model.safetensors"
        ) from None
    except (MemoryError, RuntimeError, OSError, ValueError) as err:
        raise _explain(err, path) from None
    except Exception as err:  # e.g. safetensors' SafetensorError (not a subclass of the above)
        if type(err).__name__ == "SafetensorError":
            raise CheckpointFileError(
                f"{path / 'model.safetensors'} is truncated or corrupt ({err}); re-save or re-download it"
            ) from None
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in info.get("missing_keys", []) if k not in tied and not k.startswith(ignore)]
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith(ignore)]
    mismatched = list(info.get("mismatched_keys", []))
    if missing or unexpected or mismatched:
        parts = [f"missing {sorted(missing)[:4]}" if missing else "", f"unexpected {sorted(unexpected)[:4]}" if unexpected else "",
                 f"wrong shape {[m[0] if isinstance(m, tuple) else m for m in mismatched][:4]}" if mismatched else ""]  # fmt: skip
        raise CheckpointFileError(
            f"the weights in {path} do not fit its config.json ({'; '.join(p for p in parts if p)}); the folder "
            "mixes files of different models: re-save it with save_pretrained"
        )
    return model


def _explain(err: BaseException, path: Path) -> BaseException:
    text = str(err)
    first = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
    if isinstance(err, MemoryError) or any(
        s in text
        for s in ("out of memory", "can't allocate memory", "DefaultCPUAllocator", "not enough memory")
    ):
        return CheckpointFileError(
            f"not enough memory to load {path} ({first}); check the sizes in config.json, or use a machine (or "
            "device) with more memory"
        )
    if "size mismatch" in text or "ignore_mismatched_sizes" in text or "shape" in text:
        return CheckpointFileError(
            f"{path / 'model.safetensors'} holds weights of the wrong shape for {path / 'config.json'}; the two files "
            "belong to different models: re-save the folder with save_pretrained"
        )
    if isinstance(err, OSError) and ("no file named" in text or "does not appear to have" in text):
        return CheckpointNotFoundError(
            f"{path} has no weights (no model.safetensors); copy the weights file next to config.json"
        )
    if "header" in text or "safetensors" in text.lower() or "deserializ" in text:
        return CheckpointFileError(
            f"{path / 'model.safetensors'} is truncated or corrupt ({first}); re-save it"
        )
    return CheckpointFileError(f"cannot load {path}: {first}")
