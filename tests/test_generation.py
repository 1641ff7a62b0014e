"""Book-style generation: greedy loop, sampling function, and the KV-cached ``generate``."""

import pytest
import torch
from model_helpers import random_ids, tiny_config

from scratch_gpt import GPTModel, ScratchGPTForCausalLM
from scratch_gpt.generation import generate, generate_text_simple, sample_next_token


@pytest.fixture
def hf_model():
    torch.manual_seed(0)
    return ScratchGPTForCausalLM(tiny_config()).eval()


def test_cached_generate_equals_recompute_and_hf_generate(hf_model):
    prompt = random_ids(2, 5)
    cached = generate(hf_model, prompt, max_new_tokens=20)
    assert len(set(cached[0, 5:].tolist())) > 3  # non-degenerate
    assert torch.equal(cached, generate(hf_model, prompt, max_new_tokens=20, use_cache=False))
    assert torch.equal(cached, generate_text_simple(hf_model, prompt, 20, context_size=32))
    assert torch.equal(cached, hf_model.generate(prompt, max_new_tokens=20, do_sample=False))


def test_plain_gpt_model_works_too():
    torch.manual_seed(0)
    model = GPTModel(tiny_config()).eval()
    prompt = random_ids(1, 4)
    assert torch.equal(generate(model, prompt, 10), generate(model, prompt, 10, use_cache=False))


def test_generation_past_the_context_window_matches_recompute(hf_model):
    prompt = random_ids(1, 10)
    # 10 + 40 tokens > n_positions=32: the cache restarts on the last 32 tokens, like the recompute loop crops
    cached = generate(hf_model, prompt, max_new_tokens=40)
    assert cached.shape == (1, 50)
    assert torch.equal(cached, generate(hf_model, prompt, max_new_tokens=40, use_cache=False))


def test_eos_stops_generation_per_row(hf_model):
    prompt = random_ids(2, 4)
    free = generate(hf_model, prompt, 12)
    eos = int(free[0, 6])
    out = generate(hf_model, prompt, 12, eos_id=eos)
    first = int((out[0, 4:] == eos).nonzero()[0]) + 4
    assert (out[0, first:] == eos).all()

    def steps(row: int) -> int:  # new tokens until row's first eos (included), or all 12
        hits = (free[row, 4:] == eos).nonzero()
        return int(hits[0]) + 1 if len(hits) else 12

    assert out.shape[1] == 4 + max(steps(0), steps(1))  # stops once every row has stopped
    assert torch.equal(out[1, : 4 + steps(1)], free[1, : 4 + steps(1)])


def test_sample_next_token_greedy_topk_temperature():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0]])
    assert sample_next_token(logits).item() == 1
    gen = torch.Generator().manual_seed(0)
    draws = {sample_next_token(logits, temperature=5.0, top_k=2, generator=gen).item() for _ in range(200)}
    assert draws == {1, 3}  # only the two largest logits survive top-k
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_next_token(logits, temperature=-1)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        sample_next_token(logits, top_k=0)


def test_sampling_is_reproducible_with_a_generator(hf_model):
    prompt = random_ids(1, 3)
    a = generate(hf_model, prompt, 15, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(7))
    b = generate(hf_model, prompt, 15, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_empty_prompt_raises(hf_model):
    with pytest.raises(ValueError, match="at least one token"):
        generate(hf_model, torch.zeros(1, 0, dtype=torch.long), 5)


def test_model_logits_for_every_kind_of_model(hf_model):
    from torch import nn

    from scratch_gpt.generation import model_logits
    from scratch_gpt.kv_cache import KVCache

    class DDPLike(nn.Module):  # what DistributedDataParallel looks like from outside: the model in .module
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return self.module(*args, **kwargs)

    ids = random_ids(2, 7)
    with torch.no_grad():
        full = hf_model(input_ids=ids).logits  # (2, 7, 100)
        torch.testing.assert_close(model_logits(hf_model, ids), full)
        torch.testing.assert_close(model_logits(DDPLike(hf_model), ids), full)
        last = model_logits(hf_model, ids, last_only=True)
        assert last.shape == (2, 1, 100)
        torch.testing.assert_close(last[:, -1], full[:, -1])
        cache = KVCache()
        model_logits(hf_model, ids[:, :5], cache=cache)
        torch.testing.assert_close(model_logits(hf_model, ids[:, 5:], cache=cache), full[:, 5:])
        torch.manual_seed(0)
        gpt = GPTModel(tiny_config()).eval()
        torch.testing.assert_close(model_logits(gpt, ids), gpt(ids))
