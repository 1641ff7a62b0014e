"""Tests for scratch_gpt.training.book_conventions and ``PretrainConfig(book_conventions=True)``: the book's
learning rates bit for bit, its initial weights, its loop (written out here as the oracle), and per-step losses
recorded by running the book's own code (rasbt/LLMs-from-scratch, ``previous_chapters.GPTModel`` with
``train_model_simple`` / appendix D's ``train_model``, tiktoken's GPT-2 encoding from the local files) on CPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import data_file
from model_helpers import tiny_config
from torch import nn

from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM
from scratch_gpt.data.sliding_window import GPTDatasetV1, train_val_split
from scratch_gpt.training.book_conventions import (
    book_lr_at_step,
    book_param_groups,
    init_weights_like_the_book,
)
from scratch_gpt.training.pretrain import PretrainConfig, calc_loss_batch, calc_loss_loader, pretrain


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def book_config(output_dir, **overrides) -> PretrainConfig:
    """Chapter 5's settings in book mode (lr 4e-4, weight decay 0.1, batch 2, eval every 5 steps on 5 batches)."""
    values = dict(
        output_dir=output_dir,
        num_epochs=1,
        batch_size=2,
        learning_rate=4e-4,
        weight_decay=0.1,
        lr_schedule="constant",
        grad_clip=None,
        eval_interval=5,
        eval_batches=5,
        save_interval=None,
        sample_prompt=None,
        mixed_precision="no",
        show_progress=False,
        book_conventions=True,
    )
    values.update(overrides)
    return PretrainConfig(**values)


# --------------------------------------------------------------------------------------------------------
# Appendix D's learning rates
# --------------------------------------------------------------------------------------------------------


def test_book_lr_sequence_is_appendix_d_exactly():
    """The appendix's illustration: 135 steps, 20% warmup, initial 1e-4, peak 1e-2, minimum 1e-5."""
    total, initial, peak, min_lr = 135, 1e-4, 1e-2, 1e-5
    warmup = int(0.2 * total)
    assert warmup == 27
    step_size = (peak - initial) / warmup
    for kind in ("constant", "cosine"):
        for s in range(total):
            if s < warmup:
                expected = initial + s * step_size
            elif kind == "constant":
                expected = peak
            else:
                progress = (s - warmup) / (total - warmup)
                expected = min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            got = book_lr_at_step(s, peak_lr=peak, total_steps=total, warmup_steps=warmup, initial_lr=initial,
                                  min_lr=min_lr, schedule=kind)  # fmt: skip
            assert got == expected, (kind, s, got, expected)
    # the shape the appendix plots: 1e-4 at step 0, the peak at step 27, just above the minimum at the end
    lrs = [book_lr_at_step(s, peak_lr=peak, total_steps=total, warmup_steps=warmup, initial_lr=initial,
                           min_lr=min_lr) for s in range(total)]  # fmt: skip
    assert lrs[0] == initial and lrs[warmup] == peak and max(lrs) == peak
    assert min_lr < lrs[-1] < 1.3e-5


def test_book_mode_loop_uses_the_book_learning_rates_and_clips_only_after_warmup(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config())
    ids = torch.randint(1, 99, (2000,)).tolist()
    data = GPTDatasetV1(ids, max_length=16, stride=16)  # 124 windows: 62 batches of 2
    clipped_at: list[int] = []
    steps: list[int] = []
    import accelerate

    real_clip = accelerate.Accelerator.clip_grad_norm_
    monkeypatch.setattr(
        accelerate.Accelerator,
        "clip_grad_norm_",
        lambda self, *a, **k: clipped_at.append(len(steps)) or real_clip(self, *a, **k),
    )
    cfg = book_config(tmp_path, max_steps=10, num_epochs=None, learning_rate=1e-2, initial_lr=1e-4,
                      min_lr=1e-5, warmup_steps=4, lr_schedule="cosine", grad_clip=1.0)  # fmt: skip
    result = pretrain(model, data, None, cfg, on_step=lambda s, loss: steps.append(s))
    expected = [book_lr_at_step(s, peak_lr=1e-2, total_steps=10, warmup_steps=4, initial_lr=1e-4, min_lr=1e-5)
                for s in range(10)]  # fmt: skip
    assert result.history.step_log["lrs"] == expected
    assert clipped_at == [4, 5, 6, 7, 8, 9]  # 0-based steps >= warmup_steps
    assert result.history.steps == [1, 6]  # after global_step 0 and 5, and none at the end


