"""Tests for scratch_gpt.finetune.instruction_data: the chapter 7 data pipeline and the ROUGE-L overlap score.

Known answers come from the book's chapter 7 (the 935 / 110 / 55 split, the prompt of record 50, the
``custom_collate_fn`` example with inputs [0..4], [5, 6], [7, 8, 9]) and from hand-computed ROUGE-L values.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import data_file

from scratch_gpt.finetune.instruction_data import (
    InstructionDataset,
    check_instruction_records,
    custom_collate_fn,
    extract_response,
    format_input,
    format_response,
    load_instruction_data,
    rouge_l,
    rouge_l_f1,
    split_instruction_data,
)

EOS = 50256


@pytest.fixture(scope="module")
def data():
    return load_instruction_data(data_file("instruction-data.json"))


# --- loading and splitting ------------------------------------------------------------------------------------


def test_book_data_and_split(data):
    assert len(data) == 1100
    splits = split_instruction_data(data)
    assert (len(splits.train), len(splits.test), len(splits.validation)) == (935, 110, 55)
    assert splits.train == data[:935] and splits.test == data[935:1045] and splits.validation == data[1045:]
    assert splits.test[0]["instruction"] == "Rewrite the sentence using a simile."  # as printed in the book


def test_format_input_exactly_as_the_book(data):
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nIdentify the correct spelling of the following word."
        "\n\n### Input:\nOcassion"
    )
    assert format_input(data[50]) == expected
    assert format_response(data[50]) == "\n\n### Response:\nThe correct spelling is 'Occasion.'"
    no_input = format_input(data[999])  # empty input: no "### Input:" section at all
    assert no_input.endswith("### Instruction:\nWhat is an antonym of 'complicated'?")
    assert "### Input:" not in no_input
    assert format_input({"instruction": "Say hi."}) == format_input({"instruction": "Say hi.", "input": ""})


def test_format_bad_entries():
    with pytest.raises(ValueError, match="no 'instruction' key"):
        format_input({"input": "x"})
    with pytest.raises(ValueError, match="no 'output' key"):
        format_response({"instruction": "x"})


def _write_json(tmp_path, obj, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


GOOD = {"instruction": "Add.", "input": "1+1", "output": "2"}


def test_missing_key_names_record_and_key(tmp_path):
    path = _write_json(tmp_path, [GOOD, GOOD, {"instruction": "x", "input": ""}])
    with pytest.raises(ValueError, match=r"record 2: missing key 'output' .* on_error='skip'"):
        load_instruction_data(path)


def test_bad_records_skipped_with_one_warning(tmp_path):
    records = [
        GOOD,
        {"output": "y"},
        "text",
        {"instruction": "x", "output": 3},
        {"instruction": "No input", "output": "ok"},
    ]
    path = _write_json(tmp_path, records)
    with pytest.warns(
        UserWarning,
        match=r"skipped 3 bad record\(s\): record 1: missing key 'instruction'.*"
        r"record 2: expected an object.*record 3: key 'output' must be a string",
    ):
        loaded = load_instruction_data(path, on_error="skip")
    assert loaded == [GOOD, {"instruction": "No input", "input": "", "output": "ok"}]


def test_check_instruction_records_directly():
    with pytest.raises(ValueError, match=r"my data: record 0: key 'input' must be a string"):
        check_instruction_records([{"instruction": "a", "input": None, "output": "b"}], source="my data")
    with pytest.raises(ValueError, match="on_error"):
        check_instruction_records([GOOD], on_error="drop")


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    with pytest.raises(ValueError, match=r"invalid JSON at line 3 column 23"):
        load_instruction_data(path, on_error="skip")


def test_json_must_be_a_list(tmp_path):
    with pytest.raises(ValueError, match="expected a JSON list of records, got a JSON dict"):
        load_instruction_data(_write_json(tmp_path, GOOD))


def test_jsonl_lines_reported_and_skipped(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n{not json}\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"line 3: invalid JSON"):
        load_instruction_data(path)
    with pytest.warns(
        UserWarning, match=r"skipped 2 bad line\(s\): line 3: invalid JSON.*line 4: missing key 'output'"
    ):
        assert load_instruction_data(path, on_error="skip") == [GOOD]


def test_load_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json not found"):
        load_instruction_data(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="no instruction records"):
        load_instruction_data(_write_json(tmp_path, []))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"instruction": "\xff"}]')
    with pytest.raises(ValueError, match=r"line 1 \(byte offset 18\) is not valid UTF-8"):
        load_instruction_data(bad)
    with pytest.raises(ValueError, match="on_error"):
        load_instruction_data(_write_json(tmp_path, [GOOD]), on_error="ignore")


def test_split_bad_input():
    with pytest.raises(ValueError, match="train_frac"):
        split_instruction_data([GOOD] * 100, train_frac=0.95, test_frac=0.1)
    with pytest.raises(ValueError, match="empty split"):
        split_instruction_data([GOOD] * 5)


# --- dataset ----------------------------------------------------------------------------------------------------


def test_dataset_tokens_and_instruction_lengths(data, gpt2_tiktoken):
    dataset = InstructionDataset(data, gpt2_tiktoken)
    assert len(dataset) == 1100
    assert dataset[50] == gpt2_tiktoken.encode(format_input(data[50]) + format_response(data[50]))
    # the book's exercise 7.2 definition of the prompt length holds for every record of the book's data
    assert dataset.instruction_lengths == [len(gpt2_tiktoken.encode(format_input(e))) for e in data]
    with_lengths = InstructionDataset(data[:3], gpt2_tiktoken, include_instruction_length=True)
    assert with_lengths[1] == (dataset.instruction_lengths[1], dataset[1])


def test_dataset_bad_input(gpt2_tiktoken):
    with pytest.raises(ValueError, match="no records"):
        InstructionDataset([], gpt2_tiktoken)
    with pytest.raises(ValueError, match=r"record 1: instruction record has no 'output' key"):
        InstructionDataset([GOOD, {"instruction": "x"}], gpt2_tiktoken)
    with pytest.raises(ValueError, match="record 0: could not tokenize"):
        InstructionDataset([{"instruction": "x", "output": "done <|endoftext|>"}], gpt2_tiktoken)


# --- collate ------------------------------------------------------------------------------------------------------


BOOK_BATCH = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


def test_collate_book_example():
    inputs, targets = custom_collate_fn(BOOK_BATCH)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, EOS, EOS, EOS], [7, 8, 9, EOS, EOS]]
    assert targets.tolist() == [[1, 2, 3, 4, EOS], [6, EOS, -100, -100, -100], [8, 9, EOS, -100, -100]]
    assert inputs.dtype == targets.dtype == torch.long


def test_collate_truncates_to_context_length():
    inputs, targets = custom_collate_fn(BOOK_BATCH, allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, EOS], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, EOS, -100], [8, 9, EOS]]


def test_collate_masks_instruction_tokens():
    batch = [(3, [0, 1, 2, 3, 4]), (1, [5, 6]), (0, [7, 8, 9])]
    inputs, targets = custom_collate_fn(batch, mask_instruction=True)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, EOS, EOS, EOS], [7, 8, 9, EOS, EOS]]
    assert targets.tolist() == [[-100, -100, 3, 4, EOS], [6, EOS, -100, -100, -100], [8, 9, EOS, -100, -100]]
    _, unmasked = custom_collate_fn(batch)  # tuples without mask_instruction: plain targets
    assert unmasked.tolist() == custom_collate_fn(BOOK_BATCH)[1].tolist()


def test_collate_with_dataset_masking_matches_book_rule(data, gpt2_tiktoken):
    dataset = InstructionDataset(data[:4], gpt2_tiktoken, include_instruction_length=True)
    _, targets = custom_collate_fn([dataset[i] for i in range(4)], mask_instruction=True)
    for row in range(4):
        n_prompt, ids = dataset[row]
        assert (targets[row, : n_prompt - 1] == -100).all()
        assert targets[row, n_prompt - 1 : len(ids) - 1].tolist() == ids[n_prompt:]  # the response is learned
        assert targets[row, len(ids) - 1].item() == EOS


def test_collate_keeps_end_of_text_inside_a_text():
    # the book masks by value, which would also hide this in-text end-of-text token; position-based keeps it
    _, targets = custom_collate_fn([[1, EOS, 2], [3]], pad_token_id=EOS)
    assert targets.tolist() == [[EOS, 2, EOS], [EOS, -100, -100]]


def test_collate_other_pad_ignore_device_and_tensors():
    inputs, targets = custom_collate_fn(
        [torch.tensor([1, 2]), [3]], pad_token_id=0, ignore_index=-1, device="cpu"
    )
    assert inputs.tolist() == [[1, 2], [3, 0]]
    assert targets.tolist() == [[2, 0], [0, -1]]


def test_collate_bad_input():
    with pytest.raises(ValueError, match="empty batch"):
        custom_collate_fn([])
    with pytest.raises(ValueError, match="batch item 1 is empty"):
        custom_collate_fn([[1], []])
    with pytest.raises(ValueError, match="allowed_max_length"):
        custom_collate_fn([[1]], allowed_max_length=0)
    with pytest.raises(ValueError, match="include_instruction_length=True"):
        custom_collate_fn([[1, 2]], mask_instruction=True)


# --- responses and scoring ------------------------------------------------------------------------------------


def test_extract_response():
    prompt = format_input(GOOD)
    generated = prompt + "\n\n### Response:\nThe answer is 2.<|endoftext|>garbage"
    assert extract_response(generated, prompt) == "The answer is 2."
    assert extract_response(generated) == "The answer is 2."
    runaway = prompt + "\n\n### Response:\n2\n\n### Instruction:\nMultiply."
    assert extract_response(runaway, prompt) == "2"
    assert extract_response("  just text  ") == "just text"
    # the book's rule on a generation that stopped at end-of-text gives the same answer
    stopped = prompt + "\n\n### Response:\nThe answer is 2."
    assert extract_response(stopped, prompt) == stopped[len(prompt) :].replace("### Response:", "").strip()


def test_rouge_l_known_answers():
    score = rouge_l("The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog")
    # LCS = the quick brown jumps the (5 words); P = 5/8, R = 5/9
    assert score.precision == pytest.approx(5 / 8)
    assert score.recall == pytest.approx(5 / 9)
    assert score.f1 == pytest.approx(2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9))
    assert rouge_l_f1("The car is as fast as lightning.", "the car is AS FAST as lightning") == 1.0
    assert rouge_l_f1("completely different", "nothing shared here") == 0.0
    assert rouge_l_f1("", "") == 1.0
    assert rouge_l_f1("", "reference") == 0.0
    assert rouge_l("a b c d", "a c") == (0.5, 1.0, pytest.approx(2 / 3))
