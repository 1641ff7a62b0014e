"""Talking to an instruction-tuned model: the Alpaca chat template and a streaming chat loop (book chapter 7).

The book fine-tunes on prompts built by ``format_input`` (``instruction_data.py``) followed by ``"\\n\\n### Response:\\n"``
and reads the answer off the generated text. This module makes that prompt format the tokenizer's own:

* ``CHAT_TEMPLATE`` is a Jinja chat template. For one user message,
  ``tokenizer.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True,
  tokenize=False)`` gives exactly ``format_input({"instruction": instruction, "input": ""}) +
  "\\n\\n### Response:\\n"``, the prompt the model was fine-tuned on.

  - **Optional input**: put it on the user message under the key ``"input"``:
    ``{"role": "user", "content": "Translate to German.", "input": "Good morning"}`` renders the
    ``### Input:`` section, exactly as ``format_input`` does for a record with a non-empty ``"input"``.
  - An assistant message renders ``"\\n\\n### Response:\\n" + content + eos_token``, so a (user, assistant) pair is
    exactly a training text with the end-of-text token the collate function appends.
  - A leading ``system`` message replaces the Alpaca preamble ("Below is an instruction ...").
  - Further user/assistant turns just continue the pattern; the book's model was trained on single turns only.
  - Any other role raises an error naming the roles that are supported.

* ``add_chat_template(tokenizer)`` attaches it (``save_pretrained`` then writes ``chat_template.jinja``).
* ``stream_generate`` is chapter 5's KV-cached generation loop as a Python generator: it yields each new token
  id as soon as it is sampled (same ids as ``generation.generate``).
* ``IncrementalDecoder`` turns those ids into text pieces whose concatenation is the decoded text, holding back
  a piece only while it ends in an incomplete UTF-8 character (byte-level BPE splits characters across tokens).
* ``stream_response`` combines the two and stops at the end-of-text token or when the model starts a new
  ``### `` section; ``chat`` is the interactive loop around it, with injectable ``input_fn``/``output_fn``.

Deliberately not here: multi-turn memory in ``chat`` (each turn is a fresh single-turn prompt, which is what the
model was trained on), batched generation, beam search and top-p (use ``model.generate()`` from ``transformers``,
which also accepts this template through ``apply_chat_template``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..generation import context_length, generate_stream
from ..kernels import use_fast_kernels
from ..tokenizer_protocol import end_of_text_id
from .instruction_data import ALPACA_PREAMBLE, RESPONSE_HEADER, format_input

__all__ = [
    "CHAT_TEMPLATE",
    "IncrementalDecoder",
    "add_chat_template",
    "build_prompt",
    "chat",
    "chat_with_model_dir",
    "load_model_and_tokenizer",
    "not_instruction_tuned_warning",
    "stream_generate",
    "stream_response",
]

# Where a response ends if the model does not emit end-of-text: it starts a new Alpaca section
# (the same cut that ``instruction_data.extract_response`` makes).
STOP_STRINGS: tuple[str, ...] = ("\n\n### ",)


def _jinja_string(text: str) -> str:
    """``text`` as a Jinja string literal (newlines written as ``\\n``)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


# Built from the same constants as ``format_input``, so the two cannot drift apart. Written with ``{%- -%}``
# everywhere: the template itself contributes no whitespace, only the quoted strings do.
CHAT_TEMPLATE: str = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- messages[0]['content'] -}}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{{- " + _jinja_string(ALPACA_PREAMBLE) + " -}}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '\\n\\n### Instruction:\\n' + message['content'] -}}"
    "{%- if message['input'] is defined and message['input'] -%}"
    "{{- '\\n\\n### Input:\\n' + message['input'] -}}"
    "{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- " + _jinja_string(RESPONSE_HEADER) + " + message['content'] + eos_token -}}"
    "{%- else -%}"
    "{{- raise_exception('the Alpaca chat template supports the roles system (first message only), user and "
    "assistant, got ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- " + _jinja_string(RESPONSE_HEADER) + " -}}"
    "{%- endif -%}"
)


