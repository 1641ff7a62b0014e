"""Tests for scratch_gpt.finetune.lora: hand-written LoRA (appendix E).

Oracles: the LoRA formula written out with plain tensors, the book's trainable-parameter count (2,666,528 at rank 16
on every Linear of the GPT-2 124M spam classifier, checked on a meta-device model so nothing is allocated), and
"merged == unmerged" on small nn.Modules and on a tiny GPTModel, and peft itself: the same A and B give the same
outputs and the same trainable count, on a small module and on the full Hugging Face causal LM and classifier.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scratch_gpt.finetune.lora import (
    LinearWithLoRA,
    LoRALayer,
    count_parameters,
    freeze_for_lora,
    lora_scale,
    lora_state_dict,
    merge_lora,
    replace_linear_with_lora,
)


class Block(nn.Module):
    """A stand-in with the model's Linear names (att.W_query ... ff.fc_out) at a chosen width."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.att = nn.Module()
        for name in ("W_query", "W_key", "W_value"):
            setattr(self.att, name, nn.Linear(d, d, bias=False))
        self.att.out_proj = nn.Linear(d, d)
        self.ff = nn.Module()
        self.ff.fc_in, self.ff.fc_out = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.att
        x = x + a.out_proj(torch.tanh(a.W_query(x) + a.W_key(x) * a.W_value(x)))
        return self.norm(x + self.ff.fc_out(torch.relu(self.ff.fc_in(x))))


class Toy(nn.Module):
    def __init__(self, d: int = 8, hidden: int = 16, n_layer: int = 2, n_out: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, hidden) for _ in range(n_layer)])
        self.out_head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.out_head(x)


def _randomize_b(model: nn.Module) -> None:
    # B starts at zero; give it values so the adapters change the output
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALayer):
                module.B.normal_(0, 0.1)


# --- the layer --------------------------------------------------------------------------------------------------


def test_lora_layer_init_and_formula():
    torch.manual_seed(0)
    layer = LoRALayer(64, 5, rank=4, alpha=8)
    assert layer.A.shape == (64, 4) and layer.B.shape == (4, 5)
    assert torch.equal(layer.B, torch.zeros(4, 5))
    bound = 1 / math.sqrt(4)  # kaiming_uniform(a=sqrt(5)) on (in_dim, rank): fan-in is rank
    assert layer.A.abs().max() <= bound and layer.A.abs().max() > 0.8 * bound
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(2, 3, 64)  # (B, T, in_dim)
    assert torch.allclose(layer(x), 8 * (x @ layer.A @ layer.B))
    assert torch.allclose(layer(x), x @ layer.delta_weight().T, atol=1e-5)


def test_scaling_conventions():
    assert lora_scale(16, 16, "book") == 16.0
    assert lora_scale(16, 16, "peft") == 1.0
    assert lora_scale(8, 4, "peft") == 0.5
    torch.manual_seed(0)
    book = LoRALayer(6, 6, rank=4, alpha=2, scaling="book")
    peft_style = LoRALayer(6, 6, rank=4, alpha=8, scaling="peft")  # peft lora_alpha = book alpha * rank
    peft_style.load_state_dict(book.state_dict())
    with torch.no_grad():
        book.B.normal_()
        peft_style.B.copy_(book.B)
    x = torch.randn(3, 6)
    assert torch.allclose(book(x), peft_style(x))


@pytest.mark.parametrize(
    ("rank", "alpha", "scaling", "match"),
    [(0, 1, "book", "rank"), (2.0, 1, "book", "rank"), (True, 1, "book", "rank"), (2, float("nan"), "book", "alpha"),
     (2, "8", "book", "alpha"), (2, 1, "rslora", "scaling")],
)  # fmt: skip
def test_bad_rank_alpha_scaling(rank, alpha, scaling, match):
    with pytest.raises(ValueError, match=match):
        LoRALayer(4, 4, rank, alpha, scaling)
    with pytest.raises(ValueError, match=match):
        replace_linear_with_lora(Toy(), rank, alpha, scaling=scaling)


def test_linear_with_lora_starts_identical_and_follows_dtype():
    torch.manual_seed(0)
    linear = nn.Linear(8, 4)
    wrapped = LinearWithLoRA(linear, rank=2, alpha=4)
    x = torch.randn(5, 8)
    assert torch.equal(wrapped(x), linear(x))  # B = 0
    assert (wrapped.in_features, wrapped.out_features) == (8, 4) and wrapped.weight is linear.weight
    half = LinearWithLoRA(nn.Linear(8, 4, dtype=torch.bfloat16), rank=2, alpha=4)
    assert half.lora.A.dtype == torch.bfloat16
    assert half(x.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="wraps an nn.Linear, got Conv1d"):
        LinearWithLoRA(nn.Conv1d(2, 2, 1), 2, 4)


