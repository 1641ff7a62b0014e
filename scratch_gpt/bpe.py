"""``BPETokenizer``: a byte-level BPE tokenizer in pure Python, exactly compatible with GPT-2 / tiktoken.

Book chapter 2 (section 2.5 and the bonus "BPE from scratch" notebook). Encoding a text takes three steps:

1. *Split*: a regular expression cuts the text into chunks (GPT-2's pattern by default, see ``byte_level``).
2. *Bytes*: each chunk becomes its UTF-8 bytes, one base token per byte, so nothing is ever unknown.
3. *Merge*: adjacent tokens are merged, lowest merge rank first, until no learned merge applies. A chunk
   whose whole byte string is a single token becomes that token directly (tiktoken's rule).

Speed comes from a cache of chunk -> ids (real text repeats its words endlessly), a direct lookup for chunks
that are one token, and, for long chunks, a heap instead of rescanning all pairs after every merge.

Special tokens (``<|endoftext|>``) follow tiktoken's rules: their text in ordinary input raises unless it is
allowed (then it becomes the special id) or un-disallowed (then it is encoded as plain text).

Files: ``save``/``load`` use GPT-2's format (``vocab.json`` + ``merges.txt``) plus a small ``bpe_config.json``
(pattern, special tokens), and also write the ``tokenizers`` library's ``tokenizer.json``. Training lives in
``bpe_train``. This module deliberately has no Hugging Face classes (see ``tokenization_scratch_gpt``), no
normalization, no BOS/EOS insertion and no padding or truncation.
"""

from __future__ import annotations

import heapq
import json
import os
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .atomic_io import atomic_write_text
from .bpe_train import read_training_files, train_bpe
from .byte_level import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    MERGES_HEADER,
    bytes_to_token,
    compile_pattern,
    fix_lone_surrogates,
    pattern_covers_all_text,
    read_gpt2_files,
    read_json,
    special_tokens_regex,
    split_text,
    token_to_bytes,
)
from .constants import BPE_CONFIG_FILE, END_OF_TEXT, GPT2_FILE_PAIRS, MERGES_FILE, TOKENIZER_FILE, VOCAB_FILE

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

__all__ = ["BPETokenizer", "GPT2_PATTERN", "GPT4_PATTERN"]

FORMAT_NAME = "scratch_gpt-bpe"
FORMAT_VERSION = 1

# Chunks with more tokens than this are merged with a heap (n log n) instead of rescanning (n^2).
_LONG_CHUNK = 64
# The chunk -> ids cache is emptied when it grows past this many entries (bounds memory on huge corpora).
_CACHE_SIZE = 200_000


