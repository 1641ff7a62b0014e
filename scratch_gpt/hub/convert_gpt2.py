"""GPT-2 weights both ways (book chapter 5, "Loading pretrained weights from OpenAI").

Chapter 5 copies OpenAI's GPT-2 weights into the book's ``GPTModel`` one tensor at a time. Here the same copy is a
*data table*, ``NAME_TABLE``: one row per parameter, ``{}`` standing for the block number, read left to right to
go from Hugging Face's ``GPT2LMHeadModel`` to our ``ScratchGPTForCausalLM`` and right to left to go back. Three
differences between the two layouts are handled by the row's ``transform``:

* ``"copy"``   — same tensor (embeddings, LayerNorm ``weight``/``bias`` = our ``scale``/``shift``, biases).
* ``"conv1d"`` — GPT-2 stores its linear layers as ``Conv1D`` with the weight transposed: ``(in, out)`` where
  ``nn.Linear`` has ``(out, in)``.
* ``"query"``, ``"key"``, ``"value"`` — GPT-2 fuses the three projections into one ``c_attn`` (queries, keys, values
  concatenated on the output dimension, so ``(n_embd, 3 * n_embd)``); each of our ``W_query``/``W_key``/``W_value``
  is one third of it (and a ``Conv1D``, so weights are transposed too).

Public API: ``gpt2_to_scratch_state_dict`` / ``scratch_to_gpt2_state_dict`` (pure tensor functions),
``gpt2_config_to_scratch`` / ``scratch_config_to_gpt2``, ``load_gpt2`` (a GPT-2 directory or model in,
``ScratchGPTForCausalLM`` out), ``to_gpt2`` (``GPT2LMHeadModel`` out), ``save_as_gpt2``, and the two directory-to-
directory converters the CLI uses (``convert_from_gpt2``, ``convert_to_gpt2``).

Conversion rules worth knowing:

* GPT-2 always has query/key/value biases. A model with ``qkv_bias=False`` (the book's default) is exported with
  *zero* biases, which computes exactly the same thing; converting back gives ``qkv_bias=True`` with those zeros.
* GPT-2 has three dropout rates (``embd_pdrop``, ``attn_pdrop``, ``resid_pdrop``), we have one: we take
  ``resid_pdrop`` and warn when the three differ (dropout is off at inference, so logits are unaffected).
* GPT-2 configs we cannot represent raise: an activation other than the tanh GELU, cross-attention, unscaled
  attention or ``scale_attn_by_inverse_layer_idx``. ``reorder_and_upcast_attn`` only changes fp16 numerics; ignored.

Not here: downloading (give a local directory, e.g. one written by ``GPT2LMHeadModel.save_pretrained``), OpenAI's
original TensorFlow checkpoints (the book's ``gpt_download.py`` format), ``GPT2ForSequenceClassification`` and other
heads, and sharded ``pytorch_model-*.bin`` files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..atomic_io import write_dir_atomically
from ..configuration_scratch_gpt import ScratchGPTConfig
from ..constants import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_FILES
from ..modeling_scratch_gpt import ScratchGPTForCausalLM
from .loading import read_checkpoint_config

if TYPE_CHECKING:  # transformers' GPT-2 classes are imported where they are used
    from transformers import GPT2Config, GPT2LMHeadModel

# (our parameter name, GPT-2's parameter name, transform). "{}" is the transformer block's index.
NAME_TABLE: tuple[tuple[str, str, str], ...] = (
    ("transformer.gpt.tok_emb.weight", "transformer.wte.weight", "copy"),
    ("transformer.gpt.pos_emb.weight", "transformer.wpe.weight", "copy"),
    ("transformer.gpt.trf_blocks.{}.norm1.scale", "transformer.h.{}.ln_1.weight", "copy"),
    ("transformer.gpt.trf_blocks.{}.norm1.shift", "transformer.h.{}.ln_1.bias", "copy"),
    ("transformer.gpt.trf_blocks.{}.att.W_query.weight", "transformer.h.{}.attn.c_attn.weight", "query"),
    ("transformer.gpt.trf_blocks.{}.att.W_key.weight", "transformer.h.{}.attn.c_attn.weight", "key"),
    ("transformer.gpt.trf_blocks.{}.att.W_value.weight", "transformer.h.{}.attn.c_attn.weight", "value"),
    ("transformer.gpt.trf_blocks.{}.att.W_query.bias", "transformer.h.{}.attn.c_attn.bias", "query"),
    ("transformer.gpt.trf_blocks.{}.att.W_key.bias", "transformer.h.{}.attn.c_attn.bias", "key"),
    ("transformer.gpt.trf_blocks.{}.att.W_value.bias", "transformer.h.{}.attn.c_attn.bias", "value"),
    ("transformer.gpt.trf_blocks.{}.att.out_proj.weight", "transformer.h.{}.attn.c_proj.weight", "conv1d"),
    ("transformer.gpt.trf_blocks.{}.att.out_proj.bias", "transformer.h.{}.attn.c_proj.bias", "copy"),
    ("transformer.gpt.trf_blocks.{}.norm2.scale", "transformer.h.{}.ln_2.weight", "copy"),
    ("transformer.gpt.trf_blocks.{}.norm2.shift", "transformer.h.{}.ln_2.bias", "copy"),
    ("transformer.gpt.trf_blocks.{}.ff.fc_in.weight", "transformer.h.{}.mlp.c_fc.weight", "conv1d"),
    ("transformer.gpt.trf_blocks.{}.ff.fc_in.bias", "transformer.h.{}.mlp.c_fc.bias", "copy"),
    ("transformer.gpt.trf_blocks.{}.ff.fc_out.weight", "transformer.h.{}.mlp.c_proj.weight", "conv1d"),
    ("transformer.gpt.trf_blocks.{}.ff.fc_out.bias", "transformer.h.{}.mlp.c_proj.bias", "copy"),
    ("transformer.gpt.final_norm.scale", "transformer.ln_f.weight", "copy"),
    ("transformer.gpt.final_norm.shift", "transformer.ln_f.bias", "copy"),
    ("lm_head.weight", "lm_head.weight", "copy"),
)
_QKV_PARTS = ("query", "key", "value")  # their order inside GPT-2's fused c_attn

# GPT-2 activations that are exactly our GELU (the tanh approximation)
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")
# Non-parameter buffers found in older GPT-2 checkpoints (the causal mask), dropped on load
_GPT2_BUFFER = re.compile(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _rows(n_layer: int) -> list[tuple[str, str, str]]:
    """``NAME_TABLE`` with every ``{}`` row repeated for blocks ``0 .. n_layer - 1``."""
    rows = []
    for ours, theirs, transform in NAME_TABLE:
        if "{}" in ours:
            rows.extend((ours.format(i), theirs.format(i), transform) for i in range(n_layer))
        else:
            rows.append((ours, theirs, transform))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# configs


def gpt2_config_to_scratch(config: GPT2Config | Mapping[str, Any]) -> ScratchGPTConfig:
    """The ``ScratchGPTConfig`` of a GPT-2 config (a ``GPT2Config`` or its ``config.json`` as a dict).

    Raises:
        ValueError: the config is not GPT-2's, or uses a feature our model does not have (named in the message).
    """
    cfg = dict(config) if isinstance(config, Mapping) else config.to_dict()
    model_type = cfg.get("model_type")
    if model_type != "gpt2":
        raise ValueError(
            f"not a GPT-2 config: model_type is {model_type!r}, expected 'gpt2'"
            + (
                "; a scratch_gpt checkpoint loads with AutoModelForCausalLM.from_pretrained"
                if model_type == ScratchGPTConfig.model_type
                else ""
            )
        )
    activation = cfg.get("activation_function", "gelu_new")
    if activation not in _TANH_GELUS:
        raise ValueError(
            f"GPT-2 config uses activation_function={activation!r}; scratch_gpt's GELU is the tanh approximation "
            f"({' / '.join(_TANH_GELUS)}), so this checkpoint would give different outputs"
        )
    unsupported = {
        "add_cross_attention": (False, "cross-attention layers"),
        "scale_attn_weights": (True, "unscaled attention scores"),
        "scale_attn_by_inverse_layer_idx": (False, "attention scaled by 1 / layer index"),
    }
    for key, (supported, what) in unsupported.items():
        if bool(cfg.get(key, supported)) != supported:
            raise ValueError(
                f"GPT-2 config has {key}={cfg[key]!r} ({what}), which scratch_gpt does not implement"
            )
    pdrops = {key: cfg.get(key, 0.1) for key in ("embd_pdrop", "attn_pdrop", "resid_pdrop")}
    if len(set(pdrops.values())) > 1:
        warnings.warn(
            f"GPT-2 config has different dropout rates {pdrops}; scratch_gpt has one rate and uses "
            f"resid_pdrop={pdrops['resid_pdrop']} for all three (no effect at inference)",
            stacklevel=2,
        )
    return ScratchGPTConfig(
        vocab_size=cfg["vocab_size"],
        n_positions=cfg["n_positions"],
        n_embd=cfg["n_embd"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_inner=cfg.get("n_inner"),
        dropout=pdrops["resid_pdrop"],
        qkv_bias=True,
        layer_norm_epsilon=cfg.get("layer_norm_epsilon", 1e-5),
        initializer_range=cfg.get("initializer_range", 0.02),
        use_cache=cfg.get("use_cache", True),
        tie_word_embeddings=cfg.get("tie_word_embeddings", True),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=cfg.get("eos_token_id"),
        pad_token_id=cfg.get("pad_token_id"),
    )


def scratch_config_to_gpt2(config: ScratchGPTConfig) -> GPT2Config:
    """The ``GPT2Config`` of a ``ScratchGPTConfig`` (every scratch_gpt config has one; see the module docstring)."""
    from transformers import GPT2Config

    if not isinstance(config, ScratchGPTConfig):
        raise TypeError(f"expected a ScratchGPTConfig, got {type(config).__name__}")
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.n_inner,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.layer_norm_epsilon,
        initializer_range=config.initializer_range,
        use_cache=config.use_cache,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


# ---------------------------------------------------------------------------------------------------------------
# state dicts (pure functions: tensors in, tensors out)


def gpt2_to_scratch_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: GPT2Config | ScratchGPTConfig
) -> dict[str, torch.Tensor]:
    """Rename and reshape a GPT-2 state dict into ``ScratchGPTForCausalLM``'s.

    Accepts the keys of ``GPT2LMHeadModel`` (``transformer.h.0...``, ``lm_head.weight``) and of ``GPT2Model`` /
    OpenAI's original checkpoint (``h.0...``, no head: the head is then the tied token embedding). The causal-mask
    buffers of old checkpoints (``attn.bias``, ``attn.masked_bias``) are dropped.

    Args:
        state_dict: GPT-2 parameter name -> tensor.
        config: the GPT-2 config (or its ``ScratchGPTConfig``); gives the number of blocks and the expected shapes.

    Raises:
        ValueError: a key is missing or unexpected, or a tensor's shape does not match the config (all named).
    """
    scratch_config = config if isinstance(config, ScratchGPTConfig) else gpt2_config_to_scratch(config)
    gpt2 = {k: v for k, v in state_dict.items() if not _GPT2_BUFFER.search(k)}
    if "transformer.wte.weight" not in gpt2 and "wte.weight" in gpt2:  # GPT2Model / original OpenAI key names
        gpt2 = {
            ("lm_head.weight" if k == "lm_head.weight" else f"transformer.{k}"): v for k, v in gpt2.items()
        }
    if (
        "lm_head.weight" not in gpt2
        and scratch_config.tie_word_embeddings
        and "transformer.wte.weight" in gpt2
    ):
        gpt2["lm_head.weight"] = gpt2["transformer.wte.weight"]  # tied head: stored once, as the embedding
    _check_names_and_shapes(gpt2, _expected_gpt2_shapes(scratch_config), "GPT-2 checkpoint")

    ours: dict[str, torch.Tensor] = {}
    for our_name, gpt2_name, transform in _rows(scratch_config.n_layer):
        tensor = gpt2[gpt2_name]
        if transform in _QKV_PARTS:
            # c_attn: weight (n_embd, 3 * n_embd), bias (3 * n_embd,) -> our third of it
            tensor = tensor.chunk(3, dim=-1)[_QKV_PARTS.index(transform)]
        if tensor.dim() == 2 and transform != "copy":
            tensor = tensor.t()  # Conv1D (in, out) -> nn.Linear (out, in)
        ours[our_name] = tensor.contiguous()
    return ours


def scratch_to_gpt2_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: ScratchGPTConfig
) -> dict[str, torch.Tensor]:
    """Rename and reshape a ``ScratchGPTForCausalLM`` state dict into ``GPT2LMHeadModel``'s (same keys as its
    ``state_dict()``, ``lm_head.weight`` included). With ``qkv_bias=False`` the query/key/value biases are zeros.

    Raises:
        ValueError: a key is missing or unexpected (e.g. LoRA layers: merge them first), or a shape is wrong.
    """
    ours = dict(state_dict)
    if not config.qkv_bias:
        # GPT-2 always has q/k/v biases; zeros add nothing, so the outputs stay the same
        for i in range(config.n_layer):
            for part in ("W_query", "W_key", "W_value"):
                weight = ours.get(f"transformer.gpt.trf_blocks.{i}.att.{part}.weight")
                if weight is not None:
                    ours.setdefault(
                        f"transformer.gpt.trf_blocks.{i}.att.{part}.bias", weight.new_zeros(config.n_embd)
                    )
    if (
        "lm_head.weight" not in ours
        and config.tie_word_embeddings
        and "transformer.gpt.tok_emb.weight" in ours
    ):
        ours["lm_head.weight"] = ours["transformer.gpt.tok_emb.weight"]
    _check_names_and_shapes(
        ours,
        _expected_scratch_shapes(config),
        "scratch_gpt model",
        extra_hint="if it has LoRA layers, merge them first (merge_lora / merge_and_unload)",
    )

    gpt2: dict[str, torch.Tensor] = {}
    fused: dict[str, list[torch.Tensor | None]] = {}
    for our_name, gpt2_name, transform in _rows(config.n_layer):
        tensor = ours[our_name]
        if tensor.dim() == 2 and transform != "copy":
            tensor = tensor.t()  # nn.Linear (out, in) -> Conv1D (in, out)
        if transform in _QKV_PARTS:
            fused.setdefault(gpt2_name, [None, None, None])[_QKV_PARTS.index(transform)] = tensor
        else:
            gpt2[gpt2_name] = tensor.contiguous()
    for gpt2_name, parts in fused.items():
        gpt2[gpt2_name] = torch.cat(parts, dim=-1)  # (n_embd, 3 * n_embd) or (3 * n_embd,)
    return gpt2


def _expected_scratch_shapes(config: ScratchGPTConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter shapes for ``config``, always with q/k/v biases (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = ScratchGPTForCausalLM(ScratchGPTConfig.from_dict({**config.to_dict(), "qkv_bias": True}))
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _expected_gpt2_shapes(config: ScratchGPTConfig) -> dict[str, tuple[int, ...]]:
    """GPT-2's parameter shapes for ``config``, derived through the name table from ours."""
    ours = _expected_scratch_shapes(config)
    shapes: dict[str, tuple[int, ...]] = {}
    for our_name, gpt2_name, transform in _rows(config.n_layer):
        shape = ours[our_name]
        if len(shape) == 2 and transform != "copy":
            shape = shape[::-1]
        if transform in _QKV_PARTS:
            shape = (*shape[:-1], 3 * shape[-1])
        shapes[gpt2_name] = shape
    return shapes


