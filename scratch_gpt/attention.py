"""Causal multi-head self-attention (book chapter 3).

``MultiHeadAttention`` projects the input to queries, keys and values, splits them into heads, lets every token
attend to itself and the tokens before it, and projects the concatenated heads back. The attention itself — how
queries meet keys — is a plain function passed in as ``attention_function``, with the signature ``transformers``
uses for its attention interface, so the same module runs:

* ``eager_attention`` — the book's explicit computation: ``softmax(Q K^T / sqrt(d_head))`` with the future masked
  out, dropout on the attention weights, then ``@ V``. Readable, the reference, and the only one that returns the
  attention weights.
* ``sdpa_attention`` — PyTorch's fused ``scaled_dot_product_attention``; the same math in one kernel (equal within
  1e-5 in fp32, see the tests). The default.
* any function ``transformers`` registered for an ``attn_implementation`` (``sdpa``, ``flex_attention``, a kernel
  you registered): the Hugging Face layer passes the one ``config._attn_implementation`` names.

An attention function is called as ``f(module, queries, keys, values, mask, scaling=..., dropout=..., **kwargs)``
with ``(B, H, T, d_head)`` queries and ``(B, H, S, d_head)`` keys/values, and returns ``(context, attn_weights)``:
the context ``(B, T, H, d_head)`` and the weights ``(B, H, T, S)`` (or ``None``). The ``mask`` may be ``None``
(plain causal), a bool tensor (True = may attend) or an additive float tensor (0 or a large negative number).

The optional ``cache`` is anything with ``update(keys, values, layer_idx) -> (all_keys, all_values)``: our own
``KVCache`` (``kv_cache.py``), or a ``transformers`` cache (dynamic or static) inside ``generate()``.

Not here: the causal/padding mask of the book-style model (``make_attention_mask`` below, called once per forward),
positional information (added to the embeddings in ``model.py``), and cross-attention (GPT has none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def eager_attention(
    module: nn.Module,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's step-by-step scaled dot-product attention; returns ``(context, attn_weights)`` (see module doc)."""
    num_queries, num_keys = queries.shape[-2], keys.shape[-2]
    scaling = queries.shape[-1] ** -0.5 if scaling is None else scaling
    # (B, H, T, S): the dot product of every query with every key, scaled by 1 / sqrt(d_head)
    attn_scores = queries @ keys.transpose(2, 3) * scaling
    if mask is None:
        # causal: query i (absolute position num_past + i) sees keys 0 .. num_past + i
        num_past = num_keys - num_queries
        future = torch.ones(num_queries, num_keys, dtype=torch.bool, device=queries.device).triu(num_past + 1)
        attn_scores = attn_scores.masked_fill(future, -torch.inf)
    elif mask.dtype == torch.bool:
        attn_scores = attn_scores.masked_fill(~mask, -torch.inf)  # False = may not attend
    else:
        attn_scores = attn_scores + mask  # additive: 0 where allowed, a large negative number where not
    attn_weights = torch.softmax(attn_scores, dim=-1)  # (B, H, T, S), each row sums to 1
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    context = attn_weights @ values  # (B, H, T, d_head)
    return context.transpose(1, 2), attn_weights  # (B, T, H, d_head)


