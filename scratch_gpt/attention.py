"""Causal multi-head self-attention (book chapter 3).

``MultiHeadAttention`` projects the input to queries, keys and values, splits them into heads, lets every token
attend to itself and the tokens before it, and projects the concatenated heads back. It has two interchangeable
paths over the same weights:

* ``"eager"`` — the book's explicit computation: ``softmax(Q K^T / sqrt(d_head))`` with the future masked out,
  dropout on the attention weights, then ``@ V``. Readable, and it is the reference.
* ``"sdpa"`` — PyTorch's fused ``scaled_dot_product_attention``; the same math in one kernel (equal within 1e-5
  in fp32, see the tests).

The optional ``cache`` is anything with ``update(keys, values, layer_idx) -> (all_keys, all_values)``: our own
``KVCache`` (``kv_cache.py``) in the book-style generation loop, or a ``transformers`` ``DynamicCache`` inside
``generate()``. Both go through this one code path.

Not here: the causal/padding mask construction (``make_attention_mask`` below, called once per forward by the model),
positional information (added to the embeddings in ``model.py``), and cross-attention (GPT has none).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


def make_attention_mask(
    attention_mask: torch.Tensor | None, num_queries: int, num_past: int, device: torch.device
) -> torch.Tensor | None:
    """The boolean "may attend" mask for ``num_queries`` new tokens after ``num_past`` cached ones.

    Args:
        attention_mask: optional padding mask ``(B, num_past + num_queries)``, 1 for real tokens, 0 for padding.
        num_queries: T, the number of new tokens in this forward pass.
        num_past: the number of tokens already in the KV cache.

    Returns:
        ``None`` when plain causal attention is enough (no padding, and either no cache or a single new token),
        else a bool tensor ``(B or 1, 1, T, num_past + T)`` that is True where a query may attend to a key.
        A query always may attend to itself, so a padding query never has an all-masked row (which would give
        NaN in softmax); its output is ignored anyway.
    """
    has_padding = attention_mask is not None and not bool(attention_mask.all())
    if not has_padding and (num_past == 0 or num_queries == 1):
        return None
    total = num_past + num_queries
    query_pos = torch.arange(num_past, total, device=device).unsqueeze(1)  # (T, 1) absolute positions
    key_pos = torch.arange(total, device=device).unsqueeze(0)  # (1, S)
    allowed = key_pos <= query_pos  # (T, S): causal, offset by the cache length
    if not has_padding:
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
        mask: torch.Tensor | None = None,
        cache=None,  # noqa: ANN001 - any object with .update(k, v, layer_idx)
        attn_implementation: str = "sdpa",
    ) -> torch.Tensor:
        """Attend over ``x`` (and the cached past, if any).

        Args:
            x: ``(B, T, d_in)`` the new tokens' embeddings.
            mask: ``None`` for plain causal attention, else the bool mask from ``make_attention_mask``.
            cache: optional KV cache; this layer's new keys/values are appended and all of them are attended over.
            attn_implementation: ``"eager"`` (the book's explicit path) or ``"sdpa"``.

        Returns:
            ``(B, T, d_out)``.
        """
        b, num_tokens, _ = x.shape
        # (B, T, d_out) -> (B, T, H, d_head) -> (B, H, T, d_head): one slice of the embedding per head
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        if cache is not None:
            # keys/values: (B, H, num_past + T, d_head) after appending the new ones
            keys, values = cache.update(keys, values, self.layer_idx)

        dropout_p = self.dropout.p if self.training else 0.0
        if attn_implementation == "sdpa":
            context = F.scaled_dot_product_attention(
                queries,
                keys,
                values,
                attn_mask=mask,
                dropout_p=dropout_p,
                # no mask + more than one query: causal from position 0 (the fused kernel's fast path)
                is_causal=mask is None and num_tokens > 1,
            )
        elif attn_implementation == "eager":
            context = self._eager_attention(queries, keys, values, mask)
        else:
            raise ValueError(
                f"unknown attn_implementation {attn_implementation!r}; use one of {ATTENTION_IMPLEMENTATIONS}"
            )

        # (B, H, T, d_head) -> (B, T, H, d_head) -> (B, T, d_out): concatenate the heads
        context = context.transpose(1, 2).reshape(b, num_tokens, self.d_out)
        return self.out_proj(context)

    def _eager_attention(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The book's step-by-step scaled dot-product attention. Shapes ``(B, H, T, d_head)``, keys ``(B, H, S, d_head)``."""
        num_queries, num_keys = queries.shape[-2], keys.shape[-2]
        attn_scores = queries @ keys.transpose(
            2, 3
        )  # (B, H, T, S): dot product of every query with every key
        if mask is None:
            # causal: query i (absolute position num_past + i) sees keys 0 .. num_past + i
            num_past = num_keys - num_queries
            future = torch.triu(
                torch.ones(num_queries, num_keys, dtype=torch.bool, device=queries.device),
                diagonal=num_past + 1,
            )
            attn_scores = attn_scores.masked_fill(future, -torch.inf)
        else:
            attn_scores = attn_scores.masked_fill(~mask, -torch.inf)
        attn_weights = torch.softmax(attn_scores / math.sqrt(self.head_dim), dim=-1)
        attn_weights = self.dropout(attn_weights)
        return attn_weights @ values  # (B, H, T, d_head)