# --- replacing, freezing, counting ------------------------------------------------------------------------------------


def test_replace_every_linear_like_the_book():
    model = Toy()
    names = replace_linear_with_lora(model, rank=2, alpha=2)
    assert len(names) == 2 * 6 + 1 and "out_head" in names and "blocks.1.ff.fc_out" in names
    assert all(isinstance(model.get_submodule(n), LinearWithLoRA) for n in names)
    assert isinstance(model.blocks[0].norm, nn.LayerNorm)


def test_replace_with_targets_uses_pefts_suffix_rule():
    model = Toy()
    names = replace_linear_with_lora(model, rank=2, alpha=2, target_modules=["att.W_query", "W_value"])
    assert names == [
        "blocks.0.att.W_query",
        "blocks.1.att.W_query",
        "blocks.0.att.W_value",
        "blocks.1.att.W_value",
    ]
    assert isinstance(model.blocks[0].att.W_key, nn.Linear)
    more = replace_linear_with_lora(model, rank=2, alpha=2, target_modules=["blocks.0.ff.fc_in"])
    assert more == ["blocks.0.ff.fc_in"]
    # None skips layers that already have LoRA instead of nesting them
    rest = replace_linear_with_lora(model, rank=2, alpha=2)
    assert "blocks.0.att.W_query" not in rest and "blocks.0.att.W_query.linear" not in rest
    assert len(rest) == 13 - 5


def test_target_matching_nothing_lists_existing_linears():
    with pytest.raises(ValueError, match=r"'W_qeury' matches no module; the nn.Linear modules are: "
                       r"blocks\.\*\.att\.W_key, blocks\.\*\.att\.W_query, .*out_head"):  # fmt: skip
        replace_linear_with_lora(Toy(), 2, 2, target_modules=["W_query", "W_qeury"])


def test_replace_bad_targets():
    model = Toy()
    with pytest.raises(ValueError, match=r"'att' matches 'blocks.0.att', a Module, not an nn.Linear"):
        replace_linear_with_lora(model, 2, 2, target_modules=["att"])
    with pytest.raises(ValueError, match="list of names"):
        replace_linear_with_lora(model, 2, 2, target_modules="W_query")
    with pytest.raises(ValueError, match="target_modules is empty"):
        replace_linear_with_lora(model, 2, 2, target_modules=[])
    assert not any(isinstance(m, LinearWithLoRA) for m in model.modules())  # nothing half-done
    replace_linear_with_lora(model, 2, 2, target_modules=["W_key"])
    with pytest.raises(ValueError, match="already has LoRA; merge_lora"):
        replace_linear_with_lora(model, 2, 2, target_modules=["W_key"])
    with pytest.raises(ValueError, match="itself a Linear"):
        replace_linear_with_lora(nn.Linear(2, 2), 2, 2)
    with pytest.raises(ValueError, match="has no nn.Linear"):
        replace_linear_with_lora(nn.Sequential(nn.ReLU()), 2, 2)


def test_freeze_for_lora_and_counts():
    model = Toy(d=8, hidden=16, n_layer=2, n_out=3)
    total = count_parameters(model)
    replace_linear_with_lora(model, rank=2, alpha=2, target_modules=["W_query", "W_value"])
    trainable = freeze_for_lora(model)
    assert trainable == 4 * 2 * (8 + 8) == count_parameters(model, trainable_only=True)
    assert count_parameters(model) == total + trainable
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f"blocks.{i}.att.{w}.lora.{m}" for i in range(2) for w in ("W_query", "W_value") for m in "AB"
    }
    with_head = freeze_for_lora(model, trainable_modules=["out_head"])
    assert with_head == trainable + 8 * 3 + 3
    with pytest.raises(
        ValueError, match="'score' matches no module; top-level modules are: blocks, out_head"
    ):
        freeze_for_lora(model, trainable_modules=["score"])
    with pytest.raises(ValueError, match="no LoRA layers"):
        freeze_for_lora(Toy())


