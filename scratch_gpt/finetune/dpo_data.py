"""Preference data for Direct Preference Optimization (the book's chapter 7 bonus: "DPO from scratch").

A preference record is an Alpaca-style instruction (chapter 7) with two answers: ``chosen`` (preferred) and
``rejected``. What is here, in the order the book's notebook builds it:

- ``load_preference_data`` reads a JSON list (or JSON Lines) of ``{"instruction", "input", "chosen",
  "rejected"}`` records and checks each one; ``check_preference_records`` does the same for parsed records.
- ``build_preference_pairs`` makes such records from chapter 7's ``{"instruction", "input", "output"}`` records
  without a judge model or the internet (the book asks a Llama 3 model through Ollama to write a polite and an
  impolite answer, which cannot run here). ``chosen`` is always the reference answer ``output``; ``rejected`` is,
  by ``strategy``:

  * ``"other_answer"`` (default): the reference answer of another record, ``records[(i + offset) % n]``, with
    ``offset`` drawn once from ``random.Random(seed)`` and the next record taken when the texts are equal. The
    rejected answer is fluent but answers a different instruction: preference tuning must learn to *match the
    instruction*.
  * ``"shuffled_words"``: the reference answer's words in an order drawn from ``random.Random(seed + i)`` (a
    one-word answer, which cannot be shuffled, gets ``"other_answer"``'s text). Same words, broken grammar.
  * ``"model_response"``: the record's ``"model_response"`` (the model's own greedy answer, as written by
    ``instruction_training.generate_test_responses``); records where it equals the reference are left out.

  The same ``records``, ``strategy`` and ``seed`` always give the same pairs.
- ``PreferenceDataset`` tokenizes prompt + ``"\\n\\n### Response:\\n"`` + chosen and the same with rejected, each
  with chapter 7's ``InstructionDataset`` (so the prompt length is found the same way).
- ``preference_collate_fn`` pads the chosen and rejected sequences of a batch together with chapter 7's
  ``custom_collate_fn`` and returns them as four tensors. The masking rules are chapter 7's: the targets that
  predict prompt tokens are ``-100`` (exercise 7.2's ``mask_instruction``), the response header, the answer and
  one closing end-of-text are targets, padding is ``-100``, everything is cut to the context length.

How this differs from the book's notebook: the notebook keeps a boolean mask next to unshifted ids, leaves the
``"\\n\\n"`` before ``### Response:`` and the closing end-of-text out of the mask, and keeps the ``"\\n\\n"``
only by a fixed ``+2``. Here the mask is chapter 7's, so the closing end-of-text is scored (the model keeps
learning to stop) and the header is scored in full; with summed log-probabilities the header's terms are the
same for the chosen and the rejected answer and cancel in the loss. TRL's ``DPOTrainer`` masks exactly this
way (completion = header + answer + end-of-text), which is why the losses agree (``tests/test_trl.py``).

Not here: the log-probabilities, the loss and the training loop (``dpo_training.py``), loading models and
saving (``dpo_pipeline.py``).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset

from .classifier_data import GPT2_EOS_ID, TextTokenizer, read_utf8_text
from .instruction_data import InstructionDataset, check_instruction_records, check_records, custom_collate_fn

__all__ = [
    "PAIR_STRATEGIES",
    "PreferenceDataset",
    "build_preference_pairs",
    "check_preference_records",
    "load_preference_data",
    "preference_collate_fn",
    "response_loader",
]

PREFERENCE_KEYS = ("instruction", "chosen", "rejected")  # "input" may be missing: it means no input, like ""
PAIR_STRATEGIES = ("other_answer", "shuffled_words", "model_response")


def _check_preference_record(record: Any) -> tuple[dict[str, str] | None, str | None]:
    """A normalized copy of a preference record (``input`` defaults to ""), or None and what is wrong."""
    if not isinstance(record, dict):
        return None, f"expected an object with keys {list(PREFERENCE_KEYS)}, got {type(record).__name__}"
    for key in PREFERENCE_KEYS:
        if key not in record:
            hint = (
                " (an instruction record: build pairs with build_preference_pairs)"
                if "output" in record
                else ""
            )
            return None, f"missing key {key!r} (keys present: {sorted(record)}){hint}"
    for key in (*PREFERENCE_KEYS, "input"):
        if key in record and not isinstance(record[key], str):
            return None, f"key {key!r} must be a string, got {type(record[key]).__name__}"
    if record["chosen"] == record["rejected"]:
        return None, "'chosen' and 'rejected' are the same text, so the pair expresses no preference"
    return {**record, "input": record.get("input", "")}, None


def check_preference_records(
    records: Sequence[Any], *, on_error: Literal["raise", "skip"] = "raise", source: str = "preference data"
) -> list[dict[str, str]]:
    """Check parsed preference records; bad ones raise (naming index and problem) or are skipped with a warning."""
    return check_records(records, _check_preference_record, on_error=on_error, source=source)


def _read_json_records(path: Path) -> list[Any]:
    """The records of a JSON list (``.json``) or JSON Lines (``.jsonl``/``.ndjson``) file, unchecked."""
    if not path.is_file():
        raise FileNotFoundError(f"preference data {path} not found; pass the path of a .json or .jsonl file")
    text = read_utf8_text(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path}: line {line_number}: invalid JSON ({err.msg}); fix the line"
                    ) from None
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got a JSON {type(data).__name__}")
    return data


def load_preference_data(
    path: str | PathLike[str],
    *,
    strategy: str = "other_answer",
    seed: int = 123,
    on_error: Literal["raise", "skip"] = "raise",
) -> list[dict[str, str]]:
    """Preference records from ``path``: given pairs as they are, or pairs built from instruction records.

    A file whose first record has ``chosen`` and ``rejected`` is read as preference records (``{instruction,
    input, chosen, rejected}``); otherwise it is read as chapter 7 instruction records (``{instruction, input,
    output}``) and ``build_preference_pairs(records, strategy=strategy, seed=seed)`` makes the pairs.
    """
    path = Path(path)
    data = _read_json_records(path)
    if not data:
        raise ValueError(f"{path}: no records found")
    first = data[0]
    if isinstance(first, dict) and "chosen" in first and "rejected" in first:
        records = check_preference_records(data, on_error=on_error, source=str(path))
    else:
        records = build_preference_pairs(
            check_instruction_records(data, on_error=on_error, source=str(path)), strategy=strategy, seed=seed
        )
    if not records:
        raise ValueError(f"{path}: no usable preference records")
    return records


def _other_answer(records: Sequence[Mapping[str, Any]], index: int, offset: int) -> str | None:
    """The first answer, from ``index + offset`` on (cyclically), that differs from record ``index``'s answer."""
    n, own = len(records), records[index]["output"]
    for step in range(n - 1):
        candidate = records[(index + offset + step) % n]["output"]
        if candidate != own:
            return candidate
    return None


