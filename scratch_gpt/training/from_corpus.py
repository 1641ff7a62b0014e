"""Pretrain a GPT on a corpus in one call: tokenizer, token file, model, training loop (book ch. 5's gpt_train.py).

The book's ``gpt_train.py`` script wires chapter 2's data loaders, chapter 4's ``GPTModel`` and chapter 5's
``train_model_simple`` together for the-verdict.txt. ``pretrain_from_corpus`` does the same for any corpus
(a text file, a folder of them, JSON Lines, a ``datasets`` dataset; see ``data.iter_documents``). It takes
two settings objects: ``PretrainConfig`` (the training run, as for ``pretrain``) and ``CorpusConfig`` (the
corpus, the tokenizer and the model's size):

1. the tokenizer: loaded from a folder, or a byte-level BPE trained on the corpus (``BPETokenizer.train``),
   wrapped as ``ScratchGPTTokenizerFast`` and saved to ``<output_dir>/tokenizer``;
2. the corpus tokenized once (Rust encoder, each document followed by ``<|endoftext|>``; text that spells a
   special token is ordinary text) into a token file ``<output_dir>/data/corpus.bin`` (reused while the
   content of every corpus file, the settings and the tokenizer are unchanged);
3. train/validation windows by position (the last ``val_fraction`` of the tokens validate);
4. a ``ScratchGPTForCausalLM`` from a preset or explicit sizes, trained by ``pretrain.pretrain``. With
   ``book_conventions=True`` it is the book's ``GPTModel``: a separate output head and PyTorch's default
   initialization after ``torch.manual_seed(seed)`` (``init_weights_like_the_book``); otherwise GPT-2's
   initialization with the head tied to the token embedding.

With ``resume=True`` the saved tokenizer and token file are reused and training continues from the newest
checkpoint. With several processes (``accelerate launch``) the main process prepares tokenizer and token file
first; the others then load them.

Deliberately not here: the training loop itself (``pretrain.py``) and argument parsing (``cli/train.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..constants import BPE_CONFIG_FILE, END_OF_TEXT, GPT2_FILE_PAIRS, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from ..data.sliding_window import iter_documents
from ..data.token_files import TokenFileDataset, read_token_file_info, write_token_ids
from .config_checks import check_int, check_number, reject_non_finite
from .pretrain import PretrainConfig, PretrainResult, claimed_output_dir, make_accelerator, pretrain

__all__ = [
    "CorpusConfig",
    "load_tokenizer",
    "train_tokenizer",
    "pretrain_from_corpus",
    "describe",
]


def load_tokenizer(path: str | Path, *, model_max_length: int | None = None) -> Any:
    """A Hugging Face tokenizer from a folder holding one of: ``save_pretrained`` output (``tokenizer.json``),
    ``BPETokenizer.save`` output, or GPT-2's ``encoder.json`` + ``vocab.bpe`` (or ``vocab.json`` +
    ``merges.txt``). Raises ``FileNotFoundError`` naming what is missing."""
    from transformers import AutoTokenizer

    from ..bpe import BPETokenizer
    from ..tokenization_scratch_gpt import ScratchGPTTokenizerFast

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder {path} does not exist")
    gpt2_files = any((path / a).is_file() and (path / b).is_file() for a, b in GPT2_FILE_PAIRS)
    if (path / BPE_CONFIG_FILE).is_file() or (gpt2_files and not (path / TOKENIZER_CONFIG_FILE).is_file()):
        kwargs = {"model_max_length": model_max_length} if model_max_length else {}
        return ScratchGPTTokenizerFast.from_bpe(BPETokenizer.load(path), **kwargs)
    if (path / TOKENIZER_FILE).is_file():
        return AutoTokenizer.from_pretrained(str(path))
    raise FileNotFoundError(
        f"{path} holds no tokenizer: expected tokenizer.json (save_pretrained), bpe_config.json "
        "(BPETokenizer.save), or GPT-2's encoder.json + vocab.bpe"
    )


def train_tokenizer(documents: Iterable[str], vocab_size: int, *, model_max_length: int) -> Any:
    """Train a byte-level BPE (``<|endoftext|>`` special) on ``documents``; a ``ScratchGPTTokenizerFast``
    (which adds a distinct ``<|pad|>``, so ``len(tokenizer) == vocab_size + 1``)."""
    from ..bpe import BPETokenizer
    from ..tokenization_scratch_gpt import ScratchGPTTokenizerFast

    bpe = BPETokenizer.train(list(documents), vocab_size, special_tokens=(END_OF_TEXT,))
    return ScratchGPTTokenizerFast.from_bpe(bpe, model_max_length=model_max_length)


def _documents(corpus: Any, read_kwargs: dict[str, Any]) -> Iterator[str]:
    sources = corpus if isinstance(corpus, (list, tuple)) else [corpus]
    if not sources:
        raise ValueError("no corpus given: pass at least one file, folder or dataset")
    for source in sources:
        yield from iter_documents(source, **read_kwargs)


def _eos_id(tokenizer: Any) -> int:
    eos = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    if not isinstance(eos, int) or eos == getattr(tokenizer, "unk_token_id", None):
        raise ValueError(f"the tokenizer has no {END_OF_TEXT} token; the corpus needs it between documents")
    return eos


def _encoded(
    tokenizer: Any, documents: Iterable[str], chunk: int = 256, specials_in_text: bool = False
) -> Iterator[list[int]]:
    """Each document's ids, encoded by the Rust tokenizer in batches (no special tokens added).

    Text that spells a special token (a literal ``<|endoftext|>`` in a document) is ordinary text, encoded
    as its pieces, unless ``specials_in_text``: only the separators written between documents are real
    end-of-text ids.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # a copy: the setting stays local
    backend.encode_special_tokens = not specials_in_text
    batch: list[str] = []
    for text in documents:
        batch.append(text)
        if len(batch) == chunk:
            yield from (e.ids for e in backend.encode_batch(batch, add_special_tokens=False))
            batch = []
    if batch:
        yield from (e.ids for e in backend.encode_batch(batch, add_special_tokens=False))


