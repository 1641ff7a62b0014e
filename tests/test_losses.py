"""Tests for scratch_gpt.training.losses: chapter 5's loss of a batch and of a loader, against F.cross_entropy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from model_helpers import random_ids, tiny_config
from torch.utils.data import DataLoader, TensorDataset

from scratch_gpt import GPTModel, ScratchGPTForCausalLM
from scratch_gpt.training.losses import calc_loss_batch, calc_loss_loader


def test_batch_loss_is_cross_entropy_for_both_model_kinds():
    torch.manual_seed(0)
    hf = ScratchGPTForCausalLM(tiny_config()).eval()
    gpt = GPTModel(tiny_config()).eval()
    inputs, targets = random_ids(2, 6), random_ids(2, 6, seed=1)
    with torch.no_grad():
        for model, logits in ((hf, hf(input_ids=inputs).logits), (gpt, gpt(inputs))):
            expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            torch.testing.assert_close(calc_loss_batch(inputs, targets, model), expected)


def test_loader_loss_is_the_mean_of_batch_means():
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    inputs, targets = random_ids(5, 6), random_ids(5, 6, seed=2)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=2)  # batches of 2, 2 and 1
    with torch.no_grad():
        means = [calc_loss_batch(x, y, model).item() for x, y in loader]
    assert calc_loss_loader(loader, model) == sum(means) / 3
    assert calc_loss_loader(loader, model, num_batches=2) == sum(means[:2]) / 2
    assert calc_loss_loader(loader, model, num_batches=10) == sum(means) / 3
    assert math.isnan(calc_loss_loader(DataLoader(TensorDataset(inputs[:0], targets[:0])), model))
