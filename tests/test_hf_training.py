"""Smoke tests of the model inside Hugging Face training tools: Trainer (loss goes down, exact gradient
accumulation) and peft LoRA (train, save, reload, merge with identical logits)."""

import pytest
import torch
from model_helpers import random_ids, tiny_config
from transformers import Trainer, TrainingArguments

from scratch_gpt import ScratchGPTForCausalLM


def lm_examples(n: int, length: int = 12, seed: int = 0) -> list[dict]:
    ids = random_ids(n, length, seed=seed)
    examples = []
    for i, row in enumerate(ids):
        labels = row.clone()
        labels[: i % 5] = -100  # a different number of counted tokens per example
        examples.append({"input_ids": row, "labels": labels})
    return examples


def collate(batch: list[dict]) -> dict:
    return {key: torch.stack([example[key] for example in batch]) for key in batch[0]}


def training_args(tmp_path, **overrides) -> TrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_drop_last=False,
        seed=0,
    )
    values.update(overrides)
    return TrainingArguments(**values)


def test_trainer_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(initializer_range=0.02))
    data = lm_examples(8)
    batch = collate(data)
    with torch.no_grad():
        before = model(**batch).loss.item()
    args = training_args(tmp_path, per_device_train_batch_size=4, num_train_epochs=10, learning_rate=3e-3)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collate).train()
    model.eval()
    with torch.no_grad():
        after = model(**batch).loss.item()
    assert after < 0.7 * before


def one_sgd_step(tmp_path, batch_size: int, accumulation: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(initializer_range=0.02))
    args = training_args(
        tmp_path,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=1.0,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=lm_examples(4), data_collator=collate)
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    return [p.detach().clone() for p in model.parameters()]


def test_gradient_accumulation_is_exact(tmp_path):
    torch.manual_seed(0)
    start = [
        p.detach().clone() for p in ScratchGPTForCausalLM(tiny_config(initializer_range=0.02)).parameters()
    ]
    full = one_sgd_step(tmp_path, batch_size=4, accumulation=1)
    accumulated = one_sgd_step(tmp_path, batch_size=2, accumulation=2)
    moved = sum((a - s).norm() for a, s in zip(full, start))
    assert moved > 1e-3  # the step did something
    for a, b in zip(full, accumulated):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_peft_lora_trains_saves_reloads_and_merges(tmp_path):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = ScratchGPTForCausalLM(tiny_config())
    base.save_pretrained(tmp_path / "base")
    base = ScratchGPTForCausalLM.from_pretrained(tmp_path / "base")
    config = peft.LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["W_query", "W_value", "fc_in"]
    )
    model = peft.get_peft_model(base, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters()) // 5

    batch = collate(lm_examples(4))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: training moved it

    ids = random_ids(2, 7)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    reloaded = peft.PeftModel.from_pretrained(
        ScratchGPTForCausalLM.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    )
    auto = peft.AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    merged = reloaded.merge_and_unload()
    assert isinstance(merged, ScratchGPTForCausalLM)
    assert merged.lm_head.weight is merged.transformer.gpt.tok_emb.weight
    with torch.no_grad():
        for candidate in (reloaded, auto, merged):
            torch.testing.assert_close(candidate.eval()(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        cached = auto.generate(input_ids=ids[:1], max_new_tokens=6, do_sample=False)
        uncached = auto.generate(input_ids=ids[:1], max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
