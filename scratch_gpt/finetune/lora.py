"""Appendix E: low-rank adaptation (LoRA), written by hand on plain ``nn.Linear`` layers.

LoRA freezes a pretrained weight ``W`` and learns a low-rank update beside it: a ``Linear`` computing ``x @ W.T``
becomes ``x @ W.T + scale * (x @ A @ B)`` with ``A`` of shape ``(in_dim, rank)`` and ``B`` of shape
``(rank, out_dim)``. ``B`` starts at zero, so the adapted model starts out identical to the pretrained one; only
``A`` and ``B`` are trained (2,666,528 parameters at rank 16 on every ``Linear`` of the book's GPT-2 124M spam
classifier, instead of 124 million), and afterwards ``scale * (A @ B).T`` can be added into ``W`` (``merge_lora``).

The scaling convention (the one thing that differs between the book and peft):

- the book (``scaling="book"``): ``scale = alpha``, so ``LoRALayer`` returns ``alpha * (x @ A @ B)``;
- peft (``scaling="peft"``): ``scale = alpha / rank`` (``lora_alpha / r``).

So book-style ``alpha=a`` at rank ``r`` equals peft's ``lora_alpha = a * r``, and with ``scaling="peft"`` the same
``alpha`` gives the same numbers as peft. peft keeps the two factors as ``nn.Linear`` layers: its
``lora_A.weight`` is our ``A.T`` (shape ``(rank, in_dim)``) and its ``lora_B.weight`` is our ``B.T``.

Initialisation follows the book: ``kaiming_uniform_(A, a=sqrt(5))`` on the ``(in_dim, rank)`` tensor, whose
fan-in is ``rank``, so ``A`` is uniform in ``±1/sqrt(rank)`` (peft initialises its ``(rank, in_dim)`` weight, bound
``1/sqrt(in_dim)``); ``B`` is zeros in both. The starting model is the same either way.

Not here: LoRA dropout, bias adapters, adapters on embeddings or convolutions, and rsLoRA/DoRA variants (use
peft for those); saving adapters in peft's file format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Scaling = Literal["book", "peft"]


def lora_scale(rank: int, alpha: float, scaling: Scaling = "book") -> float:
    """The factor in front of ``x @ A @ B``: ``alpha`` (the book) or ``alpha / rank`` (peft)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive int, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"LoRA alpha must be a finite number, got {alpha!r}")
    if scaling == "book":
        return float(alpha)
    if scaling == "peft":
        return alpha / rank
    raise ValueError(f"scaling must be 'book' (alpha) or 'peft' (alpha / rank), got {scaling!r}")


