"""Tests for scratch_gpt.training.run_state: the RNG states, the final model, and a checkpoint's round trip.

Oracles: the draws a generator makes right after its state was saved (restoring must repeat them), the saved
model's reloaded weights and logits, and the optimizer/scheduler state dicts as they were when saved. The
whole loop's exact resume is tested end to end in ``test_pretrain.py``; here the pieces are tested one by one,
with a single-process stand-in for ``accelerate.Accelerator``.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from model_helpers import random_ids, tiny_config

from scratch_gpt import BPETokenizer, ScratchGPTForCausalLM, ScratchGPTTokenizerFast
from scratch_gpt.training import run_state
from scratch_gpt.training.history import LossHistory
from scratch_gpt.training.run_state import (
    restore_training_checkpoint,
    rng_state,
    save_final_model,
    save_training_checkpoint,
    set_rng_state,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class OneProcess:
    """What ``run_state`` uses of ``accelerate.Accelerator``, for one process."""

    is_main_process = True
    process_index = 0

    def wait_for_everyone(self) -> None:
        return None

    def unwrap_model(self, model, keep_torch_compile=True):  # noqa: ANN001, ANN201
        return model


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_round_trip_repeats_every_generator(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = draws()
    draws()  # move every generator on
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))  # plain tensors and tuples only
    assert draws() == expected


def tiny_tokenizer() -> ScratchGPTTokenizerFast:
    bpe = BPETokenizer.train("low lower lowest newer wider " * 20, vocab_size=270)
    return ScratchGPTTokenizerFast.from_bpe(bpe)


def test_save_final_model_writes_a_loadable_model_and_keeps_other_files(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    out = tmp_path / "run"
    out.mkdir()
    (out / "training_history.json").write_text("{}")
    save_final_model(model, tiny_tokenizer(), out)
    ids = random_ids(2, 6)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
    assert len(AutoTokenizer.from_pretrained(out)) == 271
    assert (out / "training_history.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left behind


def test_save_final_model_with_a_bpe_tokenizer_and_a_failed_save(tmp_path, monkeypatch):
    model = ScratchGPTForCausalLM(tiny_config())
    bpe = BPETokenizer.train("low lower lowest newer wider " * 20, vocab_size=270)
    out = tmp_path / "run"
    out.mkdir()
    save_final_model(model, bpe, out)
    assert (out / "bpe_config.json").is_file()  # BPETokenizer.save, not save_pretrained
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(tokenizer, directory):  # noqa: ANN001, ANN202
        raise OSError("disk full")

    monkeypatch.setattr(run_state, "save_tokenizer", broken)
    with pytest.raises(OSError, match="disk full"):
        save_final_model(ScratchGPTForCausalLM(tiny_config(n_embd=32)), bpe, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def make_run(seed: int):
    torch.manual_seed(seed)
    model = ScratchGPTForCausalLM(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def train_one_step(model, optimizer, scheduler) -> None:  # noqa: ANN001
    ids = random_ids(2, 8)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


@pytest.fixture
def checkpoint(tmp_path):
    model, optimizer, scheduler = make_run(0)
    train_one_step(model, optimizer, scheduler)
    history = LossHistory(dataset="toy")
    history.add_eval(1, 16, 0.5, 4.0, 4.5)
    state = {"step": 1, "micro_batches": 1, "tokens_seen": 16, "global_batch": 2}
    torch.manual_seed(42)
    folder = save_training_checkpoint(
        tmp_path / "checkpoints", state, history, model, optimizer, scheduler, None, OneProcess(), keep=2
    )
    return folder, model, optimizer, scheduler, torch.rand(3)


def test_checkpoint_round_trip(checkpoint):
    folder, model, optimizer, scheduler, next_draw = checkpoint
    assert folder.name == "checkpoint-00000001"
    assert json.loads((folder / "trainer_state.json").read_text())["tokens_seen"] == 16
    fresh, fresh_optimizer, fresh_scheduler = make_run(1)  # other weights, no optimizer state
    torch.manual_seed(7)
    state, history = restore_training_checkpoint(
        folder, fresh, fresh_optimizer, fresh_scheduler, OneProcess(), {"global_batch": 2}
    )
    assert state["step"] == 1 and history.val_losses == [4.5] and history.dataset == "toy"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], tensor, msg=name)
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(loaded["state"][0][key], saved["state"][0][key])
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"] == 1
    assert torch.equal(torch.rand(3), next_draw)  # the RNG continues where the saved run was


def test_restore_refuses_other_settings_architecture_or_process_count(checkpoint):
    folder = checkpoint[0]
    fresh, optimizer, scheduler = make_run(1)
    with pytest.raises(ValueError, match=r"global_batch: checkpoint 2, now 4"):
        restore_training_checkpoint(folder, fresh, optimizer, scheduler, OneProcess(), {"global_batch": 4})
    torch.manual_seed(0)
    wider = ScratchGPTForCausalLM(tiny_config(n_embd=32))
    wider_optimizer = torch.optim.AdamW(wider.parameters())
    with pytest.raises(ValueError, match=r"n_embd: checkpoint 64, now 32"):
        restore_training_checkpoint(
            folder, wider, wider_optimizer, scheduler, OneProcess(), {"global_batch": 2}
        )
    (folder / "rng_state_0.pt").unlink()
    with pytest.raises(ValueError, match="no rng_state_0.pt"):
        restore_training_checkpoint(folder, fresh, optimizer, scheduler, OneProcess(), {"global_batch": 2})