def test_book_count_2666528_on_the_124m_classifier_shapes():
    # The book's chapter 6 classifier: GPT-2 124M blocks + a (768 -> 2) head; freeze all, LoRA on every Linear.
    with torch.device("meta"):
        model = Toy(d=768, hidden=3072, n_layer=12, n_out=2)
    for p in model.parameters():
        p.requires_grad = False
    replace_linear_with_lora(model, rank=16, alpha=16)
    assert count_parameters(model, trainable_only=True) == 2_666_528
    assert freeze_for_lora(model) == 2_666_528


def test_gradients_reach_only_adapters():
    torch.manual_seed(0)
    model = Toy()
    replace_linear_with_lora(model, rank=2, alpha=2)
    freeze_for_lora(model)
    model(torch.randn(3, 8)).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (".lora." in name), name
    # at init B = 0, so only B gets a gradient signal (A's gradient is x^T (g B^T) = 0)
    assert model.out_head.lora.B.grad.abs().sum() > 0
    assert model.out_head.lora.A.grad.abs().sum() == 0


# --- merging ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaling", ["book", "peft"])
def test_merge_gives_the_same_outputs(scaling):
    torch.manual_seed(0)
    model = Toy()
    replace_linear_with_lora(model, rank=3, alpha=5, scaling=scaling)
    _randomize_b(model)
    x = torch.randn(4, 8)
    with torch.no_grad():
        before = model(x)
    merged = merge_lora(model)
    assert len(merged) == 13
    assert not any(isinstance(m, (LinearWithLoRA, LoRALayer)) for m in model.modules())
    assert type(model.out_head) is nn.Linear and model.out_head.bias is not None  # a plain layer to save
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5)
    assert count_parameters(model) == count_parameters(Toy())
    with pytest.raises(ValueError, match="no LoRA layers to merge"):
        merge_lora(model)


def test_merge_formula_and_flags():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4, bias=False)
    linear.weight.requires_grad = False
    wrapped = LinearWithLoRA(linear, rank=2, alpha=3)
    with torch.no_grad():
        wrapped.lora.B.normal_()
    plain = wrapped.merged()
    expected = linear.weight + 3 * (wrapped.lora.A @ wrapped.lora.B).T
    assert torch.allclose(plain.weight, expected) and plain.bias is None
    assert not plain.weight.requires_grad and plain.weight.device.type == "cpu"
    with pytest.raises(ValueError, match=r"use layer.merged\(\)"):
        merge_lora(wrapped)


def test_merge_leaves_a_tied_embedding_untouched():
    torch.manual_seed(0)
    model = nn.Module()
    model.tok_emb = nn.Embedding(10, 4)
    model.lm_head = nn.Linear(4, 10, bias=False)
    model.lm_head.weight = model.tok_emb.weight  # tied, as in GPT-2
    embedding_before = model.tok_emb.weight.detach().clone()
    replace_linear_with_lora(model, rank=2, alpha=1)
    _randomize_b(model)
    x = torch.randn(2, 4)
    with torch.no_grad():
        before = model.lm_head(x)
    merge_lora(model)
    assert torch.equal(model.tok_emb.weight, embedding_before)
    assert model.lm_head.weight is not model.tok_emb.weight
    with torch.no_grad():
        assert torch.allclose(model.lm_head(x), before, atol=1e-6)


def test_lora_state_dict_holds_only_adapters():
    model = Toy()
    replace_linear_with_lora(model, rank=2, alpha=2, target_modules=["out_head"])
    assert set(lora_state_dict(model)) == {"out_head.lora.A", "out_head.lora.B"}


# --- on the real model --------------------------------------------------------------------------------------------


def test_on_gpt_model_starts_identical_and_merges_back():
    modeling = pytest.importorskip("scratch_gpt.model")
    from scratch_gpt.configuration_scratch_gpt import ScratchGPTConfig

    torch.manual_seed(0)
    config = ScratchGPTConfig(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, dropout=0.0)
    model = modeling.GPTModel(config).eval()
    idx = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        reference = model(idx)
    names = replace_linear_with_lora(
        model, rank=4, alpha=8, target_modules=["att.W_query", "att.W_key", "att.W_value", "att.out_proj",
                                                "ff.fc_in", "ff.fc_out"],
    )  # fmt: skip
    assert len(names) == 2 * 6
    freeze_for_lora(model)
    with torch.no_grad():
        assert torch.equal(model(idx), reference)  # B = 0: the same model
    _randomize_b(model)
    with torch.no_grad():
        adapted = model(idx)
    assert not torch.allclose(adapted, reference)
    merge_lora(model)
    with torch.no_grad():
        assert torch.allclose(model(idx), adapted, atol=1e-5)


