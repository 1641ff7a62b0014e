"""The TRL route: ``DPOTrainer`` and ``SFTTrainer`` on ``ScratchGPTForCausalLM`` agree with our DPO and chapter 7 losses.

On the same batch, with the same policy and reference weights and the same beta, our DPO loss equals TRL's within
1e-5 and the gradients agree to a relative norm error below 1e-4 per parameter tensor. Why 1e-4: both sides compute
in float32 but sum in different orders (TRL scores the tokens with a chunked log-softmax of its own), so they
differ by rounding only; measured here, the worst relative gradient error is about 1.3e-6 and the loss error 7e-7.
A real difference is orders of magnitude larger: running the reference under TRL's default bf16 autocast
(``DPOConfig(bf16=True)``, the default even on CPU) moves the loss by 3e-3 and the gradients by about 1e-2
relative, which is why every config here sets ``bf16=False``.

Everything runs offline on a tiny model and writes only under ``tmp_path``.
"""

from __future__ import annotations

import copy

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from instruct_helpers import RECORDS, save_tiny_checkpoint, tiny_model, tiny_tokenizer  # noqa: E402

from scratch_gpt.finetune.dpo_data import (  # noqa: E402
    PreferenceDataset,
    build_preference_pairs,
    preference_collate_fn,
)
from scratch_gpt.finetune.dpo_training import compute_dpo_loss_batch, freeze_reference  # noqa: E402
from scratch_gpt.finetune.instruction_data import (  # noqa: E402
    RESPONSE_HEADER,
    InstructionDataset,
    custom_collate_fn,
    format_input,
)
from scratch_gpt.training.pretrain import calc_loss_batch  # noqa: E402

BATCH = 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_DISABLED", "true")


def _preference_dataset(pairs):
    """TRL's prompt/chosen/rejected format: the Alpaca prompt, and the response header + answer as completions."""
    return datasets.Dataset.from_list(
        [
            {
                "prompt": format_input(p),
                "chosen": RESPONSE_HEADER + p["chosen"],
                "rejected": RESPONSE_HEADER + p["rejected"],
            }
            for p in pairs
        ]
    )


def _dpo_trainer(tmp_path, policy, reference, pairs, beta, loss_type="sigmoid", **overrides):
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl-dpo"),
        beta=beta,
        loss_type=[loss_type],
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        max_length=None,
        seed=0,
        **overrides,
    )
    return trl.DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=_preference_dataset(pairs),
        processing_class=tiny_tokenizer(),
    )


def _relative_errors(ours, theirs):
    return [((p.grad - q.grad).norm() / q.grad.norm().clamp(min=1e-12)).item() for p, q in zip(theirs, ours)]


@pytest.mark.parametrize(("loss_type", "reduction"), [("sigmoid", "sum"), ("sigmoid_norm", "mean")])
def test_dpo_loss_and_gradients_equal_trl(tmp_path, loss_type, reduction):
    tokenizer = tiny_tokenizer()
    pairs = build_preference_pairs(RECORDS, seed=1)
    policy = tiny_model(tokenizer, seed=0).train()
    reference = freeze_reference(tiny_model(tokenizer, seed=1))
    our_policy, our_reference = copy.deepcopy(policy), copy.deepcopy(reference)
    trainer = _dpo_trainer(tmp_path, policy, reference, pairs, beta=0.3, loss_type=loss_type)

    # TRL tokenizes exactly as chapter 7 does: prompt + header + answer, then one end-of-text
    theirs = [trainer.train_dataset[i] for i in range(BATCH)]
    ours = PreferenceDataset(pairs[:BATCH], tokenizer)
    for index in range(BATCH):
        for key in ("chosen", "rejected"):
            prompt_length, ids = ours[index][key]
            assert theirs[index]["prompt_ids"] + theirs[index][f"{key}_ids"] == ids + [tokenizer.eos_token_id]
            assert len(theirs[index]["prompt_ids"]) == prompt_length

    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, trainer.data_collator(theirs))
    trl_loss.backward()
    batch = preference_collate_fn([ours[i] for i in range(BATCH)], pad_token_id=tokenizer.eos_token_id)
    our_loss = compute_dpo_loss_batch(batch, our_policy, our_reference, beta=0.3, reduction=reduction).loss
    our_loss.backward()

    assert abs(trl_loss.item() - our_loss.item()) < 1e-5
    assert abs(our_loss.item() - 0.693147) > 1e-3  # different policy and reference: not the trivial log(2)
    errors = _relative_errors(list(our_policy.parameters()), list(policy.parameters()))
    assert max(errors) < 1e-4, max(errors)