def test_initial_lr_needs_book_mode_and_book_mode_cannot_resume(tmp_path):
    with pytest.raises(ValueError, match="initial_lr is appendix D's warmup start"):
        PretrainConfig(output_dir=tmp_path, max_steps=1, initial_lr=1e-5)
    with pytest.raises(ValueError, match="cannot resume"):
        PretrainConfig(output_dir=tmp_path, max_steps=1, book_conventions=True, resume=True)
    with pytest.raises(ValueError, match="initial_lr <= learning_rate"):
        PretrainConfig(output_dir=tmp_path, max_steps=1, book_conventions=True, initial_lr=1.0)


# --------------------------------------------------------------------------------------------------------
# The book's model and optimizer groups
# --------------------------------------------------------------------------------------------------------


def test_init_weights_like_the_book_draws_the_book_modules_in_construction_order():
    config = tiny_config(dropout=0.1, tie_word_embeddings=False)
    model = init_weights_like_the_book(ScratchGPTForCausalLM(config), seed=123)
    after_ours = torch.rand(3)
    # the book's GPTModel.__init__ creates these modules in this order (LayerNorm and Dropout draw nothing)
    d, v, ctx = config.n_embd, config.vocab_size, config.n_positions
    torch.manual_seed(123)
    book = [nn.Embedding(v, d), nn.Embedding(ctx, d)]
    for _ in range(config.n_layer):
        book += [nn.Linear(d, d, bias=False) for _ in range(3)]  # W_query, W_key, W_value (qkv_bias=False)
        book += [nn.Linear(d, d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)]  # out_proj, ff.layers[0], [2]
    book.append(nn.Linear(d, v, bias=False))  # out_head
    after_book = torch.rand(3)
    ours = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))]
    assert len(ours) == len(book)
    for a, b in zip(ours, book):
        assert torch.equal(a.weight, b.weight)
        bias_a, bias_b = getattr(a, "bias", None), getattr(b, "bias", None)
        assert (bias_a is None) == (bias_b is None) and (bias_a is None or torch.equal(bias_a, bias_b))
    assert torch.equal(after_ours, after_book)  # the global RNG is left where the book's model leaves it
    for name, p in model.named_parameters():
        if name.endswith(".scale"):
            assert torch.equal(p, torch.ones_like(p))
        if name.endswith(".shift"):
            assert torch.equal(p, torch.zeros_like(p))


def test_init_weights_like_the_book_refuses_a_tied_head():
    with pytest.raises(ValueError, match="tie_word_embeddings=False"):
        init_weights_like_the_book(ScratchGPTForCausalLM(tiny_config(tie_word_embeddings=True)))


def test_book_param_groups_decay_every_parameter():
    model = ScratchGPTForCausalLM(tiny_config(tie_word_embeddings=False))
    (group,) = book_param_groups(model, 0.1)
    assert group["weight_decay"] == 0.1
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
    assert any(p.dim() == 1 for p in group["params"])  # biases and LayerNorm too


def test_pretrain_from_corpus_builds_the_book_model_in_book_mode():
    from scratch_gpt.training.from_corpus import CorpusConfig, _build_model

    class Tok:  # the little of a tokenizer that _build_model reads
        pad_token_id = 0

        def __len__(self):
            return 100

        def convert_tokens_to_ids(self, token):
            return 99

    corpus = CorpusConfig(corpus="unused", n_layer=2, n_embd=64, n_head=4, dropout=0.1, context_length=32)
    model = _build_model(Tok(), corpus, 123, book=True)
    assert model.config.tie_word_embeddings is False
    config = ScratchGPTConfig(
        vocab_size=100, n_positions=32, n_embd=64, n_layer=2, n_head=4, dropout=0.1, tie_word_embeddings=False
    )
    reference = init_weights_like_the_book(ScratchGPTForCausalLM(config), 123)
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    assert _build_model(Tok(), corpus, 123).config.tie_word_embeddings is not False  # our default: tied


