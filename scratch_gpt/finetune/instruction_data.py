"""Chapter 7 data: instruction fine-tuning on Alpaca-style records, and simple response scoring.

What is here, in the book's order:

- ``load_instruction_data`` reads a JSON list (the book's ``instruction-data.json``, 1,100 records) or JSON Lines
  of ``{"instruction", "input", "output"}`` records and checks every record; ``split_instruction_data`` makes the
  book's in-order 85% / 10% / 5% split (935 train / 110 test / 55 validation).
- ``format_input`` builds the Alpaca prompt exactly as the book does; ``InstructionDataset`` tokenizes prompt +
  ``"\\n\\n### Response:\\n"`` + output per record.
- ``custom_collate_fn`` pads a batch with the end-of-text id, shifts by one for the targets, replaces every padding
  target except the first end-of-text by -100 (ignored by the cross-entropy loss), optionally sets the targets of
  the instruction+input tokens to -100 too (the book's exercise 7.2), and truncates to the context length.
- ``extract_response`` cuts the model's answer out of a generated text; ``rouge_l`` scores it against the
  reference answer by word overlap (ROUGE-L: longest common subsequence of words).

ROUGE-L is an *overlap score*, not a judgment of correctness: a right answer worded differently scores low and a
fluent wrong answer that reuses the reference's words scores high. The book grades responses with a Llama 3 judge
through Ollama, which cannot run here.

Not here: the training loop and generation (``scratch_gpt.training.pretrain``, ``scratch_gpt.generation``), chat templates
(the Hugging Face tokenizer), and any tokenizer (anything with ``encode``/``decode`` works, see ``TextTokenizer``).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch.utils.data import Dataset

from ..constants import END_OF_TEXT, GPT2_EOS_ID
from ..tokenizer_protocol import TextTokenizer
from .classifier_data import read_utf8_text

ALPACA_PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
RESPONSE_HEADER = "\n\n### Response:\n"
REQUIRED_KEYS = ("instruction", "output")  # "input" may be missing: it means no input, like ""


def format_input(entry: Mapping[str, Any]) -> str:
    """The book's Alpaca prompt: preamble, ``### Instruction:`` and, if ``entry["input"]`` is non-empty, ``### Input:``.

    The response header is not part of it; see ``format_response``.
    """
    if "instruction" not in entry:
        raise ValueError(f"instruction record has no 'instruction' key (keys: {sorted(entry)})")
    instruction_text = f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{entry['instruction']}"
    input_text = f"\n\n### Input:\n{entry['input']}" if entry.get("input") else ""
    return instruction_text + input_text


def format_response(entry: Mapping[str, Any]) -> str:
    """What follows the prompt in a training text: ``"\\n\\n### Response:\\n" + entry["output"]``."""
    if "output" not in entry:
        raise ValueError(f"instruction record has no 'output' key (keys: {sorted(entry)})")
    return f"{RESPONSE_HEADER}{entry['output']}"


def _check_record(record: Any) -> tuple[dict[str, str] | None, str | None]:
    """A normalized copy of a record (``input`` defaults to ""), or None and what is wrong with it."""
    if not isinstance(record, dict):
        return None, f"expected an object with keys {list(REQUIRED_KEYS)}, got {type(record).__name__}"
    for key in REQUIRED_KEYS:
        if key not in record:
            return None, f"missing key {key!r} (keys present: {sorted(record)})"
    for key in (*REQUIRED_KEYS, "input"):
        if key in record and not isinstance(record[key], str):
            return None, f"key {key!r} must be a string, got {type(record[key]).__name__}"
        if key in record:
            try:
                record[key].encode("utf-8")
            except UnicodeEncodeError as err:
                return None, (
                    f"key {key!r} holds a lone surrogate {record[key][err.start]!r} at character {err.start} (an "
                    "escaped \\ud800-\\udfff without its pair), which is not text"
                )
    return {**record, "input": record.get("input", "")}, None


def check_instruction_records(
    records: Sequence[Any], *, on_error: Literal["raise", "skip"] = "raise", source: str = "instruction data"
) -> list[dict[str, str]]:
    """Check already-parsed records; bad ones raise (naming index and key) or are skipped with one warning."""
    return check_records(records, _check_record, on_error=on_error, source=source)


def check_records(
    records: Sequence[Any],
    check_one: Callable[[Any], tuple[dict[str, str] | None, str | None]],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    source: str = "data",
) -> list[dict[str, str]]:
    """Run ``check_one`` (-> ``(normalized, None)`` or ``(None, problem)``) on every record; a bad record raises
    naming its index and problem, or with ``on_error="skip"`` is left out and counted in one warning."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    checked, skipped = [], []
    for index, record in enumerate(records):
        normalized, problem = check_one(record)
        if problem is None:
            checked.append(normalized)
        elif on_error == "raise":
            raise ValueError(
                f"{source}: record {index}: {problem}; fix it or pass on_error='skip' to leave it out"
            )
        else:
            skipped.append(f"record {index}: {problem}")
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} bad record(s): " + "; ".join(skipped), stacklevel=3)
    return checked


