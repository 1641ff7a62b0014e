"""Preference data for DPO: deterministic pairs, loading, tokenization and chapter 7's masking rules."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import data_file
from instruct_helpers import RECORDS, tiny_tokenizer

from scratch_gpt.finetune.dpo_data import (
    PreferenceDataset,
    build_preference_pairs,
    load_preference_data,
    preference_collate_fn,
    response_loader,
)
from scratch_gpt.finetune.instruction_data import RESPONSE_HEADER, InstructionDataset, load_instruction_data


def test_other_answer_pairs_are_deterministic_and_differ():
    pairs = build_preference_pairs(RECORDS, seed=7)
    assert pairs == build_preference_pairs(RECORDS, seed=7)
    assert len(pairs) == len(RECORDS)
    outputs = [r["output"] for r in RECORDS]
    offsets = set()
    for index, (pair, record) in enumerate(zip(pairs, RECORDS)):
        assert pair["instruction"] == record["instruction"] and pair["input"] == record["input"]
        assert pair["chosen"] == record["output"] != pair["rejected"]
        offsets.add((outputs.index(pair["rejected"]) - index) % len(RECORDS))
    assert (
        len(offsets) == 1 and 0 not in offsets
    )  # one fixed rotation of the answers (all answers distinct here)
    assert len({str(build_preference_pairs(RECORDS, seed=s)) for s in range(10)}) > 1  # the seed matters


def test_other_answer_skips_equal_texts():
    records = [{"instruction": f"q{i}", "output": "same" if i < 2 else f"a{i}"} for i in range(4)]
    for seed in range(5):
        for pair in build_preference_pairs(records, seed=seed):
            assert pair["rejected"] != pair["chosen"]


def test_shuffled_words_keep_the_words():
    records = [
        {"instruction": "x", "output": "the cat sat on the mat today"},
        {"instruction": "y", "output": "Hi"},
    ]
    first, second = build_preference_pairs(records, strategy="shuffled_words", seed=3)
    assert Counter(first["rejected"].split()) == Counter(first["chosen"].split())
    assert first["rejected"] != first["chosen"]
    assert second["rejected"] == records[0]["output"]  # one word cannot be shuffled: the other answer instead


def test_model_response_strategy():
    records = [
        {"instruction": "a", "output": "Blue.", "model_response": "Red."},
        {"instruction": "b", "output": "Cat.", "model_response": "Cat."},  # the model was right: no pair
    ]
    assert build_preference_pairs(records, strategy="model_response") == [
        {"instruction": "a", "input": "", "chosen": "Blue.", "rejected": "Red."}
    ]
    with pytest.raises(ValueError, match="generate_test_responses"):
        build_preference_pairs([{"instruction": "a", "output": "b"}], strategy="model_response")
    with pytest.raises(ValueError, match="strategy must be one of"):
        build_preference_pairs(RECORDS, strategy="judge")


def test_load_builds_pairs_from_instruction_records_or_reads_given_pairs(tmp_path):
    instruction_file = tmp_path / "instr.json"
    instruction_file.write_text(json.dumps(RECORDS), encoding="utf-8")
    assert load_preference_data(instruction_file, seed=5) == build_preference_pairs(RECORDS, seed=5)

    pairs = [{"instruction": "Name a color.", "chosen": "Blue.", "rejected": "Dog."}]
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("\n".join(json.dumps(p) for p in pairs), encoding="utf-8")
    assert load_preference_data(pairs_file) == [{**pairs[0], "input": ""}]


def test_load_names_bad_records(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"instruction": "a", "chosen": "x", "rejected": "y"}, {"chosen": "x"}]))
    with pytest.raises(ValueError, match=r"record 1: missing key 'instruction'"):
        load_preference_data(path)
    path.write_text(json.dumps([{"instruction": "a", "chosen": "x", "rejected": "x"}]))
    with pytest.raises(ValueError, match="same text"):
        load_preference_data(path)
    with pytest.warns(UserWarning, match="skipped 1"), pytest.raises(ValueError, match="no usable"):
        load_preference_data(path, on_error="skip")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_preference_data(tmp_path / "missing.json")


def test_dataset_items_are_chapter7_items():
    tokenizer = tiny_tokenizer()
    pairs = build_preference_pairs(RECORDS[:4])
    dataset = PreferenceDataset(pairs, tokenizer)
    chosen = InstructionDataset(
        [{**p, "output": p["chosen"]} for p in pairs], tokenizer, include_instruction_length=True
    )
    assert len(dataset) == 4
    for index in range(4):
        assert dataset[index]["chosen"] == chosen[index]
        length, ids = dataset[index]["rejected"]
        assert tokenizer.decode(ids[length:]) == RESPONSE_HEADER + pairs[index]["rejected"]


def test_collate_known_answer():
    batch = [{"chosen": (2, [1, 2, 3, 4]), "rejected": (2, [1, 2, 5])}]
    out = preference_collate_fn(batch, pad_token_id=0)
    assert out["chosen"].tolist() == [[1, 2, 3, 4]]
    assert out["chosen_targets"].tolist() == [[-100, 3, 4, 0]]  # prompt target masked, first end-of-text kept
    assert out["rejected"].tolist() == [[1, 2, 5, 0]]
    assert out["rejected_targets"].tolist() == [[-100, 5, 0, -100]]  # later padding masked
    unmasked = preference_collate_fn(batch, pad_token_id=0, mask_prompt=False, allowed_max_length=3)
    assert unmasked["chosen_targets"].tolist() == [[2, 3, 4]]
    with pytest.raises(ValueError, match="empty batch"):
        preference_collate_fn([])


def test_scored_tokens_are_header_answer_and_end_of_text():
    tokenizer = tiny_tokenizer()
    pairs = build_preference_pairs(RECORDS[:3])
    dataset = PreferenceDataset(pairs, tokenizer)
    batch = preference_collate_fn([dataset[i] for i in range(3)], pad_token_id=tokenizer.eos_token_id)
    assert batch["chosen"].shape == batch["rejected"].shape
    for key in ("chosen", "rejected"):
        for row, pair in enumerate(pairs):
            targets = batch[f"{key}_targets"][row]
            scored = targets[targets != -100].tolist()
            assert tokenizer.decode(scored) == RESPONSE_HEADER + pair[key] + tokenizer.eos_token


def test_response_loader_scores_the_chosen_answers():
    tokenizer = tiny_tokenizer()
    pairs = build_preference_pairs(RECORDS[:3])
    inputs, targets = next(iter(response_loader(pairs, tokenizer, batch_size=3, context_length=160)))
    assert inputs.shape == targets.shape
    assert tokenizer.decode(targets[0][targets[0] != -100].tolist()) == (
        RESPONSE_HEADER + pairs[0]["chosen"] + tokenizer.eos_token
    )


def test_pairs_from_the_books_instruction_data():
    records = load_instruction_data(data_file("instruction-data.json"))
    pairs = build_preference_pairs(records)
    assert len(records) == 1100
    assert len(pairs) == 1100  # every record gets a differing answer
    assert pairs == build_preference_pairs(records)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    assert sum(p["rejected"] == r["output"] for p, r in zip(pairs, records)) == 0


def test_pairs_whose_prompt_fills_the_context_are_left_out():
    tokenizer = tiny_tokenizer()
    pairs = build_preference_pairs(RECORDS[:4])
    full = PreferenceDataset(pairs, tokenizer)
    lengths = [max(full[i]["chosen"][0], full[i]["rejected"][0]) for i in range(4)]
    limit = sorted(lengths)[1]  # keeps the pairs whose prompt length is <= limit
    with pytest.warns(UserWarning, match="left out"):
        cut = PreferenceDataset(pairs, tokenizer, max_length=limit)
    assert len(cut) == sum(length <= limit for length in lengths) < 4
    batch = preference_collate_fn(
        [cut[i] for i in range(len(cut))], tokenizer.eos_token_id, allowed_max_length=limit
    )
    assert ((batch["chosen_targets"] != -100).sum(1) >= 1).all()  # every kept pair scores at least one token
    with pytest.raises(ValueError, match="every prompt fills"):
        PreferenceDataset(pairs, tokenizer, max_length=min(lengths) - 1)