# --------------------------------------------------------------------------------------------------------
# The book's loop, written out here, as the oracle
# --------------------------------------------------------------------------------------------------------


def book_train_model_simple(model, train_data, val_data, num_epochs, eval_freq, eval_iter):
    """Chapter 5's train_model_simple with the book's loaders and optimizer; returns step losses and evals."""
    train_loader = torch.utils.data.DataLoader(train_data, batch_size=2, shuffle=True, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val_data, batch_size=2, shuffle=False, drop_last=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    step_losses, evals, global_step = [], [], -1
    for _ in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model)
            loss.backward()
            optimizer.step()
            global_step += 1
            step_losses.append(loss.item())
            if global_step % eval_freq == 0:
                model.eval()
                with torch.no_grad():
                    train_loss = calc_loss_loader(train_loader, model, num_batches=eval_iter)
                    val_loss = calc_loss_loader(val_loader, model, num_batches=eval_iter)
                model.train()
                evals.append((global_step + 1, train_loss, val_loss))
    return step_losses, evals


def test_book_mode_equals_the_book_loop_over_two_epochs_with_dropout(tmp_path):
    torch.manual_seed(1)
    ids = torch.randint(1, 99, (700,)).tolist()
    train, val = (
        GPTDatasetV1(ids[:600], max_length=16, stride=16),
        GPTDatasetV1(ids[600:], max_length=16, stride=16),
    )
    config = tiny_config(dropout=0.1, tie_word_embeddings=False)
    model = init_weights_like_the_book(ScratchGPTForCausalLM(config), 123)
    oracle = copy.deepcopy(model)
    init_weights_like_the_book(oracle, 123)  # the same weights, and the RNG back where the book starts
    book_steps, book_evals = book_train_model_simple(
        oracle, train, val, num_epochs=2, eval_freq=5, eval_iter=5
    )

    init_weights_like_the_book(model, 123)
    ours: list[float] = []
    result = pretrain(
        model, train, val, book_config(tmp_path, num_epochs=2), on_step=lambda s, loss: ours.append(loss)
    )
    assert len(ours) == len(book_steps) == 36  # 18 batches an epoch
    assert ours == pytest.approx(book_steps, abs=1e-5)
    h = result.history
    assert h.steps == [s for s, _, _ in book_evals] == [1, 6, 11, 16, 21, 26, 31, 36]
    assert h.train_losses == pytest.approx([t for _, t, _ in book_evals], abs=1e-5)
    assert h.val_losses == pytest.approx([v for _, _, v in book_evals], abs=1e-5)


def test_default_mode_differs_from_the_book_loop(tmp_path):
    """The check above can fail: our own conventions give other numbers on the same model and data."""
    torch.manual_seed(1)
    ids = torch.randint(1, 99, (700,)).tolist()
    train = GPTDatasetV1(ids[:600], max_length=16, stride=16)
    model = init_weights_like_the_book(
        ScratchGPTForCausalLM(tiny_config(dropout=0.1, tie_word_embeddings=False))
    )
    oracle = copy.deepcopy(model)
    init_weights_like_the_book(oracle, 123)
    book_steps, _ = book_train_model_simple(oracle, train, train, num_epochs=1, eval_freq=5, eval_iter=5)
    ours: list[float] = []
    cfg = book_config(tmp_path, book_conventions=False)
    pretrain(model, train, None, cfg, on_step=lambda s, loss: ours.append(loss))
    assert ours[0] != pytest.approx(book_steps[0], abs=1e-3)


# --------------------------------------------------------------------------------------------------------
# Chapter 5 and appendix D against numbers from the book's own code
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_bpe() -> BPETokenizer:
    return BPETokenizer.from_gpt2_files(data_file("encoder.json"), data_file("vocab.bpe"))


