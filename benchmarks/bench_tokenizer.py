"""Benchmark the from-scratch BPE tokenizer against its peers (Rust ``tokenizers``, tiktoken): training and encoding speed.

    python benchmarks/bench_tokenizer.py            # everything (a few minutes on 2 cores)
    python benchmarks/bench_tokenizer.py --quick    # tinyshakespeare only, fewer vocab sizes (< 1 minute)

Training: ``BPETokenizer.train`` against the ``tokenizers`` library's Rust ``BpeTrainer`` (ByteLevel, GPT-2's
split, one thread via ``RAYON_NUM_THREADS=1``) on tinyshakespeare (1.1 MB) and ~10 MB of the Python standard
library's sources, at vocab 512 / 4096 / 32768, and against a naive trainer that recounts every pair for
every merge (written here, with our tie-breaking, so its merges must equal ours) at a small vocab.

Encoding: GPT-2's vocabulary, our pure-Python encoder against tiktoken (one thread) and ``tokenizers``, on the
same texts; the ids of all three are checked equal before any speed is reported. "cold" is the first call
of a freshly loaded tokenizer (its chunk cache empty), "warm" a later call.

Each measurement runs in its own subprocess (``--worker ...``) so no library warms another's caches. Times
are the best of ``--repeats`` runs; CPU seconds are reported next to wall seconds because a busy machine
inflates wall time. Data: ``SCRATCH_GPT_DATA`` (default ``../shared/data``, relative to the repository).
"""

from __future__ import annotations

import argparse
import array
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))
STDLIB_BYTES = 10_000_000
# tiktoken's own spelling of GPT-2's split pattern (r50k_base), for the tiktoken encoder.
TIKTOKEN_R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


# ------------------------------------------------------------------------------------------------------
# Corpora
# ------------------------------------------------------------------------------------------------------


