"""Sharded (FSDP2) pretraining under ``accelerate launch`` on CPU/gloo: training.fsdp and
training.sharded_checkpoints.

The multi-process tests share one set of runs (a module fixture), all of the same tiny model, data and settings:

* ``single``: 1 process, batch 4;                   ``fsdp``: 2 processes x batch 2, each block sharded;
* ``killed``: ``fsdp`` with activation checkpointing, SIGKILLed after step 5 (last checkpoint: step 4), then
  resumed on 2 processes (activation checkpointing again): it must reproduce ``fsdp`` bit for bit, which checks
  the resume and that recomputing activations changes nothing;
* ``resharded``: the step-4 checkpoint of ``killed`` resumed on 1 process (batch 4: the same global batch);
* ``bf16``: ``fsdp`` with bf16 mixed precision (FSDP2's ``MixedPrecisionPolicy``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import data_file
from model_helpers import tiny_config

from scratch_gpt import ScratchGPTForCausalLM, register_auto_classes
from scratch_gpt.training import fsdp
from scratch_gpt.training.sharded_checkpoints import consolidate_checkpoint, is_sharded_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
AC = ("--fsdp_activation_checkpointing", "true")  # accelerate's activation checkpointing of every block

WORKER = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_pretrain import datasets_for, new_model, patterned_ids, quiet
    from scratch_gpt.training.pretrain import pretrain

    out, batch, resume, kill_at = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
    precision = sys.argv[5]
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    train, val = datasets_for(patterned_ids(1600))
    cfg = quiet(out, max_steps=6, batch_size=batch, eval_interval=3, eval_batches=None, save_interval=2,
                learning_rate=2e-3, warmup_steps=1, resume=resume, mixed_precision=precision)

    def on_step(step, loss):
        if step == kill_at and rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # a crash after step 5; the last checkpoint is step 4

    model = new_model()
    result = pretrain(model, train, val, cfg, on_step=on_step if kill_at else None)
    summary = {{"losses": result.history.step_log["losses"], "val": result.history.val_losses,
               "tokens": result.tokens_seen, "world": world, "class": type(model).__name__,
               "param_dtype": str(getattr(getattr(model, "_get_fsdp_state", lambda: None)(), "_mp_policy", None))}}
    # the sharded model (all processes: its forward is a collective) against the consolidated output folder
    probe = torch.tensor([[int(v) for v in val[0][0]], [int(v) for v in val[1][0]]])
    with torch.no_grad():
        sharded_logits = model.eval()(input_ids=probe, use_cache=False).logits
    if rank == 0:
        from transformers import AutoModelForCausalLM
        import scratch_gpt
        from scratch_gpt.kernels import use_fast_kernels
        scratch_gpt.register_auto_classes()  # see the report: registration can miss the models otherwise
        loaded = use_fast_kernels(AutoModelForCausalLM.from_pretrained(out)).eval()
        with torch.no_grad():
            plain_logits = loaded(input_ids=probe, use_cache=False).logits
        summary["logits_max_diff"] = float((plain_logits - sharded_logits).abs().max())
        summary["loaded_class"] = type(loaded).__name__
        (out / "summary.json").write_text(json.dumps(summary))
    from scratch_gpt.training.launch import end_process_group, exit_process
    end_process_group()
    exit_process(0)  # without Python's shutdown, where gloo can abort (training/launch.py)
    """
)


def _env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCELERATE_", "FSDP_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))
    }
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def _launcher() -> str:
    launcher = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    if not Path(launcher).exists():
        pytest.skip("the accelerate launcher is not installed")
    return launcher


