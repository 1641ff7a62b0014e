"""The tokenizer commands' library functions: train a BPE on text files, save and measure it (``scratch-gpt
train-tokenizer``), and list a text's tokens (``scratch-gpt encode``).

They live here, not beside ``bpe.py``/``bpe_train.py``, because those are copied into every checkpoint as
remote code; what only the command line needs stays out of that set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bpe import BPETokenizer
from ..bpe_train import read_training_files
from ..byte_level import fix_lone_surrogates, resolve_pattern
from ..constants import END_OF_TEXT

__all__ = ["TrainingSummary", "encode_pieces", "train_tokenizer_on_files"]


@dataclass
class TrainingSummary:
    """What ``train_tokenizer_on_files`` did: the tokenizer, where it went, and how well it compresses its training text."""

    tokenizer: BPETokenizer
    output_dir: Path
    n_bytes: int  # UTF-8 bytes of the training text
    n_tokens: int  # tokens of the training text under the new tokenizer
    train_seconds: float  # time spent learning merges (reading, measuring and saving not included)

    @property
    def bytes_per_token(self) -> float:
        """Compression on the training text: UTF-8 bytes per token (higher is better)."""
        return self.n_bytes / max(self.n_tokens, 1)


def train_tokenizer_on_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    vocab_size: int,
    output_dir: str | os.PathLike,
    special_tokens: Sequence[str] = (END_OF_TEXT,),
    pattern: str = "gpt2",
    show_progress: bool | None = True,
    encoding: str = "utf-8",
) -> TrainingSummary:
    """Train a tokenizer on text files, save it to ``output_dir`` and measure it (``scratch-gpt train-tokenizer``).

    ``pattern`` is ``"gpt2"``, ``"gpt4"`` or a regular expression.
    """
    texts = read_training_files(paths, encoding)
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(texts, vocab_size, special_tokens, resolve_pattern(pattern), show_progress)
    train_seconds = time.perf_counter() - start
    n_tokens = sum(len(tokenizer.encode(text, allowed_special="all")) for text in texts)
    n_bytes = sum(len(fix_lone_surrogates(text).encode("utf-8")) for text in texts)
    tokenizer.save(output_dir)
    return TrainingSummary(tokenizer, Path(output_dir), n_bytes, n_tokens, train_seconds)


def encode_pieces(
    tokenizer_dir: str | os.PathLike, text: str, specials_as_text: bool = False
) -> list[tuple[int, bytes]]:
    """Load the tokenizer saved in ``tokenizer_dir`` and return (id, bytes) for each token of ``text``.

    Special-token text becomes its special id unless ``specials_as_text`` (then it is encoded as plain text).
    The CLI's ``scratch-gpt encode`` prints this as a table.
    """
    tokenizer = BPETokenizer.load(tokenizer_dir)
    if specials_as_text:
        ids = tokenizer.encode_ordinary(text)
    else:
        ids = tokenizer.encode(text, allowed_special="all")
    return [(token_id, tokenizer.id_to_bytes(token_id)) for token_id in ids]
