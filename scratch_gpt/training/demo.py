"""The one-command demo: train a tokenizer and a small GPT from scratch on text every machine has.

The book trains on the-verdict.txt, which we cannot ship. Every Python installation, though, carries its
standard library's source, and its docstrings are a few megabytes of English about programming.
``run_demo``:

1. collects the docstrings of the standard library (``sysconfig``'s ``stdlib`` folder, files in sorted
   order, test folders skipped, each docstring one document) into ``<output_dir>/corpus/stdlib_docstrings.jsonl``;
2. trains a byte-level BPE tokenizer (2,048 tokens) and a 4-layer GPT (context 128, about 2.2M parameters)
   on it with ``training.from_corpus.pretrain_from_corpus`` (book chapters 2, 4 and 5; warmup + cosine decay);
3. reloads the saved checkpoint with ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer``, and
   generates a few continuations with ``model.generate()``.

It is a fixed amount of work (a fixed number of optimizer steps over a fixed corpus, seeded), sized for about
5 minutes on an idle 2-core CPU: a slower or busier machine gets the same model, only later, and the progress
bar shows the time left. ``size="quick"`` is a one-minute version with a smaller model, ``size="tiny"`` a
seconds-long one for tests. The results depend on the Python version (its standard library is the corpus).

A folder that already holds a finished demo is never trained over by accident: ``find_demo`` reports what is
there, ``run_demo`` refuses with the ways forward (``resume=True`` continues an interrupted or extended run,
``overwrite=True`` starts over, or another folder).

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

__all__ = [
    "DEMO_PROMPTS",
    "SAMPLING",
    "SETTINGS",
    "DemoResult",
    "ExistingDemo",
    "continue_command",
    "describe_demo",
    "describe_existing",
    "find_demo",
    "run_demo",
    "stdlib_docstrings",
    "write_demo_corpus",
]

DEMO_PROMPTS = ("Return the", "This module provides", "If the file", "Create a new")
# how the demo samples its generations, and the settings of the `generate` command it prints: greedy decoding
# makes a model this small repeat itself ("the a a a"), top-k 20 at temperature 0.8 reads like docstrings
SAMPLING: dict[str, Any] = dict(temperature=0.8, top_k=20, seed=123)
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_CORPUS = Path("corpus") / "stdlib_docstrings.jsonl"  # also what marks a folder as the demo's own

# size -> settings: a fixed amount of work each (no time limit, so a busy machine gets the same model, later).
# "full" is about 5 minutes on an idle 2-core CPU, "quick" about 1 minute, "tiny" seconds (the tests).
SETTINGS: dict[str, dict[str, Any]] = {
    "full": dict(
        max_chars=2_000_000, vocab_size=2048, n_layer=4, n_embd=192, n_head=6, context_length=128,
        batch_size=16, max_steps=900, warmup_steps=50, learning_rate=2e-3, min_lr=2e-4,
        eval_interval=100, eval_batches=20, save_interval=100, max_new_tokens=40,
    ),
    "quick": dict(
        max_chars=600_000, vocab_size=1024, n_layer=2, n_embd=128, n_head=4, context_length=64,
        batch_size=16, max_steps=600, warmup_steps=30, learning_rate=3e-3, min_lr=3e-4,
        eval_interval=100, eval_batches=10, save_interval=100, max_new_tokens=40,
    ),
    "tiny": dict(
        max_chars=40_000, vocab_size=300, n_layer=1, n_embd=32, n_head=2, context_length=32,
        batch_size=8, max_steps=12, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
        eval_interval=6, eval_batches=2, save_interval=6, max_new_tokens=8,
    ),
}  # fmt: skip


@dataclass
class DemoResult:
    """What the demo did and where it put things. ``steps`` counts all steps of the run (an interrupted run
    and its ``--resume`` together); ``start_step`` is where this session began and ``seconds`` its time."""

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
    start_step: int = 0
    size: str = "full"


@dataclass
class ExistingDemo:
    """What an earlier demo left in a folder (``find_demo``)."""

    output_dir: Path
    finished: bool  # a saved model whose training reached its last step
    step: int  # the newest checkpoint's step (0: none)
    max_steps: int | None  # the run's planned steps, when known
    val_loss: float | None  # the last validation loss, when known
    size: str | None = None  # "full", "quick" or "tiny", when known


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
    size: str | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 123,
    show_progress: bool = True,
) -> DemoResult:
    """Train a tokenizer and a small GPT on the standard library's docstrings, save, reload and generate.

    Args:
        output_dir: where the corpus, checkpoints, final model, loss history and plot are written.
        size: ``"full"`` (about 5 minutes on an idle 2-core CPU; the default), ``"quick"`` (about 1 minute,
            a smaller model) or ``"tiny"`` (seconds; for tests). With ``resume``, the default is the size the
            folder's run was started with.
        max_steps: override the size's number of optimizer steps (with ``resume``: train further).
        resume: continue the demo in ``output_dir`` from its newest checkpoint.
        overwrite: start over: the folder's old content (an earlier demo, or other files) is set aside and
            replaced once the new run has finished (``run_folder.claim_run_folder``).
        seed: the random seed (model initialization, data order, sampling).
        show_progress: the progress bar (with the time left) and evaluation lines.

    Raises:
        FileExistsError: ``output_dir`` already holds a demo and neither ``resume`` nor ``overwrite`` was
            given (the message says what is there and the ways forward), or the folder holds files a
            demo did not write (``run_folder.RunFolderError``) and ``overwrite`` was not given.
    """
    from .from_corpus import CorpusConfig, pretrain_from_corpus
    from .pretrain import PretrainConfig, check_output_dir
    from .run_folder import claim_run_folder

    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the demo, or start it over")
    output_dir = Path(output_dir)
    existing = find_demo(output_dir)
    if existing is not None and not (resume or overwrite):
        raise FileExistsError(describe_existing(existing))
    if overwrite:
        existing = None
    if size is None:
        size = existing.size if (resume and existing is not None and existing.size) else "full"
    if size not in SETTINGS:
        raise ValueError(f"unknown demo size {size!r}; choose one of {', '.join(SETTINGS)}")
    started = time.perf_counter()
    s = dict(SETTINGS[size])
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be a positive number of steps, got {max_steps}")
        s["max_steps"] = max_steps
    corpus = output_dir / _CORPUS
    start_step = existing.step if (resume and existing is not None) else 0
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
        sample_prompt=DEMO_PROMPTS[0],
        sample_tokens=s["max_new_tokens"],
        seed=seed,
        resume=resume,
        show_progress=show_progress,
        dataset_name="docstrings of the Python standard library",
    )
    settings = {**s, "seed": seed, "size": size}
    with claim_run_folder(output_dir, "pretrain", command="demo", settings=settings, overwrite=overwrite):
        if resume and corpus.is_file():
            lines = corpus.read_text(encoding="utf-8").splitlines()
            n_docs, n_chars = len(lines), sum(len(json.loads(x)["text"]) for x in lines)
        else:
            check_output_dir(output_dir, resume)  # before writing anything into it
            n_docs, n_chars = write_demo_corpus(corpus, s["max_chars"])
        _write_state(output_dir, size=size, max_steps=s["max_steps"], seed=seed, finished=False)
        if show_progress:
            print(
                f"corpus: {n_docs:,} docstrings of the Python standard library, {n_chars:,} characters -> {corpus}"
            )
        result = pretrain_from_corpus(config, corpus_settings)
        val_loss = result.history.val_losses[-1]
        _write_state(
            output_dir, size=size, max_steps=s["max_steps"], seed=seed, finished=not result.stopped_early,
            steps=result.step, val_loss=val_loss,
        )  # fmt: skip
    generations = generate_samples(output_dir, DEMO_PROMPTS, s["max_new_tokens"], seed)
    return DemoResult(
        output_dir=output_dir,
        corpus_file=corpus,
        corpus_documents=n_docs,
        corpus_chars=n_chars,
        steps=result.step,
        tokens_seen=result.tokens_seen,
        val_loss=val_loss,
        plot_path=result.plot_path,
        generations=generations,
        seconds=time.perf_counter() - started,
        stopped_early=result.stopped_early,
        start_step=start_step,
        size=size,
    )


_STATE_FILE = "demo.json"  # the demo's own record: size, planned steps, seed, finished, final loss


def _write_state(output_dir: Path, **state: Any) -> None:
    atomic_write_text(output_dir / _STATE_FILE, json.dumps(state, indent=1) + "\n")


def find_demo(output_dir: str | Path) -> ExistingDemo | None:
    """What an earlier demo left in ``output_dir``, or ``None`` if the folder holds no demo."""
    from .checkpoints import list_checkpoints

    output_dir = Path(output_dir)
    state_file, corpus = output_dir / _STATE_FILE, output_dir / _CORPUS
    checkpoints = list_checkpoints(output_dir / "checkpoints")
    if not (state_file.is_file() or corpus.is_file() or checkpoints):
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    except (OSError, ValueError):
        state = {}  # a demo folder all the same (it has the corpus or checkpoints)
    step = int(checkpoints[-1].name.rsplit("-", 1)[-1]) if checkpoints else 0
    finished = bool(state.get("finished")) and (output_dir / "config.json").is_file()
    return ExistingDemo(
        output_dir=output_dir,
        finished=finished,
        step=int(state["steps"]) if finished and "steps" in state else step,
        max_steps=state.get("max_steps"),
        val_loss=state.get("val_loss") if finished else None,
        size=state.get("size"),
    )


def continue_command(
    output_dir: str | Path, program: str = "scratch-gpt", prompt: str = DEMO_PROMPTS[0]
) -> str:
    """The ``generate`` command line that continues a prompt with the demo's model, with the demo's sampling
    settings (greedy decoding makes a model this small repeat itself)."""
    return (
        f"{program} generate --model {_quote(output_dir)} --temperature {SAMPLING['temperature']} "
        f"--top-k {SAMPLING['top_k']} --seed {SAMPLING['seed']} {_quote(prompt)}"
    )


def _quote(value: str | Path) -> str:
    import shlex

    return shlex.quote(str(value))


def _demo_command(existing: ExistingDemo, program: str, *options: str) -> str:
    out = [] if str(existing.output_dir) == "scratch_gpt_demo" else ["--output", _quote(existing.output_dir)]
    size = [f"--{existing.size}"] if existing.size in ("quick", "tiny") else []
    return " ".join([program, "demo", *size, *out, *options])


def describe_existing(existing: ExistingDemo, program: str = "scratch-gpt") -> str:
    """What is already in a demo folder, and the commands that go on from there."""
    if existing.finished:
        loss = f", validation loss {existing.val_loss:.3f}" if existing.val_loss is not None else ""
        return "\n".join([
            f"{existing.output_dir} already holds a trained demo model ({existing.step} steps{loss}).",
            "Try it:",
            f"  {continue_command(existing.output_dir, program)}",
            "Or train again:",
            f"  {_demo_command(existing, program, '--overwrite')}    # start over in this folder",
            f"  {program} demo --output scratch_gpt_demo_2    # a second demo beside it",
            f"  {_demo_command(existing, program, '--resume', '--max-steps', str(existing.step + 300))}"
            "    # train this one further",
        ])  # fmt: skip
    of = f" of {existing.max_steps}" if existing.max_steps else ""
    return "\n".join([
        f"{existing.output_dir} holds an unfinished demo (newest checkpoint: step {existing.step}{of}).",
        f"  {_demo_command(existing, program, '--resume')}    # continue it",
        f"  {_demo_command(existing, program, '--overwrite')}    # start over in this folder",
    ])  # fmt: skip


def generate_samples(
    model_dir: str | Path, prompts: tuple[str, ...], max_new_tokens: int, seed: int
) -> list[tuple[str, str]]:
    """Reload a saved checkpoint with the Auto classes and sample a continuation of each prompt (``SAMPLING``:
    top-k 20, temperature 0.8, seeded)."""
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
            top_k=SAMPLING["top_k"],
            temperature=SAMPLING["temperature"],
            pad_token_id=tokenizer.pad_token_id,
        )
        out.append((prompt, tokenizer.decode(ids[0], skip_special_tokens=True)))
    return out


def describe_demo(result: DemoResult, program: str = "scratch-gpt") -> str:
    """The demo's closing report (printed by ``scratch-gpt demo``); ``program`` is how the user runs
    ``scratch-gpt`` (e.g. ``.venv/bin/scratch-gpt``), for the commands it suggests."""
    steps = result.steps - result.start_step
    resumed = (
        f" (resumed at step {result.start_step}; {result.steps} steps in all)" if result.start_step else ""
    )
    lines = [
        f"Trained {steps} steps{resumed} in {result.seconds:.0f} s; {result.tokens_seen:,} tokens seen; "
        f"validation loss {result.val_loss:.3f}.",
        f"Model and tokenizer (Hugging Face format): {result.output_dir}",
        f"Loss plot: {result.plot_path}",
        "Generations after reloading with AutoModelForCausalLM.from_pretrained "
        f"(top-k {SAMPLING['top_k']}, temperature {SAMPLING['temperature']}):",
    ]
    lines += [f"  {prompt!r} -> {text!r}" for prompt, text in result.generations]
    if result.stopped_early:
        lines.append(f"Training stopped early; `{program} demo --resume` continues it.")
    lines += ["Continue a prompt of your own:", f"  {continue_command(result.output_dir, program)}"]
    return "\n".join(lines)
