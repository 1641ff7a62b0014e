"""``accelerate launch --multi_gpu --num_processes 2`` on CPU (DDP over gloo): the loop trains and matches one
process that uses the same global batch, within floating-point tolerance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_pretrain import datasets_for, new_model, patterned_ids, quiet
    from scratch_gpt.training.pretrain import pretrain

    out, per_process_batch, grad_accum = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    train, val = datasets_for(patterned_ids(1600))
    cfg = quiet(out, max_steps=6, batch_size=per_process_batch, grad_accum_steps=grad_accum, eval_interval=3,
                eval_batches=None, save_interval=3, learning_rate=2e-3, warmup_steps=1)
    result = pretrain(new_model(), train, val, cfg)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        summary = {{"losses": result.history.step_log["losses"], "val": result.history.val_losses,
                   "tokens": result.tokens_seen, "world": int(__import__("os").environ.get("WORLD_SIZE", "1"))}}
        (__import__("pathlib").Path(out) / "summary.json").write_text(json.dumps(summary))
    from scratch_gpt.training.launch import end_process_group, exit_process
    end_process_group()
    exit_process(0)  # without Python's shutdown, where gloo can abort (training/launch.py)
    """
)


def _env():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))
    }
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    return env


@pytest.mark.slow
def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path):
    if shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists():
        pytest.skip("the accelerate launcher is not installed")
    launcher = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=str(REPO_ROOT / "tests")))

    two = subprocess.run(
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", "29571", str(script), str(tmp_path / "ddp"), "2", "1"],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=_env(),
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "single"), "4", "1"],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=_env(),
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]

    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp["world"] == 2 and single["world"] == 1
    assert ddp["tokens"] == single["tokens"] == 6 * 4 * 16
    assert ddp["losses"] == pytest.approx(single["losses"], abs=2e-5)
    assert ddp["val"] == pytest.approx(single["val"], abs=2e-5)
    assert single["losses"][-1] < single["losses"][0]  # it trained
    # each process wrote its own RNG state into the (one, atomic) checkpoint
    ckpt = tmp_path / "ddp" / "checkpoints" / "checkpoint-00000006"
    assert (ckpt / "rng_state_0.pt").is_file() and (ckpt / "rng_state_1.pt").is_file()
