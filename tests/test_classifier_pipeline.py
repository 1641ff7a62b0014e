"""Tests for scratch_gpt.finetune.classifier_pipeline: chapter 6's end-to-end pipeline, from a checkpoint folder to a classifier.

Oracles: ``F.cross_entropy`` and ``calc_accuracy_loader`` (evaluation), the untrimmed batch's logits (padding
trimming), and a reload of the saved checkpoint (its accuracy must equal the reported one). Everything runs on a
tiny model trained for a few steps on a small synthetic ``label<TAB>text`` file. The book's loss, accuracy, freeze
policies and loop are tested in ``test_classifier_training.py``.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import scratch_gpt.finetune.classifier_pipeline as fc
from scratch_gpt import ScratchGPTConfig
from scratch_gpt.finetune.classifier_pipeline import (
    ClassifierFinetuneConfig,
    TrimPadding,
    evaluate_classifier,
    finetune_classifier,
    load_classifier,
)
from scratch_gpt.finetune.classifier_training import calc_accuracy_loader, classifier_logits
from scratch_gpt.tokenizer_protocol import HFTokenizerAdapter

HAM = [
    "see you at the {} around {} ok",
    "can you bring the {} home tonight, love you",
    "i am running {} minutes late for the {}",
    "did you finish the {} yet? call me after {}",
]
SPAM = [
    "WINNER! claim your FREE {} now, txt WIN to 8{}0",
    "URGENT: you have won a {} prize! call 0900{} to claim",
]
PLACES = ["cafe", "station", "office", "park", "library", "gym"]


def write_sms_tsv(path, n_ham: int = 24, n_spam: int = 16):
    """A small SMS-spam-like file: easy to classify, so a few steps of training separate the classes."""
    lines = [f"ham\t{HAM[i % len(HAM)].format(PLACES[i % len(PLACES)], i + 2)}" for i in range(n_ham)]
    lines += [f"spam\t{SPAM[i % len(SPAM)].format(PLACES[i % len(PLACES)], 10 + i)}" for i in range(n_spam)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_tiny_checkpoint(directory, *, n_positions: int = 48, seed: int = 0):
    """A tiny pretrained-looking causal LM with its own BPE tokenizer (separate <|pad|>), saved to ``directory``."""
    from scratch_gpt import BPETokenizer, ScratchGPTForCausalLM, ScratchGPTTokenizerFast

    text = " ".join(t.format("x", 1) for t in HAM + SPAM) * 3
    bpe = BPETokenizer.train(text, 300, special_tokens=("<|endoftext|>", "<|pad|>"))
    tokenizer = ScratchGPTTokenizerFast.from_bpe(bpe, model_max_length=n_positions)
    torch.manual_seed(seed)
    config = ScratchGPTConfig(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        dropout=0.0,
        eos_token_id=tokenizer.eos_token_id,
    )
    ScratchGPTForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    make_tiny_checkpoint(root / "lm")
    write_sms_tsv(root / "sms.tsv")
    return root


@pytest.fixture()
def classifier(workdir):
    torch.manual_seed(0)
    return load_classifier(workdir / "lm", pad_token_id=1)


# --- evaluation and padding -----------------------------------------------------------------------------------


def test_evaluate_classifier_is_loss_and_accuracy_over_every_example(classifier):
    classifier.eval()
    ids = torch.tensor([[5, 6, 1, 1], [7, 8, 9, 1], [10, 1, 1, 1]])
    labels = torch.tensor([0, 1, 1])
    loader = DataLoader(TensorDataset(ids, labels), batch_size=2)  # batches of 2 and 1
    for pooling in ("last_real", "last"):
        loss, accuracy = evaluate_classifier(loader, classifier, "cpu", pad_token_id=1, pooling=pooling)
        with torch.no_grad():
            logits = classifier_logits(classifier, ids, pad_token_id=1, pooling=pooling)  # (3, 2)
        # the mean over the 3 examples, not the book's mean of the 2 batch means
        assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
        assert accuracy == pytest.approx(
            calc_accuracy_loader(loader, classifier, "cpu", pad_token_id=1, pooling=pooling)
        )
        assert accuracy == pytest.approx((logits.argmax(-1) == labels).float().mean().item())


def test_trim_padding_drops_only_all_pad_columns(classifier):
    items = [
        (torch.tensor([5, 6, 1, 1, 1]), torch.tensor(0)),
        (torch.tensor([7, 8, 9, 1, 1]), torch.tensor(1)),
    ]
    ids, labels = TrimPadding(pad_token_id=1)(items)
    assert ids.tolist() == [[5, 6, 1], [7, 8, 9]] and labels.tolist() == [0, 1]
    full = torch.stack([x for x, _ in items])
    classifier.eval()
    with torch.no_grad():  # last_real pooling gives the same logits with and without the trimmed columns
        torch.testing.assert_close(
            classifier_logits(classifier, ids, pad_token_id=1),
            classifier_logits(classifier, full, pad_token_id=1),
        )
    all_pad = TrimPadding(1)([(torch.tensor([1, 1]), torch.tensor(0))])[0]
    assert all_pad.shape == (1, 2)


# --- end to end -------------------------------------------------------------------------------------------------


def _run(workdir, out, **kwargs):
    settings = dict(epochs=2, batch_size=4, lr=3e-3, eval_freq=2, eval_iter=1, before_batches=None)
    settings.update(kwargs)
    return finetune_classifier(ClassifierFinetuneConfig(workdir / "lm", workdir / "sms.tsv", out, **settings))


@pytest.mark.parametrize("freeze", ["all", "last_block", "lora", "peft-lora"])
def test_finetune_classifier_end_to_end_and_reload(workdir, tmp_path, freeze):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if freeze == "peft-lora":
        pytest.importorskip("peft")
    out = tmp_path / "clf"
    result = _run(workdir, out, freeze=freeze, lora_rank=2, lora_alpha=4)
    assert result["split_sizes"] == {"train": 22, "validation": 3, "test": 7}  # 16 + 16 balanced, 70/10/20
    assert result["trainable_params"] < result["total_params"] or freeze == "all"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "results.json",
        "classifier_curves.png",
    ):
        assert (out / name).is_file(), name
    assert not list(tmp_path.glob(".tmp-*"))
    saved = json.loads((out / "results.json").read_text())
    assert saved["accuracy"] == result["accuracy"] and saved["settings"]["freeze"] == freeze

    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "ScratchGPTForSequenceClassification"
    assert (
        model.config.id2label == {0: "ham", 1: "spam"} and model.config.pad_token_id == tokenizer.pad_token_id
    )
    assert not any("lora" in key for key in model.state_dict())
    from scratch_gpt.finetune.classifier_data import SpamDataset, load_spam_splits

    test = SpamDataset(load_spam_splits(workdir / "sms.tsv").test, HFTokenizerAdapter(tokenizer),
                       result["max_length"], tokenizer.pad_token_id)  # fmt: skip
    loss, accuracy = evaluate_classifier(
        DataLoader(test, batch_size=4), model, "cpu", pad_token_id=tokenizer.pad_token_id, pooling="last_real"
    )
    assert accuracy == result["accuracy"]["test"]
    assert loss == pytest.approx(result["loss"]["test"], rel=1e-4)


@pytest.mark.slow
def test_finetune_learns_the_toy_task_and_pooling_last_runs(workdir, tmp_path):
    result = _run(workdir, tmp_path / "a", freeze="all", epochs=6)
    assert result["accuracy"]["train"] >= 0.9  # the toy classes are separable
    assert result["history"]["train_losses"][-1] < result["history"]["train_losses"][0]
    last = _run(workdir, tmp_path / "b", freeze="all", pooling="last", max_steps=2)
    assert last["settings"]["pooling"] == "last" and last["history"]["global_step"] == 2


def test_output_folder_protection_and_overwrite(workdir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _run(workdir, out, max_steps=1)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # refused: untouched
    result = _run(workdir, out, max_steps=1, epochs=1, overwrite=True)
    assert (out / "config.json").is_file() and not (out / "keep.txt").exists()  # replaced as a whole
    assert result["history"]["global_step"] == 1
    assert _run(workdir, out, max_steps=1, epochs=1)["history"]["global_step"] == 1  # its own output: reused
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        _run(workdir, tmp_path / "file", max_steps=1)


def test_failed_save_leaves_no_output(workdir, tmp_path, monkeypatch):
    def broken(history, path):
        raise OSError("disk full")

    monkeypatch.setattr(fc, "plot_classifier_history", broken)
    with pytest.raises(OSError, match="disk full"):
        _run(workdir, tmp_path / "out", max_steps=1, epochs=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"freeze": "some"}, ValueError, "freeze must be one of"),
        ({"pooling": "first"}, ValueError, "pooling must be one of"),
        ({"epochs": 0}, ValueError, "epochs must be a positive integer"),
        ({"batch_size": 100}, ValueError, "fewer than batch_size=100"),
        ({"lr": -1.0}, ValueError, "lr must be a positive number"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number"),
        ({"weight_decay": float("inf")}, ValueError, "weight_decay must be a finite number"),
        ({"lora_alpha": float("nan")}, ValueError, "lora_alpha must be a finite number"),
        ({"dropout": 1.5}, ValueError, "dropout must be a finite number >= 0 and < 1"),
        ({"max_steps": 0}, ValueError, "max_steps must be a positive integer or None"),
        ({"labels": {"ham": 0}}, ValueError, "labels must map at least two"),
        ({"max_length": 1000}, ValueError, "max_length must be an int in"),
    ],
)
def test_finetune_bad_arguments(workdir, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        _run(workdir, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_settings_are_the_config_as_a_dict(workdir, tmp_path):
    import dataclasses

    config = ClassifierFinetuneConfig(
        workdir / "lm", workdir / "sms.tsv", tmp_path / "out", epochs=1, batch_size=4, max_steps=1
    )
    result = finetune_classifier(config)
    expected = {k: str(v) if hasattr(v, "__fspath__") else v for k, v in dataclasses.asdict(config).items()}
    assert result["settings"] == expected
    assert json.loads((tmp_path / "out" / "results.json").read_text())["settings"] == expected
    assert ClassifierFinetuneConfig(**expected) == dataclasses.replace(config, model_dir=str(config.model_dir),
        data_path=str(config.data_path), output_dir=str(config.output_dir))  # fmt: skip


def test_finetune_bad_model_folders(workdir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        finetune_classifier(
            ClassifierFinetuneConfig(tmp_path / "nothing", workdir / "sms.tsv", tmp_path / "out")
        )
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((workdir / "lm" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no usable tokenizer"):
        finetune_classifier(ClassifierFinetuneConfig(bare, workdir / "sms.tsv", tmp_path / "out"))
    (bare / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_classifier(bare)
    (bare / "config.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_classifier(bare)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("n_embd", 64, "wrong shape"), ("n_layer", 3, "do not fit its config.json .missing")],
)
def test_finetune_rejects_a_mismatched_checkpoint(tmp_path, field, value, match):
    other = make_tiny_checkpoint(tmp_path / "other", n_positions=32)
    config = json.loads((other / "config.json").read_text())
    config[field] = value  # the weights are 32 wide, 2 layers
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        load_classifier(other)


def test_finetune_rejects_a_tokenizer_larger_than_the_vocabulary(workdir, tmp_path):
    small = tmp_path / "small"
    make_tiny_checkpoint(small)
    config = json.loads((small / "config.json").read_text())
    config["vocab_size"] = 100
    (small / "config.json").write_text(json.dumps(config))
    (small / "model.safetensors").unlink()
    from scratch_gpt import ScratchGPTForCausalLM

    ScratchGPTForCausalLM(ScratchGPTConfig(**{k: v for k, v in config.items() if k in {
        "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "dropout"}})).save_pretrained(small)  # fmt: skip
    with pytest.raises(ValueError, match="the tokenizer has 30[0-9] tokens but the model only 100"):
        finetune_classifier(ClassifierFinetuneConfig(small, workdir / "sms.tsv", tmp_path / "out"))


# --- a GPT-2 folder (OpenAI's format) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT2LMHeadModel with OpenAI's real GPT-2 tokenizer (from the local files), saved."""
    from conftest import data_file
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    vocab = json.loads(data_file("encoder.json").read_text(encoding="utf-8"))
    lines = data_file("vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    tokenizer = GPT2TokenizerFast(vocab=vocab, merges=[tuple(line.split()) for line in lines if line])
    directory = tmp_path_factory.mktemp("gpt2") / "gpt2"
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=16, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("converted", [True, False])
def test_finetune_from_a_gpt2_folder(gpt2_dir, workdir, tmp_path, converted):
    from transformers import AutoModelForSequenceClassification

    source = gpt2_dir
    if converted:
        from scratch_gpt.hub.convert_gpt2 import convert_from_gpt2

        source = convert_from_gpt2(gpt2_dir, tmp_path / "converted")
    config = ClassifierFinetuneConfig(
        source,
        workdir / "sms.tsv",
        tmp_path / "clf",
        epochs=1,
        batch_size=4,
        max_steps=2,
        freeze="last_block",
    )
    result = finetune_classifier(config)
    assert result["pad_token_id"] == 50256  # GPT-2 has no pad token: the book pads with <|endoftext|>
    assert result["history"]["global_step"] == 2
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf")
    assert type(model).__name__ == "ScratchGPTForSequenceClassification" and model.config.n_embd == 16
    # the transformer kept GPT-2's frozen first block: its weights equal the source's
    from scratch_gpt.hub.convert_gpt2 import load_gpt2

    lm = load_gpt2(gpt2_dir)
    torch.testing.assert_close(
        model.transformer.gpt.trf_blocks[0].att.W_query.weight,
        lm.transformer.gpt.trf_blocks[0].att.W_query.weight,
    )


# --- the Trainer example ------------------------------------------------------------------------------------------


def test_trainer_example_trains_saves_and_reports(workdir, tmp_path):
    import importlib.util

    from conftest import REPO_ROOT
    from transformers import AutoModelForSequenceClassification

    path = REPO_ROOT / "examples" / "finetune_classifier_trainer.py"
    spec = importlib.util.spec_from_file_location("finetune_classifier_trainer", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "trainer"
    argv = ["--model", str(workdir / "lm"), "--data", str(workdir / "sms.tsv"), "--output", str(out)]
    summary = example.main(
        argv + ["--freeze", "all", "--max-steps", "3", "--batch-size", "4", "--lr", "1e-3"]
    )
    assert summary["steps"] == 3 and set(summary["accuracy"]) == {"train", "validation", "test"}
    assert all(0.0 <= acc <= 1.0 for acc in summary["accuracy"].values())
    assert json.loads((out / "results.json").read_text())["accuracy"] == summary["accuracy"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert (
        type(model).__name__ == "ScratchGPTForSequenceClassification" and model.config.id2label[1] == "spam"
    )
    assert (out / "tokenizer.json").is_file()
