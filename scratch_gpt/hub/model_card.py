"""Model cards: the ``README.md`` that tells people on the Hub what a scratch_gpt checkpoint is.

A card has two parts. The YAML front matter is metadata the Hub indexes (``library_name``, ``tags``,
``license``, ``datasets``, ``base_model``, ``pipeline_tag``); we build it with ``huggingface_hub.ModelCardData``
so its field names are the Hub's own. The Markdown body says what the model is (sizes read from
``config.json``, the parameter count read from the safetensors headers), how to load it (with or without
scratch_gpt installed), how it was trained (read from ``training_history.json`` next to the weights), and what
it is for and not for. This is the "share your model" step after book chapter 5's training loop.

``training_history.json`` (written next to the checkpoint by the training loop) is a JSON object; each list has
one entry per evaluation, like the book's ``train_losses, val_losses, track_tokens_seen``::

    {
      "steps":        [0, 50, 100],          # optimizer steps done at each evaluation (ints)
      "tokens_seen":  [512, 26112, 51712],   # training tokens seen at each evaluation (ints)
      "train_losses": [10.9, 6.21, 5.48],    # training loss at each evaluation
      "val_losses":   [10.9, 6.53, 6.02],    # optional: validation loss at each evaluation
      "dataset": "tinyshakespeare.txt",      # optional: what it was trained on (free text)
      "hyperparameters": {"learning_rate": 0.0004, "batch_size": 8}   # optional: shown as a table
    }

Other keys (``scratch_gpt.training.history`` also writes ``epochs``, perplexities, samples and a per-step log) are
ignored; empty lists mean "no evaluation yet", and a NaN loss is shown as ``nan``. Not here: evaluation results in the Hub's ``model-index`` format, licence advice (the
licence is whatever the caller says; the default is the project's Apache-2.0), or uploading (``hub.py``).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write_text
from ..constants import HISTORY_FILE

CARD_FILE = "README.md"
DEFAULT_LICENSE = "apache-2.0"
DEFAULT_TAGS = ("scratch_gpt", "custom_code", "from-scratch", "llms-from-scratch")
BOOK = "*Build a Large Language Model (From Scratch)* (Sebastian Raschka, Manning, 2024)"

DEFAULT_INTENDED_USE = (
    "Learning and experimentation: reading how a GPT is built and trained, comparing runs, and trying "
    "fine-tuning on a small model. It is a teaching artefact, not a product."
)
_LIMIT_SMALL = (
    "- A small model trained on little text: expect fluent-looking but often meaningless, repetitive or "
    "wrong output.\n"
)
_LIMIT_COMMON = (
    "- Not for decisions about people, medical, legal or financial advice, or any use where errors matter.\n"
    "- The context window is fixed (see *Context length* above); longer inputs must be truncated."
)
_LIMITS = {
    "lm": _LIMIT_SMALL
    + "- Not instruction-tuned or safety-tuned; it continues text and can reproduce biases and offensive or "
    "false statements from its training data.\n",
    "gpt2": _LIMIT_SMALL
    + "- Not instruction-tuned or safety-tuned; it continues text and can reproduce biases and offensive or "
    "false statements from its training data.\n",
    "instruct": _LIMIT_SMALL
    + "- Instruction-tuned on a small set of Alpaca-style examples, not safety-tuned: its answers are often "
    "wrong, and it can reproduce biases and offensive or false statements from its training data.\n",
    "classifier": "- It gives one of its labels for any text, also text unlike its training data; its accuracy "
    "holds only for text like the data it was fine-tuned and tested on (see *Results*).\n",
}
LIMITATIONS = _LIMITS["lm"] + _LIMIT_COMMON  # a plain language model's (kept for callers of the old name)
RESULTS_FILE = "results.json"


# --- reading a checkpoint folder -------------------------------------------------------------------------
def read_training_history(directory: str | os.PathLike) -> dict[str, Any] | None:
    """Read and check ``training_history.json`` in ``directory``; ``None`` if there is none.

    Raises:
        ValueError: the file is not valid JSON or does not follow the format in this module's docstring.
    """
    path = Path(directory) / HISTORY_FILE
    if not path.is_file():
        return None
    fix = "write it in the format described in scratch_gpt.hub.model_card, or delete it"
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(history, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(history).__name__}; {fix}")
    keys = ["steps", "tokens_seen", "train_losses"] + (["val_losses"] if "val_losses" in history else [])
    for key in keys:
        values = history.get(key)
        if not isinstance(values, list):
            raise ValueError(f"{path}: {key!r} must be a list (one entry per evaluation); {fix}")
        wanted = int if key in ("steps", "tokens_seen") else (int, float)
        if not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
            kind = "integers" if wanted is int else "numbers"
            raise ValueError(f"{path}: {key!r} must hold only {kind}; {fix}")
    lengths = {key: len(history[key]) for key in keys}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"{path}: the lists must have one entry per evaluation, got lengths {lengths}; {fix}"
        )
    hyper = history.get("hyperparameters", {})
    if not isinstance(hyper, dict):
        raise ValueError(f"{path}: 'hyperparameters' must be a JSON object; {fix}")
    return history


def count_parameters(directory: str | os.PathLike) -> int | None:
    """Number of parameters stored in the checkpoint's safetensors file(s), read from their headers only.

    Tied weights are stored once, so a tied GPT-2 small gives 124,412,160. ``None`` if there are no weights.
    """
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    total = 0
    for file in files:
        with open(file, "rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))  # little-endian u64, then that many bytes of JSON
            try:
                header = json.loads(f.read(header_size))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ValueError(
                    f"{file} is not a safetensors file (bad header); re-save the model"
                ) from None
        for name, tensor in header.items():
            if name != "__metadata__":
                total += math.prod(tensor["shape"])
    return total if files else None


def card_for_checkpoint(directory: str | os.PathLike, *, repo_id: str | None = None, **options: Any) -> str:
    """The model card for a saved checkpoint folder (``config.json`` required; history and weights optional).

    ``options`` are passed to :func:`make_model_card` (``license``, ``datasets``, ``base_model``, ``tags``,
    ``language``, ``intended_use``).
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found: {directory} is not a saved model checkpoint; "
            "save one with model.save_pretrained(directory) first"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}); re-save the model") from None
    options.setdefault("instruction_tuned", _has_chat_template(directory))
    return make_model_card(
        config,
        repo_id=repo_id,
        history=read_training_history(directory),
        num_parameters=count_parameters(directory),
        results=read_results(directory),
        **options,
    )


