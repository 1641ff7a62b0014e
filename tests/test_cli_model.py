"""Tests for ``scratch-gpt convert`` and ``scratch-gpt generate`` (scratch_gpt/cli/model.py).

Models are tiny random ones and the tokenizer is a byte-level BPE with no merges built in-process (256 byte tokens
plus ``<|endoftext|>``), so nothing is downloaded and every folder lives under ``tmp_path``.
"""

from __future__ import annotations

import re

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from scratch_gpt.cli import main
from scratch_gpt.hub.inference import generate_from_pretrained
from scratch_gpt.kernels import linear as linear_module
from scratch_gpt.modeling_scratch_gpt import ScratchGPTForCausalLM

VOCAB_SIZE = 257  # 256 bytes + <|endoftext|>


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per UTF-8 byte, ``<|endoftext|>`` = 256."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", model_max_length=64)


@pytest.fixture
def gpt2_dir(tmp_path):
    """A random GPT-2 folder with a tokenizer, as GPT2LMHeadModel.save_pretrained writes it."""
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=VOCAB_SIZE,
        n_positions=64,
        bos_token_id=256,
        eos_token_id=256,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(1.0 if ".ln_" in name and name.endswith(".weight") else 0.0, 0.2)
    model.save_pretrained(tmp_path / "gpt2")
    byte_tokenizer().save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2"


@torch.no_grad()
def logits(model, ids):
    return model(input_ids=ids).logits


def test_convert_from_gpt2_and_back(gpt2_dir, tmp_path, capsys):
    assert main(["convert", "--from-gpt2", str(gpt2_dir), "--output", str(tmp_path / "ours")]) == 0
    assert str(tmp_path / "ours") in capsys.readouterr().out
    assert main(["convert", "--to-gpt2", str(tmp_path / "ours"), "-o", str(tmp_path / "back")]) == 0

    ids = torch.randint(0, VOCAB_SIZE, (2, 7), generator=torch.Generator().manual_seed(1))
    gpt2 = GPT2LMHeadModel.from_pretrained(gpt2_dir)
    ours = ScratchGPTForCausalLM.from_pretrained(tmp_path / "ours")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back")
    torch.testing.assert_close(logits(ours, ids), logits(gpt2, ids), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(back, ids), logits(gpt2, ids), atol=1e-5, rtol=0)
    assert (tmp_path / "back" / "tokenizer.json").read_text() == (gpt2_dir / "tokenizer.json").read_text()


def test_generate_greedy_matches_gpt2(gpt2_dir, tmp_path, capsys):
    main(["convert", "--from-gpt2", str(gpt2_dir), "--output", str(tmp_path / "ours")])
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "ours"), "Hello", "--max-new-tokens", "8"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    # oracle: the stock GPT-2 model on the same weights, greedy
    tok = byte_tokenizer()
    gpt2 = GPT2LMHeadModel.from_pretrained(gpt2_dir)
    ids = tok("Hello", return_tensors="pt")["input_ids"]
    expected = gpt2.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=256, eos_token_id=256)
    assert printed == tok.decode(expected[0], skip_special_tokens=True)
    assert printed.startswith("Hello")
    # the same command on the GPT-2 folder itself gives the same text
    assert generate_from_pretrained(gpt2_dir, "Hello", max_new_tokens=8) == printed


@pytest.mark.skipif(
    linear_module._ONEDNN_LINEAR is None, reason="this PyTorch build has no oneDNN linear kernel"
)
def test_generate_runs_on_the_fast_cpu_kernels_with_the_same_text(gpt2_dir, tmp_path, onednn_calls):
    """On a CPU, ``generate`` puts the model on ``use_fast_kernels``: its products reach oneDNN, and the greedy
    text is still the stock GPT-2's on the same weights."""
    main(["convert", "--from-gpt2", str(gpt2_dir), "--output", str(tmp_path / "ours")])
    text = generate_from_pretrained(tmp_path / "ours", "Hello", max_new_tokens=8)
    assert len(onednn_calls) >= 8 * (2 * 6 + 1)  # per new token: 6 products per block and the output head
    tok = byte_tokenizer()
    ids = tok("Hello", return_tensors="pt")["input_ids"]
    expected = GPT2LMHeadModel.from_pretrained(gpt2_dir).generate(
        ids, max_new_tokens=8, do_sample=False, pad_token_id=256, eos_token_id=256
    )
    assert text == tok.decode(expected[0], skip_special_tokens=True)


def test_generate_sampling_is_repeatable_with_seed(gpt2_dir):
    kwargs = dict(max_new_tokens=10, temperature=1.5, top_k=50, top_p=0.95)
    first = generate_from_pretrained(gpt2_dir, "ab", seed=3, **kwargs)
    assert generate_from_pretrained(gpt2_dir, "ab", seed=3, **kwargs) == first
    assert any(generate_from_pretrained(gpt2_dir, "ab", seed=s, **kwargs) != first for s in range(4, 8))


def test_generate_beam_search(gpt2_dir, capsys):
    assert main(["generate", "-m", str(gpt2_dir), "xy", "--max-new-tokens", "4", "--num-beams", "3"]) == 0
    assert capsys.readouterr().out.startswith("xy")


# --- bad input: printed as one line, exit code 1, no traceback ---------------------------------------------------


def run_error(argv, capsys, status: int = 1) -> str:
    assert main(argv) == status
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_error_generate_without_tokenizer(gpt2_dir, tmp_path, capsys):
    GPT2LMHeadModel.from_pretrained(gpt2_dir).save_pretrained(tmp_path / "no-tok")
    err = run_error(["generate", "--model", str(tmp_path / "no-tok"), "hi"], capsys)
    assert "has no tokenizer" in err and "tokenizer.save_pretrained" in err


def test_error_generate_missing_folder(tmp_path, capsys):
    assert "does not exist" in run_error(
        ["generate", "--model", str(tmp_path / "nope"), "hi"], capsys, status=2
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (["--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--temperature", "1", "--top-k", "0"], "top_k must be at least 1"),
        (["--temperature", "1", "--top-p", "1.5"], r"top_p must be in \(0, 1\]"),
        (["--num-beams", "0"], "num_beams must be at least 1"),
        (["--top-k", "5"], "only apply when sampling"),
        (["--max-new-tokens", "100"], "exceeds the model's context length 64"),
    ],
)
def test_error_generate_bad_options(gpt2_dir, capsys, options, message):
    err = run_error(["generate", "--model", str(gpt2_dir), "hi", *options], capsys)
    assert re.search(message, err), err


def test_error_generate_empty_prompt(gpt2_dir, capsys):
    assert "prompt is empty" in run_error(["generate", "--model", str(gpt2_dir), ""], capsys)


def test_error_convert_not_gpt2(gpt2_dir, tmp_path, capsys):
    main(["convert", "--from-gpt2", str(gpt2_dir), "--output", str(tmp_path / "ours")])
    capsys.readouterr()
    err = run_error(
        ["convert", "--from-gpt2", str(tmp_path / "ours"), "--output", str(tmp_path / "x")], capsys
    )
    assert "not a GPT-2 config" in err and "scratch_gpt" in err


def test_error_convert_missing_source(tmp_path, capsys):
    argv = ["convert", "--to-gpt2", str(tmp_path / "nope"), "--output", str(tmp_path / "x")]
    err = run_error(argv, capsys, status=2)
    assert "does not exist" in err


def test_convert_needs_a_direction(tmp_path):
    with pytest.raises(SystemExit):
        main(["convert", "--output", str(tmp_path / "x")])