def _file_fingerprint(path: Path) -> list[Any]:
    """``[path, size, mtime_ns, sha256]`` of one file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns, digest.hexdigest()]


def corpus_fingerprint(corpus: Any) -> list[Any]:
    """What the corpus holds, for the token-file cache: size, mtime and SHA-256 of every file of every
    source (a folder: every file under it), or a ``datasets`` dataset's own fingerprint."""
    sources = corpus if isinstance(corpus, (list, tuple)) else [corpus]
    out: list[Any] = []
    for source in sources:
        if isinstance(source, (str, Path)):
            path = Path(source)
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            out.append([str(source), [_file_fingerprint(f) for f in files if f.is_file()]])
        else:
            out.append([type(source).__name__, getattr(source, "_fingerprint", None) or id(source)])
    return out


def _token_file(
    corpus: Any, tokenizer: Any, data_dir: Path, read_kwargs: dict[str, Any], specials_in_text: bool = False
) -> Path:
    """Tokenize the corpus into ``data_dir/corpus.bin`` unless an up-to-date file is already there (same
    content of every corpus file, same reading settings, same tokenizer)."""
    path = data_dir / "corpus.bin"
    tokenizer_json = tokenizer.backend_tokenizer.to_str()
    fingerprint = {
        "sources": corpus_fingerprint(corpus),
        "read": {k: str(v) for k, v in sorted(read_kwargs.items())},
        "specials_in_text": specials_in_text,
        "tokenizer_sha256": hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest(),
    }
    if path.is_file():
        try:
            if read_token_file_info(path).metadata.get("fingerprint") == fingerprint:
                return path
        except (ValueError, FileNotFoundError):
            pass  # damaged or incomplete: write it again
    write_token_ids(
        path,
        _encoded(tokenizer, _documents(corpus, read_kwargs), specials_in_text=specials_in_text),
        vocab_size=len(tokenizer),
        eos_id=_eos_id(tokenizer),
        metadata={"fingerprint": fingerprint},
    )
    return path


