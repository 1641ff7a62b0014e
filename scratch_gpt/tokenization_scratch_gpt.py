"""Hugging Face tokenizer classes for scratch_gpt: ``ScratchGPTTokenizerFast`` and ``ScratchGPTTokenizer``.

Book chapter 2 (tokenization), seen from the Hugging Face side. Our own ``BPETokenizer`` (``bpe.py``) does the
real work; this module wraps it so that ``AutoTokenizer``, ``Trainer``, ``datasets`` and the stock data collators
can use it:

* ``ScratchGPTTokenizerFast`` runs the ``tokenizers`` library (Rust) on the ``tokenizer.json`` that
  ``BPETokenizer.to_tokenizers()`` exports. It has no ``__init__`` on purpose: ``from_pretrained`` then loads the
  whole ``tokenizer.json`` as saved (a subclass with its own ``__init__`` is rebuilt from vocab/merges and
  silently ignores the file's pre-tokenizer). ``AutoTokenizer`` returns this class for ``model_type="scratch_gpt"``.
* ``ScratchGPTTokenizer`` is the slow twin: pure Python, every text goes through ``BPETokenizer``. Same ids,
  slower; useful to read, debug, or run where the ``tokenizers`` wheel is unavailable.

Special tokens. ``<|endoftext|>`` is the EOS token (and, as in GPT-2, also the BOS token; nothing adds either
automatically). Padding uses a *separate* ``<|pad|>`` token, appended with the next free id when the BPE has no
such token: with GPT-2's habit of ``pad == eos``, ``DataCollatorForLanguageModeling(mlm=False)`` turns every real
EOS label into -100 and the model never learns to stop. The price is one extra id, so **a model must be built
with ``vocab_size=len(tokenizer)``** (50,258 for GPT-2's BPE), not ``tokenizer.vocab_size``.

``padding_side`` and ``model_max_length`` are constructor arguments here, because only constructor arguments are
saved to ``tokenizer_config.json`` (setting ``tok.padding_side`` afterwards is lost on save). Pad on the right for
training, on the left for batched generation (``tok(texts, padding=True, padding_side="left")`` per call).

Remote code: both classes are registered for ``AutoTokenizer``, so ``save_pretrained`` copies this file and its
``from .bpe import`` siblings next to the saved files, and a user without scratch_gpt installed can load them with
``AutoTokenizer.from_pretrained(dir, trust_remote_code=True)``. Without remote code the folder still loads as a
plain ``PreTrainedTokenizerFast`` (everything is in ``tokenizer.json``).

Deliberately not here: training (``BPETokenizer.train``), a chat template (set ``tok.chat_template`` later),
automatic BOS/EOS insertion, and tiktoken's "disallowed special" check (Hugging Face tokenizers always read
special-token text as the special token).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizer, PreTrainedTokenizerFast

from .bpe import BPETokenizer
from .constants import (
    BPE_CONFIG_FILE,
    END_OF_TEXT,
    MERGES_FILE,
    PAD_TOKEN,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    VOCAB_FILE,
)

__all__ = ["ScratchGPTTokenizer", "ScratchGPTTokenizerFast"]

DEFAULT_MODEL_MAX_LENGTH = 1024  # GPT-2's context length (n_positions)

# ``BPETokenizer.save`` writes VOCAB_FILE, MERGES_FILE, BPE_CONFIG_FILE (read by the slow tokenizer) and
# TOKENIZER_FILE (read by the fast one); the names live in constants.py.


class ScratchGPTTokenizerFast(PreTrainedTokenizerFast):
    """scratch_gpt's byte-level BPE in the ``tokenizers`` library (Rust); what ``AutoTokenizer`` returns.

    Build one from a ``BPETokenizer`` with ``from_bpe``; load a saved one with ``from_pretrained(dir)``.
    Deliberately defines no ``__init__`` (see the module docstring).

    Example:
        >>> bpe = BPETokenizer.from_gpt2_files("encoder.json", "vocab.bpe")  # doctest: +SKIP
        >>> tok = ScratchGPTTokenizerFast.from_bpe(bpe)  # doctest: +SKIP
        >>> tok("Hello, world")["input_ids"]  # doctest: +SKIP
        [15496, 11, 995]
    """

    vocab_files_names = {"tokenizer_file": TOKENIZER_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    # Set to ScratchGPTTokenizer below, once it exists: saved auto_maps then name the [slow, fast] pair.
    slow_tokenizer_class = None
    can_save_slow_tokenizer = False  # the fast class writes only tokenizer.json (so its own name is saved)

    @classmethod
    def from_bpe(
        cls,
        bpe: BPETokenizer,
        *,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
        padding_side: str = "right",
        eos_token: str = END_OF_TEXT,
        pad_token: str | None = PAD_TOKEN,
    ) -> ScratchGPTTokenizerFast:
        """Wrap a ``BPETokenizer`` (trained, loaded, or GPT-2's) as a fast Hugging Face tokenizer.

        Args:
            bpe: the tokenizer whose vocabulary, merges, split pattern and special tokens to use.
            model_max_length: longest sequence the model accepts (its ``n_positions``); saved with the tokenizer.
            padding_side: ``"right"`` (training) or ``"left"`` (batched generation); saved with the tokenizer.
            eos_token: end-of-text token (also used as BOS, as in GPT-2). Added with the next id if ``bpe``
                lacks it.
            pad_token: padding token, distinct from ``eos_token``; added with the next id if ``bpe`` lacks it.
                ``None`` means no pad token (then padding and the padding collators are unavailable).

        Returns:
            The tokenizer; ``len(tokenizer)`` (not ``vocab_size``) is the vocabulary size a model needs.
        """
        kwargs = _special_token_kwargs(bpe, model_max_length, padding_side, eos_token, pad_token)
        return cls(tokenizer_object=bpe.to_tokenizers(), **kwargs)

    def _decode(self, token_ids: int | list[int], *args: Any, **kwargs: Any) -> str:
        """As the base class, but an id outside the vocabulary is a ``ValueError`` (the Rust decoder would
        silently drop it)."""
        _check_ids(token_ids, len(self))
        return super()._decode(token_ids, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load a tokenizer that ``save_pretrained`` wrote (a local folder or a Hub repo id).

        A local folder without ``tokenizer.json`` raises FileNotFoundError naming it (rather than the generic
        "Couldn't instantiate the backend tokenizer" that ``transformers`` gives); a corrupt one, ValueError.
        """
        _check_local_folder(pretrained_model_name_or_path, kwargs.get("subfolder"), cls, (TOKENIZER_FILE,))
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            _raise_if_corrupt_json(pretrained_model_name_or_path, kwargs.get("subfolder"), err)
            raise


class ScratchGPTTokenizer(PreTrainedTokenizer):
    """The slow twin of ``ScratchGPTTokenizerFast``: pure Python, every text goes through ``BPETokenizer``.

    Tokens are GPT-2's printable byte strings (``"Ġworld"`` for ``b" world"``), as in ``vocab.json``.
    ``save_pretrained`` writes ``BPETokenizer.save``'s files (``vocab.json``, ``merges.txt``,
    ``bpe_config.json``, ``tokenizer.json``), so the same folder also loads with the fast class.

    Args:
        vocab_file, merges_file, bpe_config_file: paths that ``from_pretrained`` fills in; the three files must
            sit in one folder (``BPETokenizer.load`` reads it; without ``bpe_config.json`` it is GPT-2's format).
        bpe: an in-memory ``BPETokenizer`` to use instead of files (what ``from_bpe`` passes).
        **kwargs: the usual tokenizer options (special tokens, ``padding_side``, ``model_max_length``, ...).
    """

    vocab_files_names = {
        "vocab_file": VOCAB_FILE,
        "merges_file": MERGES_FILE,
        "bpe_config_file": BPE_CONFIG_FILE,
    }
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        merges_file: str | None = None,
        bpe_config_file: str | None = None,
        *,
        bpe: BPETokenizer | None = None,
        **kwargs: Any,
    ) -> None:
        if bpe is None:
            if vocab_file is None or merges_file is None:
                raise ValueError(
                    "ScratchGPTTokenizer needs a BPETokenizer: use ScratchGPTTokenizer.from_bpe(bpe) or "
                    "ScratchGPTTokenizer.from_pretrained(dir) on a folder with vocab.json and merges.txt"
                )
            bpe = BPETokenizer.load(Path(vocab_file).parent)
        elif not isinstance(bpe, BPETokenizer):
            raise TypeError(f"bpe must be a BPETokenizer, got {type(bpe).__name__}")
        # The vocabulary must exist before super().__init__, which looks up the special tokens in it.
        self.bpe = bpe
        self._ordinary_ids = frozenset(bpe.vocab)  # ids whose token is raw bytes (not special text)
        super().__init__(**kwargs)
        # The BPE's own special tokens (e.g. "<|endoftext|>") must never be split into bytes, as in the fast
        # tokenizer's tokenizer.json; special_tokens=True also makes decode(skip_special_tokens=True) drop them.
        self._add_tokens(sorted(bpe.special_tokens, key=bpe.special_tokens.__getitem__), special_tokens=True)

    @classmethod
    def from_bpe(
        cls,
        bpe: BPETokenizer,
        *,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
        padding_side: str = "right",
        eos_token: str = END_OF_TEXT,
        pad_token: str | None = PAD_TOKEN,
    ) -> ScratchGPTTokenizer:
        """Wrap a ``BPETokenizer`` as a slow Hugging Face tokenizer; same arguments as the fast ``from_bpe``."""
        kwargs = _special_token_kwargs(bpe, model_max_length, padding_side, eos_token, pad_token)
        return cls(bpe=bpe, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        """Load a tokenizer saved by ``save_pretrained`` or ``BPETokenizer.save`` (a local folder or a Hub repo id).

        A local folder without ``vocab.json`` + ``merges.txt`` raises FileNotFoundError naming what is missing.
        """
        _check_local_folder(
            pretrained_model_name_or_path, kwargs.get("subfolder"), cls, (VOCAB_FILE, MERGES_FILE)
        )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # --- the vocabulary: BPETokenizer's ids and GPT-2's printable token strings ---------------------------

    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary (ordinary + its special tokens), without tokens added later (``<|pad|>``)."""
        return self.bpe.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id for every token, added tokens included."""
        vocab = self.bpe.get_vocab()
        vocab.update(getattr(self, "_added_tokens_encoder", {}))  # not there yet during super().__init__
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        # Special-token text was already cut out by the base class, so this is ordinary text only.
        return [self.bpe.id_to_token(token_id) for token_id in self.bpe.encode_ordinary(text)]

    def _convert_token_to_id(self, token: str) -> int | None:
        try:
            return self.bpe.token_to_id(token)
        except ValueError:
            return None  # like the fast tokenizer: a string that is no token has no id (there is no unk)

    def _convert_id_to_token(self, index: int) -> str:
        return self.bpe.id_to_token(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens into text: runs of byte tokens are decoded as UTF-8 (invalid bytes -> U+FFFD), and
        special or added tokens stand for their own text, as in the fast tokenizer's ByteLevel decoder."""
        pieces: list[str] = []
        pending: list[
            int
        ] = []  # ids of consecutive byte tokens, decoded together so multi-byte chars survive
        for token in tokens:
            token_id = self._convert_token_to_id(token)
            if token_id is not None and token_id in self._ordinary_ids:
                pending.append(token_id)
                continue
            if pending:
                pieces.append(self.bpe.decode(pending))
                pending = []
            pieces.append(token)
        if pending:
            pieces.append(self.bpe.decode(pending))
        return "".join(pieces)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write ``BPETokenizer.save``'s files into ``save_directory``; returns their paths."""
        if filename_prefix:
            raise ValueError(
                "ScratchGPTTokenizer saves BPETokenizer's fixed file names and cannot add a filename_prefix; "
                "save into a separate folder instead"
            )
        self.bpe.save(save_directory)
        return tuple(
            os.path.join(save_directory, name)
            for name in (VOCAB_FILE, MERGES_FILE, BPE_CONFIG_FILE, TOKENIZER_FILE)
        )


ScratchGPTTokenizerFast.slow_tokenizer_class = ScratchGPTTokenizer

# save_pretrained copies this file (and bpe.py with its siblings) and writes auto_map, for trust_remote_code.
ScratchGPTTokenizer.register_for_auto_class("AutoTokenizer")
ScratchGPTTokenizerFast.register_for_auto_class("AutoTokenizer")


# --------------------------------------------------------------------------------------------------------
# Helpers shared by both classes
# --------------------------------------------------------------------------------------------------------


def _special_token_kwargs(
    bpe: BPETokenizer,
    model_max_length: int,
    padding_side: str,
    eos_token: str,
    pad_token: str | None,
) -> dict[str, Any]:
    """Check ``from_bpe``'s arguments and turn them into constructor keyword arguments (which get saved)."""
    if not isinstance(bpe, BPETokenizer):
        raise TypeError(
            f"bpe must be a BPETokenizer, got {type(bpe).__name__}; build one with BPETokenizer.train, "
            "BPETokenizer.load or BPETokenizer.from_gpt2_files"
        )
    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length < 1:
        raise ValueError(
            f"model_max_length must be a positive int (the model's n_positions), got {model_max_length!r}"
        )
    if padding_side not in ("right", "left"):
        raise ValueError(
            f"padding_side must be 'right' (for training) or 'left' (for batched generation), got {padding_side!r}"
        )
    if not isinstance(eos_token, str) or not eos_token:
        raise ValueError(f"eos_token must be a non-empty string such as {END_OF_TEXT!r}, got {eos_token!r}")
    if pad_token is not None and (not isinstance(pad_token, str) or not pad_token):
        raise ValueError(
            f"pad_token must be a non-empty string such as {PAD_TOKEN!r} or None, got {pad_token!r}"
        )
    if pad_token == eos_token:
        raise ValueError(
            f"pad_token must differ from eos_token ({eos_token!r}): DataCollatorForLanguageModeling masks every "
            f"pad id in the labels, so real end-of-text labels would be masked too and the model would never "
            f"learn to stop. Use the default pad_token={PAD_TOKEN!r} (added with the next id)."
        )
    for name, token in (("eos_token", eos_token), ("pad_token", pad_token)):
        if token is not None and token not in bpe.special_tokens and _is_ordinary_token(bpe, token):
            raise ValueError(
                f"{name} {token!r} is an ordinary token of this BPE (it would be a piece of normal text); "
                "choose a special text such as '<|name|>'"
            )
    others = [
        token
        for token in sorted(bpe.special_tokens, key=bpe.special_tokens.__getitem__)
        if token != eos_token
    ]
    return {
        "extra_special_tokens": others,  # e.g. "<|user|>": listed so that both classes report the same specials
        "bos_token": eos_token,
        "eos_token": eos_token,
        "pad_token": pad_token,
        "padding_side": padding_side,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,  # decode(encode(text)) must give the text back
    }


def _check_ids(token_ids: Any, vocab_size: int) -> None:
    """Raise ``ValueError`` naming the first id outside ``[0, vocab_size)``."""
    ids = [token_ids] if isinstance(token_ids, int) else token_ids
    if isinstance(ids, dict):
        ids = ids.get("input_ids", [])
    for i in ids:
        if not isinstance(i, int) or not 0 <= i < vocab_size:
            raise ValueError(
                f"cannot decode token id {i!r}: ids must be integers in [0, {vocab_size}) for this tokenizer; "
                "the ids come from another tokenizer or model"
            )


def _is_ordinary_token(bpe: BPETokenizer, token: str) -> bool:
    try:
        bpe.token_to_id(token)
    except ValueError:
        return False
    return True


def _check_local_folder(
    name_or_path: str | os.PathLike, subfolder: str | None, cls: type, required: tuple[str, ...]
) -> None:
    """Raise FileNotFoundError (naming the file and the fix) when a local folder lacks ``required`` files.

    Names that are not local paths (Hub repo ids such as ``"user/model"``) are left to ``transformers``.
    """
    path = Path(name_or_path)
    text = str(name_or_path)
    looks_local = path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
    if path.is_file():
        raise FileNotFoundError(
            f"{text!r} is a file; {cls.__name__}.from_pretrained takes the folder that save_pretrained wrote"
        )
    if not path.is_dir():
        if looks_local:
            raise FileNotFoundError(f"tokenizer folder {text!r} does not exist")
        return
    folder = path / subfolder if subfolder else path
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if cls is ScratchGPTTokenizerFast:
            fix = (
                "save a tokenizer there with tokenizer.save_pretrained(dir), or build one from a BPETokenizer "
                "with ScratchGPTTokenizerFast.from_bpe(BPETokenizer.load(dir))"
            )
        else:
            fix = (
                "save it with ScratchGPTTokenizer.save_pretrained(dir) or BPETokenizer.save(dir); a folder with "
                "only tokenizer.json loads with ScratchGPTTokenizerFast / AutoTokenizer"
            )
        raise FileNotFoundError(
            f"{cls.__name__}: {', '.join(missing)} not found in {str(folder)!r} (it holds {present or 'nothing'}); "
            + fix
        )


def _raise_if_corrupt_json(name_or_path: str | os.PathLike, subfolder: str | None, err: Exception) -> None:
    """After a failed load: raise ValueError naming the local JSON file that does not parse, if there is one."""
    folder = Path(name_or_path) / (subfolder or "")
    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE):
        path = folder / name
        if not path.is_file():
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as parse_error:
            raise ValueError(
                f"{str(path)!r} is corrupt (not valid JSON: {parse_error}); save the tokenizer again with "
                "save_pretrained"
            ) from err
