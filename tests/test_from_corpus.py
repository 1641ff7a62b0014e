"""Tests for scratch_gpt.training.from_corpus: corpus -> tokenizer -> token file -> model -> pretrain, in one call."""

from __future__ import annotations

import pytest
from conftest import data_file

from scratch_gpt.data.token_files import open_token_file
from scratch_gpt.training.from_corpus import (
    CorpusConfig,
    load_tokenizer,
    pretrain_from_corpus,
    train_tokenizer,
)
from scratch_gpt.training.pretrain import PretrainConfig

TINY = dict(vocab_size=300, n_layer=1, n_embd=32, n_head=2, context_length=16)
QUIET = dict(batch_size=4, eval_interval=3, eval_batches=2, sample_prompt=None, show_progress=False)
CORPUS_FIELDS = {"tokenizer", "vocab_size", "preset", "n_layer", "n_embd", "n_head", "dropout", "context_length",
                 "stride", "val_fraction", "text_field", "pattern", "decode_errors"}  # fmt: skip


def run(corpus, output_dir, **settings):
    """``pretrain_from_corpus`` with the settings split between its two config objects."""
    corpus_settings = {k: v for k, v in settings.items() if k in CORPUS_FIELDS}
    train_settings = {k: v for k, v in settings.items() if k not in CORPUS_FIELDS}
    return pretrain_from_corpus(
        PretrainConfig(output_dir=output_dir, **train_settings), CorpusConfig(corpus, **corpus_settings)
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    text = data_file("the-verdict.txt").read_text(encoding="utf-8")
    (folder / "a.txt").write_text(text[:10000], encoding="utf-8")
    (folder / "b.txt").write_text(text[10000:], encoding="utf-8")
    return folder


def test_trains_tokenizer_writes_token_file_and_a_loadable_model(tmp_path, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    result = run(corpus, out, max_steps=3, **TINY, **QUIET)
    assert result.step == 3
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 301  # 300 BPE tokens (with <|endoftext|>) + the distinct <|pad|>
    ids, info = open_token_file(out / "data" / "corpus.bin")
    assert info.num_documents == 2 and info.dtype == "uint16" and info.vocab_size == 301
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert int((ids == eos).sum()) == 2  # one after each document
    text = data_file("the-verdict.txt").read_text(encoding="utf-8")
    assert ids[:20].tolist() == tok(text[:10000], add_special_tokens=False)["input_ids"][:20]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == 301 and model.config.n_positions == 16
    assert model.config.eos_token_id == eos and model.config.pad_token_id == tok.pad_token_id
    assert (out / "tokenizer" / "tokenizer.json").is_file()


def test_resume_reuses_tokenizer_and_token_file(tmp_path, corpus):
    out = tmp_path / "run"
    run(corpus, out, max_steps=3, save_interval=3, **TINY, **QUIET)
    token_file = out / "data" / "corpus.bin"
    before = (token_file.stat().st_mtime_ns, (out / "tokenizer" / "tokenizer.json").read_text())
    result = run(corpus, out, max_steps=6, save_interval=3, resume=True, **TINY, **QUIET)
    assert result.resumed_from.name == "checkpoint-00000003" and result.step == 6
    assert (token_file.stat().st_mtime_ns, (out / "tokenizer" / "tokenizer.json").read_text()) == before


def test_gpt2_tokenizer_folder(tmp_path):
    tok = load_tokenizer(data_file("encoder.json").parent, model_max_length=64)  # encoder.json + vocab.bpe
    assert tok("Hello,", add_special_tokens=False)["input_ids"] == [15496, 11]
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 50256 and tok.model_max_length == 64
    result = run(
        data_file("the-verdict.txt"), tmp_path / "run", tokenizer=tok, n_layer=1, n_embd=16, n_head=2,
        context_length=16, max_steps=1, save_interval=None, **{**QUIET, "batch_size": 2},
    )  # fmt: skip
    ids, _ = open_token_file(tmp_path / "run" / "data" / "corpus.bin")
    assert ids[:4].tolist() == [40, 367, 2885, 1464] and len(ids) == 5146  # the book's 5,145 tokens + eos
    assert result.step == 1


def test_preset_sizes_reach_the_model(tmp_path, corpus, monkeypatch):
    from types import SimpleNamespace

    import scratch_gpt.modeling_scratch_gpt as modeling
    import scratch_gpt.training.from_corpus as gpt_train

    seen = {}
    monkeypatch.setattr(modeling, "ScratchGPTForCausalLM", lambda config: SimpleNamespace(config=config))
    monkeypatch.setattr(gpt_train, "pretrain", lambda model, *a, **k: seen.setdefault("config", model.config))
    run(corpus, tmp_path / "run", preset="gpt2-medium", max_steps=1, **TINY, **QUIET)
    config = seen["config"]
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions) == (24, 1024, 16, 16)
    assert config.vocab_size == 301


def test_train_tokenizer_adds_pad():
    tok = train_tokenizer(["hello world " * 50, "other words here " * 50], 270, model_max_length=32)
    assert len(tok) == 271 and tok.pad_token == "<|pad|>" and tok.eos_token == "<|endoftext|>"


# ---------------------------------------------------------------- bad input


def test_folder_without_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")


def test_existing_run_without_resume_is_refused_before_any_work(tmp_path, corpus):
    out = tmp_path / "run"
    run(corpus, out, max_steps=2, save_interval=2, **TINY, **QUIET)
    with pytest.raises(FileExistsError, match="already holds checkpoints of an earlier run; resume it"):
        run(corpus, out, max_steps=2, **TINY, **QUIET)


@pytest.mark.filterwarnings("ignore:the corpus ran out of pairs")
def test_undecodable_corpus_and_too_short_corpus(tmp_path):
    bad = tmp_path / "bad.txt"
    verdict = data_file("the-verdict.txt").read_bytes()
    bad.write_bytes(verdict + b"\xff")
    with pytest.raises(ValueError, match=rf"bad\.txt: byte offset {len(verdict)} "):
        run(bad, tmp_path / "r1", max_steps=1, **TINY, **QUIET)
    assert not (tmp_path / "r1" / "tokenizer").exists()  # failed while reading, before anything was saved
    result = run(
        bad, tmp_path / "r2", decode_errors="replace", max_steps=1, save_interval=None, **TINY, **QUIET
    )
    assert result.step == 1
    short = tmp_path / "short.txt"
    short.write_text("just a few words, far too short for windows of sixteen tokens " * 2, encoding="utf-8")
    with pytest.raises(ValueError, match=r"the val split of .* tokens, but one training window needs"):
        run(short, tmp_path / "r3", max_steps=1, **{**TINY, "vocab_size": 270}, **QUIET)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"dropout": float("nan")}, "dropout must be a finite number"),
        ({"val_fraction": 1.0}, "val_fraction must be a finite number > 0 and < 1"),
        ({"stride": 0}, "stride must be a positive integer or None"),
    ],
)
def test_corpus_config_rejects_bad_settings(settings, match):
    with pytest.raises(ValueError, match=match):
        CorpusConfig("corpus.txt", **settings)


def test_pretrain_config_rejects_nan_and_infinity(tmp_path):
    for name in ("weight_decay", "grad_clip", "time_limit_s", "min_lr"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number"):
            PretrainConfig(output_dir=tmp_path, max_steps=1, **{name: float("nan")})
    with pytest.raises(ValueError, match="adam_betas must be a finite number"):
        PretrainConfig(output_dir=tmp_path, max_steps=1, adam_betas=(0.9, float("inf")))
