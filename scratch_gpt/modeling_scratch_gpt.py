"""The Hugging Face face of the GPT: ``PreTrainedModel`` classes around the from-scratch ``GPTModel``.

* ``ScratchGPTModel`` — the bare transformer (``GPTModel`` without its head), returns hidden states.
* ``ScratchGPTForCausalLM`` — adds the language-modeling head ``lm_head`` (tied to the token embedding by
  default) and ``GenerationMixin``, so ``generate()``, ``pipeline("text-generation")``, ``Trainer`` and ``peft``
  work on it.
* ``ScratchGPTForSequenceClassification`` — adds a classification head ``score`` applied at the last real
  (non-padding) token, as in the book's chapter 6.

This layer holds no model math: every forward pass runs ``GPTModel.hidden_states`` from ``model.py``. What it adds
is the ``transformers`` contract (v5): the ``cache`` argument (a ``DynamicCache`` made on demand when
``use_cache``), positions derived from the padding mask, ``labels`` and the library's loss functions (with
``**kwargs`` passed on, so ``Trainer``'s gradient accumulation is exact), weight initialization, weight tying,
gradient checkpointing, and ``trust_remote_code`` export (``save_pretrained`` copies this file and its siblings
next to the weights, and writes an ``auto_map`` covering every Auto class).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)

from .configuration_scratch_gpt import ScratchGPTConfig
from .layers import LayerNorm
from .model import GPTModel, TransformerBlock

# What a saved checkpoint's config.json maps each Auto class to (used with trust_remote_code=True).
AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_scratch_gpt.ScratchGPTConfig",
    "AutoModel": "modeling_scratch_gpt.ScratchGPTModel",
    "AutoModelForCausalLM": "modeling_scratch_gpt.ScratchGPTForCausalLM",
    "AutoModelForSequenceClassification": "modeling_scratch_gpt.ScratchGPTForSequenceClassification",
}


class ScratchGPTPreTrainedModel(PreTrainedModel):
    """Shared plumbing: config class, weight init, and saving with remote code."""

    config_class = ScratchGPTConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialization: N(0, initializer_range), zero biases, unit LayerNorm scale.

        The projections that write into the residual stream (``out_proj``, ``fc_out``) get their std scaled by
        ``1 / sqrt(2 * n_layer)`` (two residual additions per block), as in GPT-2.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)
        elif isinstance(module, TransformerBlock):
            residual_std = std / math.sqrt(2 * self.config.n_layer)
            init.normal_(module.att.out_proj.weight, mean=0.0, std=residual_std)
            init.normal_(module.ff.fc_out.weight, mean=0.0, std=residual_std)

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.save_pretrained``, plus an ``auto_map`` that lets every Auto class load the checkpoint
        with ``trust_remote_code=True`` where scratch_gpt is not installed (this file and its siblings are copied)."""
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)


class ScratchGPTModel(ScratchGPTPreTrainedModel):
    """The bare GPT transformer: token ids in, final hidden states ``(B, T, n_embd)`` out."""

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.gpt = GPTModel(config, with_lm_head=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.gpt.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.gpt.tok_emb = value
        self.gpt.vocab_size = value.num_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Run the transformer. ``cache`` (``past_key_values`` is accepted as an alias) is updated in place."""
        if cache is None:
            cache = past_key_values
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        if getattr(cache, "is_compileable", False):
            raise ValueError(
                f"{type(cache).__name__} (a pre-allocated, static-shape cache) is not supported: scratch_gpt's "
                "attention masks follow the dynamic cache's length. Use the default DynamicCache (drop "
                "cache_implementation='static' from generate())"
            )
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        all_hidden_states: list[torch.Tensor] | None = [] if output_hidden_states else None
        hidden = self.gpt.hidden_states(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            attn_implementation=self.config._attn_implementation,
            all_hidden_states=all_hidden_states,
        )
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            cache=cache,
            hidden_states=tuple(all_hidden_states) if all_hidden_states is not None else None,
        )


class ScratchGPTForCausalLM(ScratchGPTPreTrainedModel, GenerationMixin):
    """GPT with a language-modeling head: next-token logits ``(B, T, vocab_size)`` and the shifted LM loss."""

    _tied_weights_keys = {"lm_head.weight": "transformer.gpt.tok_emb.weight"}

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.transformer = ScratchGPTModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Next-token logits, and the loss when ``labels`` are given.

        ``labels`` are the input ids themselves (``-100`` = ignore): the shift by one happens inside the loss,
        as everywhere in ``transformers``. Extra ``kwargs`` (e.g. ``Trainer``'s ``num_items_in_batch``) go to the
        loss function, which keeps gradient accumulation exact.
        """
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden = outputs.last_hidden_state  # (B, T, n_embd)
        if isinstance(logits_to_keep, int):
            # generate() asks for the last position only: skip the head on the rest
            hidden = hidden[:, -logits_to_keep:, :] if logits_to_keep > 0 else hidden
        else:
            hidden = hidden[:, logits_to_keep, :]
        logits = self.lm_head(hidden)  # (B, T, vocab_size)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits, labels, vocab_size=self.config.vocab_size, **kwargs
            )  # shifts labels
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )


class ScratchGPTForSequenceClassification(ScratchGPTPreTrainedModel):
    """GPT with a classification head ``score``, read at the last real token of each sequence (book chapter 6).

    The last real token is found from ``attention_mask`` when given (works for left and right padding), else from
    ``config.pad_token_id``; with neither, the last position is used.
    """

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = ScratchGPTModel(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=config.classifier_bias)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast:
        """Class logits ``(B, num_labels)`` pooled at the last real token, and the loss when ``labels`` are given."""
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        logits = self.score(outputs.last_hidden_state)  # (B, T, num_labels)
        last = last_real_token_index(input_ids, attention_mask, self.config.pad_token_id, logits.shape[1])
        pooled_logits = logits[torch.arange(logits.shape[0], device=logits.device), last]  # (B, num_labels)
        if labels is not None:
            _check_class_labels(labels, self.num_labels)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, pooled_logits=pooled_logits, config=self.config, **kwargs
            )
        return SequenceClassifierOutputWithPast(
            loss=loss, logits=pooled_logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )


def _check_class_labels(labels: torch.Tensor, num_labels: int) -> None:
    """A clear error for integer class labels the classifier head cannot predict."""
    if labels.dtype not in (torch.long, torch.int) or num_labels == 1 or labels.numel() == 0:
        return  # regression / multi-label targets, or nothing to check
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_labels:
        raise ValueError(
            f"label {high if high >= num_labels else low} is outside the classifier's {num_labels} classes "
            f"[0, {num_labels}); create the model with enough classes, e.g. "
            f"AutoModelForSequenceClassification.from_pretrained(dir, num_labels=N)"
        )


def last_real_token_index(
    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, pad_token_id: int | None, length: int
) -> torch.Tensor | int:
    """Index of each row's last non-padding token (``(B,)``), or ``-1`` (the last position) if padding is unknown."""
    if attention_mask is not None:
        real = attention_mask[:, -length:].to(torch.int32)
    elif input_ids is not None and pad_token_id is not None:
        real = (input_ids != pad_token_id).to(torch.int32)
    else:
        return -1
    positions = torch.arange(length, device=real.device, dtype=torch.int32)
    return (positions * real).argmax(-1)  # the rightmost position holding a real token


for _cls in (ScratchGPTModel, ScratchGPTForCausalLM, ScratchGPTForSequenceClassification):
    _cls.register_for_auto_class(next(k for k, v in AUTO_MAP.items() if v.endswith("." + _cls.__name__)))
ScratchGPTConfig.register_for_auto_class()