def read_results(directory: str | os.PathLike) -> dict[str, Any] | None:
    """``results.json`` of a fine-tuning run (``finetune-classifier``, ``finetune-instruct``), or ``None``."""
    path = Path(directory) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the fine-tuning or delete it") from None
    return results if isinstance(results, dict) else None


def _has_chat_template(directory: Path) -> bool:
    """Whether the folder's tokenizer has a chat template (``finetune-instruct`` saves one)."""
    if (directory / "chat_template.jinja").is_file():
        return True
    config = directory / "tokenizer_config.json"
    try:
        return config.is_file() and bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def write_model_card(
    directory: str | os.PathLike, *, repo_id: str | None = None, overwrite: bool = False, **options: Any
) -> Path:
    """Write ``README.md`` (the model card) into a saved checkpoint folder, atomically; return its path.

    Raises:
        FileExistsError: a ``README.md`` is already there and ``overwrite`` is false (it may be hand-written).
    """
    path = Path(directory) / CARD_FILE
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    card = card_for_checkpoint(directory, repo_id=repo_id, **options)
    atomic_write_text(path, card)  # a crash never leaves a half-written card
    return path


# --- the card itself: a pure function of its inputs -------------------------------------------------------
def make_model_card(
    config: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    history: Mapping[str, Any] | None = None,
    num_parameters: int | None = None,
    license: str = DEFAULT_LICENSE,  # noqa: A002 - the Hub's field name
    datasets: str | Iterable[str] = (),
    base_model: str | None = None,
    tags: str | Iterable[str] = (),
    language: str | Iterable[str] | None = None,
    intended_use: str | None = None,
    results: Mapping[str, Any] | None = None,
    instruction_tuned: bool = False,
) -> str:
    """Build a model card (YAML metadata + Markdown) from a checkpoint's config and training history.

    The card describes the folder as what it is: a scratch_gpt language model (custom code), an
    instruction-tuned one, a text classifier (labels, and test accuracy from ``results``), or a stock GPT-2
    export (``model_type: gpt2``: no custom code, GPT-2's own settings).

    Args:
        config: the checkpoint's ``config.json`` as a dict (or ``config.to_dict()``).
        repo_id: ``namespace/name`` on the Hub, used in the title and the loading snippet.
        history: a training history (see the module docstring), e.g. from :func:`read_training_history`.
        num_parameters: parameter count, e.g. from :func:`count_parameters`.
        license: a Hub licence id.
        datasets: Hub dataset ids it was trained on (the history's free-text ``dataset`` goes in the body).
        base_model: the Hub id it was fine-tuned from, if any (for example ``openai-community/gpt2``).
        tags: extra tags, added to scratch_gpt's defaults.
        language: language code(s) of the training text, e.g. ``"en"``.
        intended_use: replaces the default "Intended use" paragraph.
        results: a fine-tuning run's ``results.json`` (accuracies, settings), from :func:`read_results`.
        instruction_tuned: the tokenizer has a chat template (``finetune-instruct`` saves one).
    """
    from huggingface_hub import ModelCardData

    if not isinstance(license, str) or not license.strip():
        raise ValueError(f"license must be a Hub licence id such as 'apache-2.0' or 'mit', got {license!r}")
    if base_model is not None and (
        not isinstance(base_model, str) or not base_model.strip() or " " in base_model
    ):
        raise ValueError(
            f"base_model must be a Hub model id like 'openai-community/gpt2', got {base_model!r}"
        )
    gpt2 = config.get("model_type") == "gpt2"
    architecture = (config.get("architectures") or ["GPT2LMHeadModel" if gpt2 else "ScratchGPTForCausalLM"])[
        0
    ]
    classifier = architecture.endswith("ForSequenceClassification")
    kind = "gpt2" if gpt2 else "classifier" if classifier else "instruct" if instruction_tuned else "lm"
    pipeline_tag = "text-classification" if classifier else "text-generation"
    default_tags = ("gpt2", "from-scratch", "llms-from-scratch") if gpt2 else DEFAULT_TAGS
    metadata = ModelCardData(
        library_name="transformers",
        license=license.strip(),
        tags=_unique([*default_tags, pipeline_tag, *_as_list(tags, "tags")]),
        datasets=_as_list(datasets, "datasets") or None,
        base_model=base_model,
        language=_as_list(language, "language") or None,
        pipeline_tag=pipeline_tag,
    )
    title = repo_id.split("/")[-1] if repo_id else ("A GPT-2 model" if gpt2 else "A scratch_gpt model")
    sections = [
        f"---\n{metadata.to_yaml()}\n---",
        f"# {title}\n\n{_intro(kind, config)}"
        + (f" Fine-tuned from [{base_model}](https://huggingface.co/{base_model})." if base_model else ""),
        "## Model details\n\n" + _details_table(config, architecture, num_parameters, gpt2),
        "## How to use\n\n" + _usage(repo_id, classifier, gpt2),
        "## Training\n\n" + _training(history, results, kind),
    ]
    if classifier and results:
        sections.append("## Results\n\n" + _classifier_results(results))
    sections += [
        f"## Intended use\n\n{intended_use or DEFAULT_INTENDED_USE}",
        f"## Limitations\n\n{_LIMITS[kind]}{_LIMIT_COMMON}",
    ]
    return "\n\n".join(sections) + "\n"


