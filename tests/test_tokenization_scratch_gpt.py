"""The Hugging Face tokenizer classes: fast/slow parity, special tokens, save/load, Auto, remote code, datasets.

Oracles: tiktoken's GPT-2 encoding built from the local OpenAI files (``gpt2_tiktoken`` in conftest) and our own
``BPETokenizer``; the book's known answers ("Hello," -> 15496, 11; the-verdict.txt -> 5,145 tokens).
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
from conftest import data_file
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    PreTrainedTokenizerFast,
)

from scratch_gpt.bpe import GPT4_PATTERN, BPETokenizer
from scratch_gpt.tokenization_scratch_gpt import ScratchGPTTokenizer, ScratchGPTTokenizerFast

EOS, PAD = 50256, 50257  # GPT-2's <|endoftext|>, and our <|pad|> appended after it

# Corner cases: specials, emoji (incl. ZWJ and skin tone), CJK, RTL, combining marks, whitespace runs, CRLF,
# contractions, digits, and text right next to special tokens.
TEXTS = [
    "Hello, world!",
    "",
    " ",
    "   leading and trailing spaces   ",
    "tabs\t\tand\nnew\n\nlines\r\nCRLF\r\n\r\n  \n",
    "It's, I'm, we'll, they've, she'd, you're DON'T",
    "digits 1234567890 3.14159 1,000,000",
    "emoji 👋🏽 👨‍👩‍👧 ❤️ 🤖",
    "CJK 你好，世界。日本語のテキスト 한국어",
    "right-to-left: שלום עולם مرحبا بالعالم",
    "combining e\u0301 n\u0303 Z\u0351\u0354a\u0306lgo",
    "end<|endoftext|>start <|endoftext|> <|endoftext|><|endoftext|>",
    "padded<|pad|>text <|pad|>",
    "code:\n    def f(x):\n        return x ** 2  # square\n",
]


@pytest.fixture(scope="module")
def gpt2_bpe():
    return BPETokenizer.from_gpt2_files(data_file("encoder.json"), data_file("vocab.bpe"))


@pytest.fixture(scope="module")
def fast(gpt2_bpe):
    return ScratchGPTTokenizerFast.from_bpe(gpt2_bpe)


@pytest.fixture(scope="module")
def slow(gpt2_bpe):
    return ScratchGPTTokenizer.from_bpe(gpt2_bpe)


@pytest.fixture(scope="module")
def trained_bpe():
    """A tiny tokenizer trained in-process: GPT-4's pattern, an extra special token, specials after the merges."""
    text = data_file("the-verdict.txt").read_text(encoding="utf-8")
    return BPETokenizer.train(text, 400, special_tokens=("<|endoftext|>", "<|user|>"), pattern=GPT4_PATTERN)


def hf_ids(tokenizer, text):
    return tokenizer(text)["input_ids"]


# --------------------------------------------------------------------------------------------------------
# Ids: known answers, tiktoken, and fast == slow
# --------------------------------------------------------------------------------------------------------


def test_known_answers_from_the_book(fast, slow):
    verdict = data_file("the-verdict.txt").read_text(encoding="utf-8")
    for tokenizer in (fast, slow):
        assert hf_ids(tokenizer, "Hello,") == [15496, 11]
        ids = tokenizer(verdict, verbose=False)["input_ids"]
        assert len(ids) == 5145
        assert ids[:4] == [40, 367, 2885, 1464]
        assert tokenizer.decode(ids) == verdict


def tiktoken_ids(encoding, text):
    """tiktoken's ids, reading special-token text as the special token (as Hugging Face tokenizers do)."""
    pieces = [encoding.encode(piece, allowed_special="all") for piece in text.split("<|pad|>")]
    return [*pieces[0], *(i for piece in pieces[1:] for i in (PAD, *piece))]


