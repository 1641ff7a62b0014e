"""Checks shared by the settings objects of the pipelines (``PretrainConfig``, ``ClassifierFinetuneConfig``,
``InstructFinetuneConfig``, ``CorpusConfig``).

Each check raises a one-line ``ValueError`` that names the field, the value it got and what it needs, so a bad
setting fails when the config is built, before any model or data is loaded. ``reject_non_finite`` rejects NaN and
infinity in every float field at once; ``config_to_json`` is the form the settings take in a results file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from typing import Any

__all__ = [
    "check_choice",
    "check_int",
    "check_number",
    "config_to_json",
    "reject_non_finite",
]


def check_int(name: str, value: Any, *, minimum: int = 1, optional: bool = False) -> None:
    """``value`` is an ``int`` (not a bool) >= ``minimum``; ``None`` passes when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {need}{' or None' if optional else ''}, got {value!r}")


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    optional: bool = False,
    hint: str = "",
) -> None:
    """``value`` is a finite real number, ``>= minimum``, ``> above`` and ``< below`` where those are given."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (above is None or value > above)
    ok = ok and (below is None or value < below)
    if not ok:
        if above == 0 and minimum is None and below is None:
            need = "a positive number"
        else:
            bounds = [
                f">= {minimum}" if minimum is not None else "",
                f"> {above}" if above is not None else "",
            ]
            bounds.append(f"< {below}" if below is not None else "")
            need = " ".join(["a finite number", " and ".join(b for b in bounds if b)]).strip()
        need += " or None" if optional else ""
        raise ValueError(f"{name} must be {need}, got {value!r}{'; ' + hint if hint else ''}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def book_dropout(book_conventions: Any, dropout: float | None) -> float | None:
    """The dropout a fine-tuning run uses: unchanged, or the book's 0.0 when ``book_conventions`` is on."""
    if not isinstance(book_conventions, bool):
        raise ValueError(f"book_conventions must be True or False, got {book_conventions!r}")
    if not book_conventions:
        return dropout
    if dropout not in (None, 0.0):
        raise ValueError(
            f"the book fine-tunes with dropout 0.0; leave dropout unset with book_conventions=True (got {dropout})"
        )
    return 0.0


def reject_non_finite(config: Any) -> None:
    """Every float in the dataclass ``config`` (also inside tuples and lists) is finite: no NaN, no infinity."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{item.name} must be a finite number, got {value!r}")


def config_to_json(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict(config)`` with paths as strings: the settings as written into a results file."""
    return {
        name: os.fspath(value) if isinstance(value, os.PathLike) else value
        for name, value in dataclasses.asdict(config).items()
    }