def add_chat_template(tokenizer: Any, template: str = CHAT_TEMPLATE) -> Any:
    """Attach the Alpaca ``template`` to a Hugging Face tokenizer (in place) and return the tokenizer.

    ``tokenizer.save_pretrained(dir)`` then saves it (as ``chat_template.jinja``) and ``apply_chat_template``
    uses it. The tokenizer needs an ``eos_token``: assistant turns end with it, as training texts do.
    """
    if not hasattr(tokenizer, "apply_chat_template"):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a Hugging Face tokenizer (no apply_chat_template); load one with "
            "AutoTokenizer.from_pretrained(dir) or build it with ScratchGPTTokenizerFast.from_bpe(bpe)"
        )
    if getattr(tokenizer, "eos_token", None) is None:
        raise ValueError(
            "the tokenizer has no eos_token, which the chat template ends assistant turns with; set one, e.g. "
            "tokenizer.eos_token = '<|endoftext|>'"
        )
    tokenizer.chat_template = template
    return tokenizer


def build_prompt(tokenizer: Any, instruction: str, input_text: str = "") -> str:
    """The prompt for one instruction (and optional input): the chat template's, else ``format_input``'s.

    Both give ``format_input({"instruction": ..., "input": ...}) + "\\n\\n### Response:\\n"`` for our template;
    a tokenizer with a different template gets its own format.
    """
    if getattr(tokenizer, "chat_template", None):
        message: dict[str, str] = {"role": "user", "content": instruction}
        if input_text:
            message["input"] = input_text
        return tokenizer.apply_chat_template([message], add_generation_prompt=True, tokenize=False)
    return format_input({"instruction": instruction, "input": input_text}) + RESPONSE_HEADER