@pytest.mark.parametrize("text", TEXTS)
def test_fast_and_slow_match_tiktoken(fast, slow, gpt2_tiktoken, text):
    ids = hf_ids(fast, text)
    assert ids == tiktoken_ids(gpt2_tiktoken, text)
    assert hf_ids(slow, text) == ids
    assert slow.tokenize(text) == fast.tokenize(text)
    assert fast.decode(ids) == slow.decode(ids) == text
    assert fast.decode(ids, skip_special_tokens=True) == slow.decode(ids, skip_special_tokens=True)
    assert "<|endoftext|>" not in slow.decode(ids, skip_special_tokens=True)


def test_batches_and_special_tokens_are_identical(fast, slow):
    fast_batch = fast(TEXTS, padding=True)
    slow_batch = slow(TEXTS, padding=True)
    assert fast_batch["input_ids"] == slow_batch["input_ids"]
    assert fast_batch["attention_mask"] == slow_batch["attention_mask"]
    for tokenizer in (fast, slow):
        assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|endoftext|>", EOS)
        assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|endoftext|>", EOS)  # GPT-2: BOS is EOS
        assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|pad|>", PAD)
        assert tokenizer.vocab_size == 50257
        assert len(tokenizer) == 50258  # the model's vocab_size must be len(tokenizer)
        assert tokenizer.get_vocab()["<|pad|>"] == PAD and tokenizer.get_vocab()["Ġworld"] == 995
        assert tokenizer.convert_ids_to_tokens([995, EOS, PAD]) == ["Ġworld", "<|endoftext|>", "<|pad|>"]
        assert tokenizer.convert_tokens_to_ids(["Ġworld", "<|pad|>"]) == [995, PAD]
        assert hf_ids(tokenizer, "no specials added") == hf_ids(tokenizer, "no specials") + hf_ids(
            tokenizer, " added"
        )


def test_decoding_broken_utf8_matches(fast, slow):
    ids = hf_ids(fast, "👋 é 你")
    cases = [ids[:1], ids[1:], ids[:1] + [EOS] + ids[1:], [PAD] + ids[::-1], [EOS, PAD]]
    for case in cases:
        assert fast.decode(case) == slow.decode(case)
    assert "\ufffd" in slow.decode(ids[:1])  # half an emoji is U+FFFD, not an exception


def test_trained_tokenizer_with_gpt4_pattern_and_extra_special(trained_bpe):
    fast = ScratchGPTTokenizerFast.from_bpe(trained_bpe)
    slow = ScratchGPTTokenizer.from_bpe(trained_bpe)
    texts = [*TEXTS, "<|user|> asks\r\n\r\nthe model<|endoftext|>", "numbers 1234567 and   spaces\n\n\t"]
    for text in texts:
        ids = hf_ids(fast, text)
        assert hf_ids(slow, text) == ids
        assert fast.decode(ids) == slow.decode(ids) == text
        ordinary = text.replace("<|user|>", "").replace("<|endoftext|>", "").replace("<|pad|>", "")
        assert hf_ids(fast, ordinary) == trained_bpe.encode_ordinary(ordinary)
    assert hf_ids(fast, "<|user|>") == [trained_bpe.special_tokens["<|user|>"]]
    assert fast.pad_token_id == slow.pad_token_id == trained_bpe.vocab_size == len(fast) - 1
    assert fast.all_special_tokens == slow.all_special_tokens == ["<|endoftext|>", "<|pad|>", "<|user|>"]
    assert fast.decode(hf_ids(fast, "a<|user|>b"), skip_special_tokens=True) == "ab"
    assert slow.decode(hf_ids(slow, "a<|user|>b"), skip_special_tokens=True) == "ab"


def test_a_bpe_tokenizer_folder_loads_in_both_classes(trained_bpe, tmp_path):
    trained_bpe.save(tmp_path)  # no tokenizer_config.json: the BPE's files only
    text = "<|user|> hello there<|endoftext|>"
    expected = trained_bpe.encode(text, allowed_special="all")
    for cls in (ScratchGPTTokenizerFast, ScratchGPTTokenizer):
        assert hf_ids(cls.from_pretrained(tmp_path), text) == expected


