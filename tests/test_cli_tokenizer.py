"""Tests for ``scratch-gpt train-tokenizer`` and ``scratch-gpt encode`` (through ``scratch_gpt.cli.main``)."""

from __future__ import annotations

import json

from conftest import data_file

from scratch_gpt.bpe import BPETokenizer
from scratch_gpt.byte_level import GPT4_PATTERN
from scratch_gpt.cli import main


def _corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(data_file("the-verdict.txt").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def test_train_tokenizer_prints_summary_and_saves(tmp_path, capsys):
    out = tmp_path / "tok"
    code = main(["train-tokenizer", str(_corpus(tmp_path)), "--vocab-size", "400", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert "vocab size: 400 (256 bytes + 143 merges + 1 special)" in captured.out
    assert "20,479 bytes ->" in captured.out and "bytes per token" in captured.out and "time:" in captured.out
    assert "BPE merges" in captured.err  # the progress bar
    tokenizer = BPETokenizer.load(out)
    assert tokenizer.vocab_size == 400 and tokenizer.special_tokens == {"<|endoftext|>": 399}


def test_train_tokenizer_options(tmp_path, capsys):
    out = tmp_path / "tok"
    argv = ["train-tokenizer", str(_corpus(tmp_path)), "--vocab-size", "300", "--output", str(out)]
    assert main([*argv, "--pattern", "gpt4", "--special-token", "<|a|>", "--special-token", "<|b|>"]) == 0
    config = json.loads((out / "bpe_config.json").read_text(encoding="utf-8"))
    assert config["pattern"] == GPT4_PATTERN and config["special_tokens"] == {"<|a|>": 298, "<|b|>": 299}
    assert main([*argv, "--no-special-tokens", "--pattern", r"\S+|\s+"]) == 0
    assert BPETokenizer.load(out).special_tokens == {} and BPETokenizer.load(out).pattern == r"\S+|\s+"
    capsys.readouterr()


def test_train_tokenizer_errors_are_one_line(tmp_path, capsys):
    assert main(["train-tokenizer", str(tmp_path / "nope.txt"), "--vocab-size", "300", "--output", "x"]) == 1
    assert "nope.txt" in capsys.readouterr().err
    corpus = str(_corpus(tmp_path))
    assert main(["train-tokenizer", corpus, "--vocab-size", "100", "--output", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert "vocab_size >= 257" in err and "Traceback" not in err
    assert main(["train-tokenizer", corpus, "--vocab-size", "300", "--output", "x", "--pattern", "(bad"]) == 1
    assert "does not compile" in capsys.readouterr().err


def test_encode_shows_ids_and_pieces(tmp_path, capsys):
    for name in ("encoder.json", "vocab.bpe"):
        (tmp_path / name).write_bytes(data_file(name).read_bytes())
    assert main(["encode", "--tokenizer", str(tmp_path), "Hello, worldꙮ<|endoftext|>"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "piece"]
    assert lines[1].split() == ["15496", "'Hello'"]
    assert lines[2].split() == ["11", "','"]
    assert lines[-2].split() == ["50256", "'<|endoftext|>'"]
    assert lines[-5:-2] == ["  166  b'\\xea'", "  247  b'\\x99'", "  106  b'\\xae'"]  # "ꙮ" as 3 byte tokens
    assert lines[-1] == "7 tokens, 28 bytes"


def test_encode_specials_as_text_and_missing_tokenizer(tmp_path, capsys):
    BPETokenizer.train("some training text", 260).save(tmp_path)
    assert main(["encode", "--tokenizer", str(tmp_path), "--specials-as-text", "x<|endoftext|>"]) == 0
    assert "259" not in capsys.readouterr().out.split("piece", 1)[1].split()[::2]
    assert main(["encode", "--tokenizer", str(tmp_path / "missing"), "x"]) == 1
    assert "missing" in capsys.readouterr().err


def _table(out: str) -> list[tuple[int, str]]:
    rows = out.splitlines()[1:-1]
    return [(int(r.split(None, 1)[0]), r.split(None, 1)[1]) for r in rows]


def test_encode_and_decode_read_every_folder_the_package_writes(tmp_path, capsys):
    """A train-tokenizer folder, a Hugging Face model folder (tokenizer.json only: the demo, pretrain,
    finetune-* and convert write these), and a model folder with its tokenizer in tokenizer/ all encode the
    same text to the same ids, and decode them back."""
    from scratch_gpt import ScratchGPTTokenizerFast

    bpe = BPETokenizer.train("the quick brown fox jumps over the lazy dog. " * 20, 280)
    bpe.save(tmp_path / "ours")
    ScratchGPTTokenizerFast.from_bpe(bpe).save_pretrained(tmp_path / "hf")
    assert (
        not (tmp_path / "hf" / "bpe_config.json").exists() and (tmp_path / "hf" / "tokenizer.json").is_file()
    )
    ScratchGPTTokenizerFast.from_bpe(bpe).save_pretrained(tmp_path / "model" / "tokenizer")
    (tmp_path / "model" / "config.json").write_text("{}")
    text = "the lazy fox<|endoftext|>é"
    expected = bpe.encode(text, allowed_special="all")
    tables = []
    for folder in ("ours", "hf", "model"):
        assert main(["encode", "--tokenizer", str(tmp_path / folder), text]) == 0
        table = _table(capsys.readouterr().out)
        assert [i for i, _ in table] == expected, folder
        tables.append(table)
        assert main(["decode", "--tokenizer", str(tmp_path / folder), *map(str, expected)]) == 0
        assert capsys.readouterr().out == text + "\n"
    assert tables[0] == tables[1] == tables[2]  # the pieces too (bytes of "é" split across tokens)
    assert main(["encode", "--tokenizer", str(tmp_path / "hf"), "--specials-as-text", text]) == 0
    assert [i for i, _ in _table(capsys.readouterr().out)] == bpe.encode_ordinary(text)


def test_decode_errors_are_one_line(tmp_path, capsys):
    BPETokenizer.train("some training text", 260).save(tmp_path)
    assert main(["decode", "--tokenizer", str(tmp_path), "5", "999"]) == 1
    assert "out of range" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["encode", "--tokenizer", str(tmp_path / "empty"), "x"]) == 1
    err = capsys.readouterr().err
    assert "holds no tokenizer" in err and "tokenizer.json" in err and "Traceback" not in err
