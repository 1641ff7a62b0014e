"""Text generation from a saved checkpoint folder: the library function behind ``scratch-gpt generate``.

``generate_from_pretrained`` loads any causal-LM folder (scratch_gpt, or a stock one such as GPT-2) with
``AutoModelForCausalLM`` + ``AutoTokenizer`` and continues a prompt with chapter 5's decoding choices (greedy by
default, temperature / top-k / top-p sampling, or beam search) through ``transformers``' ``generate()``. On a CPU
the model's linear layers are put on ``scratch_gpt.kernels``' faster product first (``use_fast_kernels``: the same
math, about 1.5x the tokens/s of the plain layers for the 124M model).
For the book-style loop on an in-memory model, see ``generation.generate``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def generate_from_pretrained(
    model_dir: str | os.PathLike[str],
    prompt: str,
    *,
    max_new_tokens: int = 50,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    num_beams: int = 1,
) -> str:
    """Load ``model_dir`` with ``AutoModelForCausalLM`` + ``AutoTokenizer`` and return ``prompt`` + continuation.

    Args:
        model_dir: a checkpoint folder holding a causal LM (scratch_gpt or any stock one, e.g. GPT-2) and a tokenizer.
        prompt: the text to continue (must encode to at least one token).
        max_new_tokens: how many tokens to add; generation also stops at the tokenizer's EOS token.
        temperature: 0 picks the most likely token each step (greedy); > 0 samples from the softened distribution.
        top_k, top_p: restrict sampling to the k most likely tokens / the smallest set with probability >= p
            (only with ``temperature > 0``).
        seed: seeds the sampler, so the same arguments give the same text.
        num_beams: beam search width (1 = no beam search).

    Raises:
        CheckpointLoadError: ``model_dir`` is missing or cannot be loaded (``hub.loading``).
        FileNotFoundError: ``model_dir`` holds no tokenizer.
        ValueError: bad option values, or a prompt + ``max_new_tokens`` longer than
            the model's context.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..kernels import use_fast_kernels
    from .loading import check_checkpoint_config, check_tokenizer_files, load_checked

    _check_generate_options(max_new_tokens, temperature, top_k, top_p, num_beams)
    model_dir = Path(model_dir)
    check_checkpoint_config(model_dir)  # CheckpointLoadError: one line naming the file and the fix
    check_tokenizer_files(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_checked(AutoModelForCausalLM, model_dir).eval()
    if torch.cuda.is_available():
        model = model.to("cuda")
    else:
        use_fast_kernels(model)  # the same math on the faster CPU product (scratch_gpt.kernels)

    input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)
    if input_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one character of text to continue")
    context = getattr(model.config, "max_position_embeddings", None)
    if context is not None and input_ids.shape[1] + max_new_tokens > context:
        raise ValueError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) = "
            f"{input_ids.shape[1] + max_new_tokens} tokens exceeds the model's context length {context}; "
            f"shorten the prompt or lower --max-new-tokens"
        )
    if seed is not None:
        torch.manual_seed(seed)
    sampling = temperature > 0
    sampling_kwargs = dict(temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0) if sampling else {}
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            num_beams=num_beams,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            eos_token_id=eos,
            **sampling_kwargs,
        )
    return tokenizer.decode(output[0], skip_special_tokens=True)


def _check_generate_options(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None, num_beams: int
) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):  # NaN would silently decode greedily
        raise ValueError(f"temperature must be >= 0 (0 = greedy) and finite, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be at least 1, got {num_beams}")
    if temperature == 0 and (top_k is not None or top_p is not None):
        raise ValueError(
            "top_k / top_p only apply when sampling: give a temperature > 0 (e.g. --temperature 0.8)"
        )