def test_bpe_without_specials_gets_eos_and_pad_appended():
    bpe = BPETokenizer.train("low lower lowest newer wider " * 20, 270, special_tokens=())
    fast = ScratchGPTTokenizerFast.from_bpe(bpe)
    slow = ScratchGPTTokenizer.from_bpe(bpe)
    for tokenizer in (fast, slow):
        assert tokenizer.eos_token_id == 270 and tokenizer.pad_token_id == 271
        assert len(tokenizer) == 272
        assert hf_ids(tokenizer, "lowest<|endoftext|>") == [*bpe.encode_ordinary("lowest"), 270]


def test_truncation_to_model_max_length(gpt2_bpe):
    for cls in (ScratchGPTTokenizerFast, ScratchGPTTokenizer):
        tokenizer = cls.from_bpe(gpt2_bpe, model_max_length=8)
        assert len(tokenizer("one two three " * 10, truncation=True)["input_ids"]) == 8


def test_tokenizers_pickle(fast, slow):
    for tokenizer in (fast, slow):
        clone = pickle.loads(pickle.dumps(tokenizer))
        assert type(clone) is type(tokenizer)
        assert hf_ids(clone, TEXTS[7]) == hf_ids(tokenizer, TEXTS[7])


# --------------------------------------------------------------------------------------------------------
# Save / load / Auto / remote code
# --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_save_load_keeps_class_padding_side_and_max_length(gpt2_bpe, fast, tmp_path):
    text = TEXTS[11] + TEXTS[12]
    for cls in (ScratchGPTTokenizerFast, ScratchGPTTokenizer):
        folder = tmp_path / cls.__name__
        cls.from_bpe(gpt2_bpe, padding_side="left", model_max_length=256).save_pretrained(folder)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == cls.__name__
        assert config["padding_side"] == "left" and config["model_max_length"] == 256
        for loader in (cls, ScratchGPTTokenizerFast):
            loaded = loader.from_pretrained(folder)
            assert type(loaded) is loader
            assert (loaded.padding_side, loaded.model_max_length) == ("left", 256)
            assert (loaded.eos_token_id, loaded.pad_token_id, len(loaded)) == (EOS, PAD, 50258)
            assert hf_ids(loaded, text) == hf_ids(fast, text)
            batch = loaded(["a", "a b c"], padding=True)
            assert batch["input_ids"][0][:2] == [PAD, PAD]  # left padding survived the round trip
    # The slow tokenizer's folder is also a BPETokenizer folder.
    assert BPETokenizer.load(tmp_path / "ScratchGPTTokenizer").encode_ordinary(
        TEXTS[8]
    ) == gpt2_bpe.encode_ordinary(TEXTS[8])


def test_save_pretrained_writes_remote_code_and_auto_map(fast, tmp_path):
    fast.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"] == [
        "tokenization_scratch_gpt.ScratchGPTTokenizer",
        "tokenization_scratch_gpt.ScratchGPTTokenizerFast",
    ]
    for name in ("tokenization_scratch_gpt.py", "bpe.py", "tokenizer.json"):
        assert (tmp_path / name).is_file(), name


