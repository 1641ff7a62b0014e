"""Tests for scratch_gpt.finetune.chat: the Alpaca chat template, streaming generation/decoding, the chat loop and CLI."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from instruct_helpers import save_tiny_checkpoint, tiny_model, tiny_tokenizer
from jinja2.exceptions import TemplateError

from scratch_gpt.finetune import chat as chat_module
from scratch_gpt.finetune.chat import (
    CHAT_TEMPLATE,
    EMPTY_ANSWER,
    GREETING,
    IncrementalDecoder,
    add_chat_template,
    build_prompt,
    chat,
    chat_with_model_dir,
    load_model_and_tokenizer,
    not_instruction_tuned_warning,
    stream_generate,
    stream_response,
)
from scratch_gpt.finetune.instruction_data import RESPONSE_HEADER, format_input, format_response
from scratch_gpt.generation import generate


@pytest.fixture(scope="module")
def tokenizer():
    return add_chat_template(tiny_tokenizer())


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


def render(tokenizer, messages, add_generation_prompt=False):
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False
    )


# --- the chat template -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instruction",
    ["Name a color.", "Rewrite: 'it's {{ odd }}' {% raw %}\nwith two lines", "Übersetze 東京 😀"],
)
def test_template_equals_format_input_plus_response_header(tokenizer, instruction):
    prompt = render(tokenizer, [{"role": "user", "content": instruction}], add_generation_prompt=True)
    assert prompt == format_input({"instruction": instruction, "input": ""}) + "\n\n### Response:\n"


def test_template_optional_input_goes_on_the_user_message(tokenizer):
    entry = {"instruction": "Translate to German.", "input": "Good morning"}
    message = {"role": "user", "content": entry["instruction"], "input": entry["input"]}
    assert render(tokenizer, [message], add_generation_prompt=True) == format_input(entry) + RESPONSE_HEADER
    assert "### Input:\nGood morning" in format_input(entry)
    empty = {"role": "user", "content": "Say hi.", "input": ""}  # an empty input leaves the section out
    assert (
        render(tokenizer, [empty], True)
        == format_input({"instruction": "Say hi.", "input": ""}) + RESPONSE_HEADER
    )


def test_assistant_turn_is_the_training_text_with_end_of_text(tokenizer):
    entry = {"instruction": "Name a color.", "input": "sky", "output": "Blue."}
    messages = [
        {"role": "user", "content": entry["instruction"], "input": entry["input"]},
        {"role": "assistant", "content": entry["output"]},
    ]
    assert render(tokenizer, messages) == format_input(entry) + format_response(entry) + "<|endoftext|>"


def test_system_message_replaces_the_preamble(tokenizer):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    assert render(tokenizer, messages, True) == "You are terse.\n\n### Instruction:\nHi\n\n### Response:\n"


def test_unknown_role_raises_naming_the_supported_roles(tokenizer):
    with pytest.raises(TemplateError, match="supports the roles system .* user and assistant, got tool"):
        render(tokenizer, [{"role": "tool", "content": "x"}])


def test_template_is_saved_and_reloaded(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(str(tmp_path))
    assert (tmp_path / "chat_template.jinja").read_text(encoding="utf-8") == CHAT_TEMPLATE
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    messages = [{"role": "user", "content": "Name a color.", "input": "sky"}]
    assert render(reloaded, messages, True) == render(tokenizer, messages, True)


def test_add_chat_template_rejects_tokenizers_it_cannot_use():
    with pytest.raises(ValueError, match="not a Hugging Face tokenizer"):
        add_chat_template(object())
    no_eos = tiny_tokenizer()
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="no eos_token"):
        add_chat_template(no_eos)


def test_build_prompt_with_and_without_template(tokenizer):
    plain = tiny_tokenizer()  # no chat template: format_input is used directly
    assert plain.chat_template is None
    for tok in (tokenizer, plain):
        assert build_prompt(tok, "Name a color.", "sky") == (
            format_input({"instruction": "Name a color.", "input": "sky"}) + RESPONSE_HEADER
        )


# --- streaming generation and decoding -------------------------------------------------------------------


def test_stream_generate_gives_the_same_ids_as_generate(model, tokenizer):
    prompt_ids = tokenizer.encode(build_prompt(tokenizer, "Name a color."))
    idx = torch.tensor([prompt_ids])
    reference = generate(model, idx, max_new_tokens=20)[0, len(prompt_ids) :].tolist()
    streamed = list(stream_generate(model, prompt_ids, max_new_tokens=20))
    assert streamed == reference
    assert len(set(streamed)) > 3  # the random model does not repeat one token (the check is not vacuous)
    # with an end-of-text id: stops right after yielding it, as generate does
    eos = reference[6]
    stopped = list(stream_generate(model, prompt_ids, max_new_tokens=20, eos_id=eos))
    assert stopped == reference[: reference.index(eos) + 1]


def test_stream_generate_stops_when_the_context_is_full(model, tokenizer):
    context = model.config.n_positions
    prompt_ids = tokenizer.encode("word " * 200)[: context - 4]
    assert len(list(stream_generate(model, prompt_ids, max_new_tokens=50))) == 4
    with pytest.raises(ValueError, match="reads at most 160"):
        list(stream_generate(model, tokenizer.encode("word " * 200)[:context], max_new_tokens=5))
    with pytest.raises(ValueError, match="prompt is empty"):
        list(stream_generate(model, [], max_new_tokens=5))


def test_incremental_decoder_holds_back_split_characters(tokenizer):
    text = "Café 東京 😀 naïve"
    ids = tokenizer.encode(text)
    # the emoji is 4 UTF-8 bytes; the tiny BPE spreads it over several tokens
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert "" in pieces  # something had to wait for the rest of its character


def test_stream_response_pieces_concatenate_to_the_decoded_response(model, tokenizer):
    prompt = build_prompt(tokenizer, "Name a color.")
    pieces = list(stream_response(model, tokenizer, prompt, max_new_tokens=25))
    prompt_ids = tokenizer.encode(prompt)
    new_ids = generate(model, torch.tensor([prompt_ids]), max_new_tokens=25)[0, len(prompt_ids) :].tolist()
    decoded = tokenizer.decode(new_ids)
    assert "\n\n### " not in decoded and tokenizer.eos_token_id not in new_ids  # nothing cut: compare whole
    assert "".join(pieces) == decoded
    assert len(pieces) > 5  # streamed piece by piece, not in one go


def test_stream_response_stops_at_end_of_text_and_at_a_new_section(tokenizer, monkeypatch):
    def scripted(text, then_eos=False):
        ids = tokenizer.encode(text) + ([tokenizer.eos_token_id] if then_eos else [])

        def fake_stream_generate(model, prompt_ids, max_new_tokens, temperature, top_k, eos_id, generator):
            yield from ids

        return fake_stream_generate

    monkeypatch.setattr(chat_module, "stream_generate", scripted("Blue.\n\n### Instruction:\nMore"))
    pieces = list(stream_response(None, tokenizer, "prompt"))
    assert "".join(pieces) == "Blue."
    assert not any("#" in piece for piece in pieces)
    monkeypatch.setattr(chat_module, "stream_generate", scripted("Blue.\n\n# not a section", then_eos=True))
    assert "".join(stream_response(None, tokenizer, "prompt")) == "Blue.\n\n# not a section"


# --- the chat loop ---------------------------------------------------------------------------------------


class Console:
    """Injected input/output: feeds lines, records what is printed."""

    def __init__(self, lines):
        self.lines = list(lines)
        self.prompts, self.calls = [], []

    def input(self, prompt):
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)

    def output(self, *args, end="\n", flush=False):
        self.calls.append((" ".join(args), end))

    @property
    def text(self):
        return "".join(text + end for text, end in self.calls)


def test_chat_loop_streams_answers_and_returns_turns(model, tokenizer):
    console = Console(["", "/input sky", "Name a color.", "Say hi.", "/quit", "never read"])
    turns = chat(model, tokenizer, input_fn=console.input, output_fn=console.output, max_new_tokens=12)
    assert [t["instruction"] for t in turns] == ["Name a color.", "Say hi."]
    assert [t["input"] for t in turns] == ["sky", ""]  # /input applies to the next instruction only
    assert console.lines == ["never read"]  # /quit ended the loop
    expected = "".join(
        stream_response(model, tokenizer, build_prompt(tokenizer, "Name a color.", "sky"), max_new_tokens=12)
    )
    assert turns[0]["response"] == expected
    streamed = [text for text, end in console.calls if end == ""]
    assert len(streamed) > 2 and expected.startswith(streamed[0])  # printed piece by piece, no newline
    assert expected in console.text


def test_chat_loop_ends_at_end_of_input_and_reports_errors(model, tokenizer):
    console = Console(["word " * 300])  # longer than the context, then EOF
    assert chat(model, tokenizer, input_fn=console.input, output_fn=console.output) == []
    assert "error: the prompt is" in console.text
    with pytest.raises(ValueError, match="max_new_tokens"):
        chat(model, tokenizer, input_fn=console.input, output_fn=console.output, max_new_tokens=0)


# --- loading a folder, and the CLI -----------------------------------------------------------------------


def test_load_model_and_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_and_tokenizer(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model_and_tokenizer(tmp_path)
    folder = save_tiny_checkpoint(tmp_path / "model")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_model_and_tokenizer(folder)


def test_load_rejects_a_tokenizer_larger_than_the_model(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    small = save_tiny_checkpoint(tmp_path / "small", vocab_size=config["vocab_size"] - 10)
    assert small
    with pytest.raises(ValueError, match="tokenizer .* has 321 tokens but the model only 311"):
        load_model_and_tokenizer(small)


def test_chat_with_model_dir_adds_the_template(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "model")
    console = Console(["Name a color."])
    turns = chat_with_model_dir(folder, input_fn=console.input, output_fn=console.output, max_new_tokens=5)
    assert len(turns) == 1 and console.prompts == [">>> ", ">>> "]
    assert not (folder / "chat_template.jinja").exists()  # attached in memory only
    # a folder without a chat template was not instruction-tuned: the chat says so, then names /help
    assert console.calls[0][0] == not_instruction_tuned_warning(folder)
    assert "not instruction-tuned" in console.calls[0][0] and "finetune-instruct" in console.calls[0][0]
    assert console.calls[1][0] == GREETING and "/help" in GREETING


def test_chat_with_model_dir_runs_on_the_fast_cpu_kernels(tmp_path, onednn_calls):
    """On a CPU the chat's model is put on ``use_fast_kernels``: its products reach the oneDNN kernel."""
    folder = save_tiny_checkpoint(tmp_path / "model")
    console = Console(["Name a color."])
    chat_with_model_dir(folder, input_fn=console.input, output_fn=console.output, max_new_tokens=3)
    assert onednn_calls, "no product reached the fast kernel"


def test_chat_opens_with_help_and_notes_empty_answers(model, tokenizer, monkeypatch):
    monkeypatch.setattr(chat_module, "stream_response", lambda *args, **kwargs: iter(["", " "]))
    console = Console(["Name a color."])
    turns = chat(model, tokenizer, input_fn=console.input, output_fn=console.output)
    assert console.calls[0] == (GREETING, "\n")  # no notice for a tuned model, /help named at once
    assert turns[0]["response"] == " " and EMPTY_ANSWER in console.text  # a blank answer is not left silent


def test_cli_chat_reads_stdin(tmp_path, monkeypatch, capsys):
    cli = pytest.importorskip("scratch_gpt.cli.finetune", reason="the finetune CLI group is not written yet")
    assert hasattr(cli, "register")
    from scratch_gpt.cli import main

    folder = save_tiny_checkpoint(tmp_path / "model")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Name a color.\n/input sky\nSay hi.\n"))
    assert main(["chat", "--model", str(folder), "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert out.count(">>> ") == 4  # three lines, then end of input
    assert "(input for the next instruction: 'sky')" in out
    assert main(["chat", "--model", str(tmp_path / "missing")]) == 2  # a failed load
    assert "does not exist" in capsys.readouterr().err
