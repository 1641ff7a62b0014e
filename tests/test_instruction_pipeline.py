"""Tests for scratch_gpt.finetune.instruction_pipeline: saving, the pipeline end to end, bad input, the Trainer example, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from instruct_helpers import RECORDS, save_tiny_checkpoint, tiny_model, tiny_tokenizer, write_records

from scratch_gpt.finetune.instruction_data import RESPONSE_HEADER, InstructionDataset, format_input
from scratch_gpt.finetune.instruction_pipeline import (
    LORA_TARGETS,
    InstructFinetuneConfig,
    finetune_instruct,
    save_instruction_checkpoint,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def folders(tmp_path):
    model_dir = save_tiny_checkpoint(tmp_path / "pretrained")
    data = write_records(tmp_path / "data.json")
    return model_dir, data, tmp_path / "out"


QUICK = dict(epochs=1, batch_size=4, lr=1e-3, eval_freq=2, eval_iter=1, max_new_tokens=4)


def run(model_dir, data, out, **settings):
    return finetune_instruct(InstructFinetuneConfig(model_dir, data, out, **settings), log=None)


# --- saving --------------------------------------------------------------------------------


def test_save_instruction_checkpoint_attaches_the_template(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = tiny_model(tokenizer)
    save_instruction_checkpoint(model, tokenizer, tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= files
    assert not any(name.startswith(".tmp") for name in files)  # the temp folder is gone
    reloaded_tok = AutoTokenizer.from_pretrained(str(tmp_path / "ckpt"))
    prompt = reloaded_tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == format_input({"instruction": "Hi"}) + RESPONSE_HEADER
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ckpt"))
    assert reloaded.generation_config.eos_token_id == tokenizer.eos_token_id
    ids = torch.tensor([tokenizer.encode(prompt)])
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


# --- end to end ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_instruct_end_to_end(folders):
    model_dir, data, out = folders
    result = run(model_dir, data, out, **{**QUICK, "epochs": 3})
    files = {p.name for p in out.iterdir()}
    expected = {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "training_history.json",
                "loss_plot.png", "test_responses.json", "results.json"}  # fmt: skip
    assert expected <= files
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(result))
    assert result["num_records"] == {"train": 17, "validation": 1, "test": 2}
    assert result["steps"] == 3 * (17 // 4) and len(result["samples"]) == 3
    assert result["trainable_parameters"] == result["total_parameters"]
    after = result["after"]
    assert after["train_loss"] < result["before"]["train_loss"]  # it learned something
    assert after["test_response_perplexity"] == pytest.approx(math.exp(after["test_response_loss"]))
    answered = json.loads((out / "test_responses.json").read_text())
    assert len(answered) == 2 and all("model_response" in a for a in answered)
    assert result["rouge_l_f1_overlap_mean"] == pytest.approx(sum(a["rouge_l_f1"] for a in answered) / 2)
    assert "not a measure of correctness" in result["rouge_l_note"]
    history = json.loads((out / "training_history.json").read_text())
    assert history["step_log"]["steps"] == list(range(1, 13))


@pytest.mark.slow
def test_finetune_instruct_with_lora_trains_adapters_only(folders):
    from safetensors.torch import load_file

    model_dir, data, out = folders
    result = run(model_dir, data, out, **QUICK, lora_rank=2, lora_alpha=4.0, num_test=1)
    # rank r on the 6 Linear layers of each of 2 blocks (n_embd 32, feed-forward 128): r*(in+out) each
    per_block = 4 * (32 + 32) + (32 + 128) + (128 + 32)
    assert result["trainable_parameters"] == 2 * 2 * per_block == 2304
    assert result["num_test_answered"] == 1
    before, after = load_file(str(model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(before) == set(after)  # merged: a plain checkpoint, no adapter tensors left
    emb = "transformer.gpt.tok_emb.weight"
    assert torch.equal(before[emb], after[emb])  # frozen
    query = next(k for k in after if k.endswith("att.W_query.weight"))
    assert not torch.equal(before[query], after[query])  # the merged LoRA update
    assert set(LORA_TARGETS) == {
        "att.W_query",
        "att.W_key",
        "att.W_value",
        "att.out_proj",
        "ff.fc_in",
        "ff.fc_out",
    }


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"weight_decay": -1}, "weight_decay must be a finite number >= 0"),
        ({"lora_rank": 0}, "lora_rank must be a positive integer"),
        ({"max_steps": 0}, "max_steps must be a positive integer"),
        ({"num_test": -1}, "num_test must be an integer >= 0 or None"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"grad_clip": float("inf")}, "grad_clip must be a finite number"),
        ({"on_error": "ignore"}, "on_error must be one of"),
        ({"batch_size": 18}, "batch_size 18 is larger than the 17 training records"),
    ],
)
def test_bad_settings_raise(folders, overrides, message):
    model_dir, data, out = folders
    with pytest.raises(ValueError, match=message):
        run(model_dir, data, out, **{**QUICK, **overrides})


def test_bad_paths_raise(folders, tmp_path):
    model_dir, data, out = folders
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nope", data, out, **QUICK)
    with pytest.raises(FileNotFoundError, match="not found"):
        run(model_dir, tmp_path / "nope.json", out, **QUICK)
    with pytest.raises(ValueError, match="is the model folder"):
        run(model_dir, data, model_dir, **QUICK)
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "tokenizer_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        run(model_dir, data, out, **QUICK)


def test_bad_records_raise_naming_the_record(folders):
    model_dir, data, out = folders
    broken = [dict(r) for r in RECORDS]
    del broken[5]["output"]
    write_records(data, broken)
    with pytest.raises(ValueError, match=r"record 5: missing key 'output'"):
        run(model_dir, data, out, **QUICK)


# --- the Trainer example ---------------------------------------------------------------------------------


def _trainer_example():
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "finetune_instruct_trainer", REPO_ROOT / "examples" / "finetune_instruct_trainer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trainer_example_builds_the_book_training_text(tokenizer):
    from scratch_gpt.finetune.chat import add_chat_template

    example = _trainer_example()
    tok = add_chat_template(tiny_tokenizer())
    book = InstructionDataset(RECORDS[:3], tok, include_instruction_length=True)
    for record, (prompt_length, ids) in zip(RECORDS[:3], book):
        encoded = example.encode_record(record, tok, context_length=160, mask_instruction=True)
        assert encoded["input_ids"] == ids + [
            tok.eos_token_id
        ]  # the book's text + the end-of-text it appends
        assert encoded["labels"][:prompt_length] == [-100] * prompt_length
        assert encoded["labels"][prompt_length:] == encoded["input_ids"][prompt_length:]
    batch = example.make_collator(tok.pad_token_id)(
        [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8], "labels": [-100]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, tok.pad_token_id, tok.pad_token_id]]
    assert batch["labels"].tolist() == [[5, 6, 7], [-100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.slow
def test_trainer_example_runs(folders):
    model_dir, data, out = folders
    results = _trainer_example().main(
        ["--model", str(model_dir), "--data", str(data), "--output", str(out), "--batch-size", "2",
         "--grad-accum", "2", "--lr", "1e-3", "--max-steps", "3", "--max-new-tokens", "4", "--num-test", "1"]
    )  # fmt: skip
    assert results["steps"] == 3 and math.isfinite(results["train_loss"])
    assert results["after"]["test_response_tokens"] > 0
    assert {"model.safetensors", "chat_template.jinja", "results.json", "test_responses.json"} <= {
        p.name for p in out.iterdir()
    }


# --- the CLI ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_finetune_instruct(folders, capsys):
    from scratch_gpt.cli import main

    model_dir, data, out = folders
    argv = ["finetune-instruct", "--model", str(model_dir), "--data", str(data), "--output", str(out)]
    quick = [
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "3",
        "--num-test",
        "1",
    ]
    assert main([*argv, *quick, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 steps in" in printed and "held-out test responses: loss" in printed and str(out) in printed
    assert (out / "chat_template.jinja").is_file() and json.loads((out / "results.json").read_text())[
        "steps"
    ] == 2
    assert main([*argv, "--epochs", "0"]) == 1
    assert "epochs must be a positive integer" in capsys.readouterr().err
    assert (
        main(
            ["finetune-instruct", "--model", str(out / "missing"), "--data", str(data), "--output", str(out)]
        )
        == 2  # a failed load
    )
    assert "does not exist" in capsys.readouterr().err
