"""Fault tests (docs/reliability.md): two runs into one folder, NaN mid-run then resume, a token-file write killed
midway, a full disk while checkpointing, resume with changed settings. Each checks that earlier checkpoints and
files are intact. Tiny models, a few steps each."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from model_helpers import tiny_config

from scratch_gpt import ScratchGPTForCausalLM
from scratch_gpt.data.sliding_window import GPTDatasetV1
from scratch_gpt.data.token_files import read_token_file_info, write_token_ids
from scratch_gpt.training import run_state
from scratch_gpt.training.checkpoints import list_checkpoints, verify_checkpoint
from scratch_gpt.training.pretrain import NonFiniteError, PretrainConfig, lr_at_step, pretrain
from scratch_gpt.training.run_folder import RunFolderBusyError

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def windows(n=1200, vocab=100, max_length=16):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab - 1, (n,), generator=g).tolist()
    cut = int(0.9 * n)
    return (
        GPTDatasetV1(ids[:cut], max_length=max_length, stride=max_length),
        GPTDatasetV1(ids[cut:], max_length=max_length, stride=max_length),
    )


def config(out, **kw):
    settings = dict(max_steps=6, batch_size=4, eval_interval=3, eval_batches=1, save_interval=2,
                    keep_checkpoints=3, sample_prompt=None, show_progress=False)  # fmt: skip
    return PretrainConfig(output_dir=out, **{**settings, **kw})


def new_model():
    torch.manual_seed(0)
    return ScratchGPTForCausalLM(tiny_config(initializer_range=0.02))


def all_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def poison_after(model, step_to_poison: list[int]):
    """A forward hook that makes the logits NaN in the training forward right after ``on_step`` saw one of
    ``step_to_poison`` (so the *next* step's loss is NaN); returns the ``on_step`` callback."""
    armed = {"on": False}

    def hook(module, args, output):
        if module.training and armed["on"]:
            armed["on"] = False
            return output * float("nan")
        return output

    model.lm_head.register_forward_hook(hook)

    def on_step(step, loss):
        armed["on"] = step in step_to_poison

    return on_step


# ---------------------------------------------------------------- NaN mid-run, then resume


def test_nan_mid_run_stops_naming_the_step_and_resume_finishes(tmp_path):
    train, val = windows()
    model = new_model()
    with pytest.raises(
        NonFiniteError, match=r"training stopped at step 5: the loss is nan.*checkpoint-00000004"
    ):
        pretrain(model, train, val, config(tmp_path), on_step=poison_after(model, [4]))
    found = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["checkpoint-00000002", "checkpoint-00000004"]
    for ckpt in found:
        verify_checkpoint(ckpt)
    assert not (tmp_path / "model.safetensors").exists()  # no final model from a failed run
    assert all_finite(model)  # the NaN step did not update the weights
    result = pretrain(new_model(), train, val, config(tmp_path, resume=True))
    assert result.resumed_from.name == "checkpoint-00000004" and result.step == 6
    reloaded = ScratchGPTForCausalLM.from_pretrained(tmp_path)
    assert all_finite(reloaded)


def test_skip_nonfinite_skips_and_counts(tmp_path):
    train, val = windows()
    model = new_model()
    result = pretrain(
        model, train, val, config(tmp_path, on_nonfinite="skip"), on_step=poison_after(model, [1, 3])
    )
    assert result.step == 6 and result.extra["skipped_steps"] == [2, 4]
    assert all_finite(model)
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-00000006" / "trainer_state.json").read_text())
    assert state["skipped_steps"] == [2, 4]


def test_no_checkpoint_with_non_finite_weights_and_finite_ones_are_never_pruned(tmp_path):
    train, val = windows()
    model = new_model()

    def poison_weights(step, loss):
        if step == 3:  # after step 3 the weights are non-finite; the checkpoint at step 4 must not be written
            with torch.no_grad():
                model.lm_head.weight.mul_(float("inf"))

    cfg = config(tmp_path, keep_checkpoints=1, on_nonfinite="skip", max_steps=4)
    with pytest.raises(NonFiniteError, match=r"the model at step 4 has non-finite weights.*not saved"):
        pretrain(model, train, val, cfg, on_step=poison_weights)
    found = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["checkpoint-00000002"]  # kept: the finite one
    verify_checkpoint(found[0])
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


# ---------------------------------------------------------------- full disk


def test_full_disk_while_checkpointing_is_one_line_and_keeps_earlier_checkpoints(
    tmp_path, monkeypatch, capsys
):
    from scratch_gpt.training import pretrain as pretrain_module

    train, val = windows()
    calls = {"n": 0}
    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 2:  # the second checkpoint hits a full disk
                raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(run_state.torch, "save", save_until_full)
    with pytest.raises(run_state.NoSpaceLeftError) as err:
        pretrain_module.pretrain(new_model(), train, val, config(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert "no space left on the device of" in message and "checkpoint of step 4" in message
    assert "needs about" in message and "MB per checkpoint" in message and "checkpoint-00000002" in message
    found = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["checkpoint-00000002"]
    verify_checkpoint(found[0])  # intact
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # the partial one is gone
    monkeypatch.setattr(run_state.torch, "save", real_save)
    result = pretrain_module.pretrain(new_model(), train, val, config(tmp_path, resume=True))
    assert result.step == 6 and result.resumed_from.name == "checkpoint-00000002"


# ---------------------------------------------------------------- resume with changed settings


def test_resume_with_changed_settings_is_refused_or_applied_and_recorded(tmp_path):
    train, val = windows()
    pretrain(new_model(), train, val, config(tmp_path, max_steps=2))
    with pytest.raises(ValueError, match=r"changed settings \(learning_rate: checkpoint 0.0004, now 0.001; "
                                         r"seed: checkpoint 123, now 7\)"):  # fmt: skip
        pretrain(
            new_model(), train, val, config(tmp_path, max_steps=4, resume=True, learning_rate=1e-3, seed=7)
        )
    result = pretrain(
        new_model(), train, val,
        config(tmp_path, max_steps=4, resume=True, learning_rate=1e-3, allow_changed_settings=True),
    )  # fmt: skip
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-00000004" / "trainer_state.json").read_text())
    assert state["changed_settings"] == [
        {"step": 2, "changes": ["learning_rate: checkpoint 0.0004, now 0.001"]}
    ]
    assert state["config"]["learning_rate"] == 1e-3
    lrs = result.history.step_log["lrs"]  # the new peak is applied (the old one would give 1e-4 at step 3)
    assert lrs[2:] == pytest.approx([lr_at_step(s, peak_lr=1e-3, total_steps=4) for s in (2, 3)])


def test_resume_without_checkpoints_says_so(tmp_path):
    train, val = windows()
    with pytest.raises(FileNotFoundError, match="nothing to resume: .* holds no checkpoint"):
        pretrain(new_model(), train, val, config(tmp_path / "new", resume=True))
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- two runs into one folder

SLOW_RUN = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, sys.argv[3])
    from test_faults import config, new_model, windows
    from scratch_gpt.training.pretrain import pretrain
    torch.set_num_threads(1)
    train, val = windows()
    def on_step(step, loss):
        open(sys.argv[2], "w").close()
        time.sleep(0.3)
    pretrain(new_model(), train, val, config(sys.argv[1], max_steps=8), on_step=on_step)
    """
)


def test_two_concurrent_runs_into_one_folder(tmp_path):
    out, started = tmp_path / "run", tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(out), str(started), str(REPO_ROOT / "tests")], env=env
    )
    try:
        deadline = time.time() + 120
        while not started.exists():
            assert child.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.05)
        train, val = windows()
        with pytest.raises(RunFolderBusyError, match=rf"in use by another run: pid {child.pid}"):
            pretrain(new_model(), train, val, config(out, max_steps=8, resume=True))
        with pytest.raises(RunFolderBusyError):
            pretrain(new_model(), train, val, config(out, max_steps=8, overwrite=True))
    finally:
        assert child.wait(timeout=300) == 0
    found = list_checkpoints(out / "checkpoints")
    assert [p.name for p in found][-1] == "checkpoint-00000008"
    for ckpt in found:
        verify_checkpoint(ckpt)  # the second run deleted nothing of the first
    assert (out / "model.safetensors").is_file()


# ---------------------------------------------------------------- a token-file write killed midway

SLOW_WRITE = textwrap.dedent(
    """
    import sys, time
    from scratch_gpt.data.token_files import write_token_ids
    def docs():
        for i in range(1000):
            yield [1, 2, 3] * 1000
            if i == 5:
                open(sys.argv[2], "w").close()
                time.sleep(60)
    write_token_ids(sys.argv[1], docs(), vocab_size=10, eos_id=0)
    """
)


def test_kill_during_a_token_file_write_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "corpus.bin"
    write_token_ids(path, [[4, 5, 6]], vocab_size=10, eos_id=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ready = tmp_path.parent / f"{tmp_path.name}-ready"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(path), str(ready)], env=env)
    deadline = time.time() + 60
    while not ready.exists():
        assert child.poll() is None and time.time() < deadline, "the writer did not start"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers and all(f".corpus.bin.{child.pid}." in p.name for p in leftovers)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p not in leftovers} == before  # intact
    assert read_token_file_info(path).num_tokens == 4
    write_token_ids(path, [[7, 8]], vocab_size=10, eos_id=0)  # the next write removes the dead writer's file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.bin", "corpus.bin.json"]
    assert read_token_file_info(path).num_tokens == 3


# ---------------------------------------------------------------- stale token-file cache


def test_an_edited_corpus_is_tokenized_again_even_with_the_same_size_and_mtime(tmp_path):
    from scratch_gpt.training.from_corpus import _token_file, train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 20, encoding="utf-8")
    tok = train_tokenizer(["the cat sat on the mat. the dog sat on the rug."], 270, model_max_length=16)
    read = {"text_field": "text", "pattern": "*.txt", "errors": "strict"}
    path = _token_file(corpus, tok, tmp_path / "data", read)
    first = path.read_bytes()
    assert _token_file(corpus, tok, tmp_path / "data", read).read_bytes() == first  # unchanged: reused
    stat = corpus.stat()
    corpus.write_text("the dog sat on the rug. " * 20, encoding="utf-8")  # same size ...
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the same mtime
    assert corpus.stat().st_size == stat.st_size
    second = _token_file(corpus, tok, tmp_path / "data", read).read_bytes()
    assert second != first
    ids = [int.from_bytes(second[i : i + 2], "little") for i in range(0, len(second), 2)]
    assert tok.decode(ids[:-1]) == corpus.read_text(encoding="utf-8")  # the new text, then one end-of-text id


def test_special_token_text_in_a_corpus_is_ordinary_text_by_default(tmp_path):
    from scratch_gpt.training.from_corpus import _token_file, train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a <|endoftext|> b", encoding="utf-8")
    tok = train_tokenizer(["a b c"], 259, model_max_length=16)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    read = {"text_field": "text", "pattern": "*.txt", "errors": "strict"}

    def ids(**kw):
        raw = _token_file(corpus, tok, tmp_path / "data", read, **kw).read_bytes()
        return [int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw), 2)]

    plain = ids()
    assert plain.count(eos) == 1 and plain[-1] == eos  # only the separator after the document
    assert tok.decode(plain[:-1]) == "a <|endoftext|> b"
    special = ids(specials_in_text=True)
    assert special.count(eos) == 2  # the option encodes the text as the special token
