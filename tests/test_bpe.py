"""Tests for scratch_gpt.bpe: GPT-2 exactness against tiktoken, the tokenizers export, files, bad input."""

from __future__ import annotations

import json
import random

import pytest
from conftest import data_file

from scratch_gpt.bpe import BPETokenizer
from scratch_gpt.byte_level import GPT2_PATTERN, GPT4_PATTERN

# tiktoken's own spelling of GPT-2's pattern (r50k_base), used for the reference encoding.
TIKTOKEN_R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

EDGE_CASES = [
    "",
    " ",
    "     ",
    "a  b   c    d",
    "trailing spaces   ",
    "\t\tindented\ttabs\t",
    "line\nbreaks\n\n\nand\r\nCRLF\r\n\r\n",
    "  \n  \n",
    "don't I'll we've they're she'd HE'S it'S you'Re",
    "'s 's' ''s",
    "0 1 12 123 1234 12345 3.14159 1,000,000 x86_64 2024-11-25",
    "emoji 😀 👍🏽 🏳️‍🌈 family 👨‍👩‍👧‍👦!",
    "日本語のテキストと中文和한국어",
    "combining: e\u0301 n\u0303 a\u0308\u0304 Zalgo Z\u0351\u0346\u035e",
    "right-to-left: שלום עולם, مرحبا بالعالم",
    "mixed scripts: Ελληνικά кириллица देवनागरी ไทย",
    "\u00a0no-break\u00a0space and\u3000ideographic\u2009thin",
    "\x00\x01\x07 control \x1b[0m \x7f",
    "zero\u200bwidth\ufeffBOM",
    "punctuation!!! ??? ... --- *** ((()))",
    "https://example.com/path?query=1&x=y#frag",
    "def f(x):\n    return x ** 2  # comment\n",
    "<|endoftext|> is special but <|endoftext| and |endoftext|> are not",
    "a" * 300,  # long chunks take the heap merge path
    " " * 300 + "x",
    "1234567890" * 40,
    "ab" * 200 + " " + "🙂" * 50,
]
LONE_SURROGATES = ["x\ud800y", "\udfff", "pair \ud83d\ude00 and lone \ud83d end"]


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return BPETokenizer.from_gpt2_files(data_file("encoder.json"), data_file("vocab.bpe"))


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    tiktoken = pytest.importorskip("tiktoken")
    tiktoken_load = pytest.importorskip("tiktoken.load")

    ranks = tiktoken_load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data_file("vocab.bpe")), encoder_json_file=str(data_file("encoder.json"))
    )
    return tiktoken.Encoding(
        name="gpt2_local",
        pat_str=TIKTOKEN_R50K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return data_file("tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trained(shakespeare) -> BPETokenizer:
    return BPETokenizer.train(shakespeare[:200_000], 600, special_tokens=["<|endoftext|>", "<|pad|>"])


# ------------------------------------------------------------------------------------------------------
# GPT-2: known answers and exactness against tiktoken
# ------------------------------------------------------------------------------------------------------


def test_known_answers_from_the_book(gpt2):
    verdict = data_file("the-verdict.txt").read_text(encoding="utf-8")
    ids = gpt2.encode(verdict)
    assert len(ids) == 5145
    assert ids[:4] == [40, 367, 2885, 1464]
    assert gpt2.encode("Hello,") == [15496, 11]
    assert gpt2.vocab_size == 50257


@pytest.mark.slow
def test_ids_equal_tiktoken_on_every_data_file(gpt2, tiktoken_gpt2, data_dir):
    files = sorted(path for path in data_dir.iterdir() if path.is_file())
    assert len(files) >= 5
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        ours = gpt2.encode(text, disallowed_special=())
        assert ours == tiktoken_gpt2.encode(text, disallowed_special=()), path.name
        assert gpt2.decode(ours) == text, path.name


@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_ids_equal_tiktoken_on_edge_cases(gpt2, tiktoken_gpt2, text):
    for kwargs in ({"allowed_special": "all"}, {"disallowed_special": ()}):
        assert gpt2.encode(text, **kwargs) == tiktoken_gpt2.encode(text, **kwargs)
    assert gpt2.decode(gpt2.encode(text, allowed_special="all")) == text
    assert gpt2.decode(gpt2.encode_ordinary(text)) == text


@pytest.mark.parametrize("text", LONE_SURROGATES)
def test_lone_surrogates_become_replacement_characters_like_tiktoken(gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2.encode(text)
    assert "\ufffd" in gpt2.decode(ids)


def test_ids_equal_tiktoken_on_random_text(gpt2, tiktoken_gpt2):
    rng = random.Random(0)
    alphabet = "aeiou xyzAB'sl 0123\t\n\r.,!?-é日本😀\u0301\u00a0"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert gpt2.encode(text, disallowed_special=()) == tiktoken_gpt2.encode(text, disallowed_special=())


def test_special_tokens_follow_tiktoken_rules(gpt2, tiktoken_gpt2):
    text = "a<|endoftext|>b"
    assert gpt2.encode(text, allowed_special="all") == [64, 50256, 65]
    assert gpt2.encode(text, allowed_special={"<|endoftext|>"}) == [64, 50256, 65]
    as_text = gpt2.encode(text, disallowed_special=())
    assert as_text == tiktoken_gpt2.encode(text, disallowed_special=())
    assert 50256 not in as_text and gpt2.decode(as_text) == text
    assert gpt2.encode_ordinary(text) == as_text
    with pytest.raises(ValueError, match=r"'<\|endoftext\|>'.*allowed_special"):
        gpt2.encode(text)


def test_encode_batch_matches_encode(gpt2):
    texts = ["Hello, world", "", "x<|endoftext|>y"]
    assert gpt2.encode_batch(texts, allowed_special="all") == [
        gpt2.encode(t, allowed_special="all") for t in texts
    ]


# ------------------------------------------------------------------------------------------------------
# Decoding and lookups
# ------------------------------------------------------------------------------------------------------


def test_decode_replaces_invalid_utf8_and_keeps_bytes(gpt2):
    first_byte_of_euro = gpt2.token_to_id(b"\xe2")
    assert gpt2.decode([first_byte_of_euro]) == "\ufffd"
    assert gpt2.decode_bytes([first_byte_of_euro]) == b"\xe2"
    assert gpt2.decode(gpt2.encode("€")) == "€"


def test_decode_accepts_arrays(gpt2):
    numpy = pytest.importorskip("numpy")
    assert gpt2.decode(numpy.array([15496, 11])) == "Hello,"


def test_lookups_match_the_gpt2_files(gpt2):
    encoder = json.loads(data_file("encoder.json").read_text(encoding="utf-8"))
    assert gpt2.get_vocab() == encoder
    assert gpt2.token_to_id("Ġthe") == encoder["Ġthe"] == gpt2.token_to_id(b" the")
    assert gpt2.id_to_token(encoder["Ġthe"]) == "Ġthe"
    assert gpt2.id_to_bytes(encoder["Ġthe"]) == b" the"
    assert gpt2.token_to_id("<|endoftext|>") == 50256
    assert gpt2.id_to_token(50256) == "<|endoftext|>"
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert list(gpt2.merges)[0] == (encoder["Ġ"], encoder["t"])  # vocab.bpe's first merge: "Ġ t"


@pytest.mark.parametrize("bad_id", [50257, -1, 10**9, "3", None])
def test_decode_unknown_id_raises_clear_error(gpt2, bad_id):
    with pytest.raises(ValueError, match=r"not in the vocabulary.*0 to 50256"):
        gpt2.decode([15496, bad_id])


def test_unknown_token_lookup_raises(gpt2):
    with pytest.raises(ValueError, match="not a token"):
        gpt2.token_to_id(b"\xff\xfe\xfd this is no token")
    with pytest.raises(ValueError, match="not a GPT-2 byte-level token"):
        gpt2.token_to_id("has a space")


# ------------------------------------------------------------------------------------------------------
# The tokenizers export (tokenizer.json) gives the same ids
# ------------------------------------------------------------------------------------------------------


def _varied_texts(shakespeare: str) -> list[str]:
    instructions = data_file("instruction-data.json").read_text(encoding="utf-8")
    return [*EDGE_CASES, shakespeare[-30_000:], instructions[:30_000]]


@pytest.mark.parametrize(
    "pattern", [GPT2_PATTERN, GPT4_PATTERN, r"\w+|[^\w\s]+|\s+"], ids=["gpt2", "gpt4", "custom"]
)
def test_trained_tokenizer_equals_its_tokenizers_export(shakespeare, tmp_path, pattern):
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = BPETokenizer.train(shakespeare[:100_000], 500, pattern=pattern)
    tokenizer.save(tmp_path)
    rust = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in _varied_texts(shakespeare):
        ids = tokenizer.encode(text, allowed_special="all")
        assert rust.encode(text).ids == ids, text[:60]
        assert rust.decode(ids, skip_special_tokens=False) == text


def test_gpt2_equals_its_tokenizers_export(gpt2, shakespeare):
    rust = gpt2.to_tokenizers()
    for text in _varied_texts(shakespeare):
        assert rust.encode(text).ids == gpt2.encode(text, allowed_special="all"), text[:60]
    assert rust.get_vocab_size() == 50257


# ------------------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------------------


def _tables(tokenizer: BPETokenizer):
    return tokenizer.vocab, list(tokenizer.merges.items()), tokenizer.special_tokens, tokenizer.pattern


def test_save_load_round_trip_is_exact(trained, tmp_path):
    trained.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == [
        "bpe_config.json",
        "merges.txt",
        "tokenizer.json",
        "vocab.json",
    ]
    loaded = BPETokenizer.load(tmp_path / "tok")
    assert _tables(loaded) == _tables(trained)
    assert loaded.special_tokens == {"<|endoftext|>": 598, "<|pad|>": 599}


def test_save_writes_gpt2_format(gpt2, tmp_path):
    gpt2.save(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == json.loads(
        data_file("encoder.json").read_text(encoding="utf-8")
    )
    ours = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    original = data_file("vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert ours[0] == "#version: 0.2" and ours[1:] == [line for line in original[1:] if line]
    assert _tables(BPETokenizer.load(tmp_path)) == _tables(gpt2)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary files left


def test_load_accepts_a_folder_of_gpt2_files(gpt2, tmp_path):
    for name in ("encoder.json", "vocab.bpe"):
        (tmp_path / name).write_bytes(data_file(name).read_bytes())
    assert _tables(BPETokenizer.load(tmp_path)) == _tables(gpt2)


# ------------------------------------------------------------------------------------------------------
# Bad input: each a clear exception
# ------------------------------------------------------------------------------------------------------


def test_load_missing_folder_or_files_names_them(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BPETokenizer.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="bpe_config.json"):
        BPETokenizer.load(tmp_path)
    trained.save(tmp_path)
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        BPETokenizer.load(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("vocab.json", "{not json"),
        ("vocab.json", '["a", "list"]'),
        ("bpe_config.json", "{}"),
        ("bpe_config.json", ""),
        ("merges.txt", "#version: 0.2\nĠ t h\n"),
        ("merges.txt", "#version: 0.2\nĠ zzzz\n"),
    ],
)
def test_load_corrupt_file_names_it(trained, tmp_path, name, content):
    trained.save(tmp_path)
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        BPETokenizer.load(tmp_path)


def test_load_config_that_does_not_match_vocab(trained, tmp_path):
    trained.save(tmp_path)
    config = json.loads((tmp_path / "bpe_config.json").read_text(encoding="utf-8"))
    config["special_tokens"] = {"<|other|>": 599}
    (tmp_path / "bpe_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="do not belong together"):
        BPETokenizer.load(tmp_path)


def test_from_gpt2_files_with_mismatched_files(trained, tmp_path):
    trained.save(tmp_path / "ours")
    with pytest.raises(ValueError, match=r"not in .*encoder\.json.*do not belong together"):
        BPETokenizer.from_gpt2_files(data_file("encoder.json"), tmp_path / "ours" / "merges.txt")
    with pytest.raises(ValueError, match="do not belong together|not a valid BPE"):
        BPETokenizer.from_gpt2_files(tmp_path / "ours" / "vocab.json", data_file("vocab.bpe"))


def test_save_into_a_file_raises(trained, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="file"):
        trained.save(tmp_path / "file")


def _byte_vocab() -> dict[int, bytes]:
    return {i: bytes([i]) for i in range(256)}


@pytest.mark.parametrize(
    ("vocab", "merges", "specials", "error", "match"),
    [
        ({i: bytes([i]) for i in range(255)}, {}, {}, ValueError, "all 256 byte values"),
        ({**_byte_vocab(), 256: b"ab"}, {(97, 300): 256}, {}, ValueError, "earlier merge"),
        ({**_byte_vocab(), 256: b"a"}, {}, {}, ValueError, "same bytes"),
        ({**_byte_vocab(), 256: b"xy"}, {(97, 98): 256}, {}, ValueError, "joined"),
        ({**_byte_vocab(), 256: b"ab"}, {}, {}, ValueError, "neither single bytes nor made by a merge"),
        (_byte_vocab(), {}, {"<|a|>": 300}, ValueError, r"0 \.\. vocab_size - 1"),
        (_byte_vocab(), {}, {"a": 256}, ValueError, "reads like an ordinary token"),
        (_byte_vocab(), {}, {"": 256}, TypeError, "non-empty"),
        ({**_byte_vocab(), 0: "a"}, {}, {}, TypeError, "bytes"),
    ],
)
def test_constructor_rejects_invalid_tables(vocab, merges, specials, error, match):
    with pytest.raises(error, match=match):
        BPETokenizer(vocab, merges, specials)


@pytest.mark.parametrize(
    ("pattern", "match"), [(r"(unclosed", "does not compile"), (r"(\w+)|\s+", "non-capturing"), (123, "str")]
)
def test_bad_pattern(pattern, match):
    with pytest.raises((ValueError, TypeError), match=match):
        BPETokenizer(_byte_vocab(), {}, {}, pattern=pattern)


def test_custom_pattern_that_skips_text_raises_instead_of_dropping_it():
    tokenizer = BPETokenizer(_byte_vocab(), {}, {}, pattern=r"\w+")
    assert tokenizer.encode("ab") == [97, 98]
    with pytest.raises(ValueError, match=r"skips text at character 2.*catch-all"):
        tokenizer.encode("ab cd")


@pytest.mark.parametrize("bad", [None, b"bytes", 12, ["a list"]])
def test_encode_non_string_raises(gpt2, bad):
    with pytest.raises(TypeError, match="str"):
        gpt2.encode(bad)


def test_encode_bad_special_arguments(gpt2):
    with pytest.raises(ValueError, match="not special tokens"):
        gpt2.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(TypeError, match="not the str"):
        gpt2.encode("x", allowed_special="<|endoftext|>")
    with pytest.raises(TypeError, match="single str"):
        gpt2.encode_batch("not a list")


def test_pickle_round_trip(trained):
    import pickle

    trained.encode("warm the cache " * 10)
    restored = pickle.loads(pickle.dumps(trained))
    assert _tables(restored) == _tables(trained)
    assert restored.encode("To be, or not to be") == trained.encode("To be, or not to be")