# --------------------------------------------------------------------------------------------------------
# Streaming generation and incremental decoding
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def stream_generate(
    model: nn.Module,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time: chapter 5's ``generate`` loop on a KV cache, for one prompt.

    The prompt is read once, then each step feeds only the newest token. Stops after ``max_new_tokens``, after
    yielding ``eos_id``, or when the context is full (the prompt is never cut to make room: a response must see
    its instruction). Greedy (``temperature=0``) gives the same ids as ``generation.generate``.
    """
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(1, -1)  # (1, T)
    if ids.shape[1] == 0:
        raise ValueError("the prompt is empty; give at least one token")
    context = context_length(model)
    if ids.shape[1] >= context:
        raise ValueError(
            f"the prompt is {ids.shape[1]} tokens but the model reads at most {context}, leaving no room for a "
            "response; shorten the instruction"
        )
    ids = ids.to(next(model.parameters()).device)
    max_new_tokens = min(max_new_tokens, context - ids.shape[1])  # never past the context: no cropping
    for next_id in generate_stream(
        model, ids, max_new_tokens, None, temperature, top_k, eos_id, True, generator
    ):
        yield int(next_id)  # (1, 1) -> int


class IncrementalDecoder:
    """Decode a growing list of token ids into text pieces as the ids arrive.

    ``push(id)`` returns the text that became certain with this token (often ``""``): the decoded text is held
    back while it ends in ``U+FFFD``, the mark of an incomplete UTF-8 character whose remaining bytes come in
    later tokens. ``flush()`` returns whatever is left. The pieces always concatenate to ``decode(all ids)``.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    @property
    def text(self) -> str:
        """The full decoded text of the ids so far."""
        return self.tokenizer.decode(self.ids)

    def push(self, token_id: int) -> str:
        """Add one id; return the newly certain text."""
        self.ids.append(int(token_id))
        text = self.text
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""  # wait for the rest of the character
        piece, self.emitted = text[len(self.emitted) :], text
        return piece

    def flush(self) -> str:
        """Return the rest of the text (possibly ending in an incomplete character)."""
        text = self.text
        piece = text[len(self.emitted) :] if text.startswith(self.emitted) else ""
        self.emitted = text
        return piece


def _held_back(text: str, stop_strings: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string (not safe to show yet)."""
    longest = 0
    for stop in stop_strings:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
                break
    return longest


def stream_response(
    model: nn.Module,
    tokenizer: Any,
    prompt: str,
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int | None = None,
    stop_strings: Sequence[str] = STOP_STRINGS,
    generator: torch.Generator | None = None,
) -> Iterator[str]:
    """Yield the model's response to ``prompt`` as text pieces, while it is being generated.

    Generation stops at the tokenizer's end-of-text token (not shown) or at the first of ``stop_strings`` (not
    shown either). Text that might be the beginning of a stop string is held back until it is clear. The
    pieces concatenate to the decoded new tokens, cut at the end-of-text token or stop string.
    """
    prompt_ids = tokenizer.encode(prompt)
    eos_id = end_of_text_id(tokenizer)
    decoder = IncrementalDecoder(tokenizer)
    shown = 0  # characters of decoder.emitted already yielded
    for token in stream_generate(model, prompt_ids, max_new_tokens, temperature, top_k, eos_id, generator):
        if token == eos_id:
            break
        decoder.push(token)
        text = decoder.emitted
        cut = min((text.find(s) for s in stop_strings if s in text), default=-1)
        if cut >= 0:  # the model started a new section: the response ends here
            if cut > shown:
                yield text[shown:cut]
            return
        safe = len(text) - _held_back(text, stop_strings)
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    text = decoder.emitted + decoder.flush()
    cut = min((text.find(s) for s in stop_strings if s in text), default=len(text))
    if cut > shown:
        yield text[shown:cut]


# --------------------------------------------------------------------------------------------------------
# The interactive loop
# --------------------------------------------------------------------------------------------------------

QUIT_COMMANDS = ("/quit", "/exit")
HELP_TEXT = (
    "Type an instruction and press Enter; the answer streams in as it is generated.\n"
    "  /input TEXT   attach TEXT as the input (### Input:) of the next instruction\n"
    "  /quit         leave (so do /exit, Ctrl-D and Ctrl-C)"
)
GREETING = "Chat: type an instruction and press Enter; /help shows the commands, /quit leaves."
EMPTY_ANSWER = (
    "(no answer: the model ended its response at once. A model that was not instruction-tuned often does; "
    "try another instruction, or sampling with --temperature 0.7 --top-k 40)"
)


def not_instruction_tuned_warning(model_dir: str | os.PathLike[str]) -> str:
    """The warning ``chat`` opens with for a model folder without a chat template."""
    return (
        f"warning: {model_dir} has no chat template, so it was not instruction-tuned with finetune-instruct; "
        "it continues text rather than answering, and its answers may be empty or off. Instruction-tune it first: "
        f"scratch-gpt finetune-instruct --model {model_dir} --data instruction-data.json --output DIR"
    )


def chat(
    model: nn.Module,
    tokenizer: Any,
    *,
    input_fn: Callable[[str], str] = input,
    output_fn: Callable[..., Any] = print,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int | None = None,
    prompt_marker: str = ">>> ",
    seed: int | None = None,
    greeting: str | None = GREETING,
    notice: str | None = None,
) -> list[Mapping[str, str]]:
    """Chat with an instruction-tuned model in a loop, streaming each answer token by token.

    Reads a line with ``input_fn(prompt_marker)``; ``/quit``, ``/exit``, end of input (``EOFError``) or Ctrl-C
    end the loop, ``/input TEXT`` sets the input of the next instruction, an empty line is ignored. Each answer
    is written as it arrives with ``output_fn(piece, end="", flush=True)``, then ``output_fn("")`` ends the line
    (the signature of ``print``, which is the default). Every turn is a new single-turn prompt
    (``build_prompt``), since the book's model is fine-tuned on single instructions. ``notice`` (a warning)
    and ``greeting`` (which names ``/help``) are written first; an empty answer gets a note saying so.

    Returns the turns as ``{"instruction", "input", "response"}`` dicts (handy in tests and notebooks).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens}")
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device)
    if seed is not None:
        generator.manual_seed(seed)
    turns: list[Mapping[str, str]] = []
    pending_input = ""
    for line in (notice, greeting):
        if line:
            output_fn(line)
    while True:
        try:
            line = input_fn(prompt_marker)
        except (EOFError, KeyboardInterrupt):
            output_fn("")
            break
        command = line.strip()
        if command in QUIT_COMMANDS:
            break
        if not command:
            continue
        if command in ("/help", "/?"):
            output_fn(HELP_TEXT)
            continue
        if command.startswith("/input"):
            pending_input = command[len("/input") :].strip()
            output_fn(f"(input for the next instruction: {pending_input!r})")
            continue
        prompt = build_prompt(tokenizer, line, pending_input)
        pieces: list[str] = []
        try:
            for piece in stream_response(
                model,
                tokenizer,
                prompt,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                generator=generator,
            ):
                pieces.append(piece)
                output_fn(piece, end="", flush=True)
        except KeyboardInterrupt:  # stop this answer, keep chatting
            pieces.append(" [interrupted]")
            output_fn(pieces[-1], end="", flush=True)
        except ValueError as err:  # e.g. an instruction longer than the context
            output_fn(f"(error: {err})")
            continue
        output_fn("")
        if not "".join(pieces).strip():
            output_fn(EMPTY_ANSWER)
        turns.append({"instruction": line, "input": pending_input, "response": "".join(pieces)})
        pending_input = ""
    return turns


