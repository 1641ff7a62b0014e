"""Chapter 6 data: the SMS spam pipeline for classification fine-tuning.

The steps follow the book's chapter 6 one to one:

1. ``load_sms_spam`` reads the UCI SMS Spam Collection (``label<TAB>text`` per line) with Python's ``csv`` module.
   The book reads it with ``pd.read_csv(path, sep="\\t", header=None)``, whose quote handling lets an opening ``"``
   in one ham message swallow the next two lines; that gives 5,572 messages (ham 4,825, spam 747) from a
   5,574-line file. ``csv.reader(delimiter="\\t")`` applies the same quote rules, so ``quoting="book"`` (the
   default) reproduces the book's 5,572 rows exactly, quotes stripped the same way; ``quoting="none"`` reads
   every line as one record instead (5,574 rows).
2. ``create_balanced_dataset`` undersamples the majority class (ham) to the minority count (747), seeded.
3. ``random_split`` shuffles and cuts 70% / 10% / 20% (1,045 / 149 / 300 messages).
4. ``SpamDataset`` tokenizes every message and right-pads it with a pad id (GPT-2's ``<|endoftext|>`` = 50256) to
   the longest message (120 GPT-2 tokens for the book's training split) or to a given ``max_length``.
5. ``select_last_token`` picks the hidden state or logits that classify a message: the book's "last position"
   (``[:, -1, :]``, which is a pad token for every shorter message) or the last *real* token, the variant the
   book's ablation finds better (95.00% vs 98.33%).

The shuffles use ``numpy.random.RandomState(seed)`` exactly as ``DataFrame.sample(..., random_state=123)`` does,
so with the book's seed the balanced set and the three splits hold the same messages in the same order as the
book's ``train.csv`` / ``validation.csv`` / ``test.csv``.

Not here: the classifier model and its training loop (``scratch_gpt.modeling_scratch_gpt``, the fine-tuning
functions), and pandas (the book's ``DataFrame`` steps are written out on plain lists).
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..constants import GPT2_EOS_ID  # <|endoftext|>, the book's pad id
from ..model import last_token_positions  # the one last-real-token function (core), re-exported here
from ..tokenizer_protocol import TextTokenizer

SPAM_LABELS: dict[str, int] = {"ham": 0, "spam": 1}  # the book's label map
BOOK_SEED = 123  # random_state of every shuffle in the book's chapter 6


@dataclass(frozen=True)
class SpamExample:
    """One labelled message: its text, its integer label, and the file line it starts on (1-based)."""

    text: str
    label: int
    row: int


class SpamSplits(NamedTuple):
    """The book's three splits."""

    train: list[SpamExample]
    validation: list[SpamExample]
    test: list[SpamExample]


def _check_label_map(labels: Mapping[str, int]) -> None:
    values = sorted(labels.values())
    if not labels or values != list(range(len(labels))):
        raise ValueError(
            f"labels must map each label text to a distinct integer 0..{len(labels) - 1}, got {dict(labels)!r}; "
            'e.g. labels={"ham": 0, "spam": 1}'
        )


