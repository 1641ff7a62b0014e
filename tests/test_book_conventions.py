"""Tests for scratch_gpt.training.book_conventions and ``PretrainConfig(book_conventions=True)``: the book's
learning rates bit for bit, its initial weights, its loop (written out here as the oracle), and per-step losses
recorded by running the book's own code (rasbt/LLMs-from-scratch, ``previous_chapters.GPTModel`` with
``train_model_simple`` / appendix D's ``train_model``, tiktoken's GPT-2 encoding from the local files) on CPU."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
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
        # max_norm=inf only measures the norm (for the non-finite check); a finite one clips
        lambda self, params, max_norm, *a, **k: (
            (clipped_at.append(len(steps)) if math.isfinite(max_norm) else None)
            or real_clip(self, params, max_norm, *a, **k)
        ),
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


# --------------------------------------------------------------------------------------------------------
# Chapter 6: the classifier pipeline in book mode
# --------------------------------------------------------------------------------------------------------


def test_the_book_classifier_head_has_a_bias_and_its_parameter_count():
    """GPT-2 small with the book's head nn.Linear(768, 2): 7,090,946 trainable of 124,441,346 (last block policy)."""
    from scratch_gpt import ScratchGPTForSequenceClassification
    from scratch_gpt.finetune.classifier_training import apply_freeze_policy
    from scratch_gpt.finetune.lora import count_parameters

    config = ScratchGPTConfig.from_preset("gpt2-small", num_labels=2, qkv_bias=True, classifier_bias=True)
    with torch.device("meta"):
        model = ScratchGPTForSequenceClassification(config)
    assert model.score.bias is not None and model.score.bias.shape == (2,)
    apply_freeze_policy(model, "last_block")
    assert count_parameters(model) == 124_441_346
    assert count_parameters(model, trainable_only=True) == 7_090_946
    with torch.device("meta"):
        ours = ScratchGPTForSequenceClassification(ScratchGPTConfig.from_preset("gpt2-small", num_labels=2))
    assert ours.score.bias is None  # our default head has none


def book_classifier_run(lm_dir, tsv, *, batch_size, epochs, eval_freq, eval_iter, before_batches):
    """The book's chapter 6 notebook, step by step, on a checkpoint folder (the oracle)."""
    from transformers import AutoTokenizer

    from scratch_gpt import ScratchGPTForSequenceClassification
    from scratch_gpt.finetune.classifier_data import SpamDataset, load_spam_splits

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    pad = tokenizer.pad_token_id

    class Encoder:
        def encode(self, text):
            return tokenizer(text, add_special_tokens=False)["input_ids"]

    splits = load_spam_splits(tsv)
    train_set = SpamDataset(splits.train, Encoder(), None, pad)
    val_set = SpamDataset(splits.validation, Encoder(), train_set.max_length, pad)
    test_set = SpamDataset(splits.test, Encoder(), train_set.max_length, pad)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size, shuffle=True, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size, drop_last=False)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size, drop_last=False)
    model = ScratchGPTForSequenceClassification.from_pretrained(lm_dir, num_labels=2, dropout=0.0,
                                                                classifier_bias=True)  # fmt: skip
    model.requires_grad_(False)
    torch.manual_seed(123)
    head = nn.Linear(model.config.n_embd, 2)  # the book's out_head
    model.score.load_state_dict(head.state_dict())
    for module in (model.transformer.gpt.trf_blocks[-1], model.transformer.gpt.final_norm, model.score):
        module.requires_grad_(True)

    def logits_last(x):  # the book's model(input_batch)[:, -1, :]
        return model.score(model.transformer(x).last_hidden_state[:, -1, :])

    def loss_loader(loader, n):
        n = min(n, len(loader))
        losses = [F.cross_entropy(logits_last(x), y).item() for i, (x, y) in zip(range(n), loader)]
        return sum(losses) / n

    @torch.no_grad()
    def accuracy(loader, n=None):
        model.eval()
        n = len(loader) if n is None else min(n, len(loader))
        right = seen = 0
        for _, (x, y) in zip(range(n), loader):
            right += int((logits_last(x).argmax(-1) == y).sum())
            seen += len(y)
        return right / seen

    torch.manual_seed(123)
    before = [accuracy(loader, before_batches) for loader in (train_loader, val_loader, test_loader)]
    torch.manual_seed(123)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    losses, accs, global_step = [], [], -1
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(logits_last(x), y).backward()
            optimizer.step()
            global_step += 1
            if global_step % eval_freq == 0:
                model.eval()
                with torch.no_grad():
                    losses.append((loss_loader(train_loader, eval_iter), loss_loader(val_loader, eval_iter)))
                model.train()
        accs.append((accuracy(train_loader, eval_iter), accuracy(val_loader, eval_iter)))
    after = [accuracy(loader) for loader in (train_loader, val_loader, test_loader)]
    return before, losses, accs, after


