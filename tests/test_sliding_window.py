"""Tests for scratch_gpt.data.sliding_window: the book's sliding-window dataset and reading corpora.

Known answers come from the book's chapter 2 and 5 outputs on the-verdict.txt, with tiktoken's GPT-2
encoding (built from the local encoder.json/vocab.bpe, never downloaded) as the tokenizer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import data_file

from scratch_gpt.data.sliding_window import (
    GPTDatasetV1,
    TextEncoder,
    create_dataloader_v1,
    iter_documents,
    load_corpus,
    num_windows,
    read_text_file,
    tokenize_documents,
    train_val_split,
)

GPT2_SPLIT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class ByteTokenizer:
    """A tiny stand-in tokenizer: one id per UTF-8 byte, eos = 256."""

    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def gpt2_encoding():
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data_file("vocab.bpe")), encoder_json_file=str(data_file("encoder.json"))
    )
    return tiktoken.Encoding(
        name="gpt2-local", pat_str=GPT2_SPLIT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )


@pytest.fixture(scope="module")
def verdict():
    return data_file("the-verdict.txt").read_text(encoding="utf-8"), gpt2_encoding()


def book_windows(ids, max_length, stride):
    """The book's GPTDatasetV1 loop, written out as the reference oracle."""
    inputs, targets = [], []
    for i in range(0, len(ids) - max_length, stride):
        inputs.append(ids[i : i + max_length])
        targets.append(ids[i + 1 : i + max_length + 1])
    return inputs, targets


# ---------------------------------------------------------------- the book's known answers


def test_book_first_batches_stride_1(verdict):
    text, enc = verdict
    loader = create_dataloader_v1(text, batch_size=1, max_length=4, stride=1, shuffle=False, tokenizer=enc)
    it = iter(loader)
    x, y = next(it)
    assert x.tolist() == [[40, 367, 2885, 1464]]
    assert y.tolist() == [[367, 2885, 1464, 1807]]
    x2, y2 = next(it)
    assert x2.tolist() == [[367, 2885, 1464, 1807]]
    assert y2.tolist() == [[2885, 1464, 1807, 3619]]


def test_book_batch_of_8_stride_4(verdict):
    text, enc = verdict
    loader = create_dataloader_v1(text, batch_size=8, max_length=4, stride=4, shuffle=False, tokenizer=enc)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (8, 4)
    assert x.dtype == torch.long
    assert x.tolist() == [
        [40, 367, 2885, 1464],
        [1807, 3619, 402, 271],
        [10899, 2138, 257, 7026],
        [15632, 438, 2016, 257],
        [922, 5891, 1576, 438],
        [568, 340, 373, 645],
        [1049, 5975, 284, 502],
        [284, 3285, 326, 11],
    ]
    assert y[:, :-1].tolist() == x[:, 1:].tolist()
    assert y[-1].tolist() == [3285, 326, 11, 287]


def test_book_chapter5_split_and_batch_counts(verdict):
    text, enc = verdict
    train_text, val_text = train_val_split(text, 0.9)
    assert len(train_text) == int(0.9 * len(text)) and train_text + val_text == text
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(
        train_text, batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True, tokenizer=enc
    )
    val_loader = create_dataloader_v1(
        val_text, batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False, tokenizer=enc
    )
    assert len(train_loader) == 9 and len(val_loader) == 1
    train_tokens = sum(x.numel() for x, _ in train_loader)
    val_tokens = sum(x.numel() for x, _ in val_loader)
    assert (train_tokens, val_tokens) == (4608, 512)  # the book prints these


def test_windows_match_book_loop_oracle():
    ids = torch.randint(0, 1000, (97,), generator=torch.Generator().manual_seed(0)).tolist()
    for max_length, stride in [(1, 1), (4, 1), (8, 3), (16, 16), (96, 5), (50, 100)]:
        ds = GPTDatasetV1(ids, max_length=max_length, stride=stride)
        inputs, targets = book_windows(ids, max_length, stride)
        assert len(ds) == len(inputs) == num_windows(len(ids), max_length, stride)
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.tolist() == inputs[i] and y.tolist() == targets[i]
        assert ds[-1][0].tolist() == inputs[-1]


