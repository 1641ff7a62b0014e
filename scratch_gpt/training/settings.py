"""Checks shared by the settings objects of every pipeline (``PretrainConfig`` and the fine-tuning configs).

A learning rate of ``inf`` or a weight decay of ``nan`` passes a test like ``value >= 0`` (every comparison
with NaN is False) and then turns the whole model into NaN a few steps later. ``reject_non_finite`` is
called first in each config's ``__post_init__``: every float field (also inside tuples, such as AdamW's
betas) must be finite.

Deliberately not here: the range checks of each field (each config knows its own).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["reject_non_finite"]


def reject_non_finite(config: Any) -> None:
    """Raise ``ValueError`` naming the first field of the dataclass ``config`` that holds NaN or infinity."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(
                    f"{f.name} must be a finite number, got {value!r}; NaN or infinity would make every "
                    "weight NaN"
                )