def test_classifier_book_mode_equals_the_book_notebook(tmp_path):
    from test_classifier_pipeline import make_tiny_checkpoint, write_sms_tsv

    from scratch_gpt.finetune.classifier_pipeline import ClassifierFinetuneConfig, finetune_classifier

    lm, tsv = make_tiny_checkpoint(tmp_path / "lm"), write_sms_tsv(tmp_path / "sms.tsv")
    settings = dict(batch_size=4, epochs=2, eval_freq=2, eval_iter=2, before_batches=2)
    config = ClassifierFinetuneConfig(
        lm, tsv, tmp_path / "out", book_conventions=True, device="cpu", **settings
    )
    assert (config.pooling, config.dropout) == ("last", 0.0)
    result = finetune_classifier(config)
    before, losses, accs, after = book_classifier_run(lm, tsv, **settings)
    h = result["history"]
    assert [result["accuracy_before"][k] for k in ("train", "validation", "test")] == pytest.approx(before)
    assert len(h["train_losses"]) == len(losses) == 5  # 5 steps an epoch: after global steps 0, 2, 4, 6, 8
    assert h["train_losses"] + h["val_losses"] == pytest.approx(
        [t for t, _ in losses] + [v for _, v in losses], abs=1e-5
    )
    assert list(zip(h["train_accs"], h["val_accs"])) == accs
    assert [result["accuracy"][k] for k in ("train", "validation", "test")] == pytest.approx(after)
    assert result["trainable_params"] == sum(p.numel() for p in _last_block_and_head(lm))


def _last_block_and_head(lm_dir):
    from scratch_gpt import ScratchGPTForSequenceClassification

    model = ScratchGPTForSequenceClassification.from_pretrained(lm_dir, num_labels=2, classifier_bias=True)
    gpt = model.transformer.gpt
    return [*gpt.trf_blocks[-1].parameters(), *gpt.final_norm.parameters(), *model.score.parameters()]


# --------------------------------------------------------------------------------------------------------
# Chapter 7: the collate edge case and the instruction pipeline's schedule in book mode
# --------------------------------------------------------------------------------------------------------


def book_custom_collate_fn(batch, pad_token_id, ignore_index=-100, allowed_max_length=None, masking=False):
    """The book's custom_collate_fn (and exercise 7.2's masking variant), written out as the oracle."""
    batch_max_length = max(len(item) + 1 for _, item in batch)
    inputs_lst, targets_lst = [], []
    for instruction_length, item in batch:
        padded = list(item) + [pad_token_id] * (batch_max_length - len(item))
        inputs, targets = torch.tensor(padded[:-1]), torch.tensor(padded[1:])
        indices = torch.nonzero(targets == pad_token_id).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        if masking:
            targets[: instruction_length - 1] = -100
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst), torch.stack(targets_lst)


def test_collate_book_mode_masks_a_literal_end_of_text_inside_a_response_as_the_book_does():
    from scratch_gpt.finetune.instruction_data import custom_collate_fn

    eos = 50256
    # prompt of 3 tokens, a response holding a literal end-of-text (the 5th token), then more text
    batch = [(3, [10, 11, 12, 13, eos, 14, 15]), (2, [20, 21, 22])]
    _, ours = custom_collate_fn(batch, pad_token_id=eos)
    _, book = custom_collate_fn(batch, pad_token_id=eos, book_conventions=True)
    assert ours[0].tolist() == [11, 12, 13, eos, 14, 15, eos]  # ours: the literal one and the closing one
    assert book[0].tolist() == [11, 12, 13, eos, 14, 15, -100]  # the book: only the first end-of-text
    assert ours[1].tolist() == book[1].tolist() == [21, 22, eos, -100, -100, -100, -100]
    g = torch.Generator().manual_seed(0)
    for trial in range(30):  # random batches with end-of-text ids sprinkled in, every option
        items = []
        for _ in range(3):
            ids = torch.randint(0, 6, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g)
            ids = [eos if i == 0 else 100 + int(i) for i in ids]
            items.append((int(torch.randint(1, len(ids) + 1, (1,), generator=g)), ids))
        for masking in (False, True):
            for allowed in (None, 3, 20):
                expected = book_custom_collate_fn(items, eos, allowed_max_length=allowed, masking=masking)
                got = custom_collate_fn(items, pad_token_id=eos, allowed_max_length=allowed,
                                        mask_instruction=masking, book_conventions=True)  # fmt: skip
                assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]), (trial, items)


def test_instruction_book_mode_evaluates_after_steps_1_6_11(tmp_path):
    from instruct_helpers import save_tiny_checkpoint, write_records

    from scratch_gpt.finetune.instruction_pipeline import InstructFinetuneConfig, finetune_instruct

    model_dir = save_tiny_checkpoint(tmp_path / "pretrained")
    data = write_records(tmp_path / "data.json")
    settings = dict(epochs=3, batch_size=2, lr=1e-3, eval_freq=5, eval_iter=1, max_new_tokens=2, max_steps=12)
    lines: list[str] = []
    book = finetune_instruct(InstructFinetuneConfig(model_dir, data, tmp_path / "book", book_conventions=True,
                                                    **settings), log=lines.append)  # fmt: skip
    ours = finetune_instruct(InstructFinetuneConfig(model_dir, data, tmp_path / "ours", **settings), log=None)
    assert book["settings"]["dropout"] == 0.0
    history = json.loads((tmp_path / "book" / "training_history.json").read_text())
    assert history["steps"] == [1, 6, 11]
    assert any("(Step 000000)" in line for line in lines)  # the book's 0-based step numbers
    assert json.loads((tmp_path / "ours" / "training_history.json").read_text())["steps"] == [5, 10]
    assert ours["settings"]["book_conventions"] is False
