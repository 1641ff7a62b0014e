"""Turning next-token logits into text, book style (chapters 4 and 5).

* ``generate_text_simple`` — chapter 4's greedy loop: feed the whole (cropped) context every step, take argmax.
* ``sample_next_token`` — chapter 5's decoding as a pure function: top-k filtering, temperature scaling, sampling
  (temperature 0 means greedy).
* ``generate`` — chapter 5's ``generate`` (temperature, top-k, end-of-text id) running on a KV cache: the prompt
  is processed once, then each step feeds only the newest token. The cache goes through the same attention code
  as ``transformers``' ``generate()``; ``use_cache=False`` gives the book's recompute-everything loop, with the same
  results.

Works with the plain ``GPTModel`` and with ``ScratchGPTForCausalLM`` alike. For beam search, top-p, repetition
penalties and streaming, use ``model.generate()`` from ``transformers`` on ``ScratchGPTForCausalLM``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .kv_cache import KVCache
from .tokenizer_protocol import encode_allowing_end_of_text


def model_logits(
    model: nn.Module, input_ids: torch.Tensor, *, cache: KVCache | None = None, last_only: bool = False
) -> torch.Tensor:
    """Logits ``(B, T, vocab_size)`` of ``input_ids`` ``(B, T)``: the one place that turns a model into logits.

    ``model`` is a ``GPTModel`` (returns logits) or a Hugging Face causal LM such as ``ScratchGPTForCausalLM``
    or a peft wrapper (returns an output with ``.logits``), also when wrapped by DDP (``.module``) or
    ``torch.compile`` (``._orig_mod``). ``cache`` continues from (and extends) a ``KVCache``; without one, a
    Hugging Face model keeps no cache. ``last_only`` lets a Hugging Face model compute the last position only
    (``logits_to_keep=1``, ``(B, 1, vocab_size)``); a ``GPTModel`` returns every position either way.
    """
    inner = getattr(model, "module", model)  # DDP wraps the model in .module
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile wraps it in ._orig_mod
    if hasattr(inner, "generation_config"):  # a transformers model
        kwargs: dict[str, Any] = {"use_cache": cache is not None}
        if cache is not None:
            kwargs["cache"] = cache
        if last_only:
            kwargs["logits_to_keep"] = 1
        return model(input_ids=input_ids, **kwargs).logits
    if cache is not None:
        return model(input_ids, cache=cache)
    return model(input_ids)


def _next_logits(model: nn.Module, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """Logits of the last position, ``(B, vocab_size)``."""
    return model_logits(model, idx, cache=cache, last_only=True)[:, -1, :]


def context_length(model: nn.Module) -> int:
    """The longest sequence ``model`` can read (``config.n_positions``, or ``GPTModel.n_positions``)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "n_positions"):
        return int(config.n_positions)
    return int(model.n_positions)


@torch.no_grad()
def generate_text_simple(
    model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int
) -> torch.Tensor:
    """Chapter 4's greedy generation: append the argmax token ``max_new_tokens`` times.

    Args:
        model: a ``GPTModel`` (or ``ScratchGPTForCausalLM``).
        idx: ``(B, T)`` token ids of the prompt.
        max_new_tokens: how many tokens to append.
        context_size: the model's context length; only the last ``context_size`` tokens are fed.

    Returns:
        ``(B, T + max_new_tokens)`` token ids.
    """
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # (B, <= context_size)
        logits = _next_logits(model, idx_cond, cache=None)  # (B, vocab_size)
        idx_next = torch.argmax(logits, dim=-1, keepdim=True)  # (B, 1)
        idx = torch.cat((idx, idx_next), dim=1)  # (B, T + 1)
    return idx


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from logits ``(B, vocab_size)``; returns ids ``(B, 1)``.

    ``top_k`` keeps only the k largest logits; ``temperature > 0`` divides the logits by it and samples from the
    softmax (higher = more random); ``temperature == 0`` is greedy decoding (argmax).
    """
    if not (math.isfinite(temperature) and temperature >= 0):  # NaN would silently decode greedily
        raise ValueError(f"temperature must be >= 0 (0 = greedy) and finite, got {temperature}")
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
        top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
        min_val = top_logits[:, -1:]  # (B, 1): the k-th largest logit per row
        logits = torch.where(logits < min_val, torch.full_like(logits, -torch.inf), logits)
    if temperature > 0.0:
        probs = torch.softmax(logits / temperature, dim=-1)  # (B, vocab_size)
        return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
    return torch.argmax(logits, dim=-1, keepdim=True)  # (B, 1)


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Chapter 5's ``generate``: sample up to ``max_new_tokens`` tokens after the prompt ``idx`` ``(B, T)``.

    Args:
        model: a ``GPTModel`` or ``ScratchGPTForCausalLM`` (switched to eval mode by the caller).
        idx: ``(B, T)`` prompt token ids (all rows the same length; for padded batches use ``model.generate``).
        max_new_tokens: the most tokens to add.
        context_size: how many trailing tokens the model sees (default: the model's ``n_positions``).
        temperature, top_k: see ``sample_next_token``; ``temperature=0`` is greedy.
        eos_id: stop a row once it produced this id; finished rows are padded with it until all rows stop.
        use_cache: keep keys/values between steps (fast) instead of re-running the whole context each step.
        generator: an optional ``torch.Generator`` for reproducible sampling.

    Returns:
        ``(B, T + n)`` token ids, ``n <= max_new_tokens``.
    """
    new_tokens = list(
        generate_stream(
            model, idx, max_new_tokens, context_size, temperature, top_k, eos_id, use_cache, generator
        )
    )
    return torch.cat([idx, *new_tokens], dim=1) if new_tokens else idx


@torch.no_grad()
def generate_stream(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """The loop behind ``generate``, one step at a time: yields each step's new ids ``(B, 1)`` as they are
    sampled (for streaming output). Arguments as for ``generate``."""
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(
            f"idx must be a (batch, tokens) tensor with at least one token, got shape {tuple(idx.shape)}"
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    context_size = min(context_size or context_length(model), context_length(model))
    cache: KVCache | None = KVCache() if use_cache else None
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    model_input = idx[:, -context_size:]  # the prompt, cropped to the context
    for _ in range(max_new_tokens):
        if cache is not None and cache.get_seq_length() + model_input.shape[1] > context_size:
            # the cache is full: start over on the last context_size tokens (what the no-cache loop would see)
            cache = KVCache()
            model_input = idx[:, -context_size:]
        elif cache is None:
            model_input = idx[:, -context_size:]
        logits = _next_logits(model, model_input, cache)  # (B, vocab_size)
        idx_next = sample_next_token(logits, temperature, top_k, generator)  # (B, 1)
        if eos_id is not None:
            idx_next = torch.where(finished[:, None], torch.full_like(idx_next, eos_id), idx_next)
            finished |= idx_next[:, 0] == eos_id
        idx = torch.cat((idx, idx_next), dim=1)  # (B, T + 1)
        yield idx_next
        model_input = idx_next  # with a cache, only the new token is fed next
        if eos_id is not None and bool(finished.all()):
            return


def text_to_token_ids(text: str, tokenizer: Any) -> torch.Tensor:
    """Encode ``text`` into a ``(1, T)`` id tensor (the book's helper); ``<|endoftext|>`` is allowed."""
    ids = encode_allowing_end_of_text(tokenizer, text)
    return torch.tensor(ids, dtype=torch.long).unsqueeze(0)


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: Any) -> str:
    """Decode a ``(1, T)`` (or ``(T,)``) id tensor back to text (the book's helper)."""
    return tokenizer.decode(token_ids.reshape(-1).tolist())
