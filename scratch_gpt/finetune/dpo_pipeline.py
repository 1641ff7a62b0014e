"""Preference tuning end to end (the book's chapter 7 DPO bonus): load, pair, train, evaluate, save.

The notebook's recipe, in order, and where each step lives:

1. load the instruction-tuned model twice: the *policy* to train and the frozen *reference* (by default a frozen
   copy of the policy; ``chat.load_model_and_tokenizer``);
2. the preference records (``dpo_data.load_preference_data``: given pairs, or pairs built deterministically from
   instruction records), split in order 85% train / 10% test / 5% validation like chapter 7
   (``instruction_data.split_instruction_data``);
3. ``PreferenceDataset`` + ``preference_collate_fn`` (chapter 7's masking) as loaders, the training split
   shuffled with a seeded generator;
4. ``dpo_training.train_model_dpo_simple``: AdamW on the policy only (the notebook: lr 5e-6, weight decay 0.01,
   1 epoch, batch 8, beta 0.1), DPO metrics every ``eval_freq`` steps;
5. the held-out numbers before and after: DPO loss, reward margin and reward accuracy on the validation and test
   pairs (``evaluate_dpo_loader``), and chapter 7's response loss of the held-out chosen and rejected answers
   (``instruction_training.response_loss``), plus greedy answers of the reference and the policy to the first
   test prompts, as the notebook prints them;
6. the policy saved as a Hugging Face folder (with the Alpaca chat template, so ``scratch-gpt chat`` and
   ``AutoModelForCausalLM`` load it), written to a temporary folder and moved in file by file; then
   ``dpo_history.json`` and ``results.json`` (with ``asdict(config)``), each written atomically.

``finetune_dpo(DPOConfig(...))`` runs all of it. Deliberately not here: TRL (``DPOTrainer`` runs on our model
directly; see ``docs/dpo.md`` and ``tests/test_trl.py``), LoRA, multi-GPU and mixed precision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..atomic_io import atomic_write_text, write_dir_atomically
from ..kernels import use_fast_kernels
from ..training.checkpoints import ensure_writable_dir
from ..training.config_checks import check_choice, check_int, check_number, config_to_json, reject_non_finite
from ..training.run_folder import claim_run_folder
from .chat import add_chat_template, load_model_and_tokenizer
from .dpo_data import (
    PAIR_STRATEGIES,
    PreferenceDataset,
    load_preference_data,
    preference_collate_fn,
    response_loader,
)
from .dpo_training import (
    REDUCTIONS,
    disable_dropout,
    evaluate_dpo_loader,
    freeze_reference,
    train_model_dpo_simple,
)
from .instruction_data import split_instruction_data
from .instruction_training import generate_test_responses, response_loss

__all__ = ["DPOConfig", "finetune_dpo", "save_dpo_checkpoint"]

RESULTS_FILE = "results.json"
HISTORY_FILE = "dpo_history.json"
METRICS_NOTE = (
    "Rewards are beta * (log p_policy - log p_reference) of a response; reward accuracy is the share of pairs whose "
    "chosen reward exceeds the rejected one. Response loss is chapter 7's per-token loss of the held-out answers "
    "(prompt masked). None of these is a judgment of answer quality; no judge model was used."
)


@dataclass
class DPOConfig:
    """Settings of one DPO run; the defaults are the book's notebook (beta 0.1, lr 5e-6, 1 epoch, batch 8).

    ``model_dir`` is an instruction-tuned checkpoint folder; ``reference_dir`` a second one to use as the frozen
    reference (None: a frozen copy of the model, as in the book). ``data_path`` holds preference records or
    chapter 7 instruction records (then pairs are built with ``pair_strategy`` and ``seed``, see ``dpo_data``).
    ``max_steps`` stops early. ``log_prob="mean"`` averages a response's token log-probabilities (the notebook);
    ``"sum"`` is the paper's and TRL's. ``max_length`` cuts sequences (None: the model's context length).
    ``num_samples`` test prompts are answered greedily before and after (up to ``max_new_tokens`` tokens).
    """

    model_dir: str | Path
    data_path: str | Path
    output_dir: str | Path
    reference_dir: str | Path | None = None
    beta: float = 0.1
    num_epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    learning_rate: float = 5e-6
    weight_decay: float = 0.01
    grad_clip: float | None = None
    log_prob: str = "mean"
    pair_strategy: str = "other_answer"
    seed: int = 123
    eval_freq: int = 5
    eval_iter: int | None = 5
    max_length: int | None = None
    num_samples: int = 3
    max_new_tokens: int = 64
    skip_bad_records: bool = False
    device: str | None = None
    overwrite: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        reject_non_finite(self)
        check_number("beta", self.beta, above=0, hint="the book uses 0.1; 0.1 to 0.5 is usual")
        check_number("learning_rate", self.learning_rate, above=0)
        check_number("weight_decay", self.weight_decay, minimum=0)
        check_number("grad_clip", self.grad_clip, above=0, optional=True)
        for name in ("num_epochs", "batch_size", "eval_freq"):
            check_int(name, getattr(self, name))
        for name in ("max_steps", "eval_iter", "max_length"):
            check_int(name, getattr(self, name), optional=True)
        for name in ("num_samples", "max_new_tokens", "seed"):
            check_int(name, getattr(self, name), minimum=0)
        check_choice("log_prob", self.log_prob, REDUCTIONS)
        check_choice("pair_strategy", self.pair_strategy, PAIR_STRATEGIES)
        for name in ("model_dir", "data_path", "output_dir"):
            if not str(getattr(self, name)):
                raise ValueError(f"{name} must be a path, got an empty string")
        inputs = {Path(self.model_dir).resolve()}
        if self.reference_dir is not None:
            inputs.add(Path(self.reference_dir).resolve())
        if Path(self.output_dir).resolve() in inputs:
            raise ValueError(f"output_dir {str(self.output_dir)!r} is an input model folder; write elsewhere")


def save_dpo_checkpoint(model: torch.nn.Module, tokenizer: Any, output_dir: str | Path) -> Path:
    """Save ``model`` and ``tokenizer`` (with the Alpaca chat template) into ``output_dir``, atomically per file."""
    add_chat_template(tokenizer)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    return write_dir_atomically(output_dir, write)


def _held_out_metrics(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    loaders: dict[str, DataLoader],
    config: DPOConfig,
    device: torch.device,
) -> dict[str, float | int]:
    metrics: dict[str, float | int] = {}
    for split in ("val", "test"):
        dpo = evaluate_dpo_loader(loaders[split], policy, reference, config.beta, None, config.log_prob)
        metrics.update({f"{split}_{key}": value for key, value in dpo.items()})
        for key in ("chosen", "rejected"):
            loss, tokens = response_loss(policy, loaders[f"{split}_{key}_responses"], device)
            metrics[f"{split}_{key}_response_loss"] = loss
            metrics[f"{split}_{key}_response_tokens"] = tokens
    return metrics


def _silent(_: str) -> None:
    pass


def finetune_dpo(config: DPOConfig, log_fn: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Preference-tune ``config.model_dir`` with DPO on ``config.data_path``; write everything into ``output_dir``.

    Returns the contents of ``results.json``: the settings (``asdict(config)``), split sizes, steps and time, the
    held-out metrics ``before`` and ``after`` (DPO loss, reward margin and accuracy, response loss of chosen and
    rejected answers; "before" is the reference's view of itself, so loss log 2 and margin 0 when the reference
    is the model), their change, sample answers, and the paths written.
    """
    with claim_run_folder(
        config.output_dir,
        "dpo",
        command="finetune-dpo",
        settings=config_to_json(config),
        overwrite=config.overwrite,
    ):
        return _finetune_dpo(config, log_fn)


def _finetune_dpo(config: DPOConfig, log_fn: Callable[[str], None] | None) -> dict[str, Any]:
    log = log_fn or _silent
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    records = load_preference_data(
        config.data_path,
        strategy=config.pair_strategy,
        seed=config.seed,
        on_error="skip" if config.skip_bad_records else "raise",
    )
    splits = split_instruction_data(records)
    policy, tokenizer = load_model_and_tokenizer(config.model_dir, device=device)
    disable_dropout(policy)  # as the notebook (drop_rate 0.0) and TRL: the loss starts at exactly log 2
    if config.reference_dir is None:
        reference = freeze_reference(policy, copy_model=True)
    else:
        reference, ref_tokenizer = load_model_and_tokenizer(config.reference_dir, device=device)
        if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"the reference model {str(config.reference_dir)!r} has a different tokenizer than "
                f"{str(config.model_dir)!r}; DPO compares both models' probabilities of the same tokens"
            )
        reference = freeze_reference(reference)
    for model in (policy, reference):
        use_fast_kernels(model)  # same math, faster CPU kernels (scratch_gpt.kernels)
    ensure_writable_dir(output_dir)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            "the tokenizer has no eos_token_id; preference texts are padded and ended with end-of-text"
        )
    context_length = min(int(policy.config.n_positions), config.max_length or int(policy.config.n_positions))
    log(f"{len(splits.train)} train / {len(splits.validation)} validation / {len(splits.test)} test pairs")

    collate = partial(
        preference_collate_fn, pad_token_id=tokenizer.eos_token_id, allowed_max_length=context_length
    )
    make = partial(PreferenceDataset, tokenizer=tokenizer, max_length=context_length)
    generator = torch.Generator().manual_seed(config.seed)
    datasets = {"train": make(splits.train), "val": make(splits.validation), "test": make(splits.test)}
    if len(datasets["train"]) < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the {len(datasets['train'])} training pairs; use a "
            "smaller batch_size or more data"
        )
    loaders: dict[str, DataLoader] = {
        "train": DataLoader(
            datasets["train"], config.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
            generator=generator,
        ),
        "val": DataLoader(datasets["val"], config.batch_size, collate_fn=collate),
        "test": DataLoader(datasets["test"], config.batch_size, collate_fn=collate),
    }  # fmt: skip
    for split in ("val", "test"):
        for key in ("chosen", "rejected"):
            loaders[f"{split}_{key}_responses"] = response_loader(
                datasets[split].data,
                tokenizer,
                batch_size=config.batch_size,
                context_length=context_length,
                key=key,
            )

    before = _held_out_metrics(policy, reference, loaders, config, device)
    log(
        f"before: val DPO loss {before['val_loss']:.4f}, test chosen response loss "
        f"{before['test_chosen_response_loss']:.4f}"
    )
    sample_records = [{**r, "output": r["chosen"]} for r in splits.test[: config.num_samples]]
    reference_answers = generate_test_responses(
        reference, tokenizer, sample_records, max_new_tokens=config.max_new_tokens, log_fn=_silent
    )

    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total_steps = config.num_epochs * len(loaders["train"])
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    progress = None
    if config.show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, desc="finetune-dpo", unit="step", dynamic_ncols=True)

    def on_step(step: int, loss: float) -> None:
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}")

    def write_line(line: str) -> None:
        (progress.write if progress is not None else log)(line)

    train_started = time.perf_counter()
    try:
        run = train_model_dpo_simple(
            policy, reference, loaders["train"], loaders["val"], optimizer, config.num_epochs, config.beta,
            config.eval_freq, config.eval_iter, reduction=config.log_prob, max_steps=config.max_steps,
            grad_clip=config.grad_clip, log_fn=write_line if log_fn is not None else None, on_step=on_step,
        )  # fmt: skip
    finally:
        if progress is not None:
            progress.close()
    train_seconds = time.perf_counter() - train_started

    after = _held_out_metrics(policy, reference, loaders, config, device)
    policy_answers = generate_test_responses(
        policy, tokenizer, sample_records, max_new_tokens=config.max_new_tokens, log_fn=_silent
    )
    log(
        f"after {run.steps} steps: val DPO loss {after['val_loss']:.4f}, val reward margin "
        f"{after['val_reward_margin']:.4f}, val reward accuracy {after['val_reward_accuracy']:.2f}, test chosen "
        f"response loss {after['test_chosen_response_loss']:.4f}"
    )

    save_dpo_checkpoint(policy, tokenizer, output_dir)
    history_path = output_dir / HISTORY_FILE
    atomic_write_text(history_path, json.dumps(run.history, indent=1))
    results = {
        "config": config_to_json(config),  # asdict(config), paths as strings
        "pairs": {
            "train": len(datasets["train"]),
            "validation": len(datasets["val"]),
            "test": len(datasets["test"]),
        },
        "steps": run.steps,
        "tokens_seen": run.tokens_seen,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
        "before": before,
        "after": after,
        "change": {
            key: after[key] - before[key]
            for key in after
            if not key.endswith("_tokens") and isinstance(after[key], float)
        },
        "samples": [
            {
                "instruction": record["instruction"],
                "input": record["input"],
                "chosen": record["chosen"],
                "rejected": record["rejected"],
                "reference_response": ref["model_response"],
                "policy_response": pol["model_response"],
            }
            for record, ref, pol in zip(splits.test, reference_answers, policy_answers)
        ],
        "metrics_note": METRICS_NOTE,
        "output_dir": str(output_dir),
        "history": str(history_path),
    }
    atomic_write_text(output_dir / RESULTS_FILE, json.dumps(results, indent=1, ensure_ascii=False))
    return results
