"""Training a byte-level BPE vocabulary: learn merges from a corpus (book chapter 2, bonus BPE notebook).

BPE starts from the 256 byte values and repeatedly merges the most frequent adjacent pair of tokens into a new
token, until the vocabulary has the requested size. The textbook loop recounts every pair in the whole corpus
for every merge; that is quadratic and hopeless beyond toy corpora. Here:

1. The corpus is cut into chunks by the split pattern, and each *distinct* chunk is counted once
   (``Counter``): 1.1 MB of Shakespeare has only 15k distinct chunks, so every later step works on those.
2. Pair counts are computed once, then updated *incrementally*: a merge only touches the chunks that contain
   the merged pair, found through an index ``pair -> chunks containing it``, and in each only the pairs
   next to an occurrence change.
3. The next merge comes from a max-heap of pair counts with *lazy deletion*: when a pair's count drops, its
   heap entry is left in place and corrected when it surfaces; when a count grows (only pairs containing the
   new token can), a fresh entry is pushed.

Tie-breaking (deterministic): the pair with the highest count wins; among equal counts, the pair whose
``(left bytes, right bytes)`` is smallest, compared as a tuple of byte strings (so ``(b"a", b"b")`` comes
before ``(b"a", b"c")`` and before ``(b"b", b"a")``).

Special tokens are cut out of the training text before chunking (they never take part in merges) and get
ids after all merges. ``train_bpe`` only learns the tables and returns them; ``BPETokenizer.train`` (in
``bpe.py``, which imports this module, never the other way round) builds the tokenizer from them. Training on
files, saving and measuring (the ``train-tokenizer`` command) is ``training/tokenizer_tools.py``.
Deliberately absent: minimum-frequency or maximum-token-length options, multiprocessing, streaming corpora
larger than memory.
"""

from __future__ import annotations

import heapq
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .byte_level import (
    GPT2_PATTERN,
    compile_pattern,
    fix_lone_surrogates,
    pattern_covers_all_text,
    special_tokens_regex,
    split_text,
)
from .constants import END_OF_TEXT

# Corpora larger than this (in characters) show a progress bar when ``show_progress`` is None.
PROGRESS_MIN_CHARS = 5_000_000


def check_special_tokens(special_tokens: Sequence[str]) -> list[str]:
    """Validate a list of special-token texts: strings, non-empty, no duplicates. Returns them as a list."""
    if isinstance(special_tokens, (str, bytes)):
        raise TypeError(
            f"special_tokens must be a sequence of strings, got the single {type(special_tokens).__name__} "
            f"{special_tokens!r}; wrap it in a list: special_tokens=[{special_tokens!r}]"
        )
    tokens = list(special_tokens)
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"special tokens must be strings, got {token!r} ({type(token).__name__})")
        if not token:
            raise ValueError("a special token cannot be the empty string")
    duplicates = sorted({token for token in tokens if tokens.count(token) > 1})
    if duplicates:
        raise ValueError(f"duplicate special tokens {duplicates}: list each special token once")
    return tokens


def count_chunks(
    texts: str | Iterable[str], pattern: str = GPT2_PATTERN, special_tokens: Sequence[str] = ()
) -> tuple[Counter[str], int]:
    """Split every text into chunks with ``pattern`` and count each distinct chunk.

    Special-token texts are cut out first, so no chunk spans or contains one. Returns the counter and the
    number of characters read. Raises TypeError if ``texts`` is not a string or an iterable of strings.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(
            f"texts must be a string or an iterable of strings, got {type(texts).__name__}"
            + (" (decode bytes to str first)" if isinstance(texts, (bytes, bytearray)) else "")
        )
    compiled = compile_pattern(pattern)
    special_re = special_tokens_regex(special_tokens) if special_tokens else None
    check_coverage = not pattern_covers_all_text(pattern)
    counts: Counter[str] = Counter()
    n_chars = 0
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, not str: every text must be a string")
        n_chars += len(text)
        text = fix_lone_surrogates(text)
        for piece in special_re.split(text) if special_re is not None else (text,):
            counts.update(split_text(compiled, piece, check_coverage))
    return counts, n_chars


def read_training_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike], encoding: str = "utf-8"
) -> list[str]:
    """The contents of text files, one string per file; errors name the missing or undecodable file."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    texts = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"training file {str(path)!r} not found")
        try:
            texts.append(path.read_text(encoding=encoding))
        except UnicodeDecodeError as err:
            raise ValueError(
                f"training file {str(path)!r} is not valid {encoding} ({err.reason} at byte {err.start}); "
                "pass the file's encoding"
            ) from None
    if not texts:
        raise ValueError("no training files given: pass at least one text file")
    return texts