def _as_list(value: str | Iterable[str] | None, name: str) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{name} must be a string or a list of non-empty strings, got {value!r}")
    return [v.strip() for v in values]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _intro(kind: str, config: Mapping[str, Any]) -> str:
    built = f"built with `scratch_gpt`, which implements {BOOK} and wraps it as a Hugging Face `transformers` model"
    if kind == "gpt2":
        return (
            "A GPT-2 model in the stock Hugging Face format (`GPT2LMHeadModel`, `model_type: gpt2`): it loads with "
            "`transformers` alone, with no custom code and no `trust_remote_code`. It was trained with `scratch_gpt` "
            f"(which implements {BOOK}) and exported with `scratch-gpt convert --to-gpt2`."
        )
    if kind == "classifier":
        labels = _labels(config)
        which = f" ({', '.join(labels)})" if labels else ""
        return (
            f"A text classifier{which}: a GPT-style transformer {built}, with a classification head in place of "
            "the language-model head (book chapter 6)."
        )
    if kind == "instruct":
        return (
            f"A GPT-style language model {built}, instruction-fine-tuned on Alpaca-style prompts (book chapter 7); "
            "its tokenizer carries the chat template it was trained with."
        )
    return f"A GPT-style language model {built}."


def _labels(config: Mapping[str, Any]) -> list[str]:
    """The class names in id order, from ``id2label`` (skipping transformers' default ``LABEL_i`` names)."""
    id2label = config.get("id2label") or {}
    try:
        labels = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    except (TypeError, ValueError):
        return []
    return [] if all(label == f"LABEL_{i}" for i, label in enumerate(labels)) else labels


