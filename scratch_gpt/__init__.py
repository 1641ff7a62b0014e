"""scratch_gpt: a GPT built from scratch, book style, as a first-class Hugging Face model.

The from-scratch core (tokenizer, attention, GPT model, training loop) reads like *Build a Large Language
Model (From Scratch)*; the Hugging Face layer (``ScratchGPTConfig``, ``ScratchGPTForCausalLM``, the tokenizer
classes) is a thin wrapper on top of it.

Importing the package registers ``model_type="scratch_gpt"`` with the ``transformers`` Auto classes, so
``AutoModelForCausalLM.from_pretrained(dir)`` works after ``import scratch_gpt``. Public names are loaded
lazily on first use, so ``import scratch_gpt`` itself stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it (loaded on first attribute access, PEP 562)
_LAZY_ATTRS: dict[str, str] = {
    # chapter 2: tokenization
    "BPETokenizer": "bpe",
    "ScratchGPTTokenizer": "tokenization_scratch_gpt",
    "ScratchGPTTokenizerFast": "tokenization_scratch_gpt",
    # chapters 3-4: the model
    "ScratchGPTConfig": "configuration_scratch_gpt",
    "PRESETS": "configuration_scratch_gpt",
    "MultiHeadAttention": "attention",
    "LayerNorm": "layers",
    "GELU": "layers",
    "FeedForward": "layers",
    "Linear": "kernels.linear",
    "TransformerBlock": "model",
    "GPTModel": "model",
    "ScratchGPTPreTrainedModel": "modeling_scratch_gpt",
    "ScratchGPTModel": "modeling_scratch_gpt",
    "ScratchGPTForCausalLM": "modeling_scratch_gpt",
    "ScratchGPTForSequenceClassification": "modeling_scratch_gpt",
    # chapter 5: generation
    "generate": "generation",
    "generate_text_simple": "generation",
    "sample_next_token": "generation",
    "KVCache": "kv_cache",
    "cross_entropy": "kernels.loss",
    "causal_lm_loss": "kernels.loss",
    "use_fast_kernels": "kernels",
    "PretrainConfig": "training.pretrain",
    "CorpusConfig": "training.from_corpus",
    "finetune_instruct": "finetune.instruction_pipeline",
    "InstructFinetuneConfig": "finetune.instruction_pipeline",
    "finetune_classifier": "finetune.classifier_pipeline",
    "ClassifierFinetuneConfig": "finetune.classifier_pipeline",
    "GPTDatasetV1": "data.sliding_window",
    "create_dataloader_v1": "data.sliding_window",
    "pretrain": "training.pretrain",
    "pretrain_from_corpus": "training.from_corpus",
    "run_demo": "training.demo",
    "add_chat_template": "finetune.chat",
    "CHAT_TEMPLATE": "finetune.chat",
    "load_gpt2": "hub.convert_gpt2",
    "to_gpt2": "hub.convert_gpt2",
    "save_as_gpt2": "hub.convert_gpt2",
    "generate_from_pretrained": "hub.inference",
    # chapter 6: classification fine-tuning
    "SpamDataset": "finetune.classifier_data",
    # chapter 7: instruction fine-tuning
    "InstructionDataset": "finetune.instruction_data",
    "format_input": "finetune.instruction_data",
    "custom_collate_fn": "finetune.instruction_data",
    # chapter 7 bonus: preference tuning with DPO
    "DPOConfig": "finetune.dpo_pipeline",
    "finetune_dpo": "finetune.dpo_pipeline",
    "PreferenceDataset": "finetune.dpo_data",
    "build_preference_pairs": "finetune.dpo_data",
    "compute_dpo_loss": "finetune.dpo_training",
    # sharing
    "make_model_card": "hub.model_card",
    "write_model_card": "hub.model_card",
    # appendix E: LoRA
    "LoRALayer": "finetune.lora",
    "LinearWithLoRA": "finetune.lora",
    "replace_linear_with_lora": "finetune.lora",
}

__all__ = sorted(_LAZY_ATTRS) + ["__version__", "register_auto_classes"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_ATTRS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'scratch_gpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


from ._registration import register_auto_classes  # noqa: E402

register_auto_classes()
