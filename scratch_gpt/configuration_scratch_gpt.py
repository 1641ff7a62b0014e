"""The model configuration (book chapter 4's ``GPT_CONFIG_124M``, as a Hugging Face config).

``ScratchGPTConfig`` holds a GPT's sizes under GPT-2's field names (``vocab_size``, ``n_positions``, ``n_embd``,
``n_layer``, ``n_head``) with ``transformers``' generic aliases (``hidden_size`` ...) mapped onto them. It is a
``transformers`` ``PreTrainedConfig`` (a strict dataclass in transformers 5), so it saves to / loads from
``config.json`` and the Auto classes find our model through ``model_type = "scratch_gpt"``. The from-scratch core
(``model.py``) only reads its plain attributes.

The book's ``drop_rate`` is ``dropout`` here (one rate for embeddings, attention weights and shortcuts).

Not here: generation settings (``max_new_tokens``, ``temperature`` ... belong in ``model.generation_config``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig

# name -> sizes, with the parameter count (tied embeddings, no qkv bias, vocab 50,257, context 1,024) beside each.
# The book's 124M model is "gpt2-small": 124,412,160 parameters tied, 163,009,536 with a separate output head.
PRESETS: dict[str, dict[str, int]] = {
    "gpt2-small": {"n_embd": 768, "n_layer": 12, "n_head": 12},  # 124,412,160
    "gpt2-medium": {"n_embd": 1024, "n_layer": 24, "n_head": 16},  # 354,749,440
    "gpt2-large": {"n_embd": 1280, "n_layer": 36, "n_head": 20},  # 773,891,840
    "gpt2-xl": {"n_embd": 1600, "n_layer": 48, "n_head": 25},  # 1,557,380,800
}


@strict
class ScratchGPTConfig(PretrainedConfig):
    """Configuration of a scratch_gpt model.

    Args:
        vocab_size: number of token ids (the tokenizer's ``len(tokenizer)``).
        n_positions: context length, the longest sequence the model can read.
        n_embd: embedding size (``hidden_size``).
        n_layer: number of transformer blocks.
        n_head: number of attention heads; must divide ``n_embd``.
        n_inner: feed-forward hidden size (default ``4 * n_embd``).
        dropout: dropout rate for embeddings, attention weights and shortcut connections, in ``[0, 1)``.
        qkv_bias: whether the query/key/value projections have a bias (GPT-2's weights do; the book's default does not).
        layer_norm_epsilon: LayerNorm's epsilon.
        initializer_range: std of the normal initialization of weights (GPT-2: 0.02).
        use_cache: whether the forward pass returns a KV cache by default (inference only).
        tie_word_embeddings: whether the output head shares the token embedding matrix (GPT-2: yes).
        classifier_bias: whether the sequence classifier's head ``score`` has a bias (the book's
            ``nn.Linear(emb_dim, num_classes)`` does; ours does not by default).
        bos_token_id, eos_token_id, pad_token_id: special token ids, if any.

    Example:
        >>> config = ScratchGPTConfig.from_preset("gpt2-small", n_positions=256)
        >>> config.hidden_size, config.n_layer
        (768, 12)
    """

    model_type: ClassVar[str] = "scratch_gpt"
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
    }

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    dropout: float | int = 0.1
    qkv_bias: bool = False
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = True
    classifier_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def validate_architecture(self) -> None:
        """Reject sizes that cannot build a model, naming the field and the fix."""
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if self.n_inner is not None and self.n_inner <= 0:
            raise ValueError(
                f"n_inner must be a positive integer or None (meaning 4 * n_embd), got {self.n_inner}"
            )
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): each head gets "
                f"n_embd / n_head dimensions; choose e.g. n_head={_nearest_divisor(self.n_embd, self.n_head)}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.layer_norm_epsilon <= 0:
            raise ValueError(f"layer_norm_epsilon must be positive, got {self.layer_norm_epsilon}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ScratchGPTConfig:
        """A config for one of ``PRESETS`` (``gpt2-small`` / ``-medium`` / ``-large`` / ``-xl``), with overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


def _nearest_divisor(n: int, near: int) -> int:
    """The divisor of ``n`` closest to ``near`` (for error messages)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - near), d))