def _details_table(
    config: Mapping[str, Any], architecture: str, num_parameters: int | None, gpt2: bool = False
) -> str:
    n_embd = config.get("n_embd")
    rows = [
        ("Architecture", f"decoder-only transformer (GPT-2 style), `{architecture}`"),
        ("Parameters", f"{num_parameters:,} ({num_parameters / 1e6:.1f}M)" if num_parameters else "unknown"),
        (
            "Layers / attention heads / embedding size",
            f"{config.get('n_layer')} / {config.get('n_head')} / {n_embd}",
        ),
        (
            "Feed-forward size",
            config.get("n_inner") or (4 * n_embd if isinstance(n_embd, int) else "unknown"),
        ),
        ("Context length", f"{config.get('n_positions')} tokens"),
        ("Vocabulary", f"{config.get('vocab_size'):,} tokens" if config.get("vocab_size") else "unknown"),
        ("Output head tied to token embeddings", "yes" if config.get("tie_word_embeddings", True) else "no"),
        ("Query/key/value bias", "yes" if (gpt2 or config.get("qkv_bias")) else "no"),
        ("Dropout (training)", _dropout(config, gpt2)),
    ]
    if config.get("num_labels") and architecture.endswith("ForSequenceClassification"):
        rows.append(("Classes", config["num_labels"]))
        labels = _labels(config)
        if labels:
            rows.append(("Labels", ", ".join(f"{i}: {name}" for i, name in enumerate(labels))))
    return "| | |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)


def _dropout(config: Mapping[str, Any], gpt2: bool) -> Any:
    if gpt2:  # GPT2Config's three rates (GPT-2 itself uses 0.1 each)
        rates = {k: config.get(k, 0.1) for k in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}
        return f"embeddings {rates['embd_pdrop']}, attention {rates['attn_pdrop']}, residual {rates['resid_pdrop']}"
    return config.get("dropout", "unknown")


def _usage(repo_id: str | None, classifier: bool, gpt2: bool = False) -> str:
    where = repo_id or "path/to/checkpoint"
    auto = "AutoModelForSequenceClassification" if classifier else "AutoModelForCausalLM"
    run = (
        'logits = model(**tokenizer("Win a free prize now!", return_tensors="pt")).logits'
        if classifier
        else 'ids = tokenizer("Every effort moves you", return_tensors="pt").input_ids\n'
        "out = model.generate(ids, max_new_tokens=20, do_sample=False)\n"
        "print(tokenizer.decode(out[0]))"
    )
    if gpt2:
        return (
            "A stock GPT-2 checkpoint: `transformers` alone loads it (no custom code, no `trust_remote_code`):\n\n"
            f"```python\nfrom transformers import {auto}, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")\nmodel = {auto}.from_pretrained("{where}")\n'
            f"{run}\n```"
        )
    return (
        "With scratch_gpt installed (`import scratch_gpt` registers the model with the Auto classes):\n\n"
        f"```python\nimport scratch_gpt  # registers the scratch_gpt model type\nfrom transformers import {auto}, AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")\nmodel = {auto}.from_pretrained("{where}")\n'
        f"{run}\n```\n\n"
        "Without scratch_gpt, the model code stored in this repository is used; pass `trust_remote_code=True` "
        "(read those `.py` files first: they run on your machine):\n\n"
        f'```python\nmodel = {auto}.from_pretrained("{where}", trust_remote_code=True)\n```'
    )


