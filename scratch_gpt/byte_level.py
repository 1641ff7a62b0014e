"""Byte-level helpers for BPE: the split patterns, GPT-2's bytes <-> printable-unicode table, its file format.

Book chapter 2 (and its bonus BPE-from-scratch notebook): GPT-2 tokenizes *bytes*, not characters, so the 256
byte values form the base vocabulary and no text is ever out of vocabulary. Before BPE runs, a regular
expression (the "split pattern") cuts the text into chunks (words with their leading space, numbers,
punctuation runs, whitespace); merges never cross a chunk boundary.

Files written in GPT-2's format (``encoder.json``/``vocab.json``, ``vocab.bpe``/``merges.txt``) cannot hold raw
bytes such as ``b" "`` or ``b"\\x00"``, so GPT-2 maps every byte to a printable unicode character: printable
Latin-1 bytes stand for themselves and the rest are shifted to code points from 256 up (a space becomes ``"Ġ"``,
a newline ``"Ċ"``). ``token_to_bytes`` and ``bytes_to_token`` convert between the two forms, and
``read_gpt2_files`` reads such a pair of files.

This module deliberately does no tokenizing itself; ``bpe.py`` encodes and ``bpe_train.py`` trains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import regex

# GPT-2's split pattern, as released by OpenAI (the form the book shows). Contractions, words with an optional
# leading space, numbers, punctuation runs, and whitespace (all but the last space of a run, so the last one
# stays attached to the next word).
GPT2_PATTERN: str = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# GPT-4's (tiktoken ``cl100k_base``) split pattern: case-insensitive contractions, at most 3 digits per chunk,
# newlines kept with the punctuation before them. Identical in meaning to tiktoken's string; the only change
# is ``\p{N}{1,3}`` instead of the possessive ``\p{N}{1,3}+`` (same matches, because nothing follows it in its
# branch), since Oniguruma, the regex engine of the ``tokenizers`` library, reads ``{1,3}+`` as "repeat".
GPT4_PATTERN: str = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s"""
)

# The same split as GPT2_PATTERN, rewritten to run ~25% faster in the ``regex`` module: the letter branch is
# tried first, and a lone ``\s`` replaces the last ``\s+`` (that branch is only reached for a single
# whitespace character). Reordering is safe because the branches cannot match at the same position, except
# the contractions, which still come before the punctuation branch. Tests check both split every text alike.
_FAST_GPT2_PATTERN = r""" ?\p{L}+|'(?:[sdmt]|ll|ve|re)| ?[^\s\p{L}\p{N}]+| ?\p{N}+|\s+(?!\S)|\s"""

# For pure-ASCII text (most English prose and most code) the same split runs ~45% faster in the standard library's
# ``re`` engine, with the Unicode classes written out for ASCII: \p{L} is [A-Za-z], \p{N} is [0-9], and \s is the
# six ASCII White_Space characters (tab, LF, VT, FF, CR, space; ``re``'s own \s would also match \x1c-\x1f).
# ``split_text`` uses it when ``text.isascii()``; tests check that it splits like the original on random ASCII.
_ASCII_SPACE = r"\t\n\x0b\x0c\r "
_ASCII_GPT2_PATTERN = (
    rf""" ?[A-Za-z]+|'(?:[sdmt]|ll|ve|re)| ?[^{_ASCII_SPACE}A-Za-z0-9]+| ?[0-9]+"""
    rf"""|[{_ASCII_SPACE}]+(?![^{_ASCII_SPACE}])|[{_ASCII_SPACE}]"""
)
_ASCII_SPLITS: dict[str, re.Pattern[str]] = {_FAST_GPT2_PATTERN: re.compile(_ASCII_GPT2_PATTERN)}

# Names the CLI (and ``resolve_pattern``) accept for the built-in patterns.
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte value (0-255) to the printable character that stands for it."""
    # Bytes that are already printable (and not a space) keep their own character ...
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    # ... and the other 68 (controls, space, DEL, NBSP, soft hyphen, ...) get 256, 257, ... in byte order.
    shifted = (byte for byte in range(256) if byte not in table)
    for offset, byte in enumerate(shifted):
        table[byte] = chr(256 + offset)
    return dict(sorted(table.items()))


BYTE_TO_CHAR: dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in BYTE_TO_CHAR.items()}
# Indexed by byte value: faster than the dict in the hot loops of save/export.
_BYTE_CHARS: list[str] = [BYTE_TO_CHAR[byte] for byte in range(256)]


def bytes_to_token(data: bytes) -> str:
    """The printable GPT-2 form of ``data`` (what ``vocab.json`` and ``merges.txt`` hold): ``b" the"`` -> ``"Ġthe"``."""
    return "".join([_BYTE_CHARS[byte] for byte in data])


def token_to_bytes(token: str) -> bytes:
    """Inverse of ``bytes_to_token``. Raises ValueError for a character that is not in GPT-2's byte table."""
    try:
        return bytes([CHAR_TO_BYTE[char] for char in token])
    except KeyError as err:
        raise ValueError(
            f"{token!r} is not a GPT-2 byte-level token: character {err.args[0]!r} stands for no byte "
            "(byte-level tokens use only the 256 characters of GPT-2's bytes_to_unicode table)"
        ) from None