def load_instruction_data(
    path: str | PathLike[str], *, on_error: Literal["raise", "skip"] = "raise"
) -> list[dict[str, str]]:
    """Read and check instruction records from a JSON list (``.json``) or JSON Lines (``.jsonl``/``.ndjson``).

    Record numbers in errors are 0-based list indices for a JSON list and 1-based line numbers for JSON Lines.
    A JSON list that does not parse is always an error (its line and column are named); in JSON Lines an
    unparsable line counts as a bad record, skipped with ``on_error="skip"``.
    """
    path = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not path.is_file():
        raise FileNotFoundError(f"instruction data {path} not found; pass the path of a .json or .jsonl file")
    text = read_utf8_text(path)

    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records, skipped = [], []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError as err:
                parsed, problem = None, f"invalid JSON ({err.msg} at column {err.colno})"
            else:
                parsed, problem = _check_record(parsed)
            if problem is None:
                records.append(parsed)
            elif on_error == "raise":
                raise ValueError(
                    f"{path}: line {line_number}: {problem}; fix it or pass on_error='skip' to leave it out"
                )
            else:
                skipped.append(f"line {line_number}: {problem}")
        if skipped:
            warnings.warn(f"{path}: skipped {len(skipped)} bad line(s): " + "; ".join(skipped), stacklevel=2)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}; fix the file "
                "(or store one record per line as .jsonl, where bad lines can be skipped)"
            ) from None
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records, got a JSON {type(data).__name__}")
        records = check_instruction_records(data, on_error=on_error, source=str(path))
    if not records:
        raise ValueError(f"{path}: no instruction records found")
    return records


class InstructionSplits(NamedTuple):
    """The book's three splits (taken from the data in the order train, test, validation)."""

    train: list[dict[str, str]]
    validation: list[dict[str, str]]
    test: list[dict[str, str]]


def split_instruction_data(
    data: Sequence[dict[str, str]], train_frac: float = 0.85, test_frac: float = 0.10
) -> InstructionSplits:
    """The book's in-order split: first ``int(n*0.85)`` train, next ``int(n*0.1)`` test, the rest validation."""
    if not (0 < train_frac < 1 and 0 < test_frac < 1 and train_frac + test_frac < 1):
        raise ValueError(
            f"need 0 < train_frac, 0 < test_frac and train_frac + test_frac < 1, got {train_frac} and "
            f"{test_frac}; the book uses 0.85 and 0.10"
        )
    train_end = int(len(data) * train_frac)
    test_end = train_end + int(len(data) * test_frac)
    splits = InstructionSplits(
        train=list(data[:train_end]), validation=list(data[test_end:]), test=list(data[train_end:test_end])
    )
    if not all(splits):
        raise ValueError(
            f"{len(data)} records give an empty split (sizes {[len(s) for s in splits]}); use more data"
        )
    return splits


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class InstructionDataset(Dataset):
    """Tokenized training texts ``format_input(entry) + format_response(entry)`` (the book's dataset).

    ``dataset[i]`` is the list of token ids (what the book's ``custom_collate_fn`` takes), or, with
    ``include_instruction_length=True``, a tuple ``(instruction_length, ids)`` for ``mask_instruction=True``.
    ``instruction_lengths[i]`` is the number of leading tokens that belong to the prompt alone (the book's
    exercise 7.2 uses ``len(encode(format_input(entry)))``; here it is the length of the common prefix of the two
    encodings, which is the same number unless BPE merges across the prompt/response boundary).
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        tokenizer: TextTokenizer,
        include_instruction_length: bool = False,
    ) -> None:
        if not data:
            raise ValueError("InstructionDataset got no records; load them with load_instruction_data")
        self.data = list(data)
        self.include_instruction_length = include_instruction_length
        self.encoded_texts: list[list[int]] = []
        self.instruction_lengths: list[int] = []
        for index, entry in enumerate(self.data):
            try:
                prompt, response = format_input(entry), format_response(entry)
            except ValueError as err:
                raise ValueError(f"record {index}: {err}") from None
            try:
                full_ids = list(tokenizer.encode(prompt + response))
                prompt_ids = list(tokenizer.encode(prompt))
            except ValueError as err:  # e.g. a record that spells <|endoftext|>
                raise ValueError(f"record {index}: could not tokenize the text: {err}") from None
            self.encoded_texts.append(full_ids)
            self.instruction_lengths.append(_common_prefix_length(prompt_ids, full_ids))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> list[int] | tuple[int, list[int]]:
        if self.include_instruction_length:
            return self.instruction_lengths[index], self.encoded_texts[index]
        return self.encoded_texts[index]


def custom_collate_fn(
    batch: Sequence[Sequence[int] | tuple[int, Sequence[int]]],
    pad_token_id: int = GPT2_EOS_ID,
    ignore_index: int = -100,
    allowed_max_length: int | None = None,
    mask_instruction: bool = False,
    device: str | torch.device | None = None,
    book_conventions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch of token-id lists into ``(inputs, targets)``, both ``LongTensor`` of shape ``(B, T)``.

    Each sequence gets one end-of-text token (``pad_token_id``) appended, then more of them up to the longest
    sequence + 1; inputs drop the last position and targets the first (the next-token shift). Target positions
    past the first end-of-text become ``ignore_index``, so the model learns to end its answer but no loss is
    spent on padding. ``mask_instruction=True`` also sets the targets that predict prompt tokens to
    ``ignore_index`` (items must then be ``(instruction_length, ids)`` tuples). Finally both are cut to
    ``allowed_max_length`` (the model's context length) if given.

    Unlike the book, which finds padding by comparing targets with ``pad_token_id``, padding is found by position,
    so an end-of-text token inside a text is kept as a target. ``book_conventions=True`` follows the book's rule
    instead: only the *first* end-of-text target of a row is kept, every later one is ignored, so after a
    literal end-of-text inside a response the closing one is not learned (the book's ``custom_collate_fn``).
    """
    if not batch:
        raise ValueError("custom_collate_fn got an empty batch")
    if allowed_max_length is not None and allowed_max_length < 1:
        raise ValueError(f"allowed_max_length must be a positive int or None, got {allowed_max_length!r}")
    items: list[list[int]] = []
    prompt_lengths: list[int] = []
    for i, item in enumerate(batch):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (list, tuple, torch.Tensor)):
            prompt_lengths.append(item[0])
            item = item[1]
        elif mask_instruction:
            raise ValueError(
                f"batch item {i} has no instruction length; mask_instruction=True needs (instruction_length, ids) "
                "items: build InstructionDataset(..., include_instruction_length=True)"
            )
        ids = list(item.tolist() if isinstance(item, torch.Tensor) else item)
        if not ids:
            raise ValueError(f"batch item {i} is empty; every training text needs at least one token")
        items.append(ids)

    batch_max_length = max(len(ids) for ids in items) + 1  # + 1 for the appended end-of-text token
    inputs = torch.full((len(items), batch_max_length - 1), pad_token_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(items), batch_max_length - 1), ignore_index, dtype=torch.long)  # (B, T)
    for row, ids in enumerate(items):
        n = len(ids)
        inputs[row, :n] = torch.tensor(ids)
        targets[row, : n - 1] = torch.tensor(ids[1:])
        # the first end-of-text stays a target (the model learns to stop); later padding stays ignored
        targets[row, n - 1] = pad_token_id
        if book_conventions:  # the book: all but the first end-of-text target become ignore_index
            eos_positions = (targets[row, :n] == pad_token_id).nonzero().flatten()
            targets[row, eos_positions[1:]] = ignore_index
        if mask_instruction:
            targets[row, : max(prompt_lengths[row] - 1, 0)] = ignore_index
    if allowed_max_length is not None:
        inputs, targets = inputs[:, :allowed_max_length], targets[:, :allowed_max_length]
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    return inputs, targets


