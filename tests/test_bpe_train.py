"""Tests for scratch_gpt.bpe_train: known answers, a naive reference trainer, determinism, bad input."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import regex
from conftest import data_file

from scratch_gpt.bpe import BPETokenizer
from scratch_gpt.bpe_train import train_bpe
from scratch_gpt.byte_level import GPT2_PATTERN, GPT4_PATTERN


def naive_train(text: str, vocab_size: int, pattern: str) -> dict[tuple[int, int], int]:
    """The textbook loop: recount every pair of every chunk for every merge (same tie-breaking rule)."""
    words = [list(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = {}
    for new_id in range(256, vocab_size):
        counts = Counter(pair for word in words for pair in zip(word, word[1:]))
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], vocab[pair[0]], vocab[pair[1]]))
        merges[best] = new_id
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        for index, word in enumerate(words):
            merged, i = [], 0
            while i < len(word):
                if word[i : i + 2] == list(best):
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            words[index] = merged
    return merges


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return data_file("tinyshakespeare.txt").read_text(encoding="utf-8")


def test_wikipedia_example():
    # aaabdaaabac: aa (count 4) -> 256; then "ab" and "aa a" tie at 2 and b"a" < b"aa" picks "ab" -> 257;
    # then "aa"+"ab" -> 258: Wikipedia's Z, Y, X.
    tokenizer = BPETokenizer.train("aaabdaaabac", 259, special_tokens=())
    assert tokenizer.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tokenizer.vocab[258] == b"aaab"
    assert tokenizer.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, GPT4_PATTERN])
def test_equals_naive_trainer(shakespeare, pattern):
    text = shakespeare[:12_000]
    vocab, merges, _ = train_bpe(text, 256 + 120, special_tokens=(), pattern=pattern)
    assert list(merges.items()) == list(naive_train(text, 256 + 120, pattern).items())
    assert all(vocab[new] == vocab[a] + vocab[b] for (a, b), new in merges.items())


def test_special_tokens_get_ids_after_merges_and_are_never_merged():
    text = "hello<|endoftext|>hello<|endoftext|>world<|endoftext|>" * 20
    tokenizer = BPETokenizer.train(text, 264, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert tokenizer.special_tokens == {"<|endoftext|>": 262, "<|pad|>": 263}
    assert tokenizer.vocab_size == 264 and len(tokenizer.merges) == 6
    assert not any(b"<|" in data or b"|>" in data for data in tokenizer.vocab.values())
    assert tokenizer.encode("hello<|endoftext|>", allowed_special="all")[-1] == 262


def test_deterministic_and_accepts_any_iterable(shakespeare):
    lines = shakespeare[:50_000].splitlines(keepends=True)
    first = BPETokenizer.train(lines, 400)
    second = BPETokenizer.train(iter(lines), 400)
    assert list(first.merges.items()) == list(second.merges.items())
    assert first.decode(first.encode(shakespeare[:50_000])) == shakespeare[:50_000]


def test_trained_tokenizer_compresses_and_round_trips(shakespeare):
    tokenizer = BPETokenizer.train(shakespeare[:200_000], 1000)
    sample = shakespeare[-20_000:]
    ids = tokenizer.encode(sample)
    assert len(sample.encode("utf-8")) / len(ids) > 2
    assert tokenizer.decode(ids) == sample


def test_running_out_of_pairs_warns_and_stops():
    with pytest.warns(UserWarning, match="ran out of pairs to merge after 2 merges"):
        tokenizer = BPETokenizer.train("abc", 300)
    assert tokenizer.vocab_size == 256 + 2 + 1
    assert tokenizer.special_tokens == {"<|endoftext|>": 258}


def test_minimum_vocab_size_has_no_merges():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer = BPETokenizer.train("some text", 257)
    assert tokenizer.merges == {} and tokenizer.vocab_size == 257


def test_lone_surrogates_in_training_text():
    # The lone surrogate becomes U+FFFD (as in encode). After "ab" (3 times), every pair occurs once and the
    # tie goes to the smallest bytes: (b" ", b"ab") beats U+FFFD's (b"\xbf", b"\xbd") and (b"\xef", b"\xbf").
    tokenizer = BPETokenizer.train("ab\ud800ab ab", 258, special_tokens=())
    assert tokenizer.merges == {(97, 98): 256, (32, 256): 257}
    assert tokenizer.decode(tokenizer.encode("ab\ud800")) == "ab\ufffd"


def test_progress_bar_on_request(capsys):
    BPETokenizer.train("hello hello world", 260, show_progress=True)
    assert "BPE merges" in capsys.readouterr().err
    BPETokenizer.train("hello hello world", 260, show_progress=False)
    assert "BPE merges" not in capsys.readouterr().err


def test_train_from_files_equals_train(tmp_path, shakespeare):
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    paths[0].write_text(shakespeare[:20_000], encoding="utf-8")
    paths[1].write_text(shakespeare[20_000:40_000], encoding="utf-8")
    from_files = BPETokenizer.train_from_files(paths, 400)
    from_texts = BPETokenizer.train([shakespeare[:20_000], shakespeare[20_000:40_000]], 400)
    assert list(from_files.merges.items()) == list(from_texts.merges.items())


# ------------------------------------------------------------------------------------------------------
# Bad input: each a clear exception
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vocab_size", "specials"), [(100, ()), (256, ["<|endoftext|>"]), (257, ["<|a|>", "<|b|>"])]
)
def test_vocab_size_too_small(vocab_size, specials):
    with pytest.raises(ValueError, match=rf"vocab_size >= {256 + len(specials)}"):
        BPETokenizer.train("some text", vocab_size, special_tokens=specials)


def test_vocab_size_not_an_int():
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("some text", 300.0)


@pytest.mark.parametrize("texts", ["", [], ["", ""], "<|endoftext|>"])
def test_empty_corpus(texts):
    with pytest.raises(ValueError, match="empty corpus"):
        BPETokenizer.train(texts, 300)


@pytest.mark.parametrize(
    ("texts", "match"),
    [(123, "int"), (b"bytes", "decode bytes"), (["ok", None], r"texts\[1\] is NoneType"), ([b"x"], "bytes")],
)
def test_non_string_input(texts, match):
    with pytest.raises(TypeError, match=match):
        BPETokenizer.train(texts, 300)


@pytest.mark.parametrize(
    ("specials", "error", "match"),
    [
        (["<|a|>", "<|a|>"], ValueError, "duplicate special tokens"),
        (["<|a|>", 7], TypeError, "must be strings"),
        ("<|endoftext|>", TypeError, "wrap it in a list"),
        ([""], ValueError, "empty string"),
    ],
)
def test_bad_special_tokens(specials, error, match):
    with pytest.raises(error, match=match):
        BPETokenizer.train("some text", 300, special_tokens=specials)


@pytest.mark.parametrize(
    ("pattern", "match"),
    [(r"[unclosed", "does not compile"), (r"(\w+)|\s+", "non-capturing"), (r"\w+", "skips text")],
)
def test_bad_pattern(pattern, match):
    with pytest.raises(ValueError, match=match):
        BPETokenizer.train("some text here", 300, pattern=pattern)


def test_training_files_missing_or_undecodable(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        BPETokenizer.train_from_files([tmp_path / "missing.txt"], 300)
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt.*not valid utf-8"):
        BPETokenizer.train_from_files(tmp_path / "latin1.txt", 300)
    assert BPETokenizer.train_from_files(tmp_path / "latin1.txt", 258, encoding="latin-1").vocab_size == 258
    with pytest.raises(ValueError, match="no training files"):
        BPETokenizer.train_from_files([], 300)