def build_preference_pairs(
    records: Sequence[Mapping[str, Any]], *, strategy: str = "other_answer", seed: int = 123
) -> list[dict[str, str]]:
    """Deterministic preference pairs from chapter 7 records: ``chosen`` = ``output``, ``rejected`` by ``strategy``.

    See the module docstring for the three strategies. Returns new records ``{instruction, input, chosen,
    rejected}`` in the order of ``records``; records that cannot get a differing rejected answer are left out.
    """
    if strategy not in PAIR_STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(PAIR_STRATEGIES)}; got {strategy!r}")
    if len(records) < 2 and strategy != "model_response":
        raise ValueError(f"strategy {strategy!r} needs at least 2 records, got {len(records)}")
    offset = random.Random(seed).randrange(1, max(len(records), 2))  # never 0: that is the record itself
    pairs = []
    for index, record in enumerate(records):
        for key in ("instruction", "output"):
            if key not in record:
                raise ValueError(
                    f"record {index} has no {key!r} key; instruction records need instruction and output"
                )
        if strategy == "model_response":
            if "model_response" not in record:
                raise ValueError(
                    f"record {index} has no 'model_response'; answer the records first with "
                    "instruction_training.generate_test_responses, or use strategy='other_answer'"
                )
            rejected = record["model_response"]
        elif strategy == "shuffled_words":
            words = record["output"].split()
            random.Random(seed + index).shuffle(words)
            rejected = " ".join(words)
            if rejected == record["output"]:  # nothing to shuffle (one word, or the draw gave the same order)
                rejected = _other_answer(records, index, offset)
        else:
            rejected = _other_answer(records, index, offset)
        if rejected is None or rejected == record["output"]:
            continue
        pairs.append(
            {
                "instruction": record["instruction"],
                "input": record.get("input", ""),
                "chosen": record["output"],
                "rejected": rejected,
            }
        )
    return pairs