def test_minimum_corpus_is_max_length_plus_one():
    ds = GPTDatasetV1(list(range(5)), max_length=4, stride=1)
    assert len(ds) == 1
    assert ds[0][0].tolist() == [0, 1, 2, 3] and ds[0][1].tolist() == [1, 2, 3, 4]
    with pytest.raises(IndexError):
        ds[1]


def test_tokenizer_protocol_and_tensor_input():
    assert isinstance(ByteTokenizer(), TextEncoder)
    ds_text = GPTDatasetV1("hello world", ByteTokenizer(), max_length=4, stride=2)
    ds_ids = GPTDatasetV1(torch.tensor(list(b"hello world"), dtype=torch.int32), max_length=4, stride=2)
    assert len(ds_text) == len(ds_ids) == 4
    assert ds_text[3][1].tolist() == ds_ids[3][1].tolist() == list(b"orld")
    for dtype in (np.uint16, np.uint32, np.int64):  # what token files hold
        ds_np = GPTDatasetV1(
            np.frombuffer(b"hello world", dtype=np.uint8).astype(dtype), max_length=4, stride=2
        )
        assert ds_np[3][1].tolist() == list(b"orld") and ds_np[3][1].dtype == torch.long


def test_shuffle_reproducible_with_generator_and_workers_agree():
    ids = list(range(200))
    a = [
        x.tolist() for x, _ in create_dataloader_v1(ids, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ]
    b = [
        x.tolist() for x, _ in create_dataloader_v1(ids, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ]
    assert a == b and a != sorted(a)
    seq = [x.tolist() for x, _ in create_dataloader_v1(ids, 4, 8, 8, shuffle=False)]
    par = [x.tolist() for x, _ in create_dataloader_v1(ids, 4, 8, 8, shuffle=False, num_workers=2)]
    assert seq == par and len(seq) == 6


# ---------------------------------------------------------------- bad input


def test_corpus_too_short_is_a_clear_error():
    with pytest.raises(ValueError, match=r"has 4 tokens.*max_length \+ 1 = 5"):
        GPTDatasetV1([1, 2, 3, 4], max_length=4, stride=1)
    with pytest.raises(ValueError, match="has 0 tokens"):
        GPTDatasetV1("", ByteTokenizer(), max_length=4, stride=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_length": 0}, "max_length must be a positive integer"),
        ({"stride": 0}, "stride must be a positive integer"),
        ({"max_length": 2.5}, "max_length must be a positive integer"),
        ({"stride": True}, "stride must be a positive integer"),
    ],
)
def test_bad_window_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTDatasetV1(list(range(10)), **{"max_length": 4, "stride": 1, **kwargs})


@pytest.mark.parametrize(
    "ids, match",
    [
        ([1.5, 2.0, 3.0], "must be integers"),
        ([1, -2, 3], "must be >= 0"),
        ([[1, 2], [3, 4]], "must be 1-D"),
        (["a", "b"], "flat sequence of integers"),
    ],
)
def test_bad_token_ids(ids, match):
    with pytest.raises(ValueError, match=match):
        GPTDatasetV1(ids, max_length=1, stride=1)


def test_text_without_tokenizer():
    with pytest.raises(ValueError, match="no tokenizer"):
        GPTDatasetV1("some text", max_length=2, stride=1)


def test_dataloader_bad_arguments():
    with pytest.raises(ValueError, match="fewer than batch_size=4"):
        create_dataloader_v1(list(range(10)), batch_size=4, max_length=4, stride=4)
    assert (
        len(create_dataloader_v1(list(range(10)), batch_size=4, max_length=4, stride=4, drop_last=False)) == 1
    )
    with pytest.raises(ValueError, match="num_workers"):
        create_dataloader_v1(list(range(10)), batch_size=1, max_length=4, stride=4, num_workers=-1)
    with pytest.raises(ValueError, match="batch_size"):
        create_dataloader_v1(list(range(10)), batch_size=0, max_length=4, stride=4)


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1, "0.9"])
def test_train_val_split_bad_ratio(ratio):
    with pytest.raises(ValueError, match="train_ratio"):
        train_val_split("abcdef", ratio)


# ---------------------------------------------------------------- reading corpora