class BPETokenizer:
    """Byte-level BPE: ``vocab`` (id -> bytes), ranked ``merges`` ((left, right) -> new id), special tokens.

    Attributes (treat them as read-only; build a new tokenizer to change them):
        pattern: the split regular expression.
        special_tokens: special-token text -> id (ids not used by ordinary tokens; trained ones come last).
        merges: (left id, right id) -> merged id; insertion order is rank order (first = merged first).
        vocab: id -> bytes for ordinary tokens (every single byte, and every merge result).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: dict[tuple[int, int], int],
        special_tokens: dict[str, int] | None = None,
        pattern: str = GPT2_PATTERN,
    ) -> None:
        """Build a tokenizer from its tables, checking they form a valid byte-level BPE (ValueError if not)."""
        special_tokens = dict(special_tokens or {})
        _check_tables(vocab, merges, special_tokens)
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: dict[tuple[int, int], int] = dict(merges)
        self.special_tokens: dict[str, int] = special_tokens
        self.pattern: str = pattern
        self._compiled = compile_pattern(pattern)
        self._check_coverage = not pattern_covers_all_text(pattern)
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._merged_ids = list(self.merges.values())  # rank -> merged id
        self._bytes_to_id = {data: token_id for token_id, data in self.vocab.items()}
        self._byte_ids = [self._bytes_to_id[bytes([byte])] for byte in range(256)]
        self._id_to_bytes = dict(self.vocab)
        self._id_to_bytes.update(
            {token_id: text.encode("utf-8") for text, token_id in special_tokens.items()}
        )
        self._cache = _ChunkCache(self._encode_chunk)
        self._special_regexes: dict[frozenset[str], Any] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle (e.g. for ``datasets.map(num_proc=...)``) as the four tables, without the caches."""
        return (type(self), (self.vocab, self.merges, self.special_tokens, self.pattern))

    def __repr__(self) -> str:
        pattern = {GPT2_PATTERN: "GPT2_PATTERN", GPT4_PATTERN: "GPT4_PATTERN"}.get(
            self.pattern, repr(self.pattern)
        )
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)}, pattern={pattern})"
        )

    # ----------------------------------------------------------------------------------------------------
    # Building: train, GPT-2 files
    # ----------------------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: str | Iterable[str],
        vocab_size: int,
        special_tokens: Sequence[str] = (END_OF_TEXT,),
        pattern: str = GPT2_PATTERN,
        show_progress: bool | None = None,
    ) -> BPETokenizer:
        """Learn a vocabulary of ``vocab_size`` tokens (256 bytes + merges + specials) from ``texts``.

        ``texts`` is a string or an iterable of strings. ``show_progress=None`` shows a progress bar (stderr)
        for corpora of 5 million characters or more. Tie-breaking is described in ``bpe_train``.
        """
        vocab, merges, special_ids = train_bpe(texts, vocab_size, special_tokens, pattern, show_progress)
        return cls(vocab, merges, special_ids, pattern)

    @classmethod
    def train_from_files(
        cls,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        vocab_size: int,
        special_tokens: Sequence[str] = (END_OF_TEXT,),
        pattern: str = GPT2_PATTERN,
        show_progress: bool | None = None,
        encoding: str = "utf-8",
    ) -> BPETokenizer:
        """``train`` on the contents of text files (each file is one text)."""
        texts = read_training_files(paths, encoding)
        return cls.train(texts, vocab_size, special_tokens, pattern, show_progress)

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike) -> BPETokenizer:
        """Load OpenAI's original GPT-2 files (``encoder.json`` + ``vocab.bpe``, or ``vocab.json`` + ``merges.txt``).

        Tokens that are neither a byte nor a merge result and are written ``<|name|>`` (GPT-2:
        ``<|endoftext|>``) become special tokens; any other such token means the merges file is truncated
        or belongs to another vocabulary, a ``ValueError`` naming both files.
        """
        return cls._from_files(Path(encoder_json), Path(vocab_bpe), GPT2_PATTERN)

    @classmethod
    def _from_files(
        cls, vocab_path: Path, merges_path: Path, pattern: str, special_tokens: dict[str, int] | None = None
    ) -> BPETokenizer:
        """Read GPT-2-format files; if ``special_tokens`` is given, the files' leftover entries must match it."""
        vocab, merges, found_specials = read_gpt2_files(vocab_path, merges_path, special_tokens)
        if special_tokens is not None and found_specials != special_tokens:
            raise ValueError(
                f"{str(vocab_path)!r} does not match {BPE_CONFIG_FILE}: its special tokens are {found_specials}, "
                f"the config lists {special_tokens}; the files do not belong together"
            )
        try:
            return cls(vocab, merges, found_specials, pattern)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{str(vocab_path)!r} and {str(merges_path)!r} do not form a valid BPE: {err}"
            ) from None

    # ----------------------------------------------------------------------------------------------------
    # Encoding
    # ----------------------------------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of ``text``, treating special-token text as plain text. Lone surrogates become U+FFFD."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:  # unpaired surrogates have no UTF-8 form
            return self._encode_ordinary(fix_lone_surrogates(text))

    def _encode_ordinary(self, text: str) -> list[int]:
        chunks = split_text(self._compiled, text, self._check_coverage)
        # ``self._cache[chunk]`` encodes unseen chunks through ``_ChunkCache.__missing__``.
        return list(chain.from_iterable(map(self._cache.__getitem__, chunks)))

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Token ids of one chunk of the split (no caching)."""
        data = chunk.encode("utf-8")
        token_id = self._bytes_to_id.get(data)
        if token_id is not None:  # the whole chunk is one token
            return [token_id]
        ids = [self._byte_ids[byte] for byte in data]
        return self._merge_short(ids) if len(ids) <= _LONG_CHUNK else self._merge_long(ids)

    def _merge_short(self, ids: list[int]) -> list[int]:
        """Apply merges to a chunk's tokens: merge the lowest-ranked adjacent pair (leftmost on ties), repeat.

        ``pair_ranks[i]`` is the rank of the pair (ids[i], ids[i+1]); after a merge only its two neighbours
        change. (Merging one occurrence at a time gives the same result as merging all occurrences of the
        pair at once: pairs that contain the new token always have later ranks.)
        """
        rank_of = self._ranks.get
        merged_id = self._merged_ids
        pair_ranks = [rank_of(pair, _NO_RANK) for pair in zip(ids, ids[1:])]
        while pair_ranks:
            rank = min(pair_ranks)
            if rank == _NO_RANK:
                break
            i = pair_ranks.index(rank)
            ids[i : i + 2] = (merged_id[rank],)
            del pair_ranks[i]
            if i > 0:
                pair_ranks[i - 1] = rank_of((ids[i - 1], ids[i]), _NO_RANK)
            if i < len(pair_ranks):
                pair_ranks[i] = rank_of((ids[i], ids[i + 1]), _NO_RANK)
        return ids

    def _merge_long(self, ids: list[int]) -> list[int]:
        """Same result as ``_merge_short`` in O(n log n), for long chunks (e.g. a long run of spaces or digits).

        Tokens sit in a doubly linked list over their starting positions; a heap holds (rank, position) for
        every adjacent pair that has a merge. Equal ranks pop left to right, as the rescanning loop merges
        them. An entry whose pair has changed since it was pushed is stale and skipped.
        """
        ranks, merges = self._ranks, self.merges
        n = len(ids)
        tokens: list[int | None] = list(ids)  # None = absorbed into the token on its left
        next_pos = list(range(1, n + 1))  # n marks the end
        prev_pos = list(range(-1, n - 1))  # -1 marks the start
        heap = [(ranks[pair], i) for i, pair in enumerate(zip(ids, ids[1:])) if pair in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = next_pos[i]
            if tokens[i] is None or j >= n or ranks.get((tokens[i], tokens[j])) != rank:
                continue  # stale
            tokens[i] = merges[(tokens[i], tokens[j])]
            tokens[j] = None
            k = next_pos[i] = next_pos[j]
            if k < n:
                prev_pos[k] = i
            h = prev_pos[i]
            # The merged token forms new pairs with its left (h) and right (k) neighbours.
            if h >= 0 and (tokens[h], tokens[i]) in ranks:
                heapq.heappush(heap, (ranks[(tokens[h], tokens[i])], h))
            if k < n and (tokens[i], tokens[k]) in ranks:
                heapq.heappush(heap, (ranks[(tokens[i], tokens[k])], i))
        return [token for token in tokens if token is not None]

    def encode(
        self,
        text: str,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Token ids of ``text``, with tiktoken's rules for special tokens.

        Special-token text listed in ``allowed_special`` becomes its special id. Text of a special token in
        ``disallowed_special`` (by default: every special token not allowed) raises ValueError. Special-token
        text that is neither allowed nor disallowed is encoded as ordinary text.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = frozenset(self.special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        if disallowed:
            match = self._special_regex(disallowed).search(text)
            if match is not None:
                token = match.group()
                raise ValueError(
                    f"the text contains the special token {token!r} (at character {match.start()}), which is "
                    f"disallowed. To encode it as the special token, pass allowed_special={{{token!r}}} (or "
                    f"'all'); to encode it as plain text, pass disallowed_special=() (or leave {token!r} out "
                    "of disallowed_special)"
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in self._special_regex(allowed).finditer(text):
            ids += self.encode_ordinary(text[start : match.start()])
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    def encode_batch(self, texts: Iterable[str], **kwargs: Any) -> list[list[int]]:
        """``encode`` each text (same keyword arguments)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of strings, not a single str; use encode(text)")
        return [self.encode(text, **kwargs) for text in texts]

    def _special_set(self, value: Literal["all"] | Collection[str], name: str) -> frozenset[str]:
        if value == "all":
            return frozenset(self.special_tokens)
        if isinstance(value, str):
            raise TypeError(
                f"{name} must be 'all' or a collection of special-token strings, not the str {value!r}"
            )
        chosen = frozenset(value)
        unknown = sorted(token for token in chosen if token not in self.special_tokens)
        if unknown:
            raise ValueError(
                f"{name} lists {unknown}, which are not special tokens of this tokenizer "
                f"(its special tokens are {sorted(self.special_tokens)})"
            )
        return chosen

    def _special_regex(self, tokens: frozenset[str]) -> Any:
        compiled = self._special_regexes.get(tokens)
        if compiled is None:
            compiled = self._special_regexes[tokens] = special_tokens_regex(tokens)
        return compiled

    # ----------------------------------------------------------------------------------------------------
    # Decoding and lookups
    # ----------------------------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for, concatenated. Raises ValueError for an id not in the vocabulary."""
        if hasattr(ids, "tolist"):  # torch / numpy arrays
            ids = ids.tolist()
        id_to_bytes = self._id_to_bytes
        try:
            return b"".join([id_to_bytes[token_id] for token_id in ids])
        except KeyError as err:
            self.id_to_bytes(err.args[0])  # raises ValueError naming the id and the valid range
            raise
        except TypeError:
            raise TypeError(f"ids must be an iterable of int token ids, got {ids!r:.80}") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text that ``ids`` stand for; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        """Number of tokens: ordinary plus special (ids run from 0 to vocab_size - 1)."""
        return len(self.vocab) + len(self.special_tokens)

    def id_to_bytes(self, id: int) -> bytes:
        """The bytes of token ``id`` (a special token's UTF-8 text for a special id)."""
        try:
            return self._id_to_bytes[id]
        except (KeyError, TypeError):
            raise ValueError(
                f"token id {id!r} is not in the vocabulary: ids run from 0 to {self.vocab_size - 1}"
            ) from None

    def id_to_token(self, id: int) -> str:
        """Token ``id`` in GPT-2's printable byte form (``"Ġthe"``), or a special token's text."""
        data = self.id_to_bytes(id)
        return data.decode("utf-8") if id not in self.vocab else bytes_to_token(data)

    def token_to_id(self, token: str | bytes) -> int:
        """Id of a token given as raw ``bytes``, a special token's text, or GPT-2's printable form (``"Ġthe"``)."""
        if isinstance(token, (bytes, bytearray)):
            data = bytes(token)
        elif isinstance(token, str):
            if token in self.special_tokens:
                return self.special_tokens[token]
            data = token_to_bytes(token)
        else:
            raise TypeError(f"token must be str or bytes, got {type(token).__name__}")
        try:
            return self._bytes_to_id[data]
        except KeyError:
            raise ValueError(f"{token!r} is not a token of this vocabulary") from None

    def get_vocab(self) -> dict[str, int]:
        """Printable token -> id for every token, specials included (what ``vocab.json`` holds)."""
        vocab = {bytes_to_token(data): token_id for token_id, data in sorted(self.vocab.items())}
        vocab.update(self.special_tokens)
        return vocab

    # ----------------------------------------------------------------------------------------------------
    # Files
    # ----------------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``vocab.json``, ``merges.txt`` (GPT-2 format), ``tokenizer.json`` and ``bpe_config.json``.

        Each file is written to a temporary file first and then renamed, so a crash never leaves half a file.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(
                f"cannot save the tokenizer into {str(directory)!r}: it is a file, not a folder"
            )
        directory.mkdir(parents=True, exist_ok=True)
        merges = [f"{bytes_to_token(self.vocab[a])} {bytes_to_token(self.vocab[b])}" for a, b in self.merges]
        config = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
        }
        atomic_write_text(directory / VOCAB_FILE, json.dumps(self.get_vocab(), ensure_ascii=False))
        atomic_write_text(directory / MERGES_FILE, "\n".join([MERGES_HEADER, *merges]) + "\n")
        atomic_write_text(directory / TOKENIZER_FILE, self.to_tokenizers().to_str(pretty=True))
        atomic_write_text(
            directory / BPE_CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BPETokenizer:
        """Load what ``save`` wrote (exact round trip).

        A directory without ``bpe_config.json`` but with GPT-2's files (``vocab.json`` + ``merges.txt``, or
        ``encoder.json`` + ``vocab.bpe``) loads as a GPT-2 tokenizer. Missing or corrupt files raise an error
        naming the file.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"tokenizer directory {str(directory)!r} does not exist (or is not a directory)"
            )
        config_path = directory / BPE_CONFIG_FILE
        if not config_path.is_file():
            for vocab_name, merges_name in reversed(GPT2_FILE_PAIRS):  # Hugging Face's names, then OpenAI's
                if (directory / vocab_name).is_file() and (directory / merges_name).is_file():
                    return cls.from_gpt2_files(directory / vocab_name, directory / merges_name)
            raise FileNotFoundError(
                f"{str(config_path)!r} not found: {str(directory)!r} is not a saved BPETokenizer (save one with "
                "BPETokenizer.save) and holds no GPT-2 vocab.json + merges.txt either"
            )
        config = read_json(config_path)
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise ValueError(f"{str(config_path)!r} is corrupt: it is not a {FORMAT_NAME} config")
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{str(config_path)!r} has format_version {config.get('format_version')!r}; this version of "
                f"scratch_gpt reads version {FORMAT_VERSION}"
            )
        pattern, special_tokens = config.get("pattern"), config.get("special_tokens")
        if not isinstance(pattern, str) or not isinstance(special_tokens, dict):
            raise ValueError(f"{str(config_path)!r} is corrupt: 'pattern' or 'special_tokens' is missing")
        return cls._from_files(directory / VOCAB_FILE, directory / MERGES_FILE, pattern, special_tokens)

    def to_tokenizers(self) -> tokenizers.Tokenizer:
        """The equivalent ``tokenizers.Tokenizer`` (Rust), with the same ids; what ``tokenizer.json`` holds.

        Exactly equal ids need the split pattern to mean the same to Oniguruma (the ``tokenizers`` regex
        engine) as to Python's ``regex``; that holds for GPT2_PATTERN and GPT4_PATTERN (both tested).
        """
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

        merges = [(bytes_to_token(self.vocab[a]), bytes_to_token(self.vocab[b])) for a, b in self.merges]
        model = models.BPE(
            self.get_vocab(),
            merges,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            ignore_merges=True,  # a chunk that is one whole token becomes that token, as in ``encode``
        )
        tokenizer = Tokenizer(model)
        if self.pattern == GPT2_PATTERN:  # ByteLevel's built-in regex is GPT-2's pattern
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(self.pattern), behavior="isolated", invert=False),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        specials = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        tokenizer.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in specials])
        return tokenizer


class _ChunkCache(dict):
    """chunk -> token ids; a missing chunk is encoded on first lookup. Emptied when it grows too large."""

    def __init__(self, encode_chunk: Callable[[str], list[int]]) -> None:
        super().__init__()
        self._encode_chunk = encode_chunk

    def __missing__(self, chunk: str) -> list[int]:
        if len(self) >= _CACHE_SIZE:
            self.clear()
        ids = self[chunk] = self._encode_chunk(chunk)
        return ids


_NO_RANK = sys.maxsize  # "no merge for this pair": larger than any rank


# --------------------------------------------------------------------------------------------------------
# Validation and file helpers
# --------------------------------------------------------------------------------------------------------


def _check_tables(
    vocab: dict[int, bytes], merges: dict[tuple[int, int], int], special_tokens: dict[str, int]
) -> None:
    """Raise ValueError/TypeError unless the tables form a byte-level BPE with ids 0..N-1."""
    if not isinstance(vocab, dict) or not isinstance(merges, dict):
        raise TypeError("vocab and merges must be dicts (id -> bytes, and (id, id) -> id)")
    for token_id, data in vocab.items():
        if (
            isinstance(token_id, bool)
            or not isinstance(token_id, int)
            or not isinstance(data, bytes)
            or not data
        ):
            raise TypeError(f"vocab must map int ids to non-empty bytes; got {token_id!r}: {data!r}")
    if len(set(vocab.values())) != len(vocab):
        raise ValueError("vocab maps two ids to the same bytes: every token's bytes must be unique")
    by_bytes = {data: token_id for token_id, data in vocab.items()}
    missing = [byte for byte in range(256) if bytes([byte]) not in by_bytes]
    if missing:
        raise ValueError(
            f"vocab lacks the single-byte tokens {missing[:8]}{'...' if len(missing) > 8 else ''}: a byte-level "
            "vocabulary must contain all 256 byte values"
        )
    made = {by_bytes[bytes([byte])] for byte in range(256)}  # ids reachable so far
    for rank, (pair, new_id) in enumerate(merges.items()):
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(i, int) for i in pair)):
            raise TypeError(f"merge keys must be (left id, right id) tuples; got {pair!r}")
        left, right = pair
        if left not in made or right not in made:
            raise ValueError(
                f"merge #{rank} {pair} uses a token that is neither a byte nor made by an earlier merge: "
                "merges must be listed in the order they were learned"
            )
        if new_id in made or vocab.get(new_id) != vocab[left] + vocab[right]:
            raise ValueError(
                f"merge #{rank} {pair} -> {new_id!r}: the new id must be a fresh vocab entry whose bytes are "
                f"the pair's bytes joined ({vocab[left] + vocab[right]!r})"
            )
        made.add(new_id)
    if len(made) != len(vocab):
        stray = sorted(set(vocab) - made)[:5]
        raise ValueError(f"vocab ids {stray} are neither single bytes nor made by a merge; remove them")
    if not isinstance(special_tokens, dict):
        raise TypeError("special_tokens must be a dict mapping text to id")
    for text, token_id in special_tokens.items():
        if not isinstance(text, str) or not text:
            raise TypeError(f"special tokens must be non-empty strings; got {text!r}")
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            raise TypeError(f"special token {text!r} must have an int id; got {token_id!r}")
        if _byte_form(text) in by_bytes:
            raise ValueError(
                f"special token {text!r} reads like an ordinary token in vocab.json's byte form; choose a "
                "special text that cannot be an ordinary token, e.g. '<|name|>'"
            )
    all_ids = sorted([*vocab, *special_tokens.values()])
    if all_ids != list(range(len(all_ids))):
        raise ValueError(
            "token ids (ordinary and special together) must be exactly 0 .. vocab_size - 1, each used once"
        )


def _byte_form(text: str) -> bytes | None:
    """The bytes that ``text`` stands for in GPT-2's printable byte form, or None if it is not in that form."""
    try:
        return token_to_bytes(text)
    except ValueError:
        return None