def stdlib_corpus(limit_bytes: int = STDLIB_BYTES) -> str:
    """The standard library's .py files (site-packages excluded), sorted by path, concatenated up to the limit."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts)
    parts, size = [], 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        n = len(text.encode("utf-8"))
        if size + n > limit_bytes:
            break
        parts.append(text)
        size += n
    return "".join(parts)


def write_corpora(folder: Path, quick: bool) -> dict[str, Path]:
    shakespeare = DATA_DIR / "tinyshakespeare.txt"
    if not shakespeare.is_file():
        sys.exit(f"tinyshakespeare.txt not found in {DATA_DIR}: set SCRATCH_GPT_DATA to the data folder")
    text = shakespeare.read_text(encoding="utf-8")
    corpora = {
        "tinyshakespeare": folder / "tinyshakespeare.txt",
        "shakespeare-100k": folder / "shakespeare-100k.txt",
    }
    corpora["tinyshakespeare"].write_text(text, encoding="utf-8")
    corpora["shakespeare-100k"].write_text(text[:100_000], encoding="utf-8")
    if not quick:
        corpora["stdlib-10MB"] = folder / "stdlib.txt"
        corpora["stdlib-10MB"].write_text(stdlib_corpus(), encoding="utf-8")
    return corpora


# ------------------------------------------------------------------------------------------------------
# Workers (each runs in its own process)
# ------------------------------------------------------------------------------------------------------


def naive_train(text: str, vocab_size: int) -> dict[tuple[int, int], int]:
    """The textbook trainer: every merge recounts every pair in every chunk (our tie-breaking rule)."""
    from scratch_gpt.byte_level import GPT2_PATTERN, compile_pattern

    chunks = [list(chunk.encode("utf-8")) for chunk in compile_pattern(GPT2_PATTERN).findall(text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = {}
    for new_id in range(256, vocab_size):
        counts = Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], vocab[pair[0]], vocab[pair[1]]))
        merges[best] = new_id
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        for index, ids in enumerate(chunks):
            if len(ids) < 2:
                continue
            merged, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == best[0] and ids[i + 1] == best[1]:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            chunks[index] = merged
    return merges


def _timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def worker_train(library: str, corpus: Path, vocab_size: int) -> dict:
    text = corpus.read_text(encoding="utf-8")
    if library == "ours":
        from scratch_gpt.bpe import BPETokenizer

        tokenizer, wall, cpu = _timed(lambda: BPETokenizer.train(text, vocab_size, show_progress=False))
        merges = list(tokenizer.merges.items())
        return {"wall": wall, "cpu": cpu, "vocab": tokenizer.vocab_size, "merges": _digest(merges)}
    if library == "naive":
        merges, wall, cpu = _timed(lambda: naive_train(text, vocab_size - 1))  # -1: ours adds <|endoftext|>
        return {
            "wall": wall,
            "cpu": cpu,
            "vocab": 256 + len(merges) + 1,
            "merges": _digest(list(merges.items())),
        }
    if library == "tokenizers":
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=["<|endoftext|>"],
        )
        _, wall, cpu = _timed(lambda: tokenizer.train_from_iterator([text], trainer=trainer))
        return {"wall": wall, "cpu": cpu, "vocab": tokenizer.get_vocab_size(), "merges": ""}
    raise ValueError(f"unknown library {library!r}")


def worker_encode(library: str, corpus: Path, repeats: int) -> dict:
    text = corpus.read_text(encoding="utf-8")
    encoder_json, vocab_bpe = DATA_DIR / "encoder.json", DATA_DIR / "vocab.bpe"
    if library == "ours":
        from scratch_gpt.bpe import BPETokenizer

        tokenizer = BPETokenizer.from_gpt2_files(encoder_json, vocab_bpe)
        encode = tokenizer.encode_ordinary
    elif library == "tiktoken":
        import tiktoken
        import tiktoken.load

        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json)
        )
        encoding = tiktoken.Encoding(
            name="gpt2_local", pat_str=TIKTOKEN_R50K_PATTERN, mergeable_ranks=ranks, special_tokens={}
        )
        encode = encoding.encode_ordinary
    elif library == "tokenizers":
        from tokenizers import Tokenizer, models, pre_tokenizers

        tokenizer = Tokenizer(models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text).ids

    else:
        raise ValueError(f"unknown library {library!r}")
    ids, cold_wall, cold_cpu = _timed(lambda: encode(text))
    warm = [_timed(lambda: encode(text))[1:] for _ in range(repeats)]
    return {
        "cold_wall": cold_wall,
        "cold_cpu": cold_cpu,
        "warm_wall": min(w for w, _ in warm),
        "warm_cpu": min(c for _, c in warm),
        "n_tokens": len(ids),
        "ids": _digest(ids),
        "mb": len(text.encode("utf-8")) / 1e6,
    }


def _digest(values: list) -> str:
    if values and isinstance(values[0], int):
        return hashlib.sha256(array.array("q", values).tobytes()).hexdigest()[:16]
    return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------------


def run_worker(*args: str) -> dict:
    """Run one measurement in a fresh process (Rust limited to one thread) and return its JSON result."""
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"worker {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(repeats: int, *args: str) -> dict:
    runs = [run_worker(*args) for _ in range(repeats)]
    return min(runs, key=lambda run: run["cpu"]) | {"wall": min(run["wall"] for run in runs)}


def bench_training(corpora: dict[str, Path], quick: bool, repeats: int) -> None:
    """Print the training table (markdown), row by row, then the vocab growth and the naive comparison."""
    print(
        "| corpus | vocab | ours wall (s) | ours CPU (s) | Rust wall (s) | Rust CPU (s) | ours / Rust (CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    ours_cpu: dict[tuple[str, int], float] = {}
    names = ["tinyshakespeare"] + ([] if quick else ["stdlib-10MB"])
    sizes = [4096] if quick else [512, 4096, 32768]
    for name in names:
        for vocab_size in sizes:
            ours = best_of(repeats, "train", "ours", str(corpora[name]), str(vocab_size))
            rust = best_of(repeats, "train", "tokenizers", str(corpora[name]), str(vocab_size))
            ours_cpu[(name, vocab_size)] = ours["cpu"]
            reached = "" if ours["vocab"] == vocab_size else f" (ours reached {ours['vocab']:,})"
            print(
                f"| {name} | {vocab_size:,}{reached} | {ours['wall']:.2f} | {ours['cpu']:.2f} | {rust['wall']:.2f} "
                f"| {rust['cpu']:.2f} | {ours['cpu'] / rust['cpu']:.2f}x |",
                flush=True,
            )
    print()
    for name in names:
        if (name, 32768) in ours_cpu:
            growth = ours_cpu[(name, 32768)] / ours_cpu[(name, 4096)]
            print(f"Ours, {name}: vocab 4,096 -> 32,768 costs {growth:.2f}x the CPU time.")

    naive_vocab = 320 if quick else 512
    ours = best_of(repeats, "train", "ours", str(corpora["shakespeare-100k"]), str(naive_vocab))
    naive = run_worker("train", "naive", str(corpora["shakespeare-100k"]), str(naive_vocab))
    same = "identical merges" if ours["merges"] == naive["merges"] else "MERGES DIFFER"
    print(
        f"Naive recount-every-pair trainer, first 100 KB of tinyshakespeare, vocab {naive_vocab}: "
        f"{naive['cpu']:.2f} s CPU vs ours {ours['cpu']:.3f} s = {naive['cpu'] / ours['cpu']:.0f}x ({same}).",
        flush=True,
    )
    if same != "identical merges":
        sys.exit("the naive trainer and ours disagree: a bug")


def bench_encoding(corpora: dict[str, Path], quick: bool, repeats: int) -> None:
    """Print the encoding table (markdown, MB/s from CPU time), after checking all ids are equal."""
    print(
        "| text | MB | tokens | ours cold | ours warm | tiktoken | tokenizers | ours cold / tiktoken "
        "| ours warm / tiktoken |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = ["tinyshakespeare"] + ([] if quick else ["stdlib-10MB"])
    for name in names:
        results = {}
        for library in ("ours", "tiktoken", "tokenizers"):
            runs = [run_worker("encode", library, str(corpora[name]), "1") for _ in range(repeats)]
            results[library] = {key: min(run[key] for run in runs) for key in ("cold_cpu", "warm_cpu")}
            results[library] |= {key: runs[0][key] for key in ("ids", "n_tokens", "mb")}
        digests = {library: result["ids"] for library, result in results.items()}
        if len(set(digests.values())) != 1:
            sys.exit(f"ids differ on {name}: {digests}")
        ours, mb = results["ours"], results["ours"]["mb"]
        # The peers' best call, cold or warm (tiktoken keeps no cache between calls; tokenizers a small one).
        tiktoken_s = min(results["tiktoken"]["cold_cpu"], results["tiktoken"]["warm_cpu"])
        rust_s = min(results["tokenizers"]["cold_cpu"], results["tokenizers"]["warm_cpu"])
        print(
            f"| {name} | {mb:.2f} | {ours['n_tokens']:,} | {mb / ours['cold_cpu']:.2f} MB/s "
            f"| {mb / ours['warm_cpu']:.2f} MB/s | {mb / tiktoken_s:.2f} MB/s | {mb / rust_s:.2f} MB/s "
            f"| {tiktoken_s / ours['cold_cpu']:.2f}x | {tiktoken_s / ours['warm_cpu']:.2f}x |",
            flush=True,
        )
    print("\nThe ids of all three were checked equal before timing (sha256 of the id sequence).")


def machine_description() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = []
    for module in ("regex", "tiktoken", "tokenizers"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} (not installed)")
    return (
        f"{datetime.date.today()}, {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        + ", ".join(versions)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tinyshakespeare only, vocab 4096 (< 1 minute)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, library, corpus, number = args.worker
        if kind == "train":
            print(json.dumps(worker_train(library, Path(corpus), int(number))))
        else:
            print(json.dumps(worker_encode(library, Path(corpus), int(number))))
        return

    print(machine_description(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        corpora = write_corpora(Path(folder), args.quick)
        print("\n## Training\n", flush=True)
        bench_training(corpora, args.quick, args.repeats)
        print("\n## Encoding (GPT-2 vocabulary)\n", flush=True)
        bench_encoding(corpora, args.quick, args.repeats)


if __name__ == "__main__":
    main()