def _check_names_and_shapes(
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
    what: str,
    extra_hint: str = "",
) -> None:
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    problems = []
    if missing:
        problems.append(f"is missing {len(missing)} weight(s), e.g. {missing[:3]}")
    if unexpected:
        problems.append(
            f"has {len(unexpected)} weight(s) that GPT-2 / scratch_gpt does not have, e.g. {unexpected[:3]}"
        )
    if problems:
        fix = extra_hint or "is it complete, and of the size its config says (n_layer, tie_word_embeddings)?"
        raise ValueError(f"{what} {' and '.join(problems)}; {fix}")
    for name, shape in expected.items():
        actual = tuple(tensors[name].shape)
        if actual != shape:
            raise ValueError(
                f"{what}: weight {name} has shape {actual} but the config expects {shape}; the weights and "
                f"config.json disagree (check vocab_size, n_positions, n_embd, n_inner)"
            )


# ---------------------------------------------------------------------------------------------------------------
# models and directories


def load_gpt2(
    path_or_model: str | os.PathLike[str] | nn.Module, dtype: torch.dtype | None = None
) -> ScratchGPTForCausalLM:
    """A ``ScratchGPTForCausalLM`` holding GPT-2's weights (chapter 5's ``load_weights_into_gpt``).

    Args:
        path_or_model: a Hugging Face GPT-2 directory (``config.json`` plus ``model.safetensors``,
            ``model.safetensors.index.json`` + shards, or ``pytorch_model.bin``), or a ``GPT2LMHeadModel`` /
            ``GPT2Model`` instance.
        dtype: the model's dtype; by default the dtype of the loaded weights (like ``from_pretrained``'s "auto").

    Returns:
        The model in eval mode; its logits equal GPT-2's on the same input.

    Raises:
        FileNotFoundError: the directory, its ``config.json`` or its weights file does not exist.
        ValueError: not a GPT-2 checkpoint, or its weights are corrupt, incomplete or of the wrong shape.
        TypeError: ``path_or_model`` is a model but not a GPT-2 one.
    """
    if isinstance(path_or_model, nn.Module):
        config, state_dict = _gpt2_model_parts(path_or_model)
    elif isinstance(path_or_model, (str, os.PathLike)):
        config, state_dict = _read_gpt2_directory(Path(path_or_model))
    else:
        raise TypeError(
            f"load_gpt2 takes a GPT-2 directory or a GPT2LMHeadModel, got {type(path_or_model).__name__}"
        )
    scratch_config = gpt2_config_to_scratch(config)
    weights = gpt2_to_scratch_state_dict(state_dict, scratch_config)
    if dtype is not None:
        weights = {name: t.to(dtype) for name, t in weights.items()}
    if isinstance(path_or_model, nn.Module):  # the new model must not share memory with the one passed in
        weights = _unshared(weights, state_dict.values())
    return _model_with_weights(ScratchGPTForCausalLM, scratch_config, weights)


