"""Bad inputs through the ``scratch-gpt`` command line, one table (docs/reliability.md).

Each case builds its files in a fresh folder, runs one command in-process and asserts four things: the exit status,
exactly one ``scratch-gpt <command>: error: ...`` line that names the problem (a regular expression), no traceback,
and that every file that existed before the command is byte-identical after it. Layers: tokenizer, config,
checkpoint loading, generation, data, training, fine-tuning and the CLI's own argument checks.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR

from scratch_gpt.cli import main
from scratch_gpt.training.run_folder import claim_run_folder

LOAD = 2  # the exit status of a failed load and of an argparse error
ERROR = 1  # the exit status of any other refused input


# ------------------------------------------------------------------------------------------------ the workspace

HAM = [
    "see you at {} tomorrow",
    "call me when you get home",
    "ok lar joking wif u",
    "are we still on for lunch",
]
SPAM = [
    "free entry to win {} now",
    "claim your prize text win",
    "urgent call now to claim cash",
    "win a free phone",
]
TEXT = ("the cat sat on the mat and the dog ran far away. " * 40).strip()


def _make_lm(directory: Path, n_positions: int = 32) -> None:
    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTTokenizerFast

    bpe = BPETokenizer.train(TEXT + " ".join(HAM + SPAM), 280, special_tokens=("<|endoftext|>", "<|pad|>"))
    tokenizer = ScratchGPTTokenizerFast.from_bpe(bpe, model_max_length=n_positions)
    torch.manual_seed(0)
    config = ScratchGPTConfig(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    ScratchGPTForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Files every case may use (copied into each case's own folder)."""
    root = tmp_path_factory.mktemp("bad_inputs_base")
    _make_lm(root / "lm")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    lines = [f"ham\t{t.format(i)}" for i in range(12) for t in HAM[:2]] + [
        f"spam\t{t.format(i)}" for i in range(8) for t in SPAM[:2]
    ]
    (root / "sms.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = [
        {"instruction": f"Repeat the word {i}.", "input": "", "output": f"word {i}"} for i in range(30)
    ]
    (root / "instructions.json").write_text(json.dumps(records), encoding="utf-8")
    with claim_run_folder(root / "pretrain_run", "pretrain", command="pretrain"):
        (root / "pretrain_run" / "model.safetensors").write_bytes(b"weights of a pretraining run")
    with claim_run_folder(root / "classifier_run", "classifier", command="finetune-classifier"):
        (root / "classifier_run" / "results.json").write_text("{}")
    return root


# ------------------------------------------------------------------------------------------------ setups


def edit_config(folder: str, **changes) -> Callable[[Path], None]:
    """Change (value) or drop (None) keys of ``<folder>/config.json``."""

    def setup(ws: Path) -> None:
        path = ws / folder / "config.json"
        config = json.loads(path.read_text())
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        path.write_text(json.dumps(config))

    return setup


