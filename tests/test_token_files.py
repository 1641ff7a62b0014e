"""Tests for scratch_gpt.data.token_files: memory-mapped token files, their windows and train/val split."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import data_file
from test_sliding_window import ByteTokenizer, gpt2_encoding

from scratch_gpt.data.sliding_window import GPTDatasetV1
from scratch_gpt.data.token_files import (
    TokenFileDataset,
    dtype_for_vocab,
    open_token_file,
    read_token_file_info,
    sample_batch,
    split_bounds,
    write_token_file,
    write_token_ids,
)


def test_dtype_for_vocab():
    assert dtype_for_vocab(256) == np.uint16
    assert dtype_for_vocab(50257) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16  # ids 0..65535 fit
    assert dtype_for_vocab(65537) == np.uint32
    assert dtype_for_vocab(200_019) == np.uint32
    for bad in (0, -5, 2.0, True):
        with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
            dtype_for_vocab(bad)


def test_the_verdict_round_trip_uint16(tmp_path):
    enc = gpt2_encoding()
    path = tmp_path / "verdict.bin"
    info = write_token_file(path, data_file("the-verdict.txt"), enc, vocab_size=50257, eos_id=50256)
    assert (info.dtype, info.num_tokens, info.num_documents) == ("uint16", 5146, 1)
    assert path.stat().st_size == 2 * 5146
    header = json.loads((tmp_path / "verdict.bin.json").read_text())
    assert header["format"] == "scratch_gpt.token_file" and header["version"] == 1
    assert header["eos_id"] == 50256 and header["metadata"]["source"].endswith("the-verdict.txt")
    ids, info2 = open_token_file(path)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
    expected = enc.encode(data_file("the-verdict.txt").read_text(encoding="utf-8")) + [50256]
    assert ids.tolist() == expected
    assert ids[:4].tolist() == [40, 367, 2885, 1464]
    assert info2 == info


def test_uint32_when_vocab_is_large(tmp_path):
    docs = [[0, 65535, 65536, 99_999], [7]]
    info = write_token_ids(tmp_path / "big.bin", docs, vocab_size=100_000, eos_id=99_998)
    ids, _ = open_token_file(tmp_path / "big.bin")
    assert info.dtype == "uint32" and ids.dtype == np.uint32
    assert ids.tolist() == [0, 65535, 65536, 99_999, 99_998, 7, 99_998]
    assert (tmp_path / "big.bin").stat().st_size == 4 * 7


def test_directory_corpus_documents_separated_by_eos(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "1.txt").write_text("hi", encoding="utf-8")
    (corpus / "2.txt").write_text("yo", encoding="utf-8")
    info = write_token_file(tmp_path / "c.bin", corpus, ByteTokenizer(), vocab_size=257, eos_id=256)
    ids, _ = open_token_file(tmp_path / "c.bin")
    assert ids.tolist() == [104, 105, 256, 121, 111, 256]
    assert info.num_documents == 2


def test_windows_equal_gpt_dataset_on_each_split(tmp_path):
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 1000, size=1003).tolist()
    write_token_ids(tmp_path / "t.bin", [stream], vocab_size=1000)
    bounds = split_bounds(1003, 0.1)
    assert bounds == {"train": (0, 902), "val": (902, 1003)}
    for split, (lo, hi) in bounds.items():
        for max_length, stride in [(16, 16), (16, 5), (100, 100)]:
            ds = TokenFileDataset(tmp_path / "t.bin", max_length, stride, split=split, val_fraction=0.1)
            ref = GPTDatasetV1(stream[lo:hi], max_length=max_length, stride=stride)
            assert len(ds) == len(ref)
            for i in (0, len(ds) // 2, len(ds) - 1):
                assert ds[i][0].tolist() == ref[i][0].tolist() and ds[i][1].tolist() == ref[i][1].tolist()
                assert ds[i][0].dtype == torch.long
    all_ds = TokenFileDataset(tmp_path / "t.bin", 10, split="all")
    assert len(all_ds) == len(GPTDatasetV1(stream, max_length=10, stride=10))


def test_dataset_pickles_without_the_mapped_array_and_works_in_workers(tmp_path):
    write_token_ids(tmp_path / "t.bin", [list(range(400))], vocab_size=400)
    ds = TokenFileDataset(tmp_path / "t.bin", 8)
    _ = ds[0]  # opens the map in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._ids is None and clone[3][0].tolist() == list(range(24, 32))
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)
    rows = torch.cat([x for x, _ in loader]).tolist()
    assert rows == [list(range(i, i + 8)) for i in range(0, 352, 8)]


def test_sample_batch_is_reproducible_and_shifted(tmp_path):
    write_token_ids(tmp_path / "t.bin", [list(range(1000))], vocab_size=1000)
    ids, _ = open_token_file(tmp_path / "t.bin")
    x, y = sample_batch(ids, 6, 12, torch.Generator().manual_seed(3))
    x2, _ = sample_batch(ids, 6, 12, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (6, 12) and x.dtype == torch.long
    assert torch.equal(x, x2)
    assert torch.equal(y, x + 1)  # ids are 0..999, so the next token is id + 1
    assert int(y.max()) <= 999
    x_small, y_small = sample_batch(ids[:13], 3, 12)
    assert x_small.tolist() == [list(range(12))] * 3 and y_small[0].tolist() == list(range(1, 13))


# ---------------------------------------------------------------- bad input


def test_id_outside_vocab_keeps_existing_file(tmp_path):
    path = tmp_path / "t.bin"
    write_token_ids(path, [[1, 2, 3]], vocab_size=10)
    with pytest.raises(ValueError, match=r"document 1: token id 10 is outside \[0, 10\)"):
        write_token_ids(path, [[1, 2], [10]], vocab_size=10)
    with pytest.raises(ValueError, match="token id -1"):
        write_token_ids(path, [[-1]], vocab_size=10)
    assert open_token_file(path)[0].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin", "t.bin.json"]  # no temp files left


def test_empty_corpus_writes_nothing(tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        write_token_file(
            tmp_path / "e.bin", tmp_path / "empty.txt", ByteTokenizer(), vocab_size=257, eos_id=256
        )
    assert not (tmp_path / "e.bin").exists()


def test_bad_eos_and_tokenizer(tmp_path):
    with pytest.raises(ValueError, match=r"eos_id must be an id in \[0, 10\)"):
        write_token_ids(tmp_path / "t.bin", [[1]], vocab_size=10, eos_id=10)
    with pytest.raises(ValueError, match="encode"):
        write_token_file(tmp_path / "t.bin", tmp_path, object(), vocab_size=10, eos_id=1)


def test_unwritable_output_directory(tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="token file folder .*afile exists and is not a folder"):
        write_token_ids(tmp_path / "afile" / "t.bin", [[1]], vocab_size=10)
    with pytest.raises(PermissionError, match="cannot write to the token file folder .*afile/sub"):
        write_token_ids(tmp_path / "afile" / "sub" / "t.bin", [[1]], vocab_size=10)


def test_truncated_or_corrupt_files_are_reported(tmp_path):
    path = tmp_path / "t.bin"
    write_token_ids(path, [list(range(100))], vocab_size=100)
    header = tmp_path / "t.bin.json"
    good = header.read_text()
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated"):
        read_token_file_info(path)
    header.write_text("{not json")
    with pytest.raises(ValueError, match="header .* is corrupt"):
        open_token_file(path)
    header.write_text(good.replace('"uint16"', '"float32"'))
    with pytest.raises(ValueError, match="dtype='float32'"):
        open_token_file(path)
    header.unlink()
    with pytest.raises(FileNotFoundError, match="header .* is missing"):
        open_token_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_token_file(tmp_path / "nope.bin")


def test_split_too_short_and_bad_arguments(tmp_path):
    write_token_ids(tmp_path / "t.bin", [list(range(100))], vocab_size=100)
    with pytest.raises(ValueError, match=r"the val split of .* has 10 tokens.*max_length \+ 1 = 17"):
        TokenFileDataset(tmp_path / "t.bin", 16, split="val")
    with pytest.raises(ValueError, match="split must be"):
        TokenFileDataset(tmp_path / "t.bin", 4, split="test")
    for bad in (1, 1.0, -0.1, "0.1"):
        with pytest.raises(ValueError, match="val_fraction"):
            split_bounds(100, bad)
    ids, _ = open_token_file(tmp_path / "t.bin")
    with pytest.raises(ValueError, match="has 100 tokens"):
        sample_batch(ids, 2, 100)
    with pytest.raises(ValueError, match="batch_size and max_length"):
        sample_batch(ids, 0, 4)
    with pytest.raises(IndexError):
        TokenFileDataset(tmp_path / "t.bin", 4)[1000]