# --------------------------------------------------------------------------------------------------------
# Loading a checkpoint folder (what `scratch-gpt chat --model DIR` and `finetune-instruct` start from)
# --------------------------------------------------------------------------------------------------------


def load_model_and_tokenizer(
    model_dir: str | os.PathLike[str], *, device: str | torch.device | None = None, **model_kwargs: Any
) -> tuple[nn.Module, Any]:
    """Load a causal LM and its tokenizer from a checkpoint folder (``save_pretrained`` output).

    ``model_kwargs`` go to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``dropout=0.0`` overrides the config).
    Raises FileNotFoundError naming what is missing (the folder, ``config.json``, the tokenizer files) and
    ValueError when the tokenizer has ids the model's embedding does not.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import scratch_gpt  # noqa: F401  (registers model_type "scratch_gpt" with the Auto classes)

    from ..hub.loading import check_checkpoint_config, check_tokenizer_files, load_checked

    path = Path(model_dir)
    check_checkpoint_config(path)  # CheckpointLoadError: one line naming the file and the fix
    check_tokenizer_files(path)
    model = load_checked(AutoModelForCausalLM, path, **model_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    vocab_size = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer in {str(path)!r} has {len(tokenizer)} tokens but the model only {vocab_size} embeddings; "
            "save the tokenizer the model was trained with (build models with vocab_size=len(tokenizer))"
        )
    if device is not None:
        model.to(device)
    return model, tokenizer


def chat_with_model_dir(model_dir: str | os.PathLike[str], **chat_kwargs: Any) -> list[Mapping[str, str]]:
    """``load_model_and_tokenizer(model_dir)`` then ``chat(model, tokenizer, **chat_kwargs)``.

    On a CPU the model's linear layers run on ``scratch_gpt.kernels``' faster product (``use_fast_kernels``).

    A tokenizer without a chat template was not instruction-tuned by ``finetune-instruct`` (which saves one):
    the chat opens with a warning saying so (``not_instruction_tuned_warning``), and the tokenizer gets
    ``CHAT_TEMPLATE`` in memory only (nothing is written).
    """
    device = chat_kwargs.pop("device", None)
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device)
    if model.device.type == "cpu":
        use_fast_kernels(model)  # the same math on the faster CPU product (scratch_gpt.kernels)
    if not getattr(tokenizer, "chat_template", None):
        chat_kwargs.setdefault("notice", not_instruction_tuned_warning(model_dir))
        add_chat_template(tokenizer)
    return chat(model, tokenizer, **chat_kwargs)
