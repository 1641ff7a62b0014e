"""Tests for scratch_gpt.finetune.classifier_data: the chapter 6 SMS spam pipeline.

Oracles: the book's own pandas code (read_csv, sample(random_state=123)) when pandas is installed, tiktoken's
GPT-2 encoding built from the local OpenAI files, and the book's printed figures (5,572 rows, 747 + 747 balanced,
1,045 / 149 / 300 split, 120-token longest training message).
"""

from __future__ import annotations

import pytest
import torch
from conftest import data_file

from scratch_gpt.finetune.classifier_data import (
    SPAM_LABELS,
    SpamDataset,
    SpamExample,
    create_balanced_dataset,
    last_token_positions,
    load_sms_spam,
    load_spam_splits,
    random_split,
    select_last_token,
)


@pytest.fixture(scope="module")
def sms_path():
    return data_file("SMSSpamCollection.tsv")


@pytest.fixture(scope="module")
def sms(sms_path):
    return load_sms_spam(sms_path)


def _write(tmp_path, text: str | bytes, name: str = "sms.tsv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- reading the file -------------------------------------------------------------------------------------------


def test_row_count_matches_the_book(sms):
    assert len(sms) == 5572
    assert sum(ex.label == 1 for ex in sms) == 747
    assert sum(ex.label == 0 for ex in sms) == 4825
    assert sms[0].row == 1 and sms[0].label == 0 and sms[0].text.startswith("Go until jurong point")


def test_quote_run_on_row_is_reproduced_with_row_numbers(sms):
    # A ham message opening with '"' absorbs the next two lines (file lines 5082-5084), as in pandas.
    merged = next(ex for ex in sms if "\n" in ex.text)
    assert merged.row == 5082
    assert merged.text.count("\nham\t") == 2
    following = sms[sms.index(merged) + 1]
    assert following.row == 5085


def test_quoting_none_reads_every_line(sms_path):
    rows = load_sms_spam(sms_path, quoting="none")
    assert len(rows) == 5574
    assert [ex.row for ex in rows] == list(range(1, 5575))


def test_same_rows_as_pandas(sms, sms_path):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(sms_path, sep="\t", header=None, names=["Label", "Text"])
    assert list(df["Text"]) == [ex.text for ex in sms]
    assert list(df["Label"].map(SPAM_LABELS)) == [ex.label for ex in sms]


def test_malformed_row_raises_with_row_number(tmp_path):
    path = _write(tmp_path, "ham\thello\n\nspam\n")
    with pytest.raises(ValueError, match=r"row 3: expected 2 tab-separated fields .* on_error='skip'"):
        load_sms_spam(path)


def test_malformed_rows_skipped_with_one_warning(tmp_path):
    path = _write(tmp_path, "ham\thello\nspam\n\nham\ta\tb\nham\t\nspam\twin now\n")
    with pytest.warns(UserWarning, match=r"skipped 3 malformed row\(s\): row 2: .*; row 4: .*; row 5: empty"):
        rows = load_sms_spam(path, on_error="skip")
    assert [(ex.text, ex.label, ex.row) for ex in rows] == [("hello", 0, 1), ("win now", 1, 6)]


def test_label_outside_label_set_is_an_error_even_when_skipping(tmp_path):
    path = _write(tmp_path, "ham\thello\nspamm\tbuy\n")
    for on_error in ("raise", "skip"):
        with pytest.raises(
            ValueError, match=r"row 2: label 'spamm' is not in the label set \['ham', 'spam'\]"
        ):
            load_sms_spam(path, on_error=on_error)


def test_custom_label_set(tmp_path):
    path = _write(tmp_path, "a\tone\nb\ttwo\nc\tthree\n")
    rows = load_sms_spam(path, labels={"a": 0, "b": 1, "c": 2})
    assert [ex.label for ex in rows] == [0, 1, 2]


@pytest.mark.parametrize("labels", [{}, {"ham": 0, "spam": 2}, {"ham": 1, "spam": 1}])
def test_bad_label_map(tmp_path, labels):
    path = _write(tmp_path, "ham\thello\n")
    with pytest.raises(ValueError, match="distinct integer"):
        load_sms_spam(path, labels=labels)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv not found"):
        load_sms_spam(tmp_path / "nope.tsv")


def test_invalid_utf8_names_line_and_offset(tmp_path):
    path = _write(tmp_path, b"ham\tok\nham\tbad \xff byte\n")
    with pytest.raises(ValueError, match=r"line 2 \(byte offset 15\) is not valid UTF-8"):
        load_sms_spam(path)


def test_empty_file(tmp_path):
    with pytest.raises(ValueError, match="no labelled messages"):
        load_sms_spam(_write(tmp_path, "\n\n"))


@pytest.mark.parametrize(("kwarg", "value"), [("on_error", "ignore"), ("quoting", "pandas")])
def test_bad_option_values(tmp_path, kwarg, value):
    with pytest.raises(ValueError, match=kwarg):
        load_sms_spam(_write(tmp_path, "ham\thi\n"), **{kwarg: value})


# --- balancing and splitting --------------------------------------------------------------------------------------


def test_balanced_and_split_sizes_match_the_book(sms):
    balanced = create_balanced_dataset(sms)
    assert len(balanced) == 1494
    assert sum(ex.label for ex in balanced) == 747
    assert [ex.label for ex in balanced] == [0] * 747 + [1] * 747  # ham subset, then spam (book's concat)
    assert [ex for ex in balanced if ex.label == 1] == [
        ex for ex in sms if ex.label == 1
    ]  # spam in file order
    splits = random_split(balanced, 0.7, 0.1)
    assert [len(s) for s in splits] == [1045, 149, 300]
    assert sorted(ex.row for s in splits for ex in s) == sorted(ex.row for ex in balanced)


def test_balance_and_split_equal_the_books_pandas_code(sms, sms_path):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(sms_path, sep="\t", header=None, names=["Label", "Text"])
    num_spam = df[df["Label"] == "spam"].shape[0]
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    balanced_df = pd.concat([ham_subset, df[df["Label"] == "spam"]])
    shuffled = balanced_df.sample(frac=1, random_state=123).reset_index(drop=True)

    balanced = create_balanced_dataset(sms, seed=123)
    assert [ex.text for ex in balanced] == list(balanced_df["Text"])
    splits = load_spam_splits(sms_path)
    assert [ex.text for ex in splits.train] == list(shuffled["Text"][:1045])
    assert [ex.text for ex in splits.validation] == list(shuffled["Text"][1045:1194])
    assert [ex.text for ex in splits.test] == list(shuffled["Text"][1194:])


def test_seed_changes_the_sample(sms):
    a, b = create_balanced_dataset(sms, seed=123), create_balanced_dataset(sms, seed=1)
    assert len(a) == len(b) and a != b
    assert create_balanced_dataset(sms, seed=123) == a


def test_balancing_needs_two_classes():
    with pytest.raises(ValueError, match="at least two classes"):
        create_balanced_dataset([SpamExample("a", 0, 1), SpamExample("b", 0, 2)])


@pytest.mark.parametrize(("train", "val"), [(0.0, 0.1), (0.9, 0.1), (1.2, 0.0), (0.7, -0.1)])
def test_bad_split_fractions(sms, train, val):
    with pytest.raises(ValueError, match="train_frac"):
        random_split(sms, train, val)


def test_too_few_examples_for_a_split():
    examples = [SpamExample("a", 0, 1), SpamExample("b", 1, 2), SpamExample("c", 0, 3)]
    with pytest.raises(ValueError, match="empty split"):
        random_split(examples)


# --- SpamDataset ----------------------------------------------------------------------------------------------------


def test_dataset_pads_to_the_books_120_tokens(sms_path, gpt2_tiktoken):
    splits = load_spam_splits(sms_path)
    train = SpamDataset(splits.train, gpt2_tiktoken)
    assert train.max_length == 120  # the book's printed value
    test = SpamDataset(splits.test, gpt2_tiktoken, max_length=train.max_length)
    assert len(train) == 1045 and len(test) == 300
    input_ids, label = train[0]
    assert input_ids.dtype == torch.long and input_ids.shape == (120,)
    assert label.dtype == torch.long and label.shape == ()
    n = train.lengths[0]
    assert input_ids[:n].tolist() == gpt2_tiktoken.encode(splits.train[0].text)
    assert (input_ids[n:] == 50256).all()


def test_dataset_truncates_to_max_length(gpt2_tiktoken):
    examples = [SpamExample("Hello, do you like tea?", 0, 1), SpamExample("Hi", 1, 2)]
    dataset = SpamDataset(examples, gpt2_tiktoken, max_length=3, pad_token_id=0)
    assert dataset[0][0].tolist() == [15496, 11, 466]  # "Hello", ",", " do"
    assert dataset[1][0].tolist() == [17250, 0, 0]
    assert dataset.lengths == [3, 1]
    assert dataset[1][1].item() == 1


def test_dataset_bad_input(gpt2_tiktoken):
    ok = [SpamExample("hi", 0, 1)]
    with pytest.raises(ValueError, match="no examples"):
        SpamDataset([], gpt2_tiktoken)
    with pytest.raises(ValueError, match="max_length"):
        SpamDataset(ok, gpt2_tiktoken, max_length=0)
    with pytest.raises(ValueError, match="pad_token_id"):
        SpamDataset(ok, gpt2_tiktoken, pad_token_id=-1)
    with pytest.raises(ValueError, match=r"example 0 \(file row 7\): the text encodes to no tokens"):
        SpamDataset([SpamExample("", 0, 7)], gpt2_tiktoken)
    with pytest.raises(ValueError, match=r"example 1 \(file row 9\): could not tokenize"):
        SpamDataset([*ok, SpamExample("free <|endoftext|> prize", 1, 9)], gpt2_tiktoken)


# --- last-token selection ---------------------------------------------------------------------------------------


def test_select_last_token_known_answer():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)  # (B=2, T=4, C=3)
    input_ids = torch.tensor([[5, 6, 9, 9], [7, 8, 1, 2]])
    last = select_last_token(hidden, pooling="last")
    assert torch.equal(last, hidden[:, 3])
    real = select_last_token(hidden, input_ids=input_ids, pad_token_id=9)
    assert torch.equal(real, torch.stack([hidden[0, 1], hidden[1, 3]]))


def test_select_last_token_attention_mask_and_left_padding():
    hidden = torch.randn(3, 5, 2)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_positions(attention_mask=mask).tolist() == [2, 4, 0]
    picked = select_last_token(hidden, attention_mask=mask)
    assert torch.equal(picked, hidden[[0, 1, 2], [2, 4, 0]])
    logits = torch.randn(3, 5)  # works on (B, T) too
    assert torch.equal(select_last_token(logits, attention_mask=mask), logits[[0, 1, 2], [2, 4, 0]])


def test_select_last_token_bad_input():
    hidden = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="needs attention_mask, or input_ids together with pad_token_id"):
        select_last_token(hidden, input_ids=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"rows \[1\] have no real tokens"):
        select_last_token(hidden, attention_mask=torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="does not match"):
        select_last_token(hidden, attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="pooling must be"):
        select_last_token(hidden, pooling="mean")
    with pytest.raises(ValueError, match="batch, seq_len"):
        select_last_token(torch.randn(4))
    with pytest.raises(ValueError, match="batch, seq_len"):
        last_token_positions(attention_mask=torch.ones(2, 3, 4))