def rename_config_key(old: str, new: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / "lm" / "config.json"
        config = json.loads(path.read_text())
        config[new] = config.pop(old)
        path.write_text(json.dumps(config))

    return setup


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    return setup


def truncate(name: str, keep: int) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        (ws / name).write_bytes((ws / name).read_bytes()[:keep])

    return setup


def remove(name: str) -> Callable[[Path], None]:
    return lambda ws: (ws / name).unlink()


def gpt2_files(merges: int | None = None) -> Callable[[Path], None]:
    """GPT-2's encoder.json + vocab.bpe in ``gpt2tok/`` (the first ``merges`` merges only, if given)."""

    def setup(ws: Path) -> None:
        if not (DATA_DIR / "vocab.bpe").is_file():
            pytest.skip(f"GPT-2 tokenizer files not found in {DATA_DIR}")
        (ws / "gpt2tok").mkdir()
        shutil.copyfile(DATA_DIR / "encoder.json", ws / "gpt2tok" / "encoder.json")
        lines = (DATA_DIR / "vocab.bpe").read_text(encoding="utf-8").splitlines()
        kept = lines if merges is None else lines[: merges + 1]
        (ws / "gpt2tok" / "vocab.bpe").write_text("\n".join(kept) + "\n", encoding="utf-8")

    return setup


def pickle_bomb(ws: Path) -> None:
    """A pytorch_model.bin whose pickle would create ``PWNED`` if it were ever unpickled unsafely."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ws / "PWNED",))

    (ws / "lm" / "model.safetensors").unlink()
    with open(ws / "lm" / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"weights": Payload()}, fh)


def wrong_shapes(ws: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(ws / "lm" / "model.safetensors")
    name = next(k for k in weights if k.endswith("attn.W_query.weight") or "W_query" in k)
    weights[name] = torch.zeros(3, 3)
    save_file(weights, ws / "lm" / "model.safetensors", metadata={"format": "pt"})


def tiny_run(ws: Path) -> None:
    assert main(["pretrain", str(ws / "corpus.txt"), "-o", str(ws / "run"), *TINY, "--max-steps", "1"]) == 0


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for s in setups:
            s(ws)

    return setup


TINY = ["--vocab-size", "270", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--context-length", "8",
        "--batch-size", "2", "--eval-batches", "1", "--save-interval", "1", "--no-progress"]  # fmt: skip


def pretrain(*extra: str, out: str = "run", corpus: str = "corpus.txt") -> list[str]:
    return ["pretrain", f"{{ws}}/{corpus}", "-o", f"{{ws}}/{out}", *TINY, "--max-steps", "1", *extra]


def generate(*extra: str, model: str = "lm") -> list[str]:
    return ["generate", "the cat", "-m", f"{{ws}}/{model}", "--max-new-tokens", "2", *extra]


def classifier(*extra: str, out: str = "clf") -> list[str]:
    return ["finetune-classifier", "-m", "{ws}/lm", "--data", "{ws}/sms.tsv", "-o", f"{{ws}}/{out}",
            "--max-steps", "1", "--batch-size", "2", "--quiet", *extra]  # fmt: skip


def instruct(*extra: str, out: str = "sft", data: str = "instructions.json") -> list[str]:
    return ["finetune-instruct", "-m", "{ws}/lm", "--data", f"{{ws}}/{data}", "-o", f"{{ws}}/{out}",
            "--max-steps", "1", "--batch-size", "2", "--num-test", "1", "--max-new-tokens", "2", "--quiet",
            *extra]  # fmt: skip


@dataclass
class Case:
    id: str
    argv: list[str]
    status: int
    message: str  # a regular expression the one error line must match
    setup: Callable[[Path], None] | None = None


SURROGATE_JSONL = '{"text": "fine"}\n{"text": "broken \\ud800 here"}\n'
SURROGATE_RECORDS = '{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "c", "input": "", "output": "d \\udc00"}\n'

CASES = [
    # ---- tokenizer
    Case(
        "train-tokenizer into a model folder",
        ["train-tokenizer", "{ws}/corpus.txt", "--vocab-size", "270", "--output", "{ws}/lm"],
        ERROR,
        r"lm already holds files no scratch-gpt run of this kind wrote.*--overwrite",
    ),  # fmt: skip
    Case(
        "train-tokenizer into a pretraining run",
        ["train-tokenizer", "{ws}/corpus.txt", "--vocab-size", "270", "--output", "{ws}/pretrain_run"],
        ERROR,
        r"already holds a 'pretrain' run's output",
    ),  # fmt: skip
    Case(
        "train-tokenizer vocab below 256",
        ["train-tokenizer", "{ws}/corpus.txt", "--vocab-size", "100", "--output", "{ws}/tok"],
        ERROR,
        r"vocab_size",
    ),  # fmt: skip
    Case(
        "train-tokenizer missing file",
        ["train-tokenizer", "{ws}/nope.txt", "--vocab-size", "270", "--output", "{ws}/tok"],
        ERROR,
        r"nope\.txt",
    ),  # fmt: skip
    Case(
        "train-tokenizer bad regex",
        [
            "train-tokenizer",
            "{ws}/corpus.txt",
            "--vocab-size",
            "270",
            "--pattern",
            "(",
            "--output",
            "{ws}/tok",
        ],
        ERROR,
        r"pattern",
    ),  # fmt: skip
    Case(
        "encode with a truncated vocab.bpe",
        ["encode", "hello", "--tokenizer", "{ws}/gpt2tok"],
        ERROR,
        r"encoder\.json.*neither bytes nor made by a merge of .*vocab\.bpe.*truncated",
        gpt2_files(merges=1000),
    ),
    Case(
        "encode with a missing tokenizer folder", ["encode", "hi", "--tokenizer", "{ws}/none"], ERROR, r"none"
    ),
    # ---- config and checkpoint loading (generate)
    Case(
        "config.json not JSON",
        generate(),
        LOAD,
        r"config\.json is not valid JSON",
        write("lm/config.json", "{no"),
    ),
    Case(
        "model.safetensors missing",
        generate(),
        LOAD,
        r"lm.*no weights .*model\.safetensors",
        remove("lm/model.safetensors"),
    ),
    Case(
        "model.safetensors truncated",
        generate(),
        LOAD,
        r"model\.safetensors.*(truncated|corrupt)",
        truncate("lm/model.safetensors", 300),
    ),
    Case(
        "misspelt config key",
        generate(),
        LOAD,
        r"unknown key 'n_layers'.*did you mean 'n_layer'",
        rename_config_key("n_layer", "n_layers"),
    ),
    Case(
        "foreign model_type",
        generate(),
        LOAD,
        r"model_type 'bert'.*expected 'scratch_gpt'",
        edit_config("lm", model_type="bert"),
    ),
    Case(
        "missing model_type",
        generate(),
        LOAD,
        r"config\.json has no model_type.*'scratch_gpt'",
        edit_config("lm", model_type=None),
    ),
    Case("weights of the wrong shape", generate(), LOAD, r"model\.safetensors.*shape", wrong_shapes),
    Case(
        "pickle instead of safetensors",
        generate(),
        LOAD,
        r"pytorch_model\.bin.*(weights_only|refused)",
        pickle_bomb,
    ),
    Case(
        "absurd sizes in config.json",
        generate(),
        LOAD,
        r"model\.safetensors holds weights of the wrong shape",
        edit_config("lm", n_embd=2**22, n_inner=2**22),
    ),
    Case(
        "absurd model size",
        pretrain("--n-embd", str(2**40), "--n-head", "2"),
        ERROR,
        r"out of memory \(.*allocate.*\); the sizes are too large",
    ),
    Case("model folder missing", generate(model="gone"), LOAD, r"gone does not exist"),
    # ---- generation arguments
    Case(
        "temperature nan", generate("--temperature", "nan"), LOAD, r"--temperature: must be a finite number"
    ),
    Case(
        "temperature inf", generate("--temperature", "inf"), LOAD, r"--temperature: must be a finite number"
    ),
    Case(
        "max-new-tokens -3", generate("--max-new-tokens", "-3"), ERROR, r"max_new_tokens must be at least 1"
    ),
    Case("top-p 0", generate("--temperature", "1", "--top-p", "0"), ERROR, r"top_p must be in \(0, 1\]"),
    Case(
        "top-k without sampling", generate("--top-k", "3"), ERROR, r"top_k / top_p only apply when sampling"
    ),
    Case("num-beams 0", generate("--num-beams", "0"), ERROR, r"num_beams must be at least 1"),
    Case(
        "chat temperature nan",
        ["chat", "-m", "{ws}/lm", "--temperature", "nan"],
        LOAD,
        r"--temperature: must be a finite number",
    ),
    # ---- data
    Case("stride 0", pretrain("--stride", "0"), ERROR, r"stride must be a positive integer"),
    Case(
        "context length 0",
        pretrain("--context-length", "0"),
        ERROR,
        r"context_length must be a positive integer",
    ),
    Case("val fraction 1.5", pretrain("--val-fraction", "1.5"), ERROR, r"val_fraction"),
    Case("missing corpus", pretrain(corpus="missing.txt"), ERROR, r"missing\.txt does not exist"),
    Case(
        "JSONL lone surrogate",
        pretrain(corpus="c.jsonl"),
        ERROR,
        r"c\.jsonl line 2: field 'text' holds a lone surrogate",
        write("c.jsonl", SURROGATE_JSONL),
    ),
    Case(
        "JSONL without the text field",
        pretrain(corpus="c.jsonl"),
        ERROR,
        r"c\.jsonl line 1: no 'text' field",
        write("c.jsonl", '{"body": "x"}\n'),
    ),
    Case(
        "tokenizer with a truncated vocab.bpe",
        pretrain("--tokenizer", "{ws}/gpt2tok"),
        ERROR,
        r"neither bytes nor made by a merge",
        gpt2_files(merges=500),
    ),
    # ---- training
    Case("lr inf", pretrain("--lr", "inf"), LOAD, r"--lr: must be a finite number"),
    Case(
        "weight decay nan",
        pretrain("--weight-decay", "nan"),
        LOAD,
        r"--weight-decay: must be a finite number",
    ),
    Case("grad clip nan", pretrain("--grad-clip", "nan"), LOAD, r"--grad-clip: must be a finite number"),
    Case("dropout nan", pretrain("--dropout", "nan"), LOAD, r"--dropout: must be a finite number"),
    Case(
        "an exploding learning rate",
        pretrain("--lr", "1e30", "--min-lr", "1e30", "--max-steps", "4", "--grad-clip", "0"),
        ERROR,
        r"training stopped at step \d: the loss is nan",
    ),  # fmt: skip
    Case("pretrain into a folder of other files", pretrain(out="lm"), ERROR, r"lm already holds files"),
    Case(
        "pretrain into a classifier",
        pretrain(out="classifier_run"),
        ERROR,
        r"already holds a 'classifier' run's output \(finetune-classifier\)",
    ),
    Case(
        "pretrain into a file", pretrain(out="corpus.txt"), ERROR, r"corpus\.txt exists and is not a folder"
    ),
    Case(
        "resume without checkpoints",
        pretrain("--resume", out="new"),
        ERROR,
        r"nothing to resume: .*new/checkpoints holds no checkpoint",
    ),
    Case(
        "resume with a changed learning rate",
        pretrain("--resume", "--max-steps", "2", "--lr", "1e-3"),
        ERROR,
        r"changed settings \(learning_rate: checkpoint 0\.0004, now 0\.001\)",
        tiny_run,
    ),
    # ---- fine-tuning
    Case("classifier lr nan", classifier("--lr", "nan"), LOAD, r"--lr: must be a finite number"),
    Case("classifier epochs 0", classifier("--epochs", "0"), ERROR, r"epochs must be a positive integer"),
    Case(
        "classifier into a pretraining run",
        classifier(out="pretrain_run"),
        ERROR,
        r"already holds a 'pretrain' run's output",
    ),
    Case("classifier data missing", classifier() + ["--data", "{ws}/none.tsv"], ERROR, r"none\.tsv"),
    Case(
        "instruct into a pretraining run",
        instruct(out="pretrain_run"),
        ERROR,
        r"already holds a 'pretrain' run's output",
    ),
    Case(
        "instruct batch size 0",
        instruct("--batch-size", "0"),
        ERROR,
        r"batch_size must be a positive integer",
    ),
    Case(
        "instruct lone surrogate",
        instruct(data="r.jsonl"),
        ERROR,
        r"r\.jsonl: line 2: key 'output' holds a lone surrogate",
        write("r.jsonl", SURROGATE_RECORDS),
    ),
    Case(
        "instruct where no response fits",
        instruct(),
        ERROR,
        r"no training record keeps a response token within the context length of 32 tokens",
    ),
    # ---- convert
    Case(
        "convert into a pretraining run",
        ["convert", "--to-gpt2", "{ws}/lm", "-o", "{ws}/pretrain_run"],
        ERROR,
        r"already holds a 'pretrain' run's output",
    ),
    Case("convert a missing folder", ["convert", "--to-gpt2", "{ws}/gone", "-o", "{ws}/out"], LOAD, r"gone"),
    Case(
        "convert a GPT-2 folder to GPT-2",
        ["convert", "--to-gpt2", "{ws}/lm", "-o", "{ws}/out"],
        ERROR,
        r"'gpt2' checkpoint, not a scratch_gpt one",
        edit_config("lm", model_type="gpt2"),
    ),
]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    if case.setup is not None:
        case.setup(ws)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # chat/remote-code prompts must never wait for input
    before = _files(ws)
    capsys.readouterr()
    argv = [a.replace("{ws}", str(ws)) for a in case.argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if re.match(r"scratch-gpt[ \w-]*: error: ", line)]
    assert len(error_lines) == 1, err
    assert re.search(case.message, error_lines[0]), error_lines[0]
    assert status == case.status, (status, error_lines[0])
    after = _files(ws)
    assert {name: after.get(name) for name in before} == before  # nothing that existed was touched
    assert not (ws / "PWNED").exists()  # no pickle payload ran