def extract_response(generated_text: str, prompt: str | None = None) -> str:
    """The answer part of a generated text.

    Drops ``prompt`` if the text starts with it, then everything up to and including the first
    ``"### Response:"``, and cuts at the first ``<|endoftext|>`` or at a following ``"\\n\\n### "`` section header
    (a model that goes on to invent a new instruction). The book's version is
    ``generated_text[len(prompt):].replace("### Response:", "").strip()``; the two agree whenever generation
    stops at the end-of-text token.
    """
    text = generated_text
    if prompt and text.startswith(prompt):
        text = text[len(prompt) :]
    marker = RESPONSE_HEADER.strip()  # "### Response:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = text.split(END_OF_TEXT, 1)[0]
    text = text.split("\n\n### ", 1)[0]
    return text.strip()


class RougeScore(NamedTuple):
    """ROUGE-L precision, recall and F1 of a candidate against a reference (all in [0, 1])."""

    precision: float
    recall: float
    f1: float


def _rouge_words(text: str) -> list[str]:
    # Lowercased runs of letters and digits, the tokenization of the common rouge-score implementation.
    return re.findall(r"[a-z0-9]+", text.lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)  # classic dynamic programme, one row at a time
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> RougeScore:
    """ROUGE-L of ``candidate`` against ``reference``: an OVERLAP score, not a measure of correctness.

    Words are lowercased alphanumeric runs; with ``L`` the length of their longest common subsequence,
    precision = L / candidate words, recall = L / reference words, F1 their harmonic mean. Two empty texts
    score 1.0; one empty text scores 0.0.
    """
    cand, ref = _rouge_words(candidate), _rouge_words(reference)
    if not cand and not ref:
        return RougeScore(1.0, 1.0, 1.0)
    lcs = _lcs_length(cand, ref)
    if lcs == 0:
        return RougeScore(0.0, 0.0, 0.0)
    precision, recall = lcs / len(cand), lcs / len(ref)
    return RougeScore(precision, recall, 2 * precision * recall / (precision + recall))


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (word-overlap score in [0, 1]; see ``rouge_l``)."""
    return rouge_l(candidate, reference).f1
