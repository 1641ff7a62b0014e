"""Tests for scratch_gpt.training.pretrain (and training_state): the book's loss helpers, the schedule, parameter groups,
the loop's outputs, gradient accumulation, and exact resume (also after SIGKILL)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from model_helpers import tiny_config

from scratch_gpt import GPTModel, ScratchGPTForCausalLM
from scratch_gpt.data.sliding_window import GPTDatasetV1, create_dataloader_v1
from scratch_gpt.training.pretrain import (
    PretrainConfig,
    calc_loss_batch,
    calc_loss_loader,
    lr_at_step,
    param_groups,
    pretrain,
)
from scratch_gpt.training.run_state import rng_state, set_rng_state

REPO_ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def patterned_ids(n=2400, vocab=100, seed=0):
    """A learnable stream: a repeating random 37-token phrase with some noise."""
    g = torch.Generator().manual_seed(seed)
    phrase = torch.randint(1, vocab - 1, (37,), generator=g)
    ids = phrase.repeat(n // 37 + 1)[:n].clone()
    noise = torch.rand(n, generator=g) < 0.05
    ids[noise] = torch.randint(1, vocab - 1, (int(noise.sum()),), generator=g)
    return ids.tolist()


def datasets_for(ids, max_length=16):
    cut = int(0.9 * len(ids))
    return (
        GPTDatasetV1(ids[:cut], max_length=max_length, stride=max_length),
        GPTDatasetV1(ids[cut:], max_length=max_length, stride=max_length),
    )


def quiet(output_dir, **kw):
    """A small, silent PretrainConfig (keyword arguments override)."""
    settings = dict(max_steps=8, batch_size=4, eval_interval=4, sample_prompt=None, show_progress=False)
    return PretrainConfig(output_dir=output_dir, **{**settings, **kw})


def new_model(**overrides):
    torch.manual_seed(0)
    return ScratchGPTForCausalLM(tiny_config(initializer_range=0.02, **overrides))


# ---------------------------------------------------------------- the pure pieces


def test_lr_schedule_warmup_then_cosine():
    kw = dict(peak_lr=1.0, total_steps=11, warmup_steps=4, min_lr=0.1)
    lrs = [lr_at_step(s, **kw) for s in range(11)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear warmup reaches the peak
    assert lrs[4] == pytest.approx(1.0)  # cosine starts at the peak
    assert lrs[10] == pytest.approx(0.1)  # ... and ends at min_lr on the last step
    assert lrs[7] == pytest.approx(0.55)  # halfway: (peak + min) / 2
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lr_at_step(7, peak_lr=2.0, total_steps=10, warmup_steps=2, schedule="constant") == 2.0
    assert lr_at_step(0, peak_lr=2.0, total_steps=1) == 2.0  # one step, no warmup


def test_param_groups_decay_only_matrices():
    model = new_model()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n_decay = sum(p.numel() for p in decay["params"])
    n_all = sum(p.numel() for p in model.parameters())  # tied weights counted once
    assert n_decay + sum(p.numel() for p in no_decay["params"]) == n_all
    assert model.lm_head.weight is model.transformer.gpt.tok_emb.weight
    assert sum(p is model.lm_head.weight for p in decay["params"]) == 1  # the tied matrix appears once
    names_no_decay = {n for n, p in model.named_parameters() if p.dim() < 2}
    assert names_no_decay and all(("norm" in n) or n.endswith("bias") for n in names_no_decay)


def test_calc_loss_batch_equals_hf_shifted_loss_and_gpt_model():
    model = new_model().eval()
    ids = torch.tensor([patterned_ids(33)[:17], patterned_ids(33, seed=1)[:17]])  # (2, 17)
    x, y = ids[:, :-1], ids[:, 1:]
    ours = calc_loss_batch(x, y, model)
    hf = model(input_ids=x, labels=x).loss  # transformers shifts labels inside; one fewer target per row
    manual = torch.nn.functional.cross_entropy(
        model(input_ids=x).logits[:, :-1].flatten(0, 1), y[:, :-1].flatten()
    )
    assert torch.allclose(hf, manual, atol=1e-6)
    logits = model(input_ids=x).logits
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert torch.allclose(ours, expected, atol=1e-6)
    gpt = GPTModel(tiny_config()).eval()  # the plain book model returns logits directly
    assert calc_loss_batch(x, y, gpt).shape == ()
    # an untrained model is close to uniform over the vocabulary: loss ~ ln(vocab_size)
    assert abs(ours.item() - math.log(100)) < 0.1


def test_calc_loss_loader_averages_first_batches():
    model = new_model().eval()
    loader = create_dataloader_v1(patterned_ids(400), batch_size=2, max_length=8, stride=8, shuffle=False)
    losses = [calc_loss_batch(x, y, model).item() for x, y in loader]
    assert calc_loss_loader(loader, model) == pytest.approx(sum(losses) / len(losses))
    assert calc_loss_loader(loader, model, num_batches=3) == pytest.approx(sum(losses[:3]) / 3)
    assert math.isnan(calc_loss_loader([], model))


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    set_rng_state(state)
    b = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


# ---------------------------------------------------------------- the loop


def test_pretrain_learns_and_writes_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM

    train, val = datasets_for(patterned_ids())
    model = new_model()
    result = pretrain(
        model,
        train,
        val,
        quiet(tmp_path, max_steps=30, learning_rate=3e-3, eval_interval=10, save_interval=15),
    )
    log = result.history.step_log
    assert result.step == 30 and log["steps"] == list(range(1, 31))
    assert result.tokens_seen == 30 * 4 * 16
    assert result.history.val_losses[-1] < math.log(100) - 2.0  # well below chance: it learned the phrase
    assert result.history.val_losses[-1] < result.history.val_losses[0]
    assert result.history.steps == [10, 20, 30]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "checkpoint-00000015",
        "checkpoint-00000030",
    ]
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "ScratchGPTForCausalLM"
    x = torch.tensor([patterned_ids(20)])
    assert torch.allclose(reloaded(input_ids=x).logits, model.eval()(input_ids=x).logits, atol=1e-6)
    history = json.loads((tmp_path / "training_history.json").read_text())
    assert history["steps"] == [10, 20, 30] and len(history["step_log"]["lrs"]) == 30
    assert (tmp_path / "loss_plot.png").read_bytes()[:4] == b"\x89PNG"
    assert result.plot_path == tmp_path / "loss_plot.png"


def test_samples_with_a_tokenizer_and_epochs(tmp_path):
    class Bytes:  # a byte-level stand-in tokenizer (vocab 100 covers these bytes after % 100)
        def encode(self, text):
            return [b % 100 for b in text.encode()]

        def decode(self, ids):
            return "".join(chr(32 + i % 90) for i in ids)

    train, val = datasets_for(patterned_ids(1200))
    cfg = quiet(
        tmp_path, max_steps=None, num_epochs=2, sample_prompt="Hi", sample_tokens=5, save_interval=None
    )
    result = pretrain(new_model(), train, val, cfg, tokenizer=Bytes())
    per_epoch = len(train) // 4
    assert result.step == 2 * per_epoch
    assert result.history.step_log["epochs"][-1] == pytest.approx(2.0)
    assert all(isinstance(s, str) and len(s) == 7 for s in result.history.samples)
    assert not (tmp_path / "checkpoints").exists()


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    train, val = datasets_for(patterned_ids())
    common = dict(max_steps=6, eval_interval=6, save_interval=None, eval_batches=None)
    big = pretrain(new_model(), train, val, quiet(tmp_path / "a", batch_size=4, **common))
    acc = pretrain(new_model(), train, val, quiet(tmp_path / "b", batch_size=2, grad_accum_steps=2, **common))
    assert big.tokens_seen == acc.tokens_seen
    assert big.history.step_log["losses"] == pytest.approx(acc.history.step_log["losses"], abs=1e-5)
    assert big.history.val_losses == pytest.approx(acc.history.val_losses, abs=1e-5)


def test_resume_after_interruption_is_exact(tmp_path):
    """Dropout on, shuffling, accumulation and an epoch boundary: the resumed run equals the uninterrupted one."""
    train, val = datasets_for(patterned_ids(1200))  # 67 windows -> 16 batches of 4 per epoch
    settings = dict(max_steps=12, grad_accum_steps=2, save_interval=5, warmup_steps=2, eval_interval=4)
    full = pretrain(new_model(dropout=0.1), train, val, quiet(tmp_path / "full", **settings))

    class Stop(Exception):
        pass

    def stop_at_8(step, loss):
        if step == 8:
            raise Stop

    with pytest.raises(Stop):
        pretrain(new_model(dropout=0.1), train, val, quiet(tmp_path / "cut", **settings), on_step=stop_at_8)
    resumed = pretrain(new_model(dropout=0.1), train, val, quiet(tmp_path / "cut", resume=True, **settings))
    assert resumed.resumed_from.name == "checkpoint-00000005"
    assert resumed.history.step_log["losses"] == full.history.step_log["losses"]  # bit for bit
    assert resumed.history.val_losses == full.history.val_losses
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (
        tmp_path / "full" / "model.safetensors"
    ).read_bytes()


# ---------------------------------------------------------------- bad input


def test_resume_with_a_different_config_is_refused(tmp_path):
    train, val = datasets_for(patterned_ids())
    pretrain(new_model(), train, val, quiet(tmp_path, max_steps=2, save_interval=2))
    with pytest.raises(ValueError, match=r"n_embd: checkpoint 64, now 32"):
        pretrain(new_model(n_embd=32), train, val, quiet(tmp_path, max_steps=4, resume=True))
    with pytest.raises(ValueError, match=r"global_batch: checkpoint 4, now 8"):
        pretrain(new_model(), train, val, quiet(tmp_path, max_steps=4, grad_accum_steps=2, resume=True))


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
    train, val = datasets_for(patterned_ids())
    pretrain(new_model(), train, val, quiet(tmp_path, max_steps=4, save_interval=2, keep_checkpoints=3))
    latest = tmp_path / "checkpoints" / "checkpoint-00000004"
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a dying disk
    with pytest.warns(UserWarning, match=r"checkpoint-00000004: file model.safetensors is 100 bytes"):
        result = pretrain(new_model(), train, val, quiet(tmp_path, max_steps=6, save_interval=2, resume=True))
    assert result.resumed_from.name == "checkpoint-00000002"
    assert result.step == 6


def test_unwritable_output_and_too_little_data(tmp_path):
    train, val = datasets_for(patterned_ids())
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="cannot write to the output directory"):
        pretrain(new_model(), train, val, quiet(tmp_path / "file" / "out"))
    tiny = GPTDatasetV1(list(range(40)), max_length=16, stride=16)  # 2 windows < batch of 4
    with pytest.raises(ValueError, match="2 windows, fewer than one global batch of 4"):
        pretrain(new_model(), tiny, None, quiet(tmp_path / "out"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_steps": None}, "exactly one of max_steps"),
        ({"num_epochs": 2}, "exactly one of max_steps"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"grad_accum_steps": 1.5}, "grad_accum_steps must be a positive integer"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
        ({"learning_rate": 0}, "learning_rate > 0"),
        ({"min_lr": 1.0}, "min_lr <= learning_rate"),
        ({"lr_schedule": "linear"}, "lr_schedule must be"),
        ({"grad_clip": 0}, "grad_clip > 0"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be"),
        ({"save_interval": 0}, "save_interval must be a positive integer"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PretrainConfig(output_dir="unused", **{"max_steps": 4, **kwargs})


# ---------------------------------------------------------------- SIGKILL and resume, in real processes

CHILD = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_pretrain import datasets_for, new_model, patterned_ids, quiet
    from scratch_gpt.training.pretrain import pretrain

    out, resume = sys.argv[1], sys.argv[2] == "1"
    train, val = datasets_for(patterned_ids(1200))
    cfg = quiet(out, max_steps=12, save_interval=3, eval_interval=3, grad_accum_steps=2, resume=resume)
    pretrain(new_model(dropout=0.1), train, val, cfg, on_step=lambda s, l: print("STEP", s, repr(l), flush=True))
    print("DONE", flush=True)
    """
)


