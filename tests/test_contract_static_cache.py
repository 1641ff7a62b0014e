"""A static (pre-allocated) cache: cache_implementation="static" gives the dynamic cache's greedy tokens and logits,
and torch.compile(fullgraph=True) decoding on it gives the same tokens (one graph, no breaks)."""

import shutil

import pytest
import torch
from model_helpers import gpt2_pair, random_ids
from transformers import CompileConfig, DynamicCache, StaticCache

GREEDY = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_logits=True)


def assert_same_generation(a, b):
    assert torch.equal(a.sequences, b.sequences)
    assert (
        len(set(a.sequences[0, -8:].tolist())) > 1
    )  # not one repeated token: the comparison means something
    for step_a, step_b in zip(a.logits, b.logits):
        torch.testing.assert_close(step_a, step_b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_static_cache_generation_equals_dynamic(attn_implementation):
    _, ours = gpt2_pair(attn_implementation)
    prompt = random_ids(1, 5)
    assert_same_generation(
        ours.generate(prompt, cache_implementation="static", **GREEDY), ours.generate(prompt, **GREEDY)
    )


def test_static_cache_with_left_padded_batch_equals_dynamic_and_gpt2():
    gpt2, ours = gpt2_pair("sdpa")
    prompts = random_ids(2, 5)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1] * 5])
    static = ours.generate(prompts, attention_mask=mask, cache_implementation="static", **GREEDY)
    assert_same_generation(static, ours.generate(prompts, attention_mask=mask, **GREEDY))
    theirs = gpt2.generate(prompts, attention_mask=mask, cache_implementation="static", **GREEDY)
    assert torch.equal(static.sequences, theirs.sequences)


def test_forward_on_a_static_cache_equals_dynamic_step_by_step():
    _, ours = gpt2_pair("sdpa")
    ids = random_ids(1, 9)
    static, dynamic = StaticCache(config=ours.config, max_cache_len=16), DynamicCache(config=ours.config)
    for start, end in ((0, 6), (6, 7), (7, 9)):  # prefill, one token, two tokens
        positions = torch.arange(start, end)[None]
        a = ours(ids[:, start:end], cache=static, position_ids=positions).logits
        b = ours(ids[:, start:end], cache=dynamic).logits
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert int(static.get_seq_length()) == dynamic.get_seq_length() == 9


def compiled_generate(model, prompt, backend):
    config = CompileConfig(fullgraph=True, backend=backend, mode=None)
    config._compile_all_devices = (
        True  # transformers compiles automatically on accelerators only; ask on CPU too
    )
    return model.generate(prompt, cache_implementation="static", compile_config=config, **GREEDY)


def test_compiled_fullgraph_decoding_gives_the_same_tokens_in_one_graph():
    from torch._dynamo.utils import counters

    _, ours = gpt2_pair("sdpa")
    prompt = random_ids(1, 5)
    torch._dynamo.reset()
    counters.clear()
    compiled = compiled_generate(ours, prompt, backend="aot_eager")  # dynamo + AOT autograd, no C++ needed
    assert counters["stats"]["unique_graphs"] == 1  # fullgraph=True would have raised on any graph break
    assert_same_generation(compiled, ours.generate(prompt, **GREEDY))


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile's inductor backend on CPU needs a C++ compiler (g++); install build-essential",
)
def test_inductor_compiled_decoding_gives_the_same_tokens():
    _, ours = gpt2_pair("sdpa")
    prompt = random_ids(1, 5)
    torch._dynamo.reset()
    assert_same_generation(
        compiled_generate(ours, prompt, backend="inductor"), ours.generate(prompt, **GREEDY)
    )


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile's inductor backend on CPU needs a C++ compiler (g++); install build-essential",
)
def test_compiled_decoding_on_the_fast_kernels_keeps_them_and_the_tokens(onednn_calls):
    """``use_fast_kernels`` survives compilation: inductor's compiled decoding step still calls the oneDNN
    product (a registered operator, not a graph break), and gives GPT-2's tokens and the dynamic cache's logits."""
    from scratch_gpt.kernels import use_fast_kernels

    gpt2, ours = gpt2_pair("sdpa")
    prompt = random_ids(1, 5)
    expected = ours.generate(prompt, **GREEDY)
    use_fast_kernels(ours)
    torch._dynamo.reset()
    compiled = compiled_generate(ours, prompt, backend="inductor")
    decoding_steps = GREEDY["max_new_tokens"] - 1  # the prefill runs eagerly, the rest compiled
    layers = 6 * ours.config.n_layer + 1  # q, k, v, out, fc_in, fc_out per block, and the output head
    assert len(onednn_calls) >= layers * (1 + decoding_steps)
    assert_same_generation(compiled, expected)
    theirs = compiled_generate(gpt2, prompt, backend="inductor")
    assert torch.equal(compiled.sequences, theirs.sequences)