def verdict_datasets(tokenizer: BPETokenizer, context_length: int):
    train_text, val_text = train_val_split(data_file("the-verdict.txt").read_text(encoding="utf-8"), 0.9)
    return tuple(GPTDatasetV1(t, tokenizer, context_length, context_length) for t in (train_text, val_text))


# The book's code with context 64, emb_dim 64, 2 layers, 4 heads, dropout 0.1, on the-verdict.txt, on CPU.
BOOK_TINY_CH05_STEPS = [10.929113388061523, 11.00162124633789, 10.949268341064453, 11.00839614868164,
                        10.994359970092773, 10.870811462402344, 10.90371322631836]  # fmt: skip
BOOK_TINY_CH05_EVALS = [(11.004820632934571, 10.986723899841309), (10.988140106201172, 10.948776721954346)]
BOOK_TINY_APPD_STEPS = [10.929113388061523, 11.006723403930664, 10.934856414794922, 10.939196586608887,
                        10.850217819213867, 10.586471557617188, 10.232830047607422, 9.874441146850586,
                        9.501090049743652, 9.034431457519531]  # fmt: skip


def tiny_book_model() -> ScratchGPTForCausalLM:
    config = ScratchGPTConfig(vocab_size=50257, n_positions=64, n_embd=64, n_head=4, n_layer=2, dropout=0.1,
                              tie_word_embeddings=False)  # fmt: skip
    return init_weights_like_the_book(ScratchGPTForCausalLM(config), 123)


def test_chapter5_tiny_run_matches_the_book_code(tmp_path, gpt2_bpe):
    train, val = verdict_datasets(gpt2_bpe, 64)
    losses: list[float] = []
    result = pretrain(tiny_book_model(), train, val, book_config(tmp_path),
                      on_step=lambda s, loss: losses.append(loss) or s >= 7)  # fmt: skip
    assert losses == pytest.approx(BOOK_TINY_CH05_STEPS, abs=1e-4)
    h = result.history
    assert h.steps == [1, 6]
    assert h.train_losses + h.val_losses == pytest.approx(
        [t for t, _ in BOOK_TINY_CH05_EVALS] + [v for _, v in BOOK_TINY_CH05_EVALS], abs=1e-4
    )


@pytest.mark.slow
def test_appendix_d_tiny_run_matches_the_book_code(tmp_path, gpt2_bpe):
    """Appendix D's train_model: warmup from 1e-4 over 7 steps, cosine to 1e-5, clipping from step 7."""
    train, val = verdict_datasets(gpt2_bpe, 64)
    losses: list[float] = []
    cfg = book_config(tmp_path, learning_rate=1e-2, initial_lr=1e-4, min_lr=1e-5, warmup_steps=7,
                      lr_schedule="cosine", grad_clip=1.0, eval_batches=1)  # fmt: skip
    pretrain(tiny_book_model(), train, val, cfg, on_step=lambda s, loss: losses.append(loss) or s >= 10)
    assert losses == pytest.approx(BOOK_TINY_APPD_STEPS, abs=1e-4)


@pytest.mark.slow
def test_chapter5_first_steps_with_the_124m_config_match_the_book(tmp_path, gpt2_bpe):
    """GPT_CONFIG_124M with context 256: the book's code prints 10.999969, 9.857111, 9.318081 on CPU."""
    train, val = verdict_datasets(gpt2_bpe, 256)
    config = ScratchGPTConfig.from_preset("gpt2-small", vocab_size=50257, n_positions=256, dropout=0.1,
                                          tie_word_embeddings=False)  # fmt: skip
    model = init_weights_like_the_book(ScratchGPTForCausalLM(config), 123)
    losses: list[float] = []
    torch.set_num_threads(2)
    pretrain(model, train, val, book_config(tmp_path), on_step=lambda s, loss: losses.append(loss) or s >= 3)
    assert losses == pytest.approx([10.999969, 9.857111, 9.318081], abs=1e-4)