def run_child(script, out, resume):
    return subprocess.run(
        [sys.executable, str(script), str(out), "1" if resume else "0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=True,
    ).stdout


def steps_of(stdout):
    return {int(p[1]): p[2] for p in (line.split() for line in stdout.splitlines()) if p and p[0] == "STEP"}


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_reproduces_the_uninterrupted_run(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO_ROOT / "tests")))
    reference = steps_of(run_child(script, tmp_path / "ref", resume=False))
    assert sorted(reference) == list(range(1, 13))

    victim = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "run"), "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    seen = []
    for line in victim.stdout:
        seen.append(line)
        if line.startswith("STEP 8 "):  # checkpoints exist for steps 3 and 6; step 9's is not written yet
            os.kill(victim.pid, signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "model.safetensors").exists()  # it never finished

    resumed = run_child(script, tmp_path / "run", resume=True)
    assert "Resuming from" in resumed and "checkpoint-00000006" in resumed
    after = steps_of(resumed)
    assert sorted(after) == list(range(7, 13))
    assert all(after[s] == reference[s] for s in after)  # the same float, printed with repr
    assert steps_of("".join(seen))[7] == reference[7]
    ref_weights = (tmp_path / "ref" / "model.safetensors").read_bytes()
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == ref_weights


def test_time_limit_stops_cleanly_and_resume_continues(tmp_path):
    train, val = datasets_for(patterned_ids())
    cfg = quiet(tmp_path, max_steps=10, save_interval=5, time_limit_s=1e-9)
    result = pretrain(new_model(), train, val, cfg)
    assert result.stopped_early and result.step == 1
    assert result.history.steps == [1]  # a final evaluation at the stop
    assert (tmp_path / "checkpoints" / "checkpoint-00000001").is_dir() and (
        tmp_path / "model.safetensors"
    ).is_file()
    rest = pretrain(new_model(), train, val, quiet(tmp_path, max_steps=10, save_interval=5, resume=True))
    assert rest.step == 10 and not rest.stopped_early
    assert rest.history.step_log["steps"] == list(range(1, 11))
    with pytest.raises(ValueError, match="time_limit_s must be a positive number"):
        quiet(tmp_path, time_limit_s=0)


def test_on_step_returning_true_stops_cleanly(tmp_path):
    train, val = datasets_for(patterned_ids())
    result = pretrain(
        new_model(), train, val, quiet(tmp_path, max_steps=10), on_step=lambda step, loss: step == 3
    )
    assert result.stopped_early and result.step == 3 and result.history.steps == [3]
    assert (tmp_path / "checkpoints" / "checkpoint-00000003").is_dir()