def _run(
    script, out, batch, *, processes, resume=False, kill_at=0, port=29591, fsdp_flags=(), precision="no"
):
    args = [str(script), str(out), str(batch), "1" if resume else "0", str(kill_at), precision]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [_launcher(), "launch", "--use_fsdp", "--fsdp_version", "2", *fsdp_flags, "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=_env())


def _summary(out):
    return json.loads((Path(out) / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    script = tmp / "worker.py"
    script.write_text(WORKER.format(tests=str(REPO_ROOT / "tests")))
    done = {}
    for name, batch, processes, kw in [
        ("fsdp", 2, 2, {}),
        ("single", 4, 1, {}),
        ("killed", 2, 2, {"kill_at": 5, "port": 29592, "fsdp_flags": AC}),
    ]:
        proc = _run(script, tmp / name, batch, processes=processes, **kw)
        done[name] = proc
        if name != "killed":
            assert proc.returncode == 0, proc.stderr[-4000:]
    assert done["killed"].returncode != 0  # it died
    assert not (tmp / "killed" / "model.safetensors").exists()  # it never finished
    # the step-4 checkpoint, resumed on 1 process (copied first: the 2-process resume below writes on)
    shutil.copytree(tmp / "killed", tmp / "resharded")
    proc = _run(script, tmp / "killed", 2, processes=2, resume=True, port=29593, fsdp_flags=AC)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = _run(script, tmp / "resharded", 4, processes=1, resume=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    done["resharded_stderr"] = proc.stderr
    proc = _run(script, tmp / "bf16", 2, processes=2, port=29594, precision="bf16")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp, done


@pytest.mark.slow
def test_fsdp_matches_one_process_at_the_same_global_batch(runs):
    tmp, _ = runs
    sharded, single = _summary(tmp / "fsdp"), _summary(tmp / "single")
    assert sharded["world"] == 2 and single["world"] == 1
    assert sharded["class"] == "FSDPScratchGPTForCausalLM"  # really sharded, not DDP
    assert sharded["tokens"] == single["tokens"] == 6 * 4 * 16
    # measured: losses at most 4.8e-7, val losses 1.1e-7 apart (the same sums in another order: gradients are
    # reduce-scattered in fp32 over 2 halves of the batch); 2e-5 is 40x that and still far below a real bug
    assert sharded["losses"] == pytest.approx(single["losses"], abs=2e-5, rel=0)
    assert sharded["val"] == pytest.approx(single["val"], abs=2e-5, rel=0)
    assert single["losses"][-1] < single["losses"][0]  # it trained
    ckpt = tmp / "fsdp" / "checkpoints" / "checkpoint-00000006"
    assert is_sharded_checkpoint(ckpt)
    assert sorted(p.name for p in (ckpt / "sharded").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (ckpt / "model.safetensors").exists() and not list(ckpt.parent.glob(".tmp-*"))


@pytest.mark.slow
def test_consolidated_model_gives_the_sharded_models_logits(runs):
    tmp, _ = runs
    sharded = _summary(tmp / "fsdp")
    assert sharded["loaded_class"] == "ScratchGPTForCausalLM"  # an ordinary folder, loaded on one process
    assert sharded["logits_max_diff"] == 0.0
    config = json.loads((tmp / "fsdp" / "config.json").read_text())
    assert config["architectures"] == ["ScratchGPTForCausalLM"]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical_to_the_uninterrupted_fsdp_run(runs):
    """Also with activation checkpointing on in the killed and resumed runs: recomputation is exact."""
    tmp, _ = runs
    assert _summary(tmp / "killed")["losses"] == _summary(tmp / "fsdp")["losses"]  # exact, all 6 steps
    assert _summary(tmp / "killed")["val"] == _summary(tmp / "fsdp")["val"]


@pytest.mark.slow
def test_two_process_checkpoint_resumes_on_one_process(runs):
    tmp, done = runs
    resharded, reference = _summary(tmp / "resharded"), _summary(tmp / "fsdp")
    assert resharded["world"] == 1 and resharded["class"] == "ScratchGPTForCausalLM"
    assert resharded["losses"][:4] == reference["losses"][:4]  # the history up to the checkpoint, as saved
    # measured: steps 5-6 equal here, final val loss 1.1e-7 apart (resharding is exact; the order of sums changes)
    assert resharded["losses"][4:] == pytest.approx(reference["losses"][4:], abs=2e-5, rel=0)
    assert "written by 2 processes on 1" in done["resharded_stderr"]


@pytest.mark.slow
def test_bf16_mixed_precision_policy_trains_close_to_fp32(runs):
    tmp, _ = runs
    bf16, fp32 = _summary(tmp / "bf16"), _summary(tmp / "fsdp")
    assert (
        "param_dtype=torch.bfloat16" in bf16["param_dtype"]
        and "reduce_dtype=torch.float32" in bf16["param_dtype"]
    )
    assert "param_dtype=None" in fp32["param_dtype"]
    # measured: at most 8.2e-4 apart over 6 steps (bf16 keeps 8 bits of mantissa: ~4e-3 relative per rounding)
    assert bf16["losses"] == pytest.approx(fp32["losses"], abs=5e-3, rel=0)
    assert bf16["losses"] != fp32["losses"]  # it really computed in bf16


@pytest.mark.slow
def test_cli_pretrain_under_fsdp_writes_sharded_checkpoints_and_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = data_file("the-verdict.txt")
    out = tmp_path / "run"
    proc = subprocess.run(
        [_launcher(), "launch", "--use_fsdp", "--fsdp_version", "2", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29596", "-m", "scratch_gpt",
         "pretrain", str(data), "--output", str(out), "--max-steps", "2", "--save-interval", "2",
         "--vocab-size", "300", "--context-length", "16", "--n-layer", "2", "--n-embd", "32", "--n-head", "2",
         "--batch-size", "2", "--eval-batches", "3", "--no-progress"],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "trained 2 steps" in proc.stdout
    ckpt = out / "checkpoints" / "checkpoint-00000002"
    assert is_sharded_checkpoint(ckpt) and len(list((ckpt / "sharded").glob("*.distcp"))) == 2
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Every effort moves you", return_tensors="pt").input_ids[:, :8]
    assert model.config.n_layer == 2 and type(model).__name__ == "ScratchGPTForCausalLM"
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], model.config.vocab_size)


# ---------------------------------------------------------------- one process, fast


def test_fsdp_plugin_shards_each_transformer_block(monkeypatch):
    for name in ("FSDP_AUTO_WRAP_POLICY", "FSDP_VERSION", "FSDP_ACTIVATION_CHECKPOINTING"):
        monkeypatch.delenv(name, raising=False)
    plugin = fsdp.fsdp_plugin(activation_checkpointing=True, mixed_precision="bf16")
    assert plugin.fsdp_version == 2 and plugin.activation_checkpointing
    assert plugin.mixed_precision_policy.param_dtype == torch.bfloat16
    assert plugin.mixed_precision_policy.reduce_dtype == torch.float32
    model = ScratchGPTForCausalLM(tiny_config())
    plugin.set_auto_wrap_policy(model)
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = [name for name, module in model.named_modules() if policy(module)]
    assert wrapped == ["transformer.gpt.trf_blocks.0", "transformer.gpt.trf_blocks.1"]


def test_fsdp_plugin_refuses_fsdp1(monkeypatch):
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ValueError, match="FSDP2 only"):
        fsdp.fsdp_plugin()


def test_consolidate_checkpoint_rebuilds_an_ordinary_model(tmp_path):
    import torch.distributed.checkpoint as dcp

    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config())
    ckpt = tmp_path / "checkpoint-00000001"
    dcp.save({"model": model.state_dict()}, checkpoint_id=str(ckpt / "sharded"), no_dist=True)
    model.config.save_pretrained(str(ckpt))
    assert is_sharded_checkpoint(ckpt)
    out = consolidate_checkpoint(ckpt, tmp_path / "model")
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert loaded.lm_head.weight is loaded.transformer.gpt.tok_emb.weight  # still tied


def test_consolidate_checkpoint_rejects_an_unsharded_folder(tmp_path):
    with pytest.raises(ValueError, match="not a sharded checkpoint"):
        consolidate_checkpoint(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------- Trainer (fsdp settings) and peft LoRA under FSDP2

TRAINER_WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_pretrain import new_model, patterned_ids
    from torch.distributed.fsdp import FSDPModule
    from scratch_gpt import ScratchGPTForCausalLM
    from transformers import Trainer, TrainingArguments
    from scratch_gpt.training.fsdp import shard_on_cpu

    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    ids = patterned_ids(1600)
    rows = [{{"input_ids": ids[i : i + 16], "labels": ids[i : i + 16]}} for i in range(0, 1280, 16)]

    class CPUFSDPTrainer(Trainer):  # on GPUs plain Trainer shards; on CPU accelerate would fall back to DDP
        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if self.args.fsdp_plugin_args is not None:
                from accelerate.utils import FullyShardedDataParallelPlugin
                shard_on_cpu(self.accelerator, FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args))
                self.is_fsdp_enabled = True

    summary = {{"world": world}}
    for name in ("full", "lora"):
        model = new_model()
        if name == "lora":
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["W_query", "W_value"]))
        fsdp = {{}}
        if world > 1:
            fsdp = dict(fsdp=True, fsdp_config={{"fsdp_version": 2, "transformer_layer_cls_to_wrap": ScratchGPTForCausalLM._no_split_modules,
                                                "state_dict_type": "FULL_STATE_DICT"}})
        args = TrainingArguments(output_dir=str(out / name), per_device_train_batch_size=batch, max_steps=4,
                                 learning_rate=2e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                                 seed=0, disable_tqdm=True, lr_scheduler_type="constant", **fsdp)
        trainer = CPUFSDPTrainer(model=model, args=args, train_dataset=rows)
        trainer.train()
        units = sum(isinstance(m, FSDPModule) for m in trainer.model_wrapped.modules())
        # FULL_STATE_DICT: Trainer gathers the shards; the full model is saved as our own class, not FSDP's
        trainer.save_model(str(out / name / "final"))
        summary[name] = {{"losses": [r["loss"] for r in trainer.state.log_history if "loss" in r], "units": units}}
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary))
    from scratch_gpt.training.launch import end_process_group, exit_process
    end_process_group()
    exit_process(0)  # without Python's shutdown, where gloo can abort (training/launch.py)
    """
)


@pytest.mark.slow
def test_trainer_with_fsdp_settings_and_peft_lora_under_fsdp(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    script = tmp_path / "trainer_worker.py"
    script.write_text(TRAINER_WORKER.format(tests=str(REPO_ROOT / "tests")))
    two = subprocess.run(
        [_launcher(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", "29595", str(script), str(tmp_path / "two"), "2"],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=_env(),
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-4000:]
    one = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one"), "4"],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=_env(),
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-4000:]
    sharded, single = _summary(tmp_path / "two"), _summary(tmp_path / "one")
    assert sharded["world"] == 2 and single["world"] == 1
    assert (
        sharded["full"]["units"] == 5
    )  # 2 blocks, the tied embedding + head (one group of 2 modules), the root
    assert single["full"]["units"] == single["lora"]["units"] == 0
    assert sharded["lora"]["units"] == 5  # the peft model is sharded block by block too
    for name in ("full", "lora"):  # measured: at most 5e-7 apart
        assert sharded[name]["losses"] == pytest.approx(single[name]["losses"], abs=2e-5, rel=0)
    assert single["full"]["losses"][-1] < single["full"]["losses"][0]
    # trainer.save_model() of the sharded model: an ordinary folder (our auto_map and remote code, not FSDP's)
    # with the 1-process run's weights (to rounding)
    saved = json.loads((tmp_path / "two" / "full" / "final" / "config.json").read_text())
    assert saved["architectures"] == ["ScratchGPTForCausalLM"]
    assert saved["auto_map"]["AutoModelForCausalLM"] == "modeling_scratch_gpt.ScratchGPTForCausalLM"
    assert (tmp_path / "two" / "full" / "final" / "modeling_scratch_gpt.py").is_file()
    assert not list((tmp_path / "two" / "full" / "final").glob("*fsdp*.py"))
    register_auto_classes()  # main's lazy registration can miss the models (see the fsdp branch's report)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "full" / "final").eval()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "one" / "full" / "final").eval()
    # Adam divides by sqrt(v): where a gradient is ~0, float32 rounding noise can flip a step's sign, so single
    # weights may differ by up to 2 x lr per step (4 steps, lr 2e-3); almost all agree to 1e-5, and the outputs do
    off = total = 0
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(pa, pb, atol=4 * 2 * 2e-3, rtol=0), name
        off, total = off + int(((pa - pb).abs() > 1e-5).sum()), total + pa.numel()
    assert off <= total // 1000, (off, total)
    probe = torch.tensor([[1, 5, 7, 9, 11, 13, 17, 19]])
    with torch.no_grad():
        assert torch.allclose(a(input_ids=probe).logits, b(input_ids=probe).logits, atol=1e-3, rtol=0)
    # the LoRA adapter gathered from the shards equals the 1-process one (to rounding), and it did move
    la = load_file(str(tmp_path / "two" / "lora" / "final" / "adapter_model.safetensors"))
    lb = load_file(str(tmp_path / "one" / "lora" / "final" / "adapter_model.safetensors"))
    assert la.keys() == lb.keys() and any("lora_B" in k for k in la)
    for key in la:
        assert torch.allclose(la[key], lb[key], atol=1e-5, rtol=0), key
    assert any(la[k].abs().max() > 0 for k in la if "lora_B" in k)  # lora_B starts at zero: it trained


NAN_WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_pretrain import datasets_for, new_model, patterned_ids, quiet
    from scratch_gpt.training.launch import end_process_group, exit_process
    from scratch_gpt.training.pretrain import NonFiniteError, pretrain

    out, mode = sys.argv[1], sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    train, val = datasets_for(patterned_ids(1600))
    model = new_model()
    training_forwards = []

    def poison(module, args, output):  # process 1 only, its 3rd training forward: NaN logits there alone
        if module.training:
            training_forwards.append(1)
            if rank == 1 and len(training_forwards) == 3:
                return output * float("nan")

    model.lm_head.register_forward_hook(poison)
    cfg = quiet(out, max_steps=5, batch_size=2, eval_interval=100, save_interval=None, learning_rate=2e-3,
                warmup_steps=1, on_nonfinite=mode)
    try:
        result = pretrain(model, train, val, cfg)
    except NonFiniteError as err:  # each process reports in its own file (their stdout lines interleave)
        (Path(out).parent / f"report_{{rank}}.json").write_text(json.dumps({{"rank": rank, "stopped": str(err)}}))
        end_process_group()
        exit_process(3)
    finite = all(bool(torch.isfinite(p.full_tensor() if hasattr(p, "full_tensor") else p).all())
                 for p in model.parameters())
    report = {{"rank": rank, "skipped": result.extra["skipped_steps"], "steps": result.step, "finite": finite}}
    (Path(out).parent / f"report_{{rank}}.json").write_text(json.dumps(report))
    end_process_group()
    exit_process(0)  # without Python's shutdown, where gloo can abort (training/launch.py)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_a_nan_on_one_process_stops_or_skips_on_every_process_alike(tmp_path, mode):
    """A non-finite loss on one process only (rank 1, step 3) is seen by every process at the same step: the loss is
    averaged across processes and the gradient norm is taken over the reduced gradients. With "stop" every process
    raises NonFiniteError naming step 3 (none is left waiting in a collective: the launch ends, it does not hang);
    with "skip" every process skips step 3 and finishes with finite weights."""
    script = tmp_path / "nan_worker.py"
    script.write_text(NAN_WORKER.format(tests=str(REPO_ROOT / "tests")))
    proc = subprocess.run(
        [_launcher(), "launch", "--use_fsdp", "--fsdp_version", "2", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29597", str(script),
         str(tmp_path / "run"), mode],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=_env(),
    )  # fmt: skip
    reports = {}
    for path in sorted(tmp_path.glob("report_*.json")):
        report = json.loads(path.read_text())
        reports[report["rank"]] = report
    assert sorted(reports) == [0, 1], proc.stdout[-2000:] + proc.stderr[-3000:]
    if mode == "stop":
        assert proc.returncode != 0
        for report in reports.values():
            assert "training stopped at step 3" in report["stopped"], report
            assert "nan" in report["stopped"]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        for report in reports.values():
            assert report["skipped"] == [3] and report["steps"] == 5 and report["finite"], report


def test_the_documented_accelerate_config_recipes_are_valid_fsdp2_configs(tmp_path):
    """The two YAML recipes of docs/distributed.md load with accelerate's own config reader, as FSDP2 configs
    that wrap the model's block class (the recipes are documented, not run: that needs GPUs)."""
    import re

    from accelerate.commands.config.config_args import load_config_from_file

    text = (REPO_ROOT / "docs" / "distributed.md").read_text(encoding="utf-8")
    recipes = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(recipes) == 2
    for number, recipe in enumerate(recipes):
        path = tmp_path / f"recipe{number}.yaml"
        path.write_text(recipe)
        config = load_config_from_file(str(path))
        assert config.distributed_type == "FSDP" and config.mixed_precision == "bf16"
        assert config.fsdp_config["fsdp_version"] == 2
        assert [
            config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        ] == ScratchGPTForCausalLM._no_split_modules
        assert config.num_processes == 8 * config.num_machines
