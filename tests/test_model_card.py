"""Tests for scratch_gpt.hub.model_card: metadata parsed back with huggingface_hub's own card parser (the oracle),
training figures from a known history, parameter counts from safetensors headers, and every bad input."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file

from scratch_gpt.hub.model_card import (
    card_for_checkpoint,
    count_parameters,
    make_model_card,
    read_training_history,
    write_model_card,
)

CONFIG = {
    "architectures": ["ScratchGPTForCausalLM"],
    "model_type": "scratch_gpt",
    "vocab_size": 50257,
    "n_positions": 128,
    "n_embd": 64,
    "n_layer": 2,
    "n_head": 4,
    "dropout": 0.1,
    "tie_word_embeddings": True,
}
HISTORY = {
    "steps": [0, 50, 100],
    "tokens_seen": [512, 26112, 51712],
    "train_losses": [10.9, 6.21, 5.48],
    "val_losses": [10.9, 6.53, 6.6],
    "dataset": "tinyshakespeare.txt",
    "hyperparameters": {"learning_rate": 0.0004, "batch_size": 8},
}


def _checkpoint(tmp_path, config=CONFIG, history=HISTORY):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if history is not None:
        (folder / "training_history.json").write_text(json.dumps(history))
    return folder


def test_metadata_round_trips_through_huggingface_hub_parser():
    card = make_model_card(
        CONFIG,
        repo_id="someone/tiny-gpt",
        history=HISTORY,
        datasets="karpathy/tiny_shakespeare",
        base_model="openai-community/gpt2",
        tags=["shakespeare", "scratch_gpt"],
        language="en",
        license="mit",
    )
    data = ModelCard(card).data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["license"] == "mit"
    assert data["pipeline_tag"] == "text-generation"
    assert data["datasets"] == ["karpathy/tiny_shakespeare"]
    assert data["base_model"] == "openai-community/gpt2"
    assert data["language"] == ["en"]
    assert data["tags"][:4] == ["scratch_gpt", "custom_code", "from-scratch", "llms-from-scratch"]
    assert data["tags"].count("scratch_gpt") == 1 and "shakespeare" in data["tags"]
    assert card.startswith("---\n") and "\n# tiny-gpt\n" in card


def test_training_section_reports_final_and_best_losses():
    card = make_model_card(CONFIG, history=HISTORY, num_parameters=1_234_567)
    assert "| Optimizer steps | 100 |" in card
    assert "| Training tokens seen | 51,712 |" in card
    assert "| Final training loss (perplexity) | 5.4800 (239.85) |" in card  # exp(5.48) = 239.85
    assert "| Final validation loss (perplexity) | 6.6000 (735.10) |" in card
    assert "| Best validation loss | 6.5300 (685.40) at step 50 |" in card  # not the last one
    assert "| Training data | tinyshakespeare.txt |" in card
    assert "| learning_rate | 0.0004 |" in card
    assert "| Parameters | 1,234,567 (1.2M) |" in card
    assert "| Layers / attention heads / embedding size | 2 / 4 / 64 |" in card
    assert "| Feed-forward size | 256 |" in card and "| Context length | 128 tokens |" in card
    assert "## Intended use" in card and "## Limitations" in card
    assert "datasets" not in ModelCard(card).data.to_dict()  # free-text names stay out of the metadata


def test_without_history_or_validation_the_card_says_so():
    card = make_model_card(CONFIG)
    assert "No training history (`training_history.json`) was saved" in card
    assert "| Parameters | unknown |" in card
    no_val = {k: v for k, v in HISTORY.items() if k != "val_losses"}
    card = make_model_card(CONFIG, history=no_val)
    assert "| Final training loss (perplexity) | 5.4800 (239.85) |" in card
    assert "Final validation loss" not in card and "Best validation loss" not in card
    assert "No validation loss was recorded" in card


def test_history_as_written_by_the_training_loop():
    """``scratch_gpt.training.history`` writes extra keys, NaN for a failed evaluation, and empty lists early on."""
    written = {**HISTORY, "epochs": [0.0, 0.5, 1.0], "train_perplexities": [1, 2, 3], "samples": [None, "a", "b"],
               "val_losses": [10.9, float("nan"), 6.6], "step_log": {"steps": [1, 2], "losses": [9.0, 8.0]}}  # fmt: skip
    card = make_model_card(CONFIG, history=written)
    assert "| Best validation loss | 6.6000 (735.10) at step 100 |" in card  # NaN is never the best
    empty = {"steps": [], "tokens_seen": [], "train_losses": [], "step_log": {}}
    assert "has no evaluations yet" in make_model_card(CONFIG, history=empty)


def test_read_training_history_reads_nan_and_empty_files(tmp_path):
    (tmp_path / "training_history.json").write_text(
        '{"steps": [1], "tokens_seen": [8], "train_losses": [NaN], "val_losses": [NaN]}'
    )
    card = make_model_card(CONFIG, history=read_training_history(tmp_path))
    assert "| Final training loss (perplexity) | nan (nan) |" in card
    (tmp_path / "training_history.json").write_text('{"steps": [], "tokens_seen": [], "train_losses": []}')
    assert read_training_history(tmp_path)["steps"] == []


def test_classifier_config_gets_classification_metadata_and_snippet():
    config = {**CONFIG, "architectures": ["ScratchGPTForSequenceClassification"], "num_labels": 2}
    card = make_model_card(config, repo_id="someone/spam", intended_use="Spam filtering demos.")
    assert ModelCard(card).data.pipeline_tag == "text-classification"
    assert (
        'AutoModelForSequenceClassification.from_pretrained("someone/spam", trust_remote_code=True)' in card
    )
    assert "| Classes | 2 |" in card
    assert "Spam filtering demos." in card


def test_usage_snippet_names_repo_and_remote_code():
    card = make_model_card(CONFIG, repo_id="someone/tiny-gpt")
    assert 'AutoModelForCausalLM.from_pretrained("someone/tiny-gpt")' in card
    assert 'AutoModelForCausalLM.from_pretrained("someone/tiny-gpt", trust_remote_code=True)' in card
    assert "path/to/checkpoint" in make_model_card(CONFIG)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"license": ""}, "license"),
        ({"license": None}, "license"),
        ({"base_model": "not an id"}, "base_model"),
        ({"datasets": [""]}, "datasets"),
        ({"tags": [1]}, "tags"),
        ({"language": [None]}, "language"),
    ],
)
def test_bad_card_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model_card(CONFIG, **kwargs)


def test_count_parameters_reads_safetensors_headers(tmp_path):
    assert count_parameters(tmp_path) is None
    save_file(
        {"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "model-00001-of-00002.safetensors")
    )
    save_file(
        {"c": torch.zeros(2, 2, 2)}, str(tmp_path / "model-00002-of-00002.safetensors"), metadata={"x": "y"}
    )
    assert count_parameters(tmp_path) == 12 + 5 + 8
    (tmp_path / "broken.safetensors").write_bytes((5).to_bytes(8, "little") + b"nope!")
    with pytest.raises(ValueError, match="broken.safetensors"):
        count_parameters(tmp_path)


def test_write_model_card_is_atomic_and_refuses_to_clobber(tmp_path):
    folder = _checkpoint(tmp_path)
    save_file({"w": torch.zeros(10, 10)}, str(folder / "model.safetensors"))
    path = write_model_card(folder, repo_id="someone/tiny-gpt", license="mit")
    text = path.read_text()
    assert (
        path.name == "README.md"
        and "| Parameters | 100 (0.0M) |" in text
        and "| Optimizer steps | 100 |" in text
    )
    assert text == card_for_checkpoint(folder, repo_id="someone/tiny-gpt", license="mit")
    path.write_text("hand-written")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_model_card(folder)
    assert path.read_text() == "hand-written"
    write_model_card(folder, overwrite=True)
    assert path.read_text().startswith("---\n")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "training_history.json",
    ]  # no temporary files left behind


def test_card_for_checkpoint_needs_a_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        card_for_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        card_for_checkpoint(tmp_path)


def test_read_training_history_accepts_the_documented_format(tmp_path):
    assert read_training_history(tmp_path) is None
    folder = _checkpoint(tmp_path)
    assert read_training_history(folder) == HISTORY
    no_val = {k: v for k, v in HISTORY.items() if k != "val_losses"}
    (folder / "training_history.json").write_text(json.dumps({**no_val, "extra": "ignored"}))
    assert read_training_history(folder)["steps"] == [0, 50, 100]


@pytest.mark.parametrize(
    "content, match",
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (json.dumps({"tokens_seen": [1], "train_losses": [1.0]}), "'steps' must be a list"),
        (json.dumps({**HISTORY, "steps": []}), "one entry per evaluation"),
        (json.dumps({**HISTORY, "val_losses": None}), "'val_losses' must be a list"),
        (json.dumps({**HISTORY, "steps": [0, 1.5, 2]}), "'steps' must hold only integers"),
        (json.dumps({**HISTORY, "train_losses": [1.0, "x", 2.0]}), "'train_losses' must hold only numbers"),
        (json.dumps({**HISTORY, "val_losses": [True, 1.0, 2.0]}), "'val_losses' must hold only numbers"),
        (json.dumps({**HISTORY, "val_losses": [1.0]}), "one entry per evaluation"),
        (json.dumps({**HISTORY, "hyperparameters": [1]}), "'hyperparameters' must be a JSON object"),
    ],
)
def test_read_training_history_rejects_bad_files(tmp_path, content, match):
    (tmp_path / "training_history.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_training_history(tmp_path)


def test_reads_the_history_the_training_loop_writes(tmp_path):
    """Contract with ``scratch_gpt.training.history``: what ``LossHistory.save`` writes is what the card reads."""
    loss_history = pytest.importorskip("scratch_gpt.training.history")
    history = loss_history.LossHistory(dataset="the-verdict.txt", hyperparameters={"lr": 0.0004})
    history.add_eval(5, 2560, 0.5, 7.25, 7.5, "Every effort moves you")
    history.add_eval(10, 5120, 1.0, 6.0, 6.75, None)
    history.save(tmp_path)
    card = make_model_card(CONFIG, history=read_training_history(tmp_path))
    assert "| Optimizer steps | 10 |" in card and "| Training tokens seen | 5,120 |" in card
    assert "| Final validation loss (perplexity) | 6.7500 (854.06) |" in card
    assert "| Training data | the-verdict.txt |" in card and "| lr | 0.0004 |" in card


# --- every folder kind gets a card that tells the truth ---------------------------------------------------


def test_classifier_folder_card_shows_labels_and_test_accuracy(tmp_path):
    """What finetune-classifier writes: a classifier config with id2label, results.json, no history file."""
    config = {
        **CONFIG,
        "architectures": ["ScratchGPTForSequenceClassification"],
        "num_labels": 2,
        "id2label": {"0": "ham", "1": "spam"},
        "label2id": {"ham": 0, "spam": 1},
    }
    folder = _checkpoint(tmp_path, config=config, history=None)
    results = {
        "freeze": "all",
        "pooling": "last",
        "settings": {"epochs": 5, "batch_size": 8, "lr": 5e-05, "device": "cpu"},
        "split_sizes": {"train": 1045, "validation": 149, "test": 300},
        "trainable_params": 1234,
        "accuracy_before": {"train": 0.5, "validation": 0.48, "test": 0.51},
        "accuracy": {"train": 0.99, "validation": 0.97, "test": 0.97},
        "train_seconds": 45.2,
    }
    (folder / "results.json").write_text(json.dumps(results))
    card = card_for_checkpoint(folder)
    assert "A text classifier (ham, spam)" in card and "A GPT-style language model" not in card
    assert "| Labels | 0: ham, 1: spam |" in card
    assert "| Test accuracy | 97.00% (before fine-tuning: 51.00%) |" in card
    assert (
        "No training history" not in card
        and "| Examples (train / validation / test) | 1,045 / 149 / 300 |" in card
    )
    assert "| Epochs | 5 |" in card and "| Freeze | all |" in card
    assert "Not instruction-tuned" not in card and "one of its labels for any text" in card
    assert ModelCard(card).data.pipeline_tag == "text-classification"


def test_gpt2_export_card_is_stock_gpt2(tmp_path):
    """A `convert --to-gpt2` folder is stock GPT-2: no custom code, GPT-2's bias and dropout settings."""
    from scratch_gpt import ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.hub.convert_gpt2 import convert_to_gpt2

    source = tmp_path / "scratch"
    ScratchGPTForCausalLM(
        ScratchGPTConfig(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, qkv_bias=True)
    ).save_pretrained(source)
    out = convert_to_gpt2(source, tmp_path / "gpt2")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    card = card_for_checkpoint(out)
    assert (
        "trust_remote_code=True" not in card
        and "custom_code" not in card
        and "import scratch_gpt" not in card
    )
    assert "no custom code" in card and "`GPT2LMHeadModel`" in card
    assert "| Query/key/value bias | yes |" in card
    rates = (config["embd_pdrop"], config["attn_pdrop"], config["resid_pdrop"])
    assert (
        f"| Dropout (training) | embeddings {rates[0]}, attention {rates[1]}, residual {rates[2]} |" in card
    )
    assert "unknown" not in card.split("## How to use")[0]
    assert "| Layers / attention heads / embedding size | 2 / 2 / 32 |" in card
    assert ModelCard(card).data.tags[0] == "gpt2"


def test_instruction_tuned_folder_says_so(tmp_path):
    folder = _checkpoint(tmp_path)
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    card = card_for_checkpoint(folder)
    assert "instruction-fine-tuned" in card and "Not instruction-tuned" not in card
    assert "Not instruction-tuned" in make_model_card(CONFIG)  # a plain language model still says it
