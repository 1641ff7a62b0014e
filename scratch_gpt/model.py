"""The GPT model (book chapter 4): token + position embeddings, transformer blocks, final norm, output head.

``TransformerBlock`` is pre-LayerNorm attention and feed-forward, each wrapped in a shortcut (residual)
connection. ``GPTModel`` stacks them between the embeddings and the output head, exactly as in the book, and is
plain PyTorch: build it from any object with ``ScratchGPTConfig``'s attributes, call it on token ids, get logits.

The Hugging Face classes in ``modeling_scratch_gpt.py`` wrap this same ``GPTModel`` (without its output head): they
call its ``embed``, its blocks and its ``final_norm``, and pass the blocks ``transformers``' mask and attention
function instead of ours. The KV cache and the attention function are arguments of the one forward pass, not
separate copies of the model.

Not here: the loss (``transformers``' causal-LM loss in the HF layer; the book's ``calc_loss_batch`` in
``training/losses.py``), text generation (``generation.py``), the HF plumbing (``modeling_scratch_gpt.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import (
    AttentionFunction,
    MultiHeadAttention,
    get_attention_function,
    make_attention_mask,
    sdpa_attention,
)
from .layers import FeedForward, LayerNorm


class TransformerBlock(nn.Module):
    """``x + attention(norm1(x))``, then ``x + feed_forward(norm2(x))`` (pre-LayerNorm, as GPT-2)."""

    def __init__(self, cfg: Any, layer_idx: int = 0) -> None:
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg.n_embd,
            d_out=cfg.n_embd,
            context_length=cfg.n_positions,
            dropout=cfg.dropout,
            num_heads=cfg.n_head,
            qkv_bias=cfg.qkv_bias,
            layer_idx=layer_idx,
        )
        self.ff = FeedForward(cfg.n_embd, getattr(cfg, "n_inner", None))
        self.norm1 = LayerNorm(cfg.n_embd, eps=getattr(cfg, "layer_norm_epsilon", 1e-5))
        self.norm2 = LayerNorm(cfg.n_embd, eps=getattr(cfg, "layer_norm_epsilon", 1e-5))
        self.drop_shortcut = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: Any = None,
        cache: Any = None,
        attention_function: AttentionFunction = sdpa_attention,
        **attention_kwargs: Any,
    ) -> torch.Tensor:
        """``(B, T, emb_dim)`` in and out; ``mask``, ``cache`` and the attention function go to the attention."""
        attn_out, _ = self.att(self.norm1(x), mask, cache, attention_function, **attention_kwargs)
        x = x + self.drop_shortcut(attn_out)  # shortcut around attention
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))  # shortcut around the feed-forward network
        return x


class GPTModel(nn.Module):
    """The GPT of chapter 4.

    Args:
        cfg: any object with ``vocab_size, n_positions, n_embd, n_layer, n_head, dropout, qkv_bias`` (and optionally
            ``n_inner, layer_norm_epsilon, tie_word_embeddings``), e.g. a ``ScratchGPTConfig``.
        with_lm_head: build the output head ``out_head`` (``False`` gives the bare transformer, used by the HF
            wrapper, which owns the head).
        block_class: the class of the transformer blocks (``TransformerBlock``; the HF wrapper passes its subclass
            that adds ``transformers``' gradient checkpointing).

    ``forward(in_idx)`` maps token ids ``(B, T)`` to next-token logits ``(B, T, vocab_size)``.
    """

    def __init__(
        self, cfg: Any, with_lm_head: bool = True, block_class: type[nn.Module] = TransformerBlock
    ) -> None:
        super().__init__()
        self.n_positions = cfg.n_positions
        self.vocab_size = cfg.vocab_size
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.trf_blocks = nn.ModuleList([block_class(cfg, layer_idx=i) for i in range(cfg.n_layer)])
        self.final_norm = LayerNorm(cfg.n_embd, eps=getattr(cfg, "layer_norm_epsilon", 1e-5))
        self.out_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False) if with_lm_head else None
        if self.out_head is not None and getattr(cfg, "tie_word_embeddings", False):
            self.out_head.weight = self.tok_emb.weight  # weight tying, as in the original GPT-2
        self.attn_implementation = "sdpa"  # or "eager": the book's explicit attention

    def forward(
        self,
        in_idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """Token ids ``(B, T)`` -> logits ``(B, T, vocab_size)``. See ``hidden_states`` for the other arguments."""
        if self.out_head is None:
            raise ValueError("this GPTModel was built with with_lm_head=False; call hidden_states() instead")
        return self.out_head(self.hidden_states(in_idx, attention_mask, position_ids, cache))

    def hidden_states(
        self,
        in_idx: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final-normalized hidden states ``(B, T, emb_dim)`` (everything but the output head).

        Args:
            in_idx: token ids ``(B, T)`` (or give ``inputs_embeds`` ``(B, T, emb_dim)`` instead).
            attention_mask: optional ``(B, num_past + T)`` padding mask, 1 = real token, 0 = padding.
            position_ids: optional ``(B, T)`` positions; by default they count real tokens only (so left padding
                does not shift positions), continuing after the cached tokens.
            cache: optional KV cache (``KVCache`` or a ``transformers`` cache); it is updated in place.
        """
        num_past = cache.get_seq_length() if cache is not None else 0  # tokens already in the cache
        x = self.embed(in_idx, attention_mask, position_ids, num_past, inputs_embeds)  # (B, T, emb_dim)
        mask = make_attention_mask(attention_mask, x.shape[1], num_past, x.device)
        attention_function = get_attention_function(self.attn_implementation)
        for block in self.trf_blocks:
            x = block(x, mask, cache, attention_function)
        return self.final_norm(x)

    def embed(
        self,
        in_idx: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        num_past: int | torch.Tensor = 0,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings + position embeddings (then dropout): the input of the first block, ``(B, T, emb_dim)``.

        ``num_past`` is the number of tokens already in the KV cache (an int, or a 0-d tensor for a static cache);
        positions default to counting real tokens only (see ``hidden_states``).
        """
        if inputs_embeds is None:
            inputs_embeds = self.tok_emb(self._check_ids(in_idx))  # (B, T, emb_dim)
        num_tokens = inputs_embeds.shape[1]
        if not isinstance(num_past, torch.Tensor) and num_past + num_tokens > self.n_positions:
            raise ValueError(
                f"input of {num_past + num_tokens} tokens (cached {num_past} + new {num_tokens}) is longer than the "
                f"model's context length n_positions={self.n_positions}; truncate the input (e.g. keep the last "
                f"{self.n_positions} tokens) or use a model with a longer context"
            )
        if position_ids is None:
            position_ids = self.default_position_ids(
                attention_mask, num_past, num_tokens, inputs_embeds.device
            )
        return self.drop_emb(inputs_embeds + self.pos_emb(position_ids))  # (B, T, emb_dim)

    def _check_ids(self, in_idx: torch.Tensor | None) -> torch.Tensor:
        """Turn bad token-id input into a clear error instead of an index error deep inside torch."""
        if in_idx is None:
            raise ValueError("give token ids (in_idx / input_ids) or inputs_embeds")
        if not isinstance(in_idx, torch.Tensor):
            raise TypeError(f"token ids must be a torch.Tensor of integers, got {type(in_idx).__name__}")
        if in_idx.is_floating_point() or in_idx.is_complex() or in_idx.dtype == torch.bool:
            raise TypeError(
                f"token ids must be integers (torch.long), got dtype {in_idx.dtype}; use ids.long()"
            )
        if in_idx.dim() == 1:
            raise ValueError(
                f"token ids must be 2-D (batch, tokens), got shape {tuple(in_idx.shape)}; use ids[None]"
            )
        if in_idx.dim() != 2:
            raise ValueError(f"token ids must be 2-D (batch, tokens), got shape {tuple(in_idx.shape)}")
        if in_idx.numel() == 0:
            raise ValueError(
                f"empty batch: token ids have shape {tuple(in_idx.shape)}; give at least one token"
            )
        # reading the ids' values syncs; a compiled or exported graph must not depend on them
        if in_idx.device.type != "meta" and not torch.compiler.is_compiling():
            low, high = int(in_idx.min()), int(in_idx.max())
            if low < 0 or high >= self.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"token id {bad} is outside the vocabulary [0, {self.vocab_size}); the tokenizer and the model "
                    f"disagree on the vocabulary (resize the embeddings with resize_token_embeddings, or use the "
                    f"model's own tokenizer)"
                )
        return in_idx

    @staticmethod
    def default_position_ids(
        attention_mask: torch.Tensor | None,
        num_past: int | torch.Tensor,
        num_tokens: int,
        device: torch.device,
    ) -> torch.Tensor:
        if attention_mask is None:
            positions = torch.arange(num_tokens, device=device) + num_past  # (T,): right after the cache
            return positions.unsqueeze(0)  # (1, T)
        # count only real tokens, so a left-padded prompt gets the same positions as the unpadded one
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, num_past + T)
        return positions[:, -num_tokens:]  # (B, T)


def last_token_positions(
    input_ids: torch.Tensor | None = None,
    *,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Index of the last real (non-padding) token of each row, shape ``(B,)`` (book chapter 6's classification token).

    "Real" means ``attention_mask == 1`` if a mask is given, else ``input_ids != pad_token_id``. The rightmost
    real position is taken, so both right and left padding work. The computation has no data-dependent branch
    (it traces for ``torch.export``); the all-padding check runs only outside compilation.
    """
    if attention_mask is not None:
        real = attention_mask.bool()
    elif input_ids is not None and pad_token_id is not None:
        real = input_ids != pad_token_id
    else:
        raise ValueError("the last real token needs attention_mask, or input_ids together with pad_token_id")
    if real.dim() != 2:
        raise ValueError(f"expected a (batch, seq_len) mask or input_ids, got shape {tuple(real.shape)}")
    if not torch.compiler.is_compiling():
        empty = (~real.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"rows {empty} have no real tokens (all padding); drop empty sequences from the batch"
            )
    positions = torch.arange(real.shape[1], device=real.device)  # (T,)
    return (positions * real).argmax(dim=1)  # (B,): the largest position that is real
