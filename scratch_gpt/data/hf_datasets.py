"""``datasets`` helpers: load a corpus as a ``datasets.Dataset``, then tokenize and pack it into blocks.

This is chapter 2's data sampling done the Hugging Face way, for training with ``Trainer`` or anything
else that eats ``datasets``: ``Dataset.map(batched=True, num_proc=...)`` tokenizes a batch of documents,
joins them into one id stream (each document followed by ``eos_id``), and cuts the stream into
fixed-length blocks of ``block_size`` ids::

    batch of documents ->  [doc0 ids] eos [doc1 ids] eos [doc2 ...]
                            |-- block 0 --|-- block 1 --|-- (remainder dropped)

Each row has ``input_ids`` and ``labels`` (a copy): a Hugging Face causal LM shifts the labels inside its
loss, so ``labels == input_ids`` is the same next-token target as the book's shifted windows. The
remainder of each map batch that does not fill a block is dropped (as in ``transformers``' ``run_clm``);
with ``batch_size`` documents per map batch this loses under one block per batch.

Deliberately not here: corpora that do not fit in memory as text (``load_text_dataset`` builds an
in-memory dataset; use ``token_files`` or ``datasets.load_dataset`` with its on-disk cache for those),
padding collators, and any training code.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ..tokenizer_protocol import HFTokenizerAdapter, TextEncoder, is_hf_tokenizer
from .sliding_window import iter_documents

__all__ = ["load_text_dataset", "encode_batch", "tokenize_and_pack"]


def load_text_dataset(source: str | Path | Any, *, text_field: str = "text", **read_kwargs: Any) -> Any:
    """A corpus (anything ``data.iter_documents`` reads) as an in-memory ``datasets.Dataset``.

    The result has one string column named ``text_field``, one row per document. A ``datasets.Dataset``
    passed in is returned as is (after checking it has the column).
    """
    import datasets

    if isinstance(source, datasets.Dataset):
        if text_field not in source.column_names:
            raise ValueError(
                f"the dataset has columns {source.column_names}, not {text_field!r}; pass text_field=... "
                "naming the column that holds the text"
            )
        return source
    documents = list(iter_documents(source, text_field=text_field, **read_kwargs))
    if not documents:
        raise ValueError(f"the corpus {source} holds no text (every document is empty)")
    return datasets.Dataset.from_dict({text_field: documents})


def encode_batch(tokenizer: TextEncoder, texts: list[str]) -> list[list[int]]:
    """Token ids of each text: a Hugging Face tokenizer is called once on the batch (Rust, no special
    tokens added); anything else has its ``encode(text)`` called per text."""
    if is_hf_tokenizer(tokenizer):
        return HFTokenizerAdapter(tokenizer).encode_batch(texts)
    return [tokenizer.encode(text) for text in texts]


def _tokenize_and_pack_batch(
    batch: dict[str, list[Any]],
    *,
    tokenizer: TextEncoder,
    text_field: str,
    eos_id: int,
    block_size: int,
) -> dict[str, list[list[int]]]:
    stream: list[int] = []
    for ids in encode_batch(tokenizer, batch[text_field]):
        stream.extend(ids)
        stream.append(eos_id)
    usable = len(stream) // block_size * block_size  # drop the tail that does not fill a block
    blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]  # each (block_size,)
    return {"input_ids": blocks, "labels": [list(block) for block in blocks]}


def tokenize_and_pack(
    dataset: Any,
    tokenizer: TextEncoder,
    block_size: int,
    *,
    eos_id: int,
    text_field: str = "text",
    num_proc: int | None = None,
    batch_size: int = 1000,
) -> Any:
    """Tokenize the ``text_field`` column and pack it into rows of ``block_size`` ids.

    Returns a ``datasets.Dataset`` with columns ``input_ids`` and ``labels`` (equal lists of ``block_size``
    ints) and no others. ``num_proc`` worker processes tokenize in parallel (the tokenizer must pickle;
    ours and tiktoken's do) and give the same rows as one process. Raises a ``ValueError`` if no complete
    block comes out.
    """
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            f"tokenize_and_pack needs a datasets.Dataset, got {type(dataset).__name__}; "
            "load a corpus with load_text_dataset first (pick a split of a DatasetDict)"
        )
    if text_field not in dataset.column_names:
        raise ValueError(
            f"the dataset has columns {dataset.column_names}, not {text_field!r}; pass text_field=... naming "
            "the column that holds the text"
        )
    for name, value in (("block_size", block_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_proc is not None and (isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1):
        raise ValueError(f"num_proc must be None or a positive integer, got {num_proc!r}")
    if isinstance(eos_id, bool) or not isinstance(eos_id, int) or eos_id < 0:
        raise ValueError(f"eos_id must be a token id (an integer >= 0), got {eos_id!r}")
    if not (is_hf_tokenizer(tokenizer) or hasattr(tokenizer, "encode")):
        raise ValueError(
            f"tokenizer must have an encode(text) -> list[int] method, got {type(tokenizer).__name__}"
        )
    packed = dataset.map(
        partial(
            _tokenize_and_pack_batch,
            tokenizer=tokenizer,
            text_field=text_field,
            eos_id=eos_id,
            block_size=block_size,
        ),
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        desc=f"Tokenizing and packing into blocks of {block_size}",
    )
    if len(packed) == 0:
        raise ValueError(
            f"the dataset gives no complete block of block_size={block_size} tokens; use more text or a "
            "smaller block_size"
        )
    return packed
