"""Instruction fine-tuning a model that is already loaded, the book's way (book chapter 7, sections 7.4-7.8).

The book's steps, as functions:

* ``make_instruction_loaders`` (section 7.4): ``InstructionDataset`` + ``custom_collate_fn`` (pad with
  end-of-text, targets -100 past the first end-of-text, cut to the context length, optionally mask the prompt
  tokens) as ``DataLoader``s for the train/validation/test splits, plus answers-only loaders for evaluation;
* ``train_model_simple`` (sections 7.5 to 7.6): chapter 5's loop (the caller's optimizer, AdamW in the
  book; the train/val loss every ``eval_freq`` steps, a greedy sample for the first validation prompt after
  every epoch), returning a ``TrainingRun``;
* ``generate_test_responses`` (section 7.7): a greedy answer to every test instruction (the book's
  ``instruction-data-with-response.json``, key ``"model_response"``), each with its ROUGE-L F1 against the
  reference answer;
* ``response_loss`` and ``evaluate_instruction_model`` (section 7.8): loss and perplexity on the *responses*
  of held-out records (prompt tokens masked, the closing end-of-text included, averaged per token) and the
  book's unmasked batch loss.

ROUGE-L is a word-overlap score, **not** a judgment of correctness: the book grades answers with a Llama 3
judge (Ollama), which cannot run here, so no judged score is reported (``ROUGE_NOTE`` says so in the results).

Everything here takes a causal LM that is already loaded, its tokenizer and the split records. Not here (all
in ``instruction_pipeline.py``): loading the model and the records, applying and merging LoRA, saving the
checkpoint with its chat template, and the pipeline from a checkpoint folder to a fine-tuned one. The record
format, the collate function and ROUGE-L themselves are in ``instruction_data.py``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..generation import generate, model_logits
from ..kernels.loss import cross_entropy
from ..tokenizer_protocol import end_of_text_id
from ..training.history import LossHistory
from ..training.pretrain import calc_loss_batch, calc_loss_loader
from .chat import build_prompt
from .instruction_data import InstructionDataset, custom_collate_fn, extract_response, rouge_l_f1

__all__ = [
    "ROUGE_NOTE",
    "TrainingRun",
    "evaluate_instruction_model",
    "generate_test_responses",
    "make_instruction_loaders",
    "response_loss",
    "train_model_simple",
]


ROUGE_NOTE = (
    "ROUGE-L F1 is a word-overlap score between the model's answer and the reference answer (longest common "
    "subsequence of words), not a measure of correctness; no judge model was used."
)


def make_instruction_loaders(
    splits: Any,
    tokenizer: Any,
    *,
    batch_size: int,
    context_length: int,
    mask_instruction: bool = False,
    seed: int = 123,
    book_conventions: bool = False,
) -> dict[str, DataLoader]:
    """DataLoaders of ``(inputs, targets)`` for the book's splits.

    ``train`` is shuffled (a generator seeded with ``seed``) and drops the last incomplete batch, as in the
    book; ``val``/``test`` keep their order and every record. ``val_responses``/``test_responses`` always mask
    the prompt tokens: their loss is the loss of the answers alone. ``book_conventions=True``: the training
    order comes from the global RNG (a plain ``DataLoader(shuffle=True)``, as the book's) and the collate
    function follows the book's end-of-text rule (``custom_collate_fn(book_conventions=True)``).
    """
    eos_id = end_of_text_id(tokenizer)
    if eos_id is None:
        raise ValueError(
            "the tokenizer has no eos_token_id; instruction data is padded and ended with end-of-text"
        )
    with _quiet_length_warning(tokenizer):  # transformers' "indexing errors" alarm; ours below is accurate
        datasets = {
            name: InstructionDataset(getattr(splits, name), tokenizer, include_instruction_length=True)
            for name in ("train", "validation", "test")
        }
    _check_responses_fit(datasets, context_length)
    collate = partial(
        custom_collate_fn,
        pad_token_id=eos_id,
        allowed_max_length=context_length,
        book_conventions=book_conventions,
    )
    train_collate = partial(collate, mask_instruction=mask_instruction)
    answers_only = partial(collate, mask_instruction=True)
    if len(datasets["train"]) < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(datasets['train'])} training records, so no full "
            "batch exists (the book drops incomplete batches); use a smaller batch_size or more data"
        )
    generator = None if book_conventions else torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(
            datasets["train"],
            batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=train_collate,
            generator=generator,
        ),
        "val": DataLoader(datasets["validation"], batch_size, collate_fn=train_collate),
        "test": DataLoader(datasets["test"], batch_size, collate_fn=train_collate),
        "val_responses": DataLoader(datasets["validation"], batch_size, collate_fn=answers_only),
        "test_responses": DataLoader(datasets["test"], batch_size, collate_fn=answers_only),
    }


_LENGTH_WARNING = "sequence-length-is-longer-than-the-specified-maximum"  # transformers' once-only key


@contextlib.contextmanager
def _quiet_length_warning(tokenizer: Any) -> Iterator[None]:
    """Hold back transformers' "Token indices sequence length is longer than the specified maximum sequence
    length ... will result in indexing errors" while the records are encoded: the collate function truncates
    them to the context, so no indexing error can happen; ``_check_responses_fit`` says what really happens."""
    shown = getattr(tokenizer, "deprecation_warnings", None)
    if not isinstance(shown, dict):
        yield
        return
    before = shown.get(_LENGTH_WARNING)
    shown[_LENGTH_WARNING] = True  # as if it had been shown already
    try:
        yield
    finally:
        if before is None:
            shown.pop(_LENGTH_WARNING, None)
        else:
            shown[_LENGTH_WARNING] = before


def _check_responses_fit(datasets: dict[str, Any], context_length: int) -> None:
    """Warn how many records the context length truncates, and how many keep no response token at all (they
    would train on the prompt template alone); a ``ValueError`` if no training record keeps one."""
    for name, dataset in datasets.items():
        n = len(dataset)
        # the collate appends an end-of-text id; targets predict ids[1:], cut to context_length positions
        truncated = sum(len(ids) + 1 > context_length + 1 for ids in dataset.encoded_texts)
        no_response = sum(length > context_length for length in dataset.instruction_lengths)
        if name == "train" and no_response == n:
            shortest = min(dataset.instruction_lengths)
            raise ValueError(
                f"no training record keeps a response token within the context length of {context_length} "
                f"tokens (the shortest prompt alone has {shortest} tokens): training would fit the prompt template "
                "only; use a model with a longer context, or shorter instructions"
            )
        if truncated:
            warnings.warn(
                f"{truncated} of {n} {name} records are longer than the context length ({context_length} "
                f"tokens) and are truncated; {no_response} of them keep no response token",
                UserWarning,
                stacklevel=3,
            )


@torch.no_grad()
def response_loss(model: nn.Module, data_loader: DataLoader, device: Any = None) -> tuple[float, int]:
    """Mean cross-entropy per target token over a whole loader, and the number of target tokens.

    Unlike the book's ``calc_loss_loader`` (a mean of batch means), every token counts once, so
    ``exp(loss)`` is the perplexity of the text. With an answers-only loader (prompt masked) this is the loss of
    the held-out *responses*, end-of-text token included.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in data_loader:
        if device is not None:
            inputs, targets = inputs.to(device), targets.to(device)
        logits = model_logits(model, inputs)  # (B, T, vocab_size)
        total += cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()  # (B*T, V)
        count += int((targets != -100).sum())
    model.train(was_training)
    if count == 0:
        return float("nan"), 0
    return total / count, count


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _greedy_answer(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
    """The greedy answer to ``prompt`` and whether it had to be cut short by the context length."""
    context = int(model.config.n_positions)
    prompt_ids = tokenizer.encode(prompt)
    room = context - len(prompt_ids)
    if room <= 0:
        return "", True
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    out = generate(model, idx, min(max_new_tokens, room), eos_id=tokenizer.eos_token_id)
    new_ids = out[0, len(prompt_ids) :].tolist()
    stopped = tokenizer.eos_token_id in new_ids
    truncated = not stopped and room < max_new_tokens and len(new_ids) == room  # the context ran out
    return extract_response(tokenizer.decode(new_ids)), truncated


class TrainingRun(NamedTuple):
    """What ``train_model_simple`` returns: the loss history, the per-epoch samples, steps and tokens seen."""

    history: LossHistory
    samples: list[dict[str, Any]]
    steps: int
    tokens_seen: int


def train_model_simple(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: Any,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    start_context: str,
    tokenizer: Any,
    *,
    max_steps: int | None = None,
    grad_clip: float | None = None,
    log_fn: Callable[[str], None] = print,
    book_conventions: bool = False,
) -> TrainingRun:
    """Chapter 5's ``train_model_simple``, as chapter 7 uses it: returns the loss history and the samples.

    Every ``eval_freq`` optimizer steps the train and validation loss over ``eval_iter`` batches are recorded;
    after every epoch the model answers ``start_context`` greedily (the book's ``generate_and_print_sample``).
    ``max_steps`` stops early (for quick runs). ``book_conventions=True`` evaluates when the book does, after
    steps 1, 1 + eval_freq, ... (its 0-based ``global_step % eval_freq == 0``), and logs its 0-based step
    numbers; by default the evaluations come after steps ``eval_freq``, ``2 * eval_freq``, ...
    """
    history, samples = LossHistory(), []
    tokens_seen, step = 0, 0
    batches_per_epoch = max(len(train_loader), 1)
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            tokens_seen += input_batch.numel()
            step += 1
            epochs_done = step / batches_per_epoch
            history.add_step(step, tokens_seen, epochs_done, loss.item(), optimizer.param_groups[0]["lr"])
            if (step - 1 if book_conventions else step) % eval_freq == 0:
                model.eval()
                train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
                val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
                model.train()
                history.add_eval(step, tokens_seen, epochs_done, train_loss, val_loss)
                shown = step - 1 if book_conventions else step
                log_fn(
                    f"Ep {epoch + 1} (Step {shown:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                )
            if max_steps is not None and step >= max_steps:
                break
        model.eval()
        answer, _ = _greedy_answer(model, tokenizer, start_context, max_new_tokens=35)
        samples.append({"epoch": epoch + 1, "step": step, "prompt": start_context, "response": answer})
        log_fn(f"Sample after epoch {epoch + 1}: {answer!r}")
        if max_steps is not None and step >= max_steps:
            break
    return TrainingRun(history, samples, step, tokens_seen)


def generate_test_responses(
    model: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, str]],
    *,
    max_new_tokens: int = 256,
    log_fn: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Answer every record greedily; returns copies with ``"model_response"`` and ``"rouge_l_f1"`` added.

    The prompt is the chat template's (``format_input`` + ``"\\n\\n### Response:\\n"``); the answer stops at
    end-of-text, is cut out with ``extract_response`` and may be at most the room the context leaves.
    ``"rouge_l_f1"`` is an overlap score (see the module docstring). ``"truncated"`` marks answers cut short
    by the context length.
    """
    model.eval()
    answered = []
    for index, record in enumerate(records):
        prompt = build_prompt(tokenizer, record["instruction"], record.get("input", ""))
        response, truncated = _greedy_answer(model, tokenizer, prompt, max_new_tokens)
        answered.append(
            {
                **record,
                "model_response": response,
                "rouge_l_f1": rouge_l_f1(response, record["output"]),
                "truncated": truncated,
            }
        )
        if (index + 1) % 10 == 0 or index + 1 == len(records):
            log_fn(f"answered {index + 1}/{len(records)} test instructions")
    return answered


def evaluate_instruction_model(
    model: nn.Module, loaders: dict[str, DataLoader], device: Any = None, train_batches: int | None = 10
) -> dict[str, float | int]:
    """Held-out numbers: the book's batch-mean loss (train/val/test) and per-token response loss/perplexity.

    Validation and test use every record; the training loss uses the first ``train_batches`` batches of the
    (shuffled) training loader, as the book's ``evaluate_model`` does (None: all of them, slow on a CPU).
    """
    model.eval()
    metrics: dict[str, float | int] = {
        "train_loss": calc_loss_loader(loaders["train"], model, device, num_batches=train_batches),
        "val_loss": calc_loss_loader(loaders["val"], model, device),
        "test_loss": calc_loss_loader(loaders["test"], model, device),
    }
    for split in ("val", "test"):
        loss, tokens = response_loss(model, loaders[f"{split}_responses"], device)
        metrics[f"{split}_response_loss"] = loss
        metrics[f"{split}_response_perplexity"] = _perplexity(loss)
        metrics[f"{split}_response_tokens"] = tokens
    return metrics