class PreferenceDataset(Dataset):
    """Tokenized chosen and rejected training texts (the book's ``PreferenceDataset``).

    ``dataset[i]`` is a dict ``{"chosen": (prompt_length, ids), "rejected": (prompt_length, ids)}``: the
    ``(instruction_length, ids)`` items of chapter 7's ``InstructionDataset`` for ``output=chosen`` and
    ``output=rejected``, which is what ``preference_collate_fn`` takes. With ``max_length`` (the context length
    the collate function cuts to), pairs whose prompt leaves no response token inside it are left out with a
    warning: nothing of them would be scored (TRL's ``DPOTrainer`` drops them too).
    """

    def __init__(
        self, data: Sequence[Mapping[str, Any]], tokenizer: TextTokenizer, max_length: int | None = None
    ) -> None:
        if not data:
            raise ValueError("PreferenceDataset got no records; load them with load_preference_data")
        records = check_preference_records(list(data))
        as_instruction = {
            key: [{**entry, "output": entry[key]} for entry in records] for key in ("chosen", "rejected")
        }
        chosen = InstructionDataset(as_instruction["chosen"], tokenizer, include_instruction_length=True)
        rejected = InstructionDataset(as_instruction["rejected"], tokenizer, include_instruction_length=True)
        keep = range(len(records))
        if max_length is not None:
            # the first scored target predicts token prompt_length, found at target position prompt_length - 1
            keep = [i for i in keep if max(chosen[i][0], rejected[i][0]) <= max_length]
            if not keep:
                raise ValueError(
                    f"every prompt fills the {max_length}-token context; use a model with a longer one"
                )
            if len(keep) < len(records):
                warnings.warn(
                    f"left out {len(records) - len(keep)} of {len(records)} preference pairs whose prompt fills the "
                    f"{max_length}-token context, so no response token would be scored",
                    stacklevel=2,
                )
        self.data = [records[i] for i in keep]
        self.items = [{"chosen": chosen[i], "rejected": rejected[i]} for i in keep]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, tuple[int, list[int]]]:
        return self.items[index]


def preference_collate_fn(
    batch: Sequence[Mapping[str, tuple[int, Sequence[int]]]],
    pad_token_id: int = GPT2_EOS_ID,
    ignore_index: int = -100,
    allowed_max_length: int | None = None,
    mask_prompt: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Pad a batch of ``PreferenceDataset`` items into four ``LongTensor``s of one shape ``(B, T)``.

    Returns ``{"chosen", "chosen_targets", "rejected", "rejected_targets"}``: inputs and next-token targets as
    chapter 7's ``custom_collate_fn`` makes them, applied to the chosen and rejected sequences *together* so both
    halves share one length ``T`` (the longest of the 2B sequences + 1, cut to ``allowed_max_length``).
    ``mask_prompt=True`` (the book's ``mask_prompt_tokens``, default) sets the targets of the prompt to
    ``ignore_index``, so only the response (header, answer, end-of-text) is scored.
    """
    if not batch:
        raise ValueError("preference_collate_fn got an empty batch")
    items = [item["chosen"] for item in batch] + [item["rejected"] for item in batch]
    inputs, targets = custom_collate_fn(
        items,
        pad_token_id=pad_token_id,
        ignore_index=ignore_index,
        allowed_max_length=allowed_max_length,
        mask_instruction=mask_prompt,
        device=device,
    )  # (2B, T) each
    n = len(batch)
    return {
        "chosen": inputs[:n],
        "chosen_targets": targets[:n],
        "rejected": inputs[n:],
        "rejected_targets": targets[n:],
    }


def response_loader(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    batch_size: int,
    context_length: int,
    key: str = "chosen",
) -> DataLoader:
    """A chapter 7 answers-only loader of ``(inputs, targets)`` for ``record[key]`` as the answer.

    With ``instruction_training.response_loss`` this gives the loss of the held-out preferred answers (prompt
    masked, closing end-of-text included, per token): the "did DPO hurt the answers" check.
    """
    dataset = InstructionDataset(
        [{**record, "output": record[key]} for record in records], tokenizer, include_instruction_length=True
    )
    collate = partial(
        custom_collate_fn,
        pad_token_id=tokenizer.eos_token_id,
        allowed_max_length=context_length,
        mask_instruction=True,
    )
    return DataLoader(dataset, batch_size, collate_fn=collate)
