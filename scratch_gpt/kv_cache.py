"""A minimal key/value cache for fast text generation (book chapter 5, bonus material on KV caching).

When a GPT generates one token at a time, the keys and values of all earlier tokens do not change, so each
attention layer can keep them and only compute the new token's. ``KVCache`` stores, per layer, tensors of shape
``(B, H, num_tokens, d_head)`` and appends to them. It has the methods that attention and mask building use on a
``transformers`` ``DynamicCache`` (``update``, ``get_seq_length``, ``get_query_offset``, ``get_mask_sizes``), so the
book-style loop and the Hugging Face classes share one cache code path.

Not here: pre-allocated (static) caches for ``torch.compile``, sliding windows, offloading — use ``transformers``'
cache classes for those (``generate(..., cache_implementation="static")``).
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer lists of past keys and values."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def update(
        self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's ``(B, H, T, d_head)`` keys and values for ``layer_idx``; return all of them so far."""
        if layer_idx == len(self.keys):  # first call for this layer
            self.keys.append(keys)
            self.values.append(values)
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], keys], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], values], dim=2)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many tokens are cached (0 before the first forward pass)."""
        return self.keys[layer_idx].shape[2] if layer_idx < len(self.keys) else 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        """The absolute position of the first new token: the number of cached tokens (used to build masks)."""
        return self.get_seq_length(layer_idx)

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        """``(number of keys the next attention sees, offset of the first key)`` for ``query_length`` new tokens."""
        return self.get_seq_length(layer_idx) + query_length, 0