def test_auto_tokenizer_returns_our_class(fast, tmp_path):
    from transformers import AutoModel  # noqa: F401  (loading the Auto model classes registers scratch_gpt's)

    from scratch_gpt import ScratchGPTConfig

    fast.save_pretrained(tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert type(loaded) is ScratchGPTTokenizerFast
    assert hf_ids(loaded, TEXTS[11]) == hf_ids(fast, TEXTS[11])

    # A model folder: config.json of model_type scratch_gpt next to the tokenizer files.
    ScratchGPTConfig(vocab_size=len(fast), n_positions=64, n_embd=32, n_layer=1, n_head=2).save_pretrained(
        tmp_path / "model"
    )
    fast.save_pretrained(tmp_path / "model")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert type(loaded) is ScratchGPTTokenizerFast
    assert (loaded.pad_token_id, loaded.model_max_length) == (PAD, 1024)


def run_child(tmp_path, code, *args):
    """Run ``code`` in a fresh ``python -I`` where ``import scratch_gpt`` fails; returns its JSON output."""
    (tmp_path / "child.py").write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-I", "child.py", *map(str, args)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.slow
def test_saved_tokenizer_loads_without_the_package(fast, slow, tmp_path):
    fast.save_pretrained(tmp_path / "fast")
    slow.save_pretrained(tmp_path / "slow")
    result = run_child(
        tmp_path,
        """
        import sys
        sys.modules["scratch_gpt"] = None  # the package must not be importable
        import json
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        texts = json.loads(sys.argv[1])
        out = {}
        for name in ("fast", "slow"):
            remote = AutoTokenizer.from_pretrained(name, trust_remote_code=True)
            plain = PreTrainedTokenizerFast.from_pretrained(name)
            out[name] = {
                "remote_module": type(remote).__module__,
                "remote_class": type(remote).__name__,
                "remote_ids": remote(texts)["input_ids"],
                "plain_class": type(plain).__name__,
                "plain_ids": plain(texts)["input_ids"],
                "plain_pad": [plain.pad_token_id, plain.padding_side, plain.model_max_length],
            }
        json.dump(out, open("out.json", "w"))
        """,
        json.dumps(TEXTS),
    )
    expected = fast(TEXTS)["input_ids"]
    for name in ("fast", "slow"):
        got = result[name]
        assert got["remote_module"].startswith("transformers_modules."), got["remote_module"]
        assert got["remote_class"] == {"fast": "ScratchGPTTokenizerFast", "slow": "ScratchGPTTokenizer"}[name]
        assert got["remote_ids"] == expected
        assert got["plain_class"] in ("PreTrainedTokenizerFast", "TokenizersBackend")
        assert got["plain_ids"] == expected
        assert got["plain_pad"] == [PAD, "right", 1024]


@pytest.mark.slow
def test_auto_tokenizer_after_plain_import(fast, tmp_path):
    fast.save_pretrained(tmp_path / "tok")
    result = run_child(
        tmp_path,
        """
        import json
        import scratch_gpt
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained("tok")
        json.dump([type(tokenizer).__module__, type(tokenizer).__name__], open("out.json", "w"))
        """,
    )
    assert result == ["scratch_gpt.tokenization_scratch_gpt", "ScratchGPTTokenizerFast"]


# --------------------------------------------------------------------------------------------------------
# Collators, datasets, chat templates
# --------------------------------------------------------------------------------------------------------


def test_language_modeling_collator_keeps_eos_labels(fast, slow):
    examples = ["short<|endoftext|>", "a somewhat longer example text<|endoftext|>"]
    for tokenizer in (fast, slow):
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        batch = collator([tokenizer(text) for text in examples])
        ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
        short = len(hf_ids(tokenizer, examples[0]))
        assert ids[0, short - 1].item() == EOS and labels[0, short - 1].item() == EOS  # real EOS is learned
        assert labels[1, -1].item() == EOS
        assert (ids[0, short:] == PAD).all() and (labels[0, short:] == -100).all()  # pads are ignored
        assert (mask[0, short:] == 0).all() and (mask[0, :short] == 1).all()
        assert ((labels == -100) == (ids == PAD)).all()


def test_padding_collator_pads_with_pad_token(gpt2_bpe):
    for padding_side in ("right", "left"):
        for cls in (ScratchGPTTokenizerFast, ScratchGPTTokenizer):
            tokenizer = cls.from_bpe(gpt2_bpe, padding_side=padding_side)
            features = [{**tokenizer(text), "label": i} for i, text in enumerate(["a b c d", "a"])]
            batch = DataCollatorWithPadding(tokenizer)(features)
            pads = [PAD, PAD, PAD]
            row = batch["input_ids"][1].tolist()
            assert (row[1:] if padding_side == "right" else row[:-1]) == pads
            assert batch["attention_mask"][1].sum().item() == 1
            assert batch["labels"].tolist() == [0, 1]


@pytest.mark.slow
def test_dataset_map_with_two_processes_gives_same_ids(trained_bpe):
    from datasets import Dataset

    lines = [line for line in data_file("the-verdict.txt").read_text(encoding="utf-8").splitlines() if line]
    dataset = Dataset.from_dict({"text": lines[:120]})
    for tokenizer in (
        ScratchGPTTokenizerFast.from_bpe(trained_bpe),
        ScratchGPTTokenizer.from_bpe(trained_bpe),
    ):

        def tokenize(batch, tokenizer=tokenizer):
            return tokenizer(batch["text"])

        one = dataset.map(tokenize, batched=True, batch_size=16)
        two = dataset.map(tokenize, batched=True, batch_size=16, num_proc=2)
        assert one["input_ids"] == two["input_ids"] == tokenizer(lines[:120])["input_ids"]


def test_a_chat_template_can_be_added_and_saved(gpt2_bpe, tmp_path):
    tokenizer = ScratchGPTTokenizerFast.from_bpe(gpt2_bpe)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
    )
    tokenizer.save_pretrained(tmp_path)
    loaded = ScratchGPTTokenizerFast.from_pretrained(tmp_path)
    ids = loaded.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True, return_dict=False)
    assert ids == hf_ids(tokenizer, "user: Hi") + [EOS]


