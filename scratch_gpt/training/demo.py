"""The one-command demo: train a tokenizer and a small GPT from scratch on text every machine has.

The book trains on the-verdict.txt, which we cannot ship. Every Python installation, though, carries its
standard library's source, and its docstrings are a few megabytes of English about programming.
``run_demo``:

1. collects the docstrings of the standard library (``sysconfig``'s ``stdlib`` folder, files in sorted
   order, test folders skipped, each docstring one document) into ``<output_dir>/corpus/stdlib_docstrings.jsonl``;
2. trains a byte-level BPE tokenizer (2,048 tokens) and a 4-layer GPT (context 128, about 2.2M parameters)
   on it with ``from_corpus.pretrain_from_corpus`` (book chapters 2, 4 and 5; warmup + cosine decay);
3. reloads the saved checkpoint with ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer``, and
   generates a few continuations with ``model.generate()``.

It is sized for about 5 minutes on 2 CPU cores: a fixed number of steps, with a time limit on training so a
slow machine stops early (cleanly: evaluation, checkpoint, model) rather than running long. The results
depend on the Python version (its standard library is the corpus). ``quick=True`` is a seconds-long version
for tests.

Deliberately not here: argument parsing (``cli/train.py``) and anything the library does not already do.
"""

from __future__ import annotations

import ast
import json
import os
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write_text
from .checkpoints import ensure_writable_dir

__all__ = ["DemoResult", "stdlib_docstrings", "write_demo_corpus", "run_demo", "DEMO_PROMPTS"]

DEMO_PROMPTS = ("Return the", "This module provides", "If the file", "Create a new")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}

# name -> settings; "full" is the ~5 minute demo, "quick" the test-sized one
SETTINGS: dict[str, dict[str, Any]] = {
    "full": dict(
        max_chars=2_000_000, vocab_size=2048, n_layer=4, n_embd=192, n_head=6, context_length=128,
        batch_size=16, max_steps=900, warmup_steps=50, learning_rate=2e-3, min_lr=2e-4,
        eval_interval=100, eval_batches=20, save_interval=100, time_limit_s=270.0, max_new_tokens=40,
    ),
    "quick": dict(
        max_chars=40_000, vocab_size=300, n_layer=1, n_embd=32, n_head=2, context_length=32,
        batch_size=8, max_steps=12, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
        eval_interval=6, eval_batches=2, save_interval=6, time_limit_s=None, max_new_tokens=8,
    ),
}  # fmt: skip


@dataclass
class DemoResult:
    """What the demo did and where it put things."""

    output_dir: Path
    corpus_file: Path
    corpus_documents: int
    corpus_chars: int
    steps: int
    tokens_seen: int
    val_loss: float
    plot_path: Path | None
    generations: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False


def stdlib_docstrings(max_chars: int | None = None, min_chars: int = 40) -> Iterator[str]:
    """The docstrings of the Python standard library (modules, classes, functions), in a fixed order.

    Files are visited sorted by path (test folders skipped); within a file, ``ast.walk`` order. Docstrings
    shorter than ``min_chars`` are skipped; iteration stops once ``max_chars`` characters were yielded.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(
            f"the Python standard library was not found at {root}; the demo needs its sources"
        )
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in _SKIP_DIRS]  # prune: never walk into site-packages
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    files.sort()
    total = 0
    for file in files:
        try:
            tree = ast.parse(file.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # a few files are deliberately broken or unreadable
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars and "<|" not in doc:
                    yield doc
                    total += len(doc)
                    if max_chars is not None and total >= max_chars:
                        return


def write_demo_corpus(path: str | Path, max_chars: int | None) -> tuple[int, int]:
    """Write the standard library's docstrings as JSON Lines (``{"text": ...}``); returns (documents, chars)."""
    docs = list(stdlib_docstrings(max_chars))
    if not docs:
        raise ValueError(
            "no docstrings found in the Python standard library; the demo has nothing to train on"
        )
    path = Path(path)
    ensure_writable_dir(path.parent, "corpus directory")
    atomic_write_text(path, "".join(json.dumps({"text": d}) + "\n" for d in docs))
    return len(docs), sum(len(d) for d in docs)