# --- peft as the oracle (the same math) ---------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "scaling", "peft_alpha"), [(5, "peft", 5), (2, "book", 2 * 3)])
def test_same_outputs_and_counts_as_peft_on_the_same_a_and_b(alpha, scaling, peft_alpha):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ours = Toy()
    theirs = Toy()
    theirs.load_state_dict(ours.state_dict())
    targets = ["W_query", "ff.fc_out", "out_head"]
    theirs = peft.get_peft_model(theirs, peft.LoraConfig(r=3, lora_alpha=peft_alpha, target_modules=targets))
    names = replace_linear_with_lora(ours, rank=3, alpha=alpha, target_modules=targets, scaling=scaling)
    with torch.no_grad():
        for name in names:
            layer, peft_layer = ours.get_submodule(name), theirs.base_model.model.get_submodule(name)
            layer.lora.B.normal_()
            peft_layer.lora_A["default"].weight.copy_(layer.lora.A.T)  # peft stores A.T, shape (rank, in_dim)
            peft_layer.lora_B["default"].weight.copy_(layer.lora.B.T)  # and B.T, shape (out_dim, rank)
    x = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    assert freeze_for_lora(ours) == theirs.get_nb_trainable_parameters()[0]


BLOCK_TARGETS = ["W_query", "W_key", "W_value", "out_proj", "fc_in", "fc_out"]  # docs/finetuning.md


def _copy_ab_into_peft(ours: nn.Module, theirs: nn.Module, names: list[str]) -> None:
    with torch.no_grad():
        for name in names:
            layer, peft_layer = ours.get_submodule(name), theirs.base_model.model.get_submodule(name)
            layer.lora.B.normal_(std=0.1)
            peft_layer.lora_A["default"].weight.copy_(layer.lora.A.T)
            peft_layer.lora_B["default"].weight.copy_(layer.lora.B.T)


@pytest.mark.parametrize("head", ["causal_lm", "classifier"])
def test_same_logits_and_counts_as_peft_on_the_full_model(head):
    peft = pytest.importorskip("peft")
    from scratch_gpt import ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTForSequenceClassification

    config = ScratchGPTConfig(
        vocab_size=60, n_positions=16, n_embd=16, n_layer=2, n_head=2, dropout=0.0, num_labels=2
    )
    cls, task, trainable = {
        "causal_lm": (ScratchGPTForCausalLM, "CAUSAL_LM", ()),
        "classifier": (ScratchGPTForSequenceClassification, "SEQ_CLS", ("score",)),  # peft's modules_to_save
    }[head]
    torch.manual_seed(0)
    ours = cls(config).eval()
    theirs = cls(config).eval()
    theirs.load_state_dict(ours.state_dict())
    rank, alpha = 4, 3
    theirs = peft.get_peft_model(
        theirs, peft.LoraConfig(task_type=task, r=rank, lora_alpha=alpha * rank, target_modules=BLOCK_TARGETS)
    )
    names = replace_linear_with_lora(ours, rank, alpha, target_modules=BLOCK_TARGETS, scaling="book")
    assert len(names) == 6 * config.n_layer and all(".trf_blocks." in name for name in names)
    _copy_ab_into_peft(ours, theirs, names)
    idx = torch.randint(0, 60, (3, 9))
    mask = torch.ones_like(idx)
    mask[0, 6:] = 0  # a right-padded row
    with torch.no_grad():
        ours_logits = ours(input_ids=idx, attention_mask=mask).logits
        torch.testing.assert_close(ours_logits, theirs(input_ids=idx, attention_mask=mask).logits)
    n_trainable = freeze_for_lora(ours, trainable_modules=trainable)
    assert n_trainable == theirs.get_nb_trainable_parameters()[0]
    per_block = rank * (4 * (16 + 16) + (16 + 64) + (64 + 16))
    assert n_trainable == config.n_layer * per_block + (16 * 2 if head == "classifier" else 0)

    merge_lora(ours)
    merged = theirs.merge_and_unload()
    assert type(merged) is cls
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=idx, attention_mask=mask).logits, ours_logits)
        torch.testing.assert_close(merged(input_ids=idx, attention_mask=mask).logits, ours_logits)
    if head == "causal_lm":  # merging never unties the output head from the token embedding
        assert ours.lm_head.weight.data_ptr() == ours.transformer.gpt.tok_emb.weight.data_ptr()