def sdpa_attention(
    module: nn.Module,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``eager_attention``'s math in PyTorch's fused kernel; it never materializes the weights, so returns ``None``."""
    context = F.scaled_dot_product_attention(  # (B, H, T, d_head)
        queries,
        keys,
        values,
        attn_mask=mask,
        dropout_p=dropout,
        # no mask + more than one query: causal from position 0 (the fused kernel's fast path); one query sees all
        is_causal=mask is None and queries.shape[-2] > 1,
        scale=scaling,
    )
    return context.transpose(1, 2), None  # (B, T, H, d_head)


AttentionFunction = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
ATTENTION_FUNCTIONS: dict[str, AttentionFunction] = {"eager": eager_attention, "sdpa": sdpa_attention}
ATTENTION_IMPLEMENTATIONS = tuple(ATTENTION_FUNCTIONS)


def get_attention_function(name: str) -> AttentionFunction:
    """The core's attention function called ``name`` (``"eager"`` or ``"sdpa"``), with a clear error otherwise."""
    if name not in ATTENTION_FUNCTIONS:
        raise ValueError(f"unknown attn_implementation {name!r}; use one of {ATTENTION_IMPLEMENTATIONS}")
    return ATTENTION_FUNCTIONS[name]


def make_attention_mask(
    attention_mask: torch.Tensor | None, num_queries: int, num_past: int, device: torch.device
) -> torch.Tensor | None:
    """The boolean "may attend" mask for ``num_queries`` new tokens after ``num_past`` cached ones.

    Args:
        attention_mask: optional padding mask ``(B, num_past + num_queries)``, 1 for real tokens, 0 for padding.
        num_queries: T, the number of new tokens in this forward pass.
        num_past: the number of tokens already in the KV cache.

    Returns:
        ``None`` when plain causal attention is enough (no padding mask given, and either no cache or a single new
        token), else a bool tensor ``(B or 1, 1, T, num_past + T)`` that is True where a query may attend to a key.
        A query always may attend to itself, so a padding query never has an all-masked row (which would give
        NaN in softmax); its output is ignored anyway. The mask's *values* never change which branch runs, so the
        function traces (``torch.export``, ``torch.compile``) with or without padding.
    """
    if attention_mask is None and (num_past == 0 or num_queries == 1):
        return None
    total = num_past + num_queries
    query_pos = torch.arange(num_past, total, device=device).unsqueeze(1)  # (T, 1) absolute positions
    key_pos = torch.arange(total, device=device).unsqueeze(0)  # (1, S)
    allowed = key_pos <= query_pos  # (T, S): causal, offset by the cache length
    if attention_mask is None:
        return allowed[None, None]  # (1, 1, T, S)
    key_is_real = attention_mask[:, None, None, :].to(torch.bool)  # (B, 1, 1, S)
    is_self = key_pos == query_pos  # (T, S)
    return (allowed & key_is_real) | is_self  # (B, 1, T, S)


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with separate query, key and value projections.

    Args:
        d_in: input embedding size.
        d_out: output size, split evenly into ``num_heads`` heads of ``d_out // num_heads``.
        context_length: the longest sequence the model supports (kept for reference; masks are built on the fly).
        dropout: dropout probability on the attention weights (training only).
        num_heads: number of attention heads.
        qkv_bias: whether the query/key/value projections have a bias (GPT-2: yes; the book's default: no).
        layer_idx: this layer's index, used to address its slot in a KV cache.
    """

    is_causal = True  # read by transformers' attention functions (sdpa's is_causal fast path)

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.layer_idx = layer_idx
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)  # combines the heads' outputs
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | Any | None = None,
        cache: Any = None,
        attention_function: AttentionFunction = sdpa_attention,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` (and the cached past, if any).

        Args:
            x: ``(B, T, d_in)`` the new tokens' embeddings.
            mask: ``None`` for plain causal attention, else a mask the attention function understands (the bool
                mask from ``make_attention_mask``, or the one ``transformers`` built for its function).
            cache: optional KV cache; this layer's new keys/values are added and all of them are attended over.
            attention_function: how queries meet keys (``sdpa_attention``, ``eager_attention``, or a
                ``transformers`` attention function); extra ``kwargs`` are passed on to it.

        Returns:
            ``(output, attn_weights)``: ``(B, T, d_out)``, and ``(B, H, T, S)`` weights or ``None`` (sdpa).
        """
        b, num_tokens, _ = x.shape
        # (B, T, d_out) -> (B, T, H, d_head) -> (B, H, T, d_head): one slice of the embedding per head
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        if cache is not None:
            # keys/values: (B, H, num_past + T, d_head) after adding the new ones (or the whole static buffer)
            keys, values = cache.update(keys, values, self.layer_idx)

        context, attn_weights = attention_function(  # context: (B, T, H, d_head)
            self,
            queries,
            keys,
            values,
            mask,
            scaling=self.head_dim**-0.5,
            dropout=self.dropout.p if self.training else 0.0,
            **kwargs,
        )
        context = context.reshape(b, num_tokens, self.d_out)  # (B, T, d_out): concatenate the heads
        return self.out_proj(context), attn_weights