def test_undecodable_bytes_name_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abc\xff\xfedef")
    with pytest.raises(ValueError, match=r"bad\.txt: byte offset 3 .*errors='replace'"):
        read_text_file(path)
    assert read_text_file(path, errors="replace") == "abc\ufffd\ufffddef"
    with pytest.raises(ValueError, match="errors must be one of"):
        read_text_file(path, errors="ignore")
    with pytest.raises(ValueError, match="unknown text encoding"):
        read_text_file(path, encoding="no-such-codec")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_text_file(tmp_path / "missing.txt")


def test_undecodable_bytes_in_a_directory_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("caf\u00e9 ok\n".encode() + b"\x80")
    with pytest.raises(ValueError, match=r"b\.txt: byte offset 9"):
        list(iter_documents(tmp_path))
    assert list(iter_documents(tmp_path, errors="replace")) == ["fine", "caf\u00e9 ok\n\ufffd"]


def test_directory_is_read_recursively_sorted_with_pattern(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("B", encoding="utf-8")
    (tmp_path / "a.txt").write_text("A", encoding="utf-8")
    (tmp_path / "sub" / "c.txt").write_text("C", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "skip.md").write_text("M", encoding="utf-8")
    assert list(iter_documents(tmp_path)) == ["A", "B", "C"]
    assert list(iter_documents(tmp_path, pattern="*.md")) == ["M"]
    with pytest.raises(FileNotFoundError, match=r"no files matching '\*\.rst'"):
        list(iter_documents(tmp_path, pattern="*.rst"))


def test_jsonl_text_field(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [{"text": "one", "id": 1}, {"text": "two"}, {"body": "x", "text": ""}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
    assert list(iter_documents(path)) == ["one", "two"]
    other = tmp_path / "other.jsonl"
    other.write_text('{"content": "c1"}\n{"content": "c2"}\n', encoding="utf-8")
    assert list(iter_documents(other, text_field="content")) == ["c1", "c2"]
    with pytest.raises(ValueError, match=r"line 1: no 'text' field \(found \['content'\]\)"):
        list(iter_documents(other))


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"text": "ok"}\n{"text": oops}\n', "line 2: not valid JSON"),
        ('{"text": 5}\n', "line 1: field 'text' must be a string"),
        ('["text"]\n', r"line 1: no 'text' field \(found list\)"),
    ],
)
def test_jsonl_bad_lines(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        list(iter_documents(path))


def test_jsonl_undecodable_bytes(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "\xc3("}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: byte offset 24 \(line 2\)"):
        list(iter_documents(path))


def test_local_datasets_dataset_and_saved_dir(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["x y", "", "z"], "n": [1, 2, 3]})
    assert list(iter_documents(ds)) == ["x y", "z"]
    dd = datasets.DatasetDict({"train": ds, "validation": ds.select([2])})
    dd.save_to_disk(str(tmp_path / "saved"))
    assert list(iter_documents(tmp_path / "saved")) == ["x y", "z"]
    assert list(iter_documents(tmp_path / "saved", split="validation")) == ["z"]
    with pytest.raises(ValueError, match=r"splits \['train', 'validation'\], not 'test'"):
        list(iter_documents(dd, split="test"))
    with pytest.raises(ValueError, match=r"not 'body'"):
        list(iter_documents(ds, text_field="body"))


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_documents(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="cannot read documents from a int"):
        list(iter_documents(42))


def test_tokenize_documents_adds_eos_after_each(tmp_path):
    tok = ByteTokenizer()
    assert tokenize_documents(["ab", "c"], tok, eos_id=256) == [97, 98, 256, 99, 256]
    (tmp_path / "a.txt").write_text("ab", encoding="utf-8")
    (tmp_path / "b.txt").write_text("c", encoding="utf-8")
    assert load_corpus(tmp_path, tok, 256) == [97, 98, 256, 99, 256]
    with pytest.raises(ValueError, match="eos_id must be a token id"):
        tokenize_documents(["a"], tok, eos_id=None)
    with pytest.raises(ValueError, match="encode"):
        tokenize_documents(["a"], object(), eos_id=0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        load_corpus(tmp_path / "empty", tok, 256)
