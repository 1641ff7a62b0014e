"""Sharded training (FSDP2) for the pretraining loop: the accelerator, lock-step evaluation, the final model.

Data parallelism (DDP) keeps a full copy of the weights, gradients and AdamW moments on every process; FSDP
("fully sharded data parallel", PyTorch's ``fully_shard``, a.k.a. FSDP2) keeps only a 1/N slice of each on each of
the N processes and gathers one transformer block's weights just before it runs. ``accelerate`` does the
wrapping: with ``accelerate launch --use_fsdp --fsdp_version 2`` (or an ``accelerate config`` file saying so)
``pretrain`` gets an ``Accelerator`` whose ``prepare`` calls ``fully_shard`` on every transformer block (the
model's ``_no_split_modules``: ``ScratchGPTBlock``), on the tied embedding/LM-head pair, and on the whole model.

What changes in the loop under FSDP, and lives here:

* ``fsdp_plugin`` / ``make_fsdp_accelerator``: the accelerator, also on a CPU-only machine (gloo), where
  ``accelerate`` itself would silently fall back to DDP; transformer-block wrapping is the default.
* ``lockstep``: every forward pass of a sharded model is a collective (all processes gather the block's
  weights together), so evaluation and the generated sample must run on *every* process, the same number of
  times; DDP evaluates on the unwrapped model, process by process.
* ``consolidated_model``: gather the shards into one ordinary ``PreTrainedModel`` on the main process (what
  ``save_pretrained`` writes), so the final output folder loads with ``AutoModelForCausalLM`` on one process.

Sharded checkpoints (``torch.distributed.checkpoint``) are in ``sharded_checkpoints.py``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = [
    "consolidated_model",
    "fsdp_plugin",
    "fsdp_requested",
    "is_sharded",
    "lockstep_rounds",
    "make_fsdp_accelerator",
    "plain_class",
    "shard_on_cpu",
]


def fsdp_requested() -> bool:
    """True when the process was started by ``accelerate launch`` with FSDP switched on (``--use_fsdp`` or an
    ``accelerate config`` file with ``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def fsdp_plugin(
    *,
    activation_checkpointing: bool | None = None,
    mixed_precision: str | None = None,
    reshard_after_forward: bool | None = None,
    cpu_offload: bool | None = None,
) -> Any:
    """accelerate's ``FullyShardedDataParallelPlugin`` for FSDP2, with every transformer block its own shard unit.

    Arguments left as None come from the ``FSDP_*`` environment variables that ``accelerate launch`` sets from its
    flags or config file (``fsdp_activation_checkpointing``, ``fsdp_reshard_after_forward``,
    ``fsdp_offload_params``), else accelerate's defaults. ``mixed_precision="bf16"`` keeps fp32 sharded master
    weights and optimizer state, gathers and computes in bf16 and reduces gradients in fp32 (FSDP2's
    ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``).
    """
    from accelerate import FullyShardedDataParallelPlugin

    if os.environ.get("FSDP_VERSION", "2") != "2":
        raise ValueError(
            f"FSDP_VERSION={os.environ['FSDP_VERSION']}: scratch_gpt supports FSDP2 only; launch with "
            "--fsdp_version 2 (or fsdp_version: 2 in the accelerate config)"
        )
    kwargs: dict[str, Any] = {"fsdp_version": 2}
    if "FSDP_AUTO_WRAP_POLICY" not in os.environ:
        kwargs["auto_wrap_policy"] = "transformer_based_wrap"  # each _no_split_modules block is a unit
    if activation_checkpointing is not None:
        kwargs["activation_checkpointing"] = activation_checkpointing
    if reshard_after_forward is not None:
        kwargs["reshard_after_forward"] = reshard_after_forward
    if cpu_offload is not None:
        kwargs["cpu_offload"] = cpu_offload
    if mixed_precision not in (None, "no"):
        from torch.distributed.fsdp import MixedPrecisionPolicy

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
        kwargs["mixed_precision_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    return FullyShardedDataParallelPlugin(**kwargs)


def make_fsdp_accelerator(mixed_precision: str = "no", plugin: Any = None) -> Any:
    """An ``Accelerator`` that shards the model with FSDP2 (``plugin``: ``fsdp_plugin()`` unless given).

    On GPUs this is plain ``Accelerator(fsdp_plugin=plugin)``. Without a GPU, accelerate sets up CPU
    data parallelism over gloo and ignores the plugin; ``shard_on_cpu`` then switches it to FSDP.
    """
    from accelerate import Accelerator

    plugin = plugin if plugin is not None else fsdp_plugin(mixed_precision=mixed_precision)
    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu, fsdp_plugin=plugin)
    return shard_on_cpu(accelerator, plugin)


def shard_on_cpu(accelerator: Any, plugin: Any) -> Any:
    """Make a several-process CPU ``Accelerator`` (gloo) shard with FSDP2 instead of DDP; returns it.

    accelerate 1.15 turns FSDP on only for accelerators (``MULTI_GPU`` and friends): on a CPU-only machine it
    silently runs DDP instead. FSDP2's ``fully_shard`` itself works on CPU with gloo, so this sets the shared
    accelerate state to FSDP exactly as ``AcceleratorState.__init__`` does on GPUs. It changes nothing on GPUs, in
    one process, or when FSDP is already on. This is what runs the multi-process FSDP tests of this package
    (also for ``Trainer``: call it on ``trainer.accelerator`` in ``create_accelerator_and_postprocess``).
    """
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    if (
        accelerator.device.type == "cpu"
        and accelerator.num_processes > 1
        and accelerator.distributed_type == DistributedType.MULTI_CPU
    ):
        if accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(accelerator.mixed_precision)
        # later AcceleratorState() calls copy PartialState's type: set both, as accelerate does for GPUs
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    return accelerator


def is_sharded(accelerator: Any) -> bool:
    """True when ``accelerator.prepare`` shards models with FSDP2."""
    return bool(getattr(accelerator, "is_fsdp2", False))


def lockstep_rounds(num_batches: int, accelerator: Any) -> int:
    """How many forward passes every process makes to cover ``num_batches`` batches dealt round-robin."""
    world = accelerator.num_processes
    return -(-num_batches // world)


def plain_class(model: torch.nn.Module) -> type:
    """The model's own class: ``fully_shard`` swaps ``ScratchGPTForCausalLM`` for a generated subclass
    ``FSDPScratchGPTForCausalLM``; this returns the original."""
    from torch.distributed.fsdp import FSDPModule

    for cls in type(model).__mro__:
        if not issubclass(cls, FSDPModule):
            return cls
    raise TypeError(f"cannot find the plain class of {type(model).__name__}")


def consolidated_model(model: torch.nn.Module, accelerator: Any) -> torch.nn.Module | None:
    """Gather a sharded model into one ordinary model on the main process (``None`` on the others).

    Every process must call this (the gather is a collective). The result is a fresh instance of the model's own
    class (plain ``nn.Linear`` layers, no FSDP hooks) holding the full fp32 weights on the CPU, ready for
    ``save_pretrained``; it needs the full model's memory on the main process once. ``model`` is a
    ``PreTrainedModel`` (rebuilt from its ``config``); for a peft model save the adapter with peft instead.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    inner = accelerator.unwrap_model(model, keep_torch_compile=False)
    full = get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not accelerator.is_main_process:
        return None
    cls = plain_class(inner)
    with torch.device("meta"):
        plain = cls(inner.config)
    plain.load_state_dict(full, assign=True, strict=False)
    plain.tie_weights()
    missing = [name for name, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"consolidating the sharded model left parameters unset: {missing}")
    for name, buf in list(plain.named_buffers()):
        if buf.is_meta:
            raise RuntimeError(f"consolidating the sharded model left buffer {name} unset")
    plain.generation_config = getattr(inner, "generation_config", plain.generation_config)
    return plain.eval()
