"""The Hugging Face face of the GPT: ``PreTrainedModel`` classes around the from-scratch ``GPTModel``.

* ``ScratchGPTModel`` — the bare transformer (``GPTModel`` without its head), returns hidden states.
* ``ScratchGPTForCausalLM`` — adds the language-modeling head ``lm_head`` (tied to the token embedding by
  default) and ``GenerationMixin``, so ``generate()``, ``pipeline("text-generation")``, ``Trainer`` and ``peft``
  work on it.
* ``ScratchGPTForSequenceClassification`` — adds a classification head ``score`` applied at the last real
  (non-padding) token, as in the book's chapter 6.

This layer holds no model math: it runs ``GPTModel``'s embeddings, blocks and final norm from ``model.py``. What it
adds is the ``transformers`` contract (v5), the way GPT-2 does it:

* masks from ``transformers.masking_utils.create_causal_mask`` (dynamic and static caches, left padding, packed
  sequences whose ``position_ids`` restart per document), and the attention function registered for
  ``config._attn_implementation`` (``eager``, ``sdpa``, ``flex_attention`` or one you registered) passed to the
  core's attention;
* the blocks as ``GradientCheckpointingLayer`` (``ScratchGPTBlock``), ``output_hidden_states`` /
  ``output_attentions`` recorded by ``transformers``' output capture, ``return_dict=False`` tuples, the ``cache``
  argument (``past_key_values`` still accepted, with a deprecation warning);
* ``labels`` and the library's loss functions (``**kwargs`` passed on, so ``Trainer``'s gradient accumulation is
  exact), GPT-2's weight initialization, weight tying, and ``trust_remote_code`` export (``save_pretrained`` copies
  this file and its siblings next to the weights, and writes an ``auto_map`` covering every Auto class).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .attention import MultiHeadAttention, eager_attention
from .configuration_scratch_gpt import ScratchGPTConfig
from .layers import LayerNorm
from .model import GPTModel, TransformerBlock, last_token_positions

logger = logging.get_logger(__name__)

# What a saved checkpoint's config.json maps each Auto class to (used with trust_remote_code=True).
AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_scratch_gpt.ScratchGPTConfig",
    "AutoModel": "modeling_scratch_gpt.ScratchGPTModel",
    "AutoModelForCausalLM": "modeling_scratch_gpt.ScratchGPTForCausalLM",
    "AutoModelForSequenceClassification": "modeling_scratch_gpt.ScratchGPTForSequenceClassification",
}


class ScratchGPTBlock(TransformerBlock, GradientCheckpointingLayer):
    """The book's ``TransformerBlock`` as a ``transformers`` ``GradientCheckpointingLayer``.

    The math is ``TransformerBlock``'s; the base class only adds checkpointing: after
    ``model.activation_checkpointing_enable(...)`` (formerly ``gradient_checkpointing_enable``), a block in training
    recomputes its activations in the backward pass (with the checkpointing kwargs you gave), and drops the ``cache`` keyword (a cache is useless
    while training). It also marks the two projections that write into the residual stream, for GPT-2's scaled
    initialization (``_init_weights``).
    """

    def __init__(self, cfg: Any, layer_idx: int = 0) -> None:
        super().__init__(cfg, layer_idx)
        self.att.out_proj.is_residual_projection = True
        self.ff.fc_out.is_residual_projection = True


class ScratchGPTPreTrainedModel(PreTrainedModel):
    """Shared plumbing: config class, capabilities, weight init, and saving with remote code."""

    config_class = ScratchGPTConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ScratchGPTBlock"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True  # any function registered in transformers' AttentionInterface
    _can_compile_fullgraph = True  # static cache + torch.compile(fullgraph=True)
    # what transformers' output capture records, and from which modules (MultiHeadAttention returns (out, weights))
    _can_record_outputs = {
        "hidden_states": ScratchGPTBlock,
        "attentions": OutputRecorder(MultiHeadAttention, index=1),
    }

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialization: N(0, initializer_range), zero biases, unit LayerNorm scale.

        The projections that write into the residual stream (``out_proj``, ``fc_out``, marked by ``ScratchGPTBlock``)
        get their std scaled by ``1 / sqrt(2 * n_layer)`` (two residual additions per block), as in GPT-2.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                std = std / math.sqrt(2 * self.config.n_layer)
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.save_pretrained``, plus an ``auto_map`` that lets every Auto class load the checkpoint
        with ``trust_remote_code=True`` where scratch_gpt is not installed (this file and its siblings are copied).

        A model that PyTorch has re-classed at run time (FSDP2's ``fully_shard`` turns ``ScratchGPTForCausalLM``
        into a generated ``FSDPScratchGPTForCausalLM``, as ``Trainer`` with FSDP does) is saved as its own class:
        otherwise transformers would name the generated class in ``auto_map`` and copy PyTorch's FSDP source as
        the remote code, and the folder would not load.
        """
        self.config.auto_map = dict(AUTO_MAP)
        run_time_class = type(self)
        own_class = next(c for c in run_time_class.__mro__ if c.__module__.split(".")[0] != "torch")
        if own_class is run_time_class:
            return super().save_pretrained(save_directory, *args, **kwargs)
        # Only for the save: the wrapper's hooks and state live on the instance, not on the class.
        self.__class__ = own_class
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = run_time_class


