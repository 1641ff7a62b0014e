"""Tests for scratch_gpt.data.hf_datasets: corpora as ``datasets``, tokenized and packed into blocks."""

from __future__ import annotations

import json

import pytest
from conftest import data_file
from test_sliding_window import ByteTokenizer, gpt2_encoding

from scratch_gpt.data.hf_datasets import encode_batch, load_text_dataset, tokenize_and_pack

datasets = pytest.importorskip("datasets")


def hf_gpt2_tokenizer():
    """GPT-2's tokenizer as a transformers fast tokenizer, built from the local files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = models.BPE.from_file(str(data_file("encoder.json")), str(data_file("vocab.bpe")))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def test_load_text_dataset_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    ds = load_text_dataset(tmp_path)
    assert ds.column_names == ["text"] and ds["text"] == ["first", "second"]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": t}) for t in ["x", "y", "z"]), encoding="utf-8")
    assert load_text_dataset(jsonl, text_field="body")["body"] == ["x", "y", "z"]
    assert load_text_dataset(ds) is ds


def test_pack_is_the_document_stream_cut_into_blocks():
    docs = ["hello", "wide", "world of blocks"]
    ds = datasets.Dataset.from_dict({"text": docs, "id": [1, 2, 3]})
    packed = tokenize_and_pack(ds, ByteTokenizer(), block_size=4, eos_id=256)
    stream = []
    for d in docs:
        stream += list(d.encode()) + [256]
    assert packed.column_names == ["input_ids", "labels"]
    assert len(packed) == len(stream) // 4 == 6
    assert packed["input_ids"] == [stream[i : i + 4] for i in range(0, 24, 4)]
    assert packed["labels"] == packed["input_ids"]


def test_remainder_is_dropped_per_map_batch():
    docs = ["abcde", "fghij", "klmno"]  # 6 ids each with eos
    ds = datasets.Dataset.from_dict({"text": docs})
    packed = tokenize_and_pack(ds, ByteTokenizer(), block_size=4, eos_id=256, batch_size=1)
    assert len(packed) == 3  # one block per document, 2 ids of each dropped
    assert packed["input_ids"][1] == list(b"fghi")


def test_the_verdict_blocks_with_tiktoken_and_hf_tokenizer_agree():
    text = data_file("the-verdict.txt").read_text(encoding="utf-8")
    ds = datasets.Dataset.from_dict({"text": [text]})
    packed = tokenize_and_pack(ds, gpt2_encoding(), block_size=256, eos_id=50256)
    assert len(packed) == 5146 // 256 == 20
    assert packed["input_ids"][0][:4] == [40, 367, 2885, 1464]
    hf_packed = tokenize_and_pack(ds, hf_gpt2_tokenizer(), block_size=256, eos_id=50256)
    assert hf_packed["input_ids"] == packed["input_ids"]
    assert encode_batch(hf_gpt2_tokenizer(), ["Hello,"]) == [[15496, 11]]


def test_num_proc_gives_the_same_rows():
    docs = [f"document number {i} " * (i % 7 + 1) for i in range(200)]
    ds = datasets.Dataset.from_dict({"text": docs})
    one = tokenize_and_pack(ds, gpt2_encoding(), block_size=16, eos_id=50256, batch_size=50)
    two = tokenize_and_pack(ds, gpt2_encoding(), block_size=16, eos_id=50256, batch_size=50, num_proc=2)
    assert len(one) > 50
    assert one["input_ids"] == two["input_ids"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block_size": 0}, "block_size must be a positive integer"),
        ({"batch_size": -1}, "batch_size must be a positive integer"),
        ({"num_proc": 0}, "num_proc must be None or a positive integer"),
        ({"eos_id": None}, "eos_id must be a token id"),
        ({"text_field": "body"}, r"columns \['text'\], not 'body'"),
        ({"block_size": 100}, "no complete block of block_size=100"),
    ],
)
def test_bad_arguments(kwargs, match):
    ds = datasets.Dataset.from_dict({"text": ["short"]})
    args = {"block_size": 2, "eos_id": 256, **kwargs}
    with pytest.raises(ValueError, match=match):
        tokenize_and_pack(ds, ByteTokenizer(), **args)


def test_bad_dataset_and_tokenizer(tmp_path):
    with pytest.raises(ValueError, match="needs a datasets.Dataset, got list"):
        tokenize_and_pack(["text"], ByteTokenizer(), 4, eos_id=0)
    ds = datasets.Dataset.from_dict({"text": ["short"]})
    with pytest.raises(ValueError, match="encode"):
        tokenize_and_pack(ds, object(), 4, eos_id=0)
    with pytest.raises(ValueError, match="not 'body'"):
        load_text_dataset(ds, text_field="body")
    (tmp_path / "e.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        load_text_dataset(tmp_path / "e.txt")


# ---------------------------------------------------------------- the Trainer example built on these helpers


def _trainer_example():
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "pretrain_with_trainer", REPO_ROOT / "examples" / "pretrain_with_trainer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trainer_example_trains_with_exact_gradient_accumulation(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    example = _trainer_example()
    common = ["--corpus", str(data_file("the-verdict.txt")), "--vocab-size", "300", "--context-length", "16",
              "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--max-steps", "3", "--eval-steps", "3",
              "--logging-steps", "1", "--warmup-steps", "1"]  # fmt: skip
    big = example.main([*common, "--output", str(tmp_path / "a"), "--batch-size", "4"])
    acc = example.main([*common, "--output", str(tmp_path / "b"), "--batch-size", "2", "--grad-accum", "2"])
    assert big["steps"] == acc["steps"] == 3
    assert acc["train_losses"] == pytest.approx(big["train_losses"], abs=1e-5)
    assert acc["eval_loss"] == pytest.approx(big["eval_loss"], abs=1e-5)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name
    history = json.loads((tmp_path / "a" / "training_history.json").read_text())
    assert history["steps"] == [3] and history["tokens_seen"] == [3 * 4 * 16]