def read_utf8_text(path: Path) -> str:
    """The text of a UTF-8 file; undecodable bytes raise a ``ValueError`` naming the line and byte offset."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{path}: line {line} (byte offset {err.start}) is not valid UTF-8; re-save the file as UTF-8"
        ) from None


def load_sms_spam(
    path: str | PathLike[str],
    *,
    labels: Mapping[str, int] = SPAM_LABELS,
    on_error: Literal["raise", "skip"] = "raise",
    quoting: Literal["book", "none"] = "book",
) -> list[SpamExample]:
    """Read a ``label<TAB>text`` file (no header) into labelled examples, in file order.

    Args:
        path: the TSV file, e.g. ``SMSSpamCollection.tsv``.
        labels: label text -> integer class (0..n-1). A label outside this set is always an error.
        on_error: what to do with a malformed row (not exactly two fields, or an empty message): ``"raise"`` a
            ``ValueError`` naming the row, or ``"skip"`` it and emit one warning listing every skipped row.
        quoting: ``"book"`` applies CSV quote rules like pandas (5,572 rows from the UCI file, as in the book);
            ``"none"`` reads each line as one record (5,574 rows).

    Blank lines are ignored. Row numbers are 1-based line numbers of the line where a record starts.
    """
    path = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if quoting not in ("book", "none"):
        raise ValueError(f"quoting must be 'book' or 'none', got {quoting!r}")
    _check_label_map(labels)
    if not path.is_file():
        raise FileNotFoundError(f"SMS spam file {path} not found; pass the path of SMSSpamCollection.tsv")
    text = read_utf8_text(path)

    csv_quoting = csv.QUOTE_MINIMAL if quoting == "book" else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv_quoting)
    examples: list[SpamExample] = []
    skipped: list[str] = []
    last_line = 0
    while True:
        row_start, problem = last_line + 1, None
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a field over csv's size limit
            fields, problem = None, f"unreadable record ({err})"
        last_line = reader.line_num
        if fields == []:  # blank line
            continue
        if fields is not None and len(fields) != 2:
            problem = f"expected 2 tab-separated fields (label, text), found {len(fields)}"
        elif fields is not None and not fields[1]:
            problem = "empty message text"
        if problem is not None:
            if on_error == "raise":
                raise ValueError(
                    f"{path}: row {row_start}: {problem}; fix the row or pass on_error='skip' to leave it out"
                )
            skipped.append(f"row {row_start}: {problem}")
            continue
        label_text, message = fields
        if label_text not in labels:
            raise ValueError(
                f"{path}: row {row_start}: label {label_text!r} is not in the label set {sorted(labels)}; "
                "fix the row or pass labels= including it"
            )
        examples.append(SpamExample(text=message, label=labels[label_text], row=row_start))
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} malformed row(s): " + "; ".join(skipped), stacklevel=2)
    if not examples:
        raise ValueError(f"{path}: no labelled messages found; expected lines of the form 'ham<TAB>text'")
    return examples


def _sample_indices(population: int, size: int, seed: int) -> list[int]:
    # What DataFrame.sample(n=size, random_state=seed) picks: RandomState.choice without replacement, which is
    # the first `size` entries of a seeded permutation.
    return np.random.RandomState(seed).permutation(population)[:size].tolist()


def create_balanced_dataset(examples: Sequence[SpamExample], seed: int = BOOK_SEED) -> list[SpamExample]:
    """Undersample every larger class to the size of the smallest one, as the book does for ham.

    The result lists the classes in label order (ham, then spam), each larger class in seeded sample order and
    the smallest class in file order, which is the order of the book's ``pd.concat([ham_subset, spam])``.
    """
    by_label: dict[int, list[SpamExample]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    if len(by_label) < 2:
        raise ValueError(
            f"balancing needs at least two classes, found labels {sorted(by_label)}; check the file and labels="
        )
    smallest = min(len(group) for group in by_label.values())
    balanced: list[SpamExample] = []
    for label in sorted(by_label):
        group = by_label[label]
        if len(group) > smallest:
            group = [group[i] for i in _sample_indices(len(group), smallest, seed)]
        balanced.extend(group)
    return balanced


def random_split(
    examples: Sequence[SpamExample],
    train_frac: float = 0.7,
    validation_frac: float = 0.1,
    seed: int = BOOK_SEED,
) -> SpamSplits:
    """Shuffle (seeded, like ``df.sample(frac=1, random_state=seed)``) and cut into train/validation/test.

    Sizes are ``int(n * train_frac)`` and ``int(n * validation_frac)``; the test split gets the rest (the book's
    1,494 balanced messages -> 1,045 / 149 / 300).
    """
    if not (0 < train_frac < 1 and 0 <= validation_frac < 1 and train_frac + validation_frac < 1):
        raise ValueError(
            f"need 0 < train_frac, 0 <= validation_frac and train_frac + validation_frac < 1, got "
            f"{train_frac} and {validation_frac}; the book uses 0.7 and 0.1"
        )
    shuffled = [examples[i] for i in np.random.RandomState(seed).permutation(len(examples)).tolist()]
    train_end = int(len(shuffled) * train_frac)
    validation_end = train_end + int(len(shuffled) * validation_frac)
    splits = SpamSplits(shuffled[:train_end], shuffled[train_end:validation_end], shuffled[validation_end:])
    if not all(splits):
        raise ValueError(
            f"{len(examples)} examples give an empty split (sizes {[len(s) for s in splits]}); use more data"
        )
    return splits


def load_spam_splits(
    path: str | PathLike[str],
    *,
    labels: Mapping[str, int] = SPAM_LABELS,
    on_error: Literal["raise", "skip"] = "raise",
    balance: bool = True,
    seed: int = BOOK_SEED,
) -> SpamSplits:
    """The book's whole data preparation: read, balance (optional), split 70/10/20 with the book's seed."""
    examples = load_sms_spam(path, labels=labels, on_error=on_error)
    if balance:
        examples = create_balanced_dataset(examples, seed=seed)
    return random_split(examples, 0.7, 0.1, seed=seed)


def _encode(tokenizer: TextTokenizer, text: str, where: str) -> list[int]:
    try:
        ids = list(tokenizer.encode(text))
    except ValueError as err:  # e.g. tiktoken refusing a message that spells <|endoftext|>
        raise ValueError(f"{where}: could not tokenize the text: {err}") from None
    if not ids:
        raise ValueError(f"{where}: the text encodes to no tokens; remove empty messages")
    return ids


class SpamDataset(Dataset):
    """Tokenized, right-padded messages with their labels (the book's ``SpamDataset``).

    Every item is ``(input_ids, label)``: a ``LongTensor`` of shape ``(max_length,)`` and a scalar ``LongTensor``.
    ``max_length=None`` pads to the longest message; otherwise messages are truncated to ``max_length`` tokens
    (pass the training set's ``max_length`` to the validation and test sets, as the book does).
    ``lengths[i]`` is the number of real (non-pad) tokens of item ``i``.
    """

    def __init__(
        self,
        examples: Sequence[SpamExample],
        tokenizer: TextTokenizer,
        max_length: int | None = None,
        pad_token_id: int = GPT2_EOS_ID,
    ) -> None:
        if not examples:
            raise ValueError("SpamDataset got no examples; load them with load_sms_spam or load_spam_splits")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(
                f"max_length must be a positive int or None (longest message), got {max_length!r}"
            )
        if not isinstance(pad_token_id, int) or pad_token_id < 0:
            raise ValueError(f"pad_token_id must be a non-negative token id, got {pad_token_id!r}")
        self.examples = list(examples)
        self.pad_token_id = pad_token_id
        encoded = [
            _encode(tokenizer, ex.text, f"example {i} (file row {ex.row})")
            for i, ex in enumerate(self.examples)
        ]
        if max_length is None:
            max_length = max(len(ids) for ids in encoded)
        self.max_length = max_length
        encoded = [ids[:max_length] for ids in encoded]
        self.lengths = [len(ids) for ids in encoded]
        self.encoded_texts = [ids + [pad_token_id] * (max_length - len(ids)) for ids in encoded]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = torch.tensor(self.encoded_texts[index], dtype=torch.long)
        label = torch.tensor(self.examples[index].label, dtype=torch.long)
        return input_ids, label


def select_last_token(
    hidden: torch.Tensor,
    *,
    pooling: Literal["last", "last_real"] = "last_real",
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Pick one position per sequence: ``(B, T, ...) -> (B, ...)``.

    ``pooling="last"`` is the book's main-text choice, ``hidden[:, -1]``: the last position, a pad token for
    every message shorter than the longest. ``pooling="last_real"`` takes the last real token (see
    ``last_token_positions``), which is what the book's ablation and Hugging Face's sequence classifiers do.
    """
    if hidden.dim() < 2:
        raise ValueError(f"hidden must have shape (batch, seq_len, ...), got {tuple(hidden.shape)}")
    if pooling == "last":
        return hidden[:, -1]
    if pooling != "last_real":
        raise ValueError(f"pooling must be 'last' or 'last_real', got {pooling!r}")
    positions = last_token_positions(input_ids, attention_mask=attention_mask, pad_token_id=pad_token_id)
    reference = attention_mask if attention_mask is not None else input_ids
    if tuple(reference.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"mask/input_ids shape {tuple(reference.shape)} does not match hidden's (batch, seq_len) "
            f"{tuple(hidden.shape[:2])}"
        )
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]