class LoRALayer(nn.Module):
    """The low-rank update ``scale * (x @ A @ B)``: ``(..., in_dim) -> (..., out_dim)``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rank: int,
        alpha: float,
        scaling: Scaling = "book",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.scale = lora_scale(rank, alpha, scaling)
        self.rank, self.alpha, self.scaling = rank, alpha, scaling
        self.A = nn.Parameter(torch.empty(in_dim, rank, device=device, dtype=dtype))
        # the book's init; the fan-in of an (in_dim, rank) tensor is rank, so A ~ U(-1/sqrt(rank), 1/sqrt(rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x @ self.A @ self.B)

    def delta_weight(self) -> torch.Tensor:
        """The update as a ``Linear`` weight, shape ``(out_dim, in_dim)``: ``scale * (A @ B).T``."""
        return self.scale * (self.A @ self.B).T

    def extra_repr(self) -> str:
        return f"in_dim={self.A.shape[0]}, out_dim={self.B.shape[1]}, rank={self.rank}, alpha={self.alpha}, scaling={self.scaling!r}"


class LinearWithLoRA(nn.Module):
    """A frozen-or-not ``nn.Linear`` plus a ``LoRALayer``: ``linear(x) + lora(x)``."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, scaling: Scaling = "book") -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"LinearWithLoRA wraps an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.lora = LoRALayer(
            linear.in_features,
            linear.out_features,
            rank,
            alpha,
            scaling,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    @property
    def weight(self) -> nn.Parameter:
        """The wrapped (unmerged) weight, so code that reads ``layer.weight`` keeps working."""
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function, with
        ``W + scale * (A @ B).T`` as its weight.

        The weight is a new tensor, so a weight the wrapped layer shares (a tied LM head) is left untouched;
        the tie is broken instead (save such a merged model with ``tie_word_embeddings=False``).
        """
        old = self.linear
        new = nn.Linear(
            old.in_features,
            old.out_features,
            bias=old.bias is not None,
            device="meta",
            dtype=old.weight.dtype,
        )
        new.weight = nn.Parameter(
            old.weight + self.lora.delta_weight(), requires_grad=old.weight.requires_grad
        )
        if old.bias is not None:
            new.bias = nn.Parameter(old.bias.clone(), requires_grad=old.bias.requires_grad)
        return new


def _matches(name: str, key: str) -> bool:
    # peft's rule for a list of target names: the full module name, or its ending after a dot
    return name == key or name.endswith("." + key)


def _name_patterns(names: Sequence[str]) -> list[str]:
    # "trf_blocks.0.att.W_query", "trf_blocks.1.att.W_query" -> "trf_blocks.*.att.W_query"
    return sorted({re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)", "*", name) for name in names})


def replace_linear_with_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    target_modules: Sequence[str] | None = None,
    scaling: Scaling = "book",
) -> list[str]:
    """Wrap ``nn.Linear`` layers of ``model`` in ``LinearWithLoRA``, in place; returns the wrapped names.

    ``target_modules=None`` wraps every ``Linear`` (the book). Otherwise each entry is a module name or the end
    of one after a dot (peft's rule: ``"att.W_query"`` matches ``"transformer.blocks.3.att.W_query"``); every entry
    must match at least one ``Linear``, and an error lists the ``Linear`` names that exist. New adapters are
    trainable and the wrapped layers keep their ``requires_grad``; call ``freeze_for_lora`` to train only adapters.
    """
    lora_scale(rank, alpha, scaling)  # validate before touching the model
    if isinstance(model, (nn.Linear, LinearWithLoRA)):
        raise ValueError(
            "model is itself a Linear layer; wrap it directly with LinearWithLoRA(layer, rank, alpha)"
        )
    if isinstance(target_modules, str):
        raise ValueError(
            f"target_modules must be a list of names, got the string {target_modules!r}; use [...]"
        )
    adapted = [name for name, module in model.named_modules() if isinstance(module, LinearWithLoRA)]
    linears = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(name.startswith(prefix + ".") for prefix in adapted)
    }
    if target_modules is None:
        chosen = list(linears)
        if not chosen:
            raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layers without LoRA to adapt")
    else:
        if not target_modules:
            raise ValueError("target_modules is empty; pass None for every Linear or a list of module names")
        all_names = [name for name, _ in model.named_modules() if name]
        chosen = []
        for key in target_modules:
            hits = [name for name in all_names if _matches(name, key)]
            if not hits:
                raise ValueError(
                    f"LoRA target {key!r} matches no module; the nn.Linear modules are: "
                    f"{', '.join(_name_patterns(list(linears))) or '(none)'}"
                )
            for name in hits:
                if any(name == prefix or name.startswith(prefix + ".") for prefix in adapted):
                    raise ValueError(
                        f"module {name!r} already has LoRA; merge_lora(model) first to adapt it again"
                    )
                if name not in linears:
                    kind = type(model.get_submodule(name)).__name__
                    raise ValueError(
                        f"LoRA target {key!r} matches {name!r}, a {kind}, not an nn.Linear; target its Linear "
                        f"layers instead, e.g. {', '.join(_name_patterns(list(linears))[:6])}"
                    )
                if name not in chosen:
                    chosen.append(name)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, LinearWithLoRA(linears[name], rank, alpha, scaling))
    return chosen


def _lora_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for module in model.modules() if isinstance(module, LoRALayer) for p in module.parameters()}


def freeze_for_lora(model: nn.Module, trainable_modules: Sequence[str] = ()) -> int:
    """Make only the LoRA ``A``/``B`` matrices trainable (plus ``trainable_modules``); returns the trainable count.

    ``trainable_modules`` names modules to train fully, matched like LoRA targets (e.g. ``["score"]`` for a new
    classification head, what peft calls ``modules_to_save``).
    """
    lora_ids = _lora_parameter_ids(model)
    if not lora_ids:
        raise ValueError("model has no LoRA layers; call replace_linear_with_lora(model, rank, alpha) first")
    extra_ids: set[int] = set()
    module_names = [name for name, _ in model.named_modules() if name]
    for key in trainable_modules:
        hits = [name for name in module_names if _matches(name, key)]
        if not hits:
            raise ValueError(
                f"trainable module {key!r} matches no module; top-level modules are: "
                f"{', '.join(name for name, _ in model.named_children())}"
            )
        extra_ids.update(id(p) for name in hits for p in model.get_submodule(name).parameters())
    for param in model.parameters():
        param.requires_grad = id(param) in lora_ids or id(param) in extra_ids
    return count_parameters(model, trainable_only=True)


def merge_lora(model: nn.Module) -> list[str]:
    """Replace every ``LinearWithLoRA`` in ``model`` by an equivalent plain ``nn.Linear``, in place.

    Returns the merged module names. See ``LinearWithLoRA.merged`` about tied weights.
    """
    if isinstance(model, LinearWithLoRA):
        raise ValueError("model is itself a LinearWithLoRA; use layer.merged() to get the merged nn.Linear")
    names = [name for name, module in model.named_modules() if isinstance(module, LinearWithLoRA)]
    if not names:
        raise ValueError("model has no LoRA layers to merge")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).merged())
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (``...lora.A`` / ``...lora.B``) of ``model.state_dict()``."""
    return {key: value for key, value in model.state_dict().items() if key.endswith((".lora.A", ".lora.B"))}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once), or only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