@dataclass
class CorpusConfig:
    """What ``pretrain_from_corpus`` trains on and builds: the corpus, the tokenizer and the model's size.

    Args:
        corpus: a text file, ``.jsonl`` file, folder, ``datasets`` dataset, or a list of these.
        tokenizer: a tokenizer folder (see ``load_tokenizer``) or a Hugging Face tokenizer; None trains a
            byte-level BPE with ``vocab_size`` tokens on the corpus (or reuses ``output_dir/tokenizer``
            when resuming).
        preset: a ``ScratchGPTConfig`` preset (``gpt2-small`` ...); otherwise ``n_layer``, ``n_embd`` and
            ``n_head`` give the size. ``context_length`` is ``n_positions``; ``dropout`` the dropout rate.
        stride: window stride (default: ``context_length``, non-overlapping windows).
        val_fraction: the last fraction of the tokens held out for validation.
        text_field, pattern, decode_errors: how the corpus is read (``data.iter_documents``).
        specials_in_text: encode text spelling a special token (``<|endoftext|>``) as that token; by
            default it is ordinary text, and only the separators between documents are end-of-text ids.
    """

    corpus: str | Path | Sequence[str | Path] | Any
    tokenizer: str | Path | Any | None = None
    vocab_size: int = 4096
    preset: str | None = None
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    dropout: float = 0.0
    context_length: int = 256
    stride: int | None = None
    val_fraction: float = 0.1
    text_field: str = "text"
    pattern: str = "*.txt"
    decode_errors: str = "strict"
    specials_in_text: bool = False

    def __post_init__(self) -> None:
        reject_non_finite(self)
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "context_length"):
            check_int(name, getattr(self, name))
        check_int("stride", self.stride, optional=True)
        check_number("dropout", self.dropout, minimum=0, below=1)
        check_number("val_fraction", self.val_fraction, above=0, below=1)

    @property
    def read_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``data.iter_documents``."""
        return {"text_field": self.text_field, "pattern": self.pattern, "errors": self.decode_errors}


def pretrain_from_corpus(
    config: PretrainConfig, corpus: CorpusConfig, *, accelerator: Any = None
) -> PretrainResult:
    """Train a tokenizer (unless given) and a GPT on ``corpus.corpus``; returns ``pretrain``'s result.

    ``config`` is the training run (``PretrainConfig``: ``output_dir``, ``max_steps`` or ``num_epochs``,
    ``batch_size``, ``seed``, ``resume`` ...); everything is written to ``config.output_dir`` and the final model
    loads with ``AutoModelForCausalLM.from_pretrained(output_dir)``. ``corpus`` says what to train on and what to
    build (``CorpusConfig``). ``accelerator``: an ``accelerate.Accelerator`` (default: one made for
    ``config.mixed_precision``).
    """
    output_dir = Path(config.output_dir)
    accelerator = accelerator or make_accelerator(config.mixed_precision)
    read_kwargs = corpus.read_kwargs
    context_length = corpus.context_length
    with claimed_output_dir(config, accelerator):  # fails before any time goes into the tokenizer
        return _pretrain_from_corpus(config, corpus, output_dir, accelerator, read_kwargs, context_length)


def _pretrain_from_corpus(
    config: PretrainConfig,
    corpus: CorpusConfig,
    output_dir: Path,
    accelerator: Any,
    read_kwargs: dict[str, Any],
    context_length: int,
) -> PretrainResult:
    with accelerator.main_process_first():
        tok = _prepare_tokenizer(
            corpus.tokenizer,
            corpus.corpus,
            output_dir,
            corpus.vocab_size,
            context_length,
            read_kwargs,
            config.resume,
            accelerator,
        )
        data_file = _token_file(corpus.corpus, tok, output_dir / "data", read_kwargs, corpus.specials_in_text)
    stride = corpus.stride or context_length
    val_fraction = corpus.val_fraction
    train = TokenFileDataset(data_file, context_length, stride, split="train", val_fraction=val_fraction)
    val = TokenFileDataset(data_file, context_length, context_length, split="val", val_fraction=val_fraction)
    model = _build_model(tok, corpus, config.seed, config.book_conventions)
    if config.dataset_name is None:
        sources = corpus.corpus if isinstance(corpus.corpus, (list, tuple)) else [corpus.corpus]
        config = replace(config, dataset_name=", ".join(str(s) for s in sources))
    return pretrain(model, train, val, config, tokenizer=tok, accelerator=accelerator)


def _prepare_tokenizer(
    tokenizer, corpus, output_dir, vocab_size, context_length, read_kwargs, resume, accelerator
):  # noqa: ANN001, ANN202
    saved = output_dir / "tokenizer"
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        tok = tokenizer
    elif tokenizer is not None:
        tok = load_tokenizer(tokenizer, model_max_length=context_length)
    elif (saved / TOKENIZER_FILE).is_file() and (resume or not accelerator.is_main_process):
        tok = load_tokenizer(saved)
        saved = None  # already there: a resumed run rewrites nothing before it has checked the checkpoint
    else:
        tok = train_tokenizer(_documents(corpus, read_kwargs), vocab_size, model_max_length=context_length)
    if accelerator.is_main_process and saved is not None:
        tok.save_pretrained(str(saved))
    _eos_id(tok)
    return tok


def _build_model(tok: Any, corpus: CorpusConfig, seed: int, book: bool = False) -> Any:
    from ..configuration_scratch_gpt import ScratchGPTConfig
    from ..modeling_scratch_gpt import ScratchGPTForCausalLM
    from .book_conventions import init_weights_like_the_book

    special = {"eos_token_id": _eos_id(tok), "pad_token_id": tok.pad_token_id}
    sizes = {
        "vocab_size": len(tok),
        "n_positions": corpus.context_length,
        "dropout": corpus.dropout,
        **special,
    }
    if book:  # the book's GPTModel has a separate output head
        sizes["tie_word_embeddings"] = False
    if corpus.preset is not None:
        config = ScratchGPTConfig.from_preset(corpus.preset, **sizes)
    else:
        config = ScratchGPTConfig(n_layer=corpus.n_layer, n_embd=corpus.n_embd, n_head=corpus.n_head, **sizes)
    torch.manual_seed(seed)
    model = ScratchGPTForCausalLM(config)
    return init_weights_like_the_book(model, seed) if book else model


def describe(result: PretrainResult) -> str:
    """A short human summary of a finished run (used by the CLI)."""
    lines = [f"trained {result.step} steps, {result.tokens_seen:,} tokens in {result.seconds:.0f} s"]
    if result.history.steps:
        last = result.history.last_eval()
        lines.append(
            f"final train loss {last['train_losses']:.3f}, val loss {last['val_losses']:.3f} "
            f"(perplexity {last['val_perplexity']:.1f})"
        )
    lines.append(f"model + tokenizer: {result.output_dir}")
    if result.plot_path:
        lines.append(f"loss plot: {result.plot_path}")
    lines.append(f"history: {result.history_path}")
    if result.stopped_early:
        lines.append("stopped early at the time limit; --resume continues towards max_steps")
    return "\n".join(lines)