def _training(
    history: Mapping[str, Any] | None, results: Mapping[str, Any] | None = None, kind: str = "lm"
) -> str:
    if history is None and results:
        return _training_from_results(results, kind)
    if history is None:
        return (
            f"No training history (`{HISTORY_FILE}`) was saved with this checkpoint, so how it was trained "
            "is not recorded here."
        )
    steps, tokens, train = history["steps"], history["tokens_seen"], history["train_losses"]
    if not steps:
        return f"The training history (`{HISTORY_FILE}`) saved with this checkpoint has no evaluations yet."
    val = history.get("val_losses")
    rows = [
        ("Optimizer steps", f"{steps[-1]:,}"),
        ("Training tokens seen", f"{tokens[-1]:,}"),
        ("Final training loss (perplexity)", _loss(train[-1])),
    ]
    if val:
        best = min(range(len(val)), key=lambda i: val[i] if math.isfinite(val[i]) else math.inf)
        rows += [
            ("Final validation loss (perplexity)", _loss(val[-1])),
            ("Best validation loss", f"{_loss(val[best])} at step {steps[best]:,}"),
        ]
    rows.append(("Evaluations recorded", len(steps)))
    if history.get("dataset"):
        rows.append(("Training data", history["dataset"]))
    text = (
        "Trained with scratch_gpt's training loop (book chapter 5: next-token cross-entropy, AdamW). "
        f"From `{HISTORY_FILE}`:\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    )
    hyper = history.get("hyperparameters") or {}
    if hyper:
        text += "\n\nHyperparameters:\n\n| | |\n|---|---|\n" + "\n".join(
            f"| {k} | {v} |" for k, v in hyper.items()
        )
    if not val:
        text += "\n\nNo validation loss was recorded, so nothing here measures how well it generalises."
    return text


def _rows(rows: list[tuple[str, Any]]) -> str:
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _training_from_results(results: Mapping[str, Any], kind: str) -> str:
    """How a fine-tuning run was trained, from its ``results.json`` (its settings and split sizes)."""
    settings = results.get("settings") if isinstance(results.get("settings"), dict) else {}
    rows: list[tuple[str, Any]] = []
    for key in ("freeze", "pooling"):
        if results.get(key) is not None:
            rows.append((key.capitalize(), results[key]))
    for key, value in settings.items():
        if value is not None and key != "device":
            rows.append((key.replace("_", " ").capitalize(), value))
    sizes = results.get("split_sizes") or results.get("num_records")
    if isinstance(sizes, dict):
        rows.append(("Examples (train / validation / test)", " / ".join(
            f"{sizes.get(k, '?'):,}" if isinstance(sizes.get(k), int) else "?" for k in ("train", "validation", "test")
        )))  # fmt: skip
    for key, name in (
        ("trainable_params", "Trainable parameters"),
        ("trainable_parameters", "Trainable parameters"),
    ):
        if isinstance(results.get(key), int):
            rows.append((name, f"{results[key]:,}"))
    if isinstance(results.get("train_seconds"), (int, float)):
        rows.append(("Training time", f"{results['train_seconds']:.0f} s"))
    what = (
        "Fine-tuned as a classifier with scratch_gpt's loop (book chapter 6: cross-entropy on the last token's "
        "logits, AdamW)"
        if kind == "classifier"
        else "Instruction-fine-tuned with scratch_gpt's loop (book chapter 7)"
    )
    return f"{what}. From `{RESULTS_FILE}`:\n\n" + _rows(rows)


def _classifier_results(results: Mapping[str, Any]) -> str:
    """Accuracy per split (test first) from a classifier's ``results.json``."""
    accuracy = results.get("accuracy") if isinstance(results.get("accuracy"), dict) else {}
    before = results.get("accuracy_before") if isinstance(results.get("accuracy_before"), dict) else {}
    order = [k for k in ("test", "validation", "train") if k in accuracy] + [
        k for k in accuracy if k not in ("test", "validation", "train")
    ]
    if not order:
        return f"`{RESULTS_FILE}` records no accuracy."
    rows = [
        (f"{split.capitalize()} accuracy", _percent(accuracy[split])
         + (f" (before fine-tuning: {_percent(before[split])})" if split in before else ""))
        for split in order
    ]  # fmt: skip
    return f"From `{RESULTS_FILE}`:\n\n" + _rows(rows)


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else str(value)


def _loss(value: float) -> str:
    """A loss with its perplexity, ``exp(loss)``."""
    try:
        perplexity = f"{math.exp(value):,.2f}"
    except OverflowError:
        perplexity = "inf"
    return f"{value:.4f} ({perplexity})"