def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a split pattern with the ``regex`` module (which knows ``\\p{L}``), with clear errors."""
    if not isinstance(pattern, str):
        raise TypeError(f"the split pattern must be a str, got {type(pattern).__name__}")
    try:
        compiled = regex.compile(_FAST_GPT2_PATTERN if pattern == GPT2_PATTERN else pattern)
    except regex.error as err:
        raise ValueError(
            f"the split pattern {pattern!r} does not compile: {err}; fix the regular expression"
        ) from None
    if compiled.groups:
        raise ValueError(
            f"the split pattern {pattern!r} has capturing groups, which would make the split return only the "
            "groups' text: write them as non-capturing groups (?:...)"
        )
    return compiled


def pattern_covers_all_text(pattern: str) -> bool:
    """True for the built-in patterns, which match every character of any text (so nothing needs checking)."""
    return pattern in (GPT2_PATTERN, GPT4_PATTERN)


def split_text(compiled: regex.Pattern, text: str, check_coverage: bool = True) -> list[str]:
    """Cut ``text`` into chunks with a compiled split pattern.

    With ``check_coverage``, raise ValueError if the chunks do not add up to the whole text: a custom pattern
    that skips characters would otherwise make them vanish silently from the token ids.
    """
    ascii_split = _ASCII_SPLITS.get(compiled.pattern) if text.isascii() else None
    chunks = (ascii_split or compiled).findall(text)
    if check_coverage and sum(map(len, chunks)) != len(text):
        position = 0
        for match in compiled.finditer(text):
            if match.start() != position:
                break
            position = match.end()
        raise ValueError(
            f"the split pattern {compiled.pattern!r} skips text at character {position} "
            f"({text[position : position + 20]!r}): every character must fall in some chunk, so add a "
            r"catch-all branch such as '|\s+|.' at the end of the pattern"
        )
    return chunks


def fix_lone_surrogates(text: str) -> str:
    """Replace unpaired surrogates (which have no UTF-8 form) by U+FFFD, as tiktoken does; pairs are joined."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def special_tokens_regex(special_tokens: Iterable[str]) -> regex.Pattern:
    """A pattern matching any of the given special-token texts literally, longest first."""
    alternatives = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(token) for token in alternatives))


def resolve_pattern(name_or_regex: str) -> str:
    """``"gpt2"``/``"gpt4"`` -> the built-in pattern; anything else is taken as a regular expression."""
    return PATTERNS.get(name_or_regex, name_or_regex)


# --------------------------------------------------------------------------------------------------------
# GPT-2's file format: vocab.json / encoder.json (token -> id) and merges.txt / vocab.bpe (one merge a line)
# --------------------------------------------------------------------------------------------------------

MERGES_HEADER = "#version: 0.2"
_SPECIAL_FORM = re.compile(r"<\|[^|<>]+\|>")  # how GPT-2-style files write special tokens: <|endoftext|>


def read_json(path: Path) -> Any:
    """Parse a JSON file; FileNotFoundError / ValueError naming the file if it is missing or corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {str(path)!r} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is corrupt: not valid JSON ({err})") from None


def read_gpt2_files(
    vocab_path: Path, merges_path: Path, declared_specials: Collection[str] | None = None
) -> tuple[dict[int, bytes], dict[tuple[int, int], int], dict[str, int]]:
    """Read ``encoder.json``/``vocab.json`` + ``vocab.bpe``/``merges.txt`` into (vocab, merges, specials).

    Byte tokens and merge results go to ``vocab`` (id -> bytes); the other entries of the JSON file are the
    special tokens: those in ``declared_specials``, or without it (GPT-2's own files) those written
    ``<|name|>`` (GPT-2: ``<|endoftext|>``). Any other entry no merge produces means a truncated or
    mismatched merges file: a ``ValueError`` naming both files. Errors name the file (and line) at fault.
    """
    encoder = read_json(vocab_path)
    if not isinstance(encoder, dict) or not all(type(i) is int for i in encoder.values()):
        raise ValueError(f"{str(vocab_path)!r} is corrupt: it must map token strings to integer ids")
    if not merges_path.is_file():
        raise FileNotFoundError(f"tokenizer file {str(merges_path)!r} not found")
    try:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(merges_path)!r} is corrupt: not valid UTF-8 ({err})") from None

    vocab: dict[int, bytes] = {}
    for byte in range(256):
        char = _BYTE_CHARS[byte]
        if char not in encoder:
            raise ValueError(
                f"{str(vocab_path)!r} lacks the byte token {char!r} (byte {byte}): not a GPT-2 vocab"
            )
        vocab[encoder[char]] = bytes([byte])
    merges: dict[tuple[int, int], int] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line or (line_number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(
                f"{str(merges_path)!r} is corrupt: line {line_number} {line!r} is not 'left right'"
            )
        left, right = parts
        for token in (left, right, left + right):
            if token not in encoder:
                raise ValueError(
                    f"{str(merges_path)!r} line {line_number} uses token {token!r}, which is not in "
                    f"{str(vocab_path)!r}: the two files do not belong together"
                )
        try:
            vocab[encoder[left + right]] = token_to_bytes(left + right)
        except ValueError as err:
            raise ValueError(f"{str(merges_path)!r} line {line_number}: {err}") from None
        merges[(encoder[left], encoder[right])] = encoder[left + right]
    special_tokens = {token: token_id for token, token_id in encoder.items() if token_id not in vocab}
    declared = _SPECIAL_FORM.fullmatch if declared_specials is None else set(declared_specials).__contains__
    unreachable = sorted((i, t) for t, i in special_tokens.items() if not declared(t))
    if unreachable:
        shown = ", ".join(repr(t) for _, t in unreachable[:3])
        raise ValueError(
            f"{len(unreachable)} tokens of {str(vocab_path)!r} ({shown}, ...) are neither bytes nor made by a "
            f"merge of {str(merges_path)!r}, and are not special tokens: the merges file is truncated or the files "
            "do not belong together; restore the complete pair of files"
        )
    return vocab, merges, special_tokens