def to_gpt2(model: ScratchGPTForCausalLM) -> GPT2LMHeadModel:
    """A stock ``GPT2LMHeadModel`` with ``model``'s weights (same dtype and device, eval mode, equal logits).

    Raises:
        TypeError: ``model`` is not a ``ScratchGPTForCausalLM`` (e.g. the bare ``ScratchGPTModel``, or a peft wrapper).
        ValueError: the weights cannot be expressed as GPT-2's (e.g. unmerged LoRA layers).
    """
    from transformers import GPT2LMHeadModel

    if not isinstance(model, ScratchGPTForCausalLM):
        raise TypeError(
            f"to_gpt2 needs a ScratchGPTForCausalLM, got {type(model).__name__}; GPT-2 is a causal LM with its "
            f"head (for a peft model, call merge_and_unload() first)"
        )
    state_dict = model.state_dict()
    weights = _unshared(scratch_to_gpt2_state_dict(state_dict, model.config), state_dict.values())
    return _model_with_weights(GPT2LMHeadModel, scratch_config_to_gpt2(model.config), weights)


def save_as_gpt2(model: ScratchGPTForCausalLM, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` as a stock GPT-2 checkpoint (``GPT2LMHeadModel.save_pretrained``) that loads without
    scratch_gpt. Files are written to a temporary folder first and then moved in, so a failed save never leaves
    a half-written checkpoint. Returns the directory."""
    gpt2 = to_gpt2(model)
    return _save_atomically(Path(directory), gpt2.save_pretrained)


def convert_from_gpt2(
    source: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Convert a GPT-2 directory into a scratch_gpt checkpoint in ``output`` (tokenizer files copied along).

    ``output`` must be new, empty or an earlier conversion's output, unless ``overwrite`` (see
    ``training.run_folder``). Returns the output directory. Raises as ``load_gpt2``.
    """
    with _claim(output, "from-gpt2", source, overwrite):
        model = load_gpt2(source)
        return _save_atomically(Path(output), model.save_pretrained, tokenizer_from=Path(source))


def _claim(output: str | os.PathLike[str], direction: str, source: Any, overwrite: bool) -> Any:
    from ..training.run_folder import claim_run_folder

    settings = {"direction": direction, "source": str(source)}
    return claim_run_folder(output, "convert", command="convert", settings=settings, overwrite=overwrite)


def convert_to_gpt2(
    source: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Convert a scratch_gpt checkpoint directory into a stock GPT-2 one in ``output`` (tokenizer files copied).

    ``output`` must be new, empty or an earlier conversion's output, unless ``overwrite``.

    Raises:
        CheckpointLoadError: ``source`` is missing or cannot be loaded (``hub.loading``).
        ValueError: ``source`` is not a scratch_gpt checkpoint.
    """
    from .loading import check_checkpoint_config, load_checked

    source = Path(source)
    config = check_checkpoint_config(source, ("scratch_gpt", "gpt2"))  # one error policy (CLI status 2)
    if config.get("model_type") != ScratchGPTConfig.model_type:
        raise ValueError(
            f"{source} is a {config.get('model_type')!r} checkpoint, not a scratch_gpt one (model_type "
            f"'scratch_gpt'); only scratch_gpt checkpoints can be converted to GPT-2"
        )
    with _claim(output, "to-gpt2", source, overwrite):
        model = load_checked(ScratchGPTForCausalLM, source)
        gpt2 = to_gpt2(model)
        return _save_atomically(
            Path(output), gpt2.save_pretrained, tokenizer_from=source, stock_tokenizer=True
        )


def _model_with_weights(model_class: type[nn.Module], config: Any, weights: dict[str, torch.Tensor]) -> Any:
    """``model_class(config)`` holding ``weights`` (their dtype and device), in eval mode.

    The model is built on the meta device, so no time goes into a random initialization that the weights would
    overwrite (seconds for the 124M model), and the tensors are moved in rather than copied.
    """
    with torch.device("meta"):
        model = model_class(config)
    model.load_state_dict(weights, strict=True, assign=True)
    model.tie_weights()  # assign=True gave the head its own Parameter; share the embedding's again
    return model.eval()


def _unshared(weights: dict[str, torch.Tensor], source: Any) -> dict[str, torch.Tensor]:
    """``weights`` with a copy of every tensor that still shares memory with a ``source`` tensor (the ``"copy"``
    rows; transposed and fused tensors are new already), so the converted model and the original are independent."""
    source_storages = {t.untyped_storage().data_ptr() for t in source}
    return {
        name: t.clone() if t.untyped_storage().data_ptr() in source_storages else t
        for name, t in weights.items()
    }


def _gpt2_model_parts(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from transformers import GPT2LMHeadModel, GPT2Model

    if not isinstance(model, (GPT2LMHeadModel, GPT2Model)):
        raise TypeError(
            f"load_gpt2 takes a GPT2LMHeadModel or GPT2Model, got {type(model).__name__}; for a scratch_gpt "
            f"model there is nothing to convert"
        )
    return model.config.to_dict(), model.state_dict()


def _read_gpt2_directory(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``config.json`` and the weights of a Hugging Face GPT-2 directory."""
    config = read_checkpoint_config(directory)  # the one error policy of hub.loading
    gpt2_config_to_scratch(config)  # reject a non-GPT-2 config before reading gigabytes of weights
    weights_file = next((directory / name for name in _WEIGHT_FILES if (directory / name).is_file()), None)
    if weights_file is None:
        raise FileNotFoundError(
            f"{directory} has a GPT-2 config.json but no weights: expected one of {', '.join(_WEIGHT_FILES)}"
        )
    try:
        if weights_file.name == "pytorch_model.bin":
            state_dict = torch.load(weights_file, map_location="cpu", weights_only=True)
        elif weights_file.name.endswith(".index.json"):
            shards = sorted(set(json.loads(weights_file.read_text(encoding="utf-8"))["weight_map"].values()))
            state_dict = {}
            for shard in shards:
                state_dict.update(_load_safetensors(directory / shard))
        else:
            state_dict = _load_safetensors(weights_file)
    except FileNotFoundError:
        raise
    except (
        Exception
    ) as err:  # safetensors / pickle / zip errors differ by format; all mean the same thing here
        detail = (str(err).splitlines() or [""])[0][:200]
        raise ValueError(
            f"cannot read GPT-2 weights from {weights_file}: the file is corrupt, truncated or not a weights file "
            f"({type(err).__name__}: {detail}); re-save it with GPT2LMHeadModel.save_pretrained"
        ) from err
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ValueError(
            f"{weights_file} does not hold a state dict of tensors; it is not a GPT-2 weights file"
        )
    return config, dict(state_dict)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"weights shard {path} listed in the index does not exist")
    return load_file(path)


def _save_atomically(
    output: Path, save: Any, tokenizer_from: Path | None = None, stock_tokenizer: bool = False
) -> Path:
    """Run ``save(tmp_dir)`` (and copy tokenizer files) in a temporary folder, then move the files into ``output``."""

    def write(tmp: Path) -> None:
        save(tmp)
        if tokenizer_from is not None:
            _copy_tokenizer_files(tokenizer_from, tmp, stock=stock_tokenizer)

    return write_dir_atomically(output, write)


def _copy_tokenizer_files(source: Path, target: Path, stock: bool) -> None:
    """Copy the tokenizer files of ``source`` into ``target``.

    With ``stock=True`` (writing a GPT-2 checkpoint for users without scratch_gpt), a scratch_gpt tokenizer's
    ``tokenizer_config.json`` is pointed at the stock ``PreTrainedTokenizerFast`` (which reads the whole
    ``tokenizer.json``) and loses its ``auto_map``, since the remote-code files are not copied.
    """
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    config_file = target / TOKENIZER_CONFIG_FILE
    if not (stock and config_file.is_file() and (target / TOKENIZER_FILE).is_file()):
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.pop("auto_map", None)
    if str(config.get("tokenizer_class", "")).startswith("ScratchGPT"):
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