def run_demo(
    output_dir: str | Path = "scratch_gpt_demo",
    *,
    quick: bool = False,
    max_steps: int | None = None,
    time_limit_s: float | None = None,
    resume: bool = False,
    seed: int = 123,
    show_progress: bool = True,
    overwrite: bool = False,
) -> DemoResult:
    """Train a tokenizer and a small GPT on the standard library's docstrings, save, reload and generate.

    Args:
        output_dir: where the corpus, checkpoints, final model, loss history and plot are written.
        quick: a seconds-long version (tiny corpus, tokenizer and model) for tests and a first look.
        max_steps, time_limit_s: override the preset's number of steps and training time limit.
        resume: continue an interrupted demo from its newest checkpoint.
        seed: the random seed (model initialization, data order, sampling).
        show_progress: the progress bar and evaluation lines.
        overwrite: replace an ``output_dir`` that holds other files (see ``run_folder``).
    """
    from .from_corpus import CorpusConfig, pretrain_from_corpus
    from .pretrain import PretrainConfig, check_output_dir
    from .run_folder import claim_run_folder

    started = time.perf_counter()
    s = dict(SETTINGS["quick" if quick else "full"])
    if max_steps is not None:
        s["max_steps"] = max_steps
    if time_limit_s is not None:
        s["time_limit_s"] = time_limit_s
    output_dir = Path(output_dir)
    corpus = output_dir / "corpus" / "stdlib_docstrings.jsonl"
    corpus_settings = CorpusConfig(
        corpus,
        vocab_size=s["vocab_size"],
        n_layer=s["n_layer"],
        n_embd=s["n_embd"],
        n_head=s["n_head"],
        context_length=s["context_length"],
    )
    config = PretrainConfig(
        output_dir=output_dir,
        max_steps=s["max_steps"],
        batch_size=s["batch_size"],
        learning_rate=s["learning_rate"],
        min_lr=s["min_lr"],
        warmup_steps=s["warmup_steps"],
        eval_interval=s["eval_interval"],
        eval_batches=s["eval_batches"],
        save_interval=s["save_interval"],
        time_limit_s=s["time_limit_s"],
        sample_prompt=DEMO_PROMPTS[0],
        sample_tokens=s["max_new_tokens"],
        seed=seed,
        resume=resume,
        show_progress=show_progress,
        dataset_name="docstrings of the Python standard library",
    )
    settings = {**s, "seed": seed}
    with claim_run_folder(output_dir, "pretrain", command="demo", settings=settings, overwrite=overwrite):
        if resume and corpus.is_file():
            lines = corpus.read_text(encoding="utf-8").splitlines()
            n_docs, n_chars = len(lines), sum(len(json.loads(x)["text"]) for x in lines)
        else:
            check_output_dir(output_dir, resume)  # before writing anything into it
            n_docs, n_chars = write_demo_corpus(corpus, s["max_chars"])
        if show_progress:
            print(
                f"corpus: {n_docs:,} docstrings of the Python standard library, {n_chars:,} characters -> {corpus}"
            )
        result = pretrain_from_corpus(config, corpus_settings)
    generations = generate_samples(output_dir, DEMO_PROMPTS, s["max_new_tokens"], seed)
    return DemoResult(
        output_dir=output_dir,
        corpus_file=corpus,
        corpus_documents=n_docs,
        corpus_chars=n_chars,
        steps=result.step,
        tokens_seen=result.tokens_seen,
        val_loss=result.history.val_losses[-1],
        plot_path=result.plot_path,
        generations=generations,
        seconds=time.perf_counter() - started,
        stopped_early=result.stopped_early,
    )


def generate_samples(
    model_dir: str | Path, prompts: tuple[str, ...], max_new_tokens: int, seed: int
) -> list[tuple[str, str]]:
    """Reload a saved checkpoint with the Auto classes and sample a continuation of each prompt (top-k 20,
    temperature 0.8, seeded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the demo's output
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    out = []
    for prompt in prompts:
        torch.manual_seed(seed)
        inputs = tokenizer(prompt, return_tensors="pt")
        ids = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            top_k=20,
            temperature=0.8,
            pad_token_id=tokenizer.pad_token_id,
        )
        out.append((prompt, tokenizer.decode(ids[0], skip_special_tokens=True)))
    return out


def describe_demo(result: DemoResult) -> str:
    """The demo's closing report (printed by ``scratch-gpt demo``)."""
    lines = [
        f"Trained {result.steps} steps ({result.tokens_seen:,} tokens) in {result.seconds:.0f} s in total; "
        f"validation loss {result.val_loss:.3f}.",
        f"Model and tokenizer (Hugging Face format): {result.output_dir}",
        f"Loss plot: {result.plot_path}",
        "Generations after reloading with AutoModelForCausalLM.from_pretrained:",
    ]
    lines += [f"  {prompt!r} -> {text!r}" for prompt, text in result.generations]
    if result.stopped_early:
        lines.append("(Training stopped at the time limit; `scratch-gpt demo --resume` continues it.)")
    return "\n".join(lines)