def _merge_in_word(
    word: list[int], pair: tuple[int, int], new_id: int, count: int, pair_counts: dict[tuple[int, int], int]
) -> tuple[list[int], list[tuple[int, int]]] | None:
    """Replace every occurrence of ``pair`` in ``word`` by ``new_id`` (left to right) and update the counts.

    Only the neighbours of an occurrence change: ``(left, a)`` becomes ``(left, new)`` and ``(b, right)``
    becomes ``(new, right)``, each by the word's ``count``. The left neighbour is read from the merged
    output, so back-to-back occurrences (``a b a b`` -> ``new new``) come out right. The count of ``pair``
    itself is left to the caller. Returns the merged word and the pairs with ``new_id`` it now holds, or None
    if ``pair`` does not occur in ``word``.
    """
    a, b = pair
    merged: list[int] = []
    new_pairs: list[tuple[int, int]] = []
    found = False
    start, n = 0, len(word)
    while True:
        try:
            i = word.index(a, start)  # jump to the next candidate in C rather than step in Python
        except ValueError:
            break
        if i + 1 == n or word[i + 1] != b:
            merged.extend(word[start : i + 1])
            start = i + 1
            continue
        found = True
        merged.extend(word[start:i])
        if merged:
            left = merged[-1]
            pair_counts[(left, a)] -= count
            new_pairs.append((left, new_id))
            pair_counts[new_pairs[-1]] = pair_counts.get(new_pairs[-1], 0) + count
        if i + 2 < n:
            right = word[i + 2]
            pair_counts[(b, right)] -= count
            new_pairs.append((new_id, right))
            pair_counts[new_pairs[-1]] = pair_counts.get(new_pairs[-1], 0) + count
        merged.append(new_id)
        start = i + 2
    if not found:
        return None
    merged.extend(word[start:])
    return merged, new_pairs


def train_bpe(
    texts: str | Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (END_OF_TEXT,),
    pattern: str = GPT2_PATTERN,
    show_progress: bool | None = None,
) -> tuple[dict[int, bytes], dict[tuple[int, int], int], dict[str, int]]:
    """Learn byte-level BPE merges from ``texts``; see the module docstring for the algorithm.

    Returns ``(vocab, merges, special_tokens)``: ids 0-255 are the raw bytes, then one id per merge in the
    order learned, then the special tokens. Warns (and returns a smaller vocabulary) if the corpus runs out of
    pairs before reaching ``vocab_size``.
    """
    specials = check_special_tokens(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level vocabulary needs the 256 byte tokens plus "
            f"{len(specials)} special token(s), so use vocab_size >= {256 + len(specials)}"
        )
    chunk_counts, n_chars = count_chunks(texts, pattern, specials)
    if not chunk_counts:
        raise ValueError(
            "empty corpus: the training texts contain no characters"
            + (" besides special tokens" if n_chars else "")
            + "; pass at least some text to learn merges from"
        )

    # Each distinct chunk becomes a "word": its list of token ids (initially its UTF-8 bytes) and its count.
    # Chunks of one byte can never be merged, so they are left out.
    words: list[list[int]] = []
    word_counts: list[int] = []
    for chunk, count in chunk_counts.items():
        word = list(chunk.encode("utf-8"))
        if len(word) > 1:
            words.append(word)
            word_counts.append(count)

    pair_counts: dict[tuple[int, int], int] = {}
    # pair -> indices of words that contain it. May list words that no longer do (cheaper than exact upkeep);
    # those are skipped when merging.
    words_with_pair: dict[tuple[int, int], set[int]] = {}
    for index, (word, count) in enumerate(zip(words, word_counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + count
            words_with_pair.setdefault(pair, set()).add(index)

    vocab: dict[int, bytes] = {byte: bytes([byte]) for byte in range(256)}
    # Max-heap via negated counts; ties go to the smallest (left bytes, right bytes).
    heap = [(-count, vocab[a], vocab[b], a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    num_merges = vocab_size - 256 - len(specials)
    if show_progress is None:
        show_progress = n_chars >= PROGRESS_MIN_CHARS and num_merges > 0
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=num_merges, desc="BPE merges", unit="merge", file=sys.stderr)

    merges: dict[tuple[int, int], int] = {}
    while len(merges) < num_merges and heap:
        neg_count, left_bytes, right_bytes, a, b = heapq.heappop(heap)
        pair = (a, b)
        count = pair_counts.get(pair, 0)
        if count != -neg_count:  # stale entry: the count dropped since it was pushed
            if count > 0:
                heapq.heappush(heap, (-count, left_bytes, right_bytes, a, b))
            continue

        new_id = 256 + len(merges)
        merges[pair] = new_id
        vocab[new_id] = left_bytes + right_bytes
        grown: set[tuple[int, int]] = set()  # pairs containing new_id: the only counts that can grow
        for index in words_with_pair.pop(pair):
            result = _merge_in_word(words[index], pair, new_id, word_counts[index], pair_counts)
            if result is None:  # stale index entry: the pair left this word earlier
                continue
            words[index], new_pairs = result
            for new_pair in new_pairs:
                grown.add(new_pair)
                words_with_pair.setdefault(new_pair, set()).add(index)
        del pair_counts[pair]
        for new_pair in grown:
            count = pair_counts[new_pair]
            if count > 0:
                left, right = new_pair
                heapq.heappush(heap, (-count, vocab[left], vocab[right], left, right))
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()

    if len(merges) < num_merges:
        warnings.warn(
            f"the corpus ran out of pairs to merge after {len(merges)} merges: the vocabulary has "
            f"{256 + len(merges) + len(specials)} tokens, not the {vocab_size} requested (train on more text "
            "for a larger vocabulary)",
            stacklevel=3,  # point at the caller of BPETokenizer.train
        )
    first_special = 256 + len(merges)
    special_ids = {token: first_special + offset for offset, token in enumerate(specials)}
    return vocab, merges, special_ids