class ScratchGPTModel(ScratchGPTPreTrainedModel):
    """The bare GPT transformer: token ids in, final hidden states ``(B, T, n_embd)`` out."""

    def __init__(self, config: ScratchGPTConfig) -> None:
        super().__init__(config)
        self.gpt = GPTModel(config, with_lm_head=False, block_class=ScratchGPTBlock)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.gpt.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.gpt.tok_emb = value
        self.gpt.vocab_size = value.num_embeddings

    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Run the transformer; ``cache`` is updated in place and returned.

        ``output_hidden_states`` / ``output_attentions`` / ``return_dict`` (keywords or config) are handled by
        ``transformers``' output capture around this method; other ``kwargs`` go on to the attention function.
        """
        kwargs.pop("output_attentions", None)
        kwargs.pop("output_hidden_states", None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give either input_ids or inputs_embeds (exactly one of them)")
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training  # a cache is useless while training
        if use_cache and self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            logger.warning_once(
                "use_cache=True is incompatible with gradient checkpointing; using use_cache=False"
            )
            use_cache = False
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None

        # tokens already cached: an int, or a 0-d tensor for a static cache (so compiled graphs do not specialize)
        num_past = cache.get_seq_length() if cache is not None else 0
        num_tokens = (inputs_embeds if inputs_embeds is not None else input_ids).shape[1]
        if position_ids is None:  # count real tokens only, so left padding does not shift positions
            device = (inputs_embeds if inputs_embeds is not None else input_ids).device
            position_ids = self.gpt.default_position_ids(attention_mask, num_past, num_tokens, device)
        x = self.gpt.embed(input_ids, attention_mask, position_ids, num_past, inputs_embeds)  # (B, T, n_embd)
        # The mask: None, a bool/float (B, 1, T, S) tensor or a flex BlockMask, whatever the attention function needs.
        # An empty dynamic cache changes nothing in it; leaving it out lets transformers see packed sequences
        # (position_ids restarting per document, no attention_mask) in an inference forward too.
        is_empty = isinstance(num_past, int) and num_past == 0 and not getattr(cache, "is_compileable", False)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=x,
            attention_mask=attention_mask,
            cache=None if is_empty else cache,
            position_ids=position_ids,
        )
        attention_function = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention
        )
        for block in self.gpt.trf_blocks:
            # x positional: GradientCheckpointingLayer checkpoints positional inputs, and drops `cache` in training
            x = block(
                x,
                mask,
                cache=cache,
                attention_function=attention_function,
                position_ids=position_ids,
                **kwargs,
            )
        x = self.gpt.final_norm(x)
        return BaseModelOutputWithPast(last_hidden_state=x, cache=cache)


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

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Next-token logits, and the loss when ``labels`` are given.

        ``labels`` are the input ids themselves (``-100`` = ignore): the shift by one happens inside the loss,
        as everywhere in ``transformers``. Extra ``kwargs`` (e.g. ``Trainer``'s ``num_items_in_batch``,
        ``output_attentions``) go to the transformer and the loss function, which keeps gradient accumulation exact.
        """
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,  # the head reads fields; its own return_dict (argument or config) applies at the end
            **kwargs,
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
            # labels are shifted inside: position t predicts token t + 1
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
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

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast:
        """Class logits ``(B, num_labels)`` pooled at the last real token, and the loss when ``labels`` are given."""
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,  # the head reads fields; its own return_dict (argument or config) applies at the end
            **kwargs,
        )
        logits = self.score(outputs.last_hidden_state)  # (B, T, num_labels)
        num_tokens = logits.shape[1]
        if attention_mask is not None:
            last = last_token_positions(attention_mask=attention_mask[:, -num_tokens:])
        elif input_ids is not None and self.config.pad_token_id is not None:
            last = last_token_positions(input_ids, pad_token_id=self.config.pad_token_id)
        else:
            last = torch.full((logits.shape[0],), num_tokens - 1, device=logits.device)  # padding unknown
        pooled_logits = logits[torch.arange(logits.shape[0], device=logits.device), last]  # (B, num_labels)
        if labels is not None:
            _check_class_labels(labels, self.num_labels)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, pooled_logits=pooled_logits, config=self.config, **kwargs
            )
        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
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


for _cls in (ScratchGPTModel, ScratchGPTForCausalLM, ScratchGPTForSequenceClassification):
    _cls.register_for_auto_class(next(k for k, v in AUTO_MAP.items() if v.endswith("." + _cls.__name__)))
ScratchGPTConfig.register_for_auto_class()

if __name__ == "scratch_gpt.modeling_scratch_gpt":  # the installed package (not a trust_remote_code copy)
    # Importing transformers.modeling_layers above loads the AutoModel mapping while this module is half-built, so
    # the import hook of _registration could not register our classes then; now that they exist, it can.
    importlib.import_module("scratch_gpt._registration").register_auto_classes()