# --------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pad_token": "<|endoftext|>"}, "pad_token must differ from eos_token"),
        ({"padding_side": "middle"}, "padding_side must be 'right'"),
        ({"model_max_length": 0}, "model_max_length must be a positive int"),
        ({"model_max_length": True}, "model_max_length must be a positive int"),
        ({"model_max_length": "1024"}, "model_max_length must be a positive int"),
        ({"eos_token": ""}, "eos_token must be a non-empty string"),
        ({"pad_token": 7}, "pad_token must be a non-empty string"),
        ({"pad_token": "Ġthe"}, "pad_token 'Ġthe' is an ordinary token"),
        ({"eos_token": "hello"}, "eos_token 'hello' is an ordinary token"),
    ],
)
def test_from_bpe_rejects_bad_arguments(gpt2_bpe, kwargs, message):
    for cls in (ScratchGPTTokenizerFast, ScratchGPTTokenizer):
        with pytest.raises(ValueError, match=message):
            cls.from_bpe(gpt2_bpe, **kwargs)


def test_from_bpe_rejects_a_non_bpe():
    for cls in (ScratchGPTTokenizerFast, ScratchGPTTokenizer):
        with pytest.raises(TypeError, match="bpe must be a BPETokenizer"):
            cls.from_bpe("encoder.json")
    with pytest.raises(TypeError, match="bpe must be a BPETokenizer"):
        ScratchGPTTokenizer(bpe="encoder.json")


def test_slow_tokenizer_needs_files_or_a_bpe():
    with pytest.raises(ValueError, match="needs a BPETokenizer"):
        ScratchGPTTokenizer()


def test_loading_a_folder_without_tokenizer_files_names_them(tmp_path):
    (tmp_path / "notes.txt").write_text("not a tokenizer")
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json not found .*notes\.txt"):
        ScratchGPTTokenizerFast.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"vocab\.json, merges\.txt not found"):
        ScratchGPTTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ScratchGPTTokenizerFast.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="is a file"):
        ScratchGPTTokenizer.from_pretrained(tmp_path / "notes.txt")


def test_slow_tokenizer_explains_a_fast_only_folder(fast, tmp_path):
    fast.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="only tokenizer.json loads with ScratchGPTTokenizerFast"):
        ScratchGPTTokenizer.from_pretrained(tmp_path)


def test_corrupt_tokenizer_json_names_the_file(fast, tmp_path):
    fast.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"tokenizer\.json' is corrupt \(not valid JSON"):
        ScratchGPTTokenizerFast.from_pretrained(tmp_path)


def test_slow_save_rejects_a_filename_prefix(slow, tmp_path):
    with pytest.raises(ValueError, match="cannot add a filename_prefix"):
        slow.save_pretrained(tmp_path, filename_prefix="mine")


def test_is_plain_fast_tokenizer_subclass(fast):
    assert isinstance(fast, PreTrainedTokenizerFast)
    assert "__init__" not in ScratchGPTTokenizerFast.__dict__  # tokenizer.json must be honoured on reload