@pytest.mark.slow
def test_trl_bf16_default_changes_the_reference_loss(tmp_path):
    """TRL's DPOConfig defaults to bf16 autocast; on the reference model this is a visible (not rounding) change."""
    tokenizer = tiny_tokenizer()
    pairs = build_preference_pairs(RECORDS, seed=1)
    policy, reference = tiny_model(tokenizer, seed=0).train(), freeze_reference(tiny_model(tokenizer, seed=1))
    our_policy, our_reference = copy.deepcopy(policy), copy.deepcopy(reference)
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "bf16"), beta=0.3, use_cpu=True, report_to=[], max_length=None
    )
    assert args.bf16 is True
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=_preference_dataset(pairs),
        processing_class=tokenizer,
    )
    theirs = trainer.data_collator([trainer.train_dataset[i] for i in range(BATCH)])
    ours = PreferenceDataset(pairs[:BATCH], tokenizer)
    batch = preference_collate_fn([ours[i] for i in range(BATCH)], pad_token_id=tokenizer.eos_token_id)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, theirs).item()
        our_loss = compute_dpo_loss_batch(
            batch, our_policy, our_reference, beta=0.3, reduction="sum"
        ).loss.item()
    assert abs(trl_loss - our_loss) > 1e-4


@pytest.mark.slow
def test_dpo_trainer_trains_scratch_gpt_and_saves(tmp_path):
    from transformers import AutoModelForCausalLM

    checkpoint = save_tiny_checkpoint(tmp_path / "sft-model")
    policy = AutoModelForCausalLM.from_pretrained(str(checkpoint)).train()
    before = copy.deepcopy(policy.state_dict())
    pairs = build_preference_pairs(RECORDS, seed=1)
    # ref_model=None: TRL loads the frozen reference itself, from the policy's checkpoint folder
    trainer = _dpo_trainer(
        tmp_path, policy, None, pairs, beta=0.1, max_steps=3, learning_rate=1e-3, logging_steps=1
    )
    assert trainer.ref_model is not policy
    trainer.train()
    for name, value in trainer.ref_model.state_dict().items():  # TRL runs the reference under no_grad only
        assert torch.equal(value, before[name]), name
    logged = [entry for entry in trainer.state.log_history if "rewards/margins" in entry]
    assert len(logged) == 3 and all(entry["loss"] == entry["loss"] for entry in logged)  # no NaN
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    trainer.save_model(str(tmp_path / "saved"))
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved"))
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(ids).logits, policy.eval()(ids).logits)


@pytest.mark.parametrize("completion_only", [True, False])
def test_sft_trainer_loss_equals_chapter7_loss(tmp_path, completion_only):
    """SFTTrainer's loss == chapter 7's ``calc_loss_batch`` with the same masking.

    Prompt/completion records with ``completion_only_loss=True`` match ``mask_instruction=True`` (exercise 7.2);
    plain texts match the book's default (every token after the first is a target).
    """
    tokenizer = tiny_tokenizer()
    records = RECORDS[:BATCH]
    model = tiny_model(tokenizer, seed=0).train()
    ours_model = copy.deepcopy(model)
    if completion_only:
        rows = [{"prompt": format_input(r), "completion": RESPONSE_HEADER + r["output"]} for r in records]
    else:
        rows = [{"text": format_input(r) + RESPONSE_HEADER + r["output"]} for r in records]
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "trl-sft"),
        completion_only_loss=completion_only if completion_only else None,
        per_device_train_batch_size=BATCH,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        max_length=None,
        max_steps=2,
        logging_steps=1,
    )
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer
    )
    theirs = trainer.data_collator([trainer.train_dataset[i] for i in range(BATCH)])
    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, theirs)

    dataset = InstructionDataset(records, tokenizer, include_instruction_length=True)
    inputs, targets = custom_collate_fn(
        [dataset[i] for i in range(BATCH)],
        pad_token_id=tokenizer.eos_token_id,
        mask_instruction=completion_only,
    )
    our_loss = calc_loss_batch(inputs, targets, ours_model)
    assert abs(trl_loss.item() - our_loss.item()) < 1e-5
    trl_loss.backward()
    our_loss.backward()
    errors = _relative_errors(list(ours_model.parameters()), list(model.parameters()))
    assert max(errors) < 1e-4, max(errors)

    trainer.train()  # and SFTTrainer trains our model
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 2]
