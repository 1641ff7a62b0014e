"""The loss history of a pretraining run, saved as JSON and plotted like the book's Figure 5.12.

The book's ``train_model_simple`` returns ``train_losses, val_losses, track_tokens_seen`` and
``plot_losses`` draws them against epochs, with the tokens seen on a second x axis. ``LossHistory`` keeps
the same lists (one entry per evaluation), plus perplexities, the generated samples, and a log of every
optimizer step (loss and learning rate). It is written as ``training_history.json``, the format
``model_card.py`` reads to describe the training on the Hub::

    {"steps": [...], "tokens_seen": [...], "epochs": [...], "train_losses": [...], "val_losses": [...],
     "train_perplexities": [...], "val_perplexities": [...], "samples": [...],
     "step_log": {"steps": [...], "tokens_seen": [...], "epochs": [...], "losses": [...], "lrs": [...]},
     "dataset": "...", "hyperparameters": {...}}

``plot`` draws ``loss_plot.png`` with matplotlib's Agg backend (no display needed). Both are written
atomically.

Deliberately not here: live dashboards (TensorBoard, W&B); use ``accelerate``'s trackers for those.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write, atomic_write_text
from ..constants import HISTORY_FILE

__all__ = ["LossHistory", "HISTORY_FILE"]

_EVAL_KEYS = ("steps", "tokens_seen", "epochs", "train_losses", "val_losses", "samples")
_STEP_KEYS = ("steps", "tokens_seen", "epochs", "losses", "lrs")


@dataclass
class LossHistory:
    """Periodic evaluations (the book's lists) and the per-step training log of one run."""

    steps: list[int] = field(default_factory=list)
    tokens_seen: list[int] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    samples: list[str | None] = field(default_factory=list)
    step_log: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in _STEP_KEYS})
    dataset: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def track_tokens_seen(self) -> list[int]:
        """The book's name for ``tokens_seen``."""
        return self.tokens_seen

    def add_step(self, step: int, tokens_seen: int, epoch: float, loss: float, lr: float) -> None:
        """Record the (accumulated) training loss of one optimizer step and the learning rate it used."""
        for key, value in zip(_STEP_KEYS, (step, tokens_seen, epoch, loss, lr)):
            self.step_log[key].append(value)

    def add_eval(
        self,
        step: int,
        tokens_seen: int,
        epoch: float,
        train_loss: float,
        val_loss: float,
        sample: str | None = None,
    ) -> None:
        """Record an evaluation: the book's train and validation loss (and a generated sample)."""
        for key, value in zip(_EVAL_KEYS, (step, tokens_seen, epoch, train_loss, val_loss, sample)):
            getattr(self, key).append(value)

    def last_eval(self) -> dict[str, Any]:
        """The newest evaluation as one record, with perplexities (``exp(loss)``)."""
        if not self.steps:
            raise ValueError("no evaluation has been recorded yet")
        record = {key: getattr(self, key)[-1] for key in _EVAL_KEYS}
        record["train_perplexity"] = _perplexity(record["train_losses"])
        record["val_perplexity"] = _perplexity(record["val_losses"])
        return record

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {key: list(getattr(self, key)) for key in _EVAL_KEYS}
        data["train_perplexities"] = [_perplexity(x) for x in self.train_losses]
        data["val_perplexities"] = [_perplexity(x) for x in self.val_losses]
        if not any(math.isfinite(x) for x in self.val_losses):  # no validation data: leave it out
            del data["val_losses"], data["val_perplexities"]
        data["step_log"] = {key: list(values) for key, values in self.step_log.items()}
        if self.dataset:
            data["dataset"] = self.dataset
        if self.hyperparameters:
            data["hyperparameters"] = dict(self.hyperparameters)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossHistory:
        history = cls(dataset=data.get("dataset"), hyperparameters=dict(data.get("hyperparameters", {})))
        n = len(data.get("steps", []))
        for key in _EVAL_KEYS:
            default = [float("nan")] * n if key == "val_losses" else [None] * n
            setattr(history, key, list(data.get(key, default)))
        log = data.get("step_log", {})
        history.step_log = {key: list(log.get(key, [])) for key in _STEP_KEYS}
        return history

    def save(self, directory: str | Path, name: str = HISTORY_FILE) -> Path:
        """Write the history as JSON into ``directory`` (atomically); returns the path."""
        path = Path(directory) / name
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LossHistory:
        """Read a history written by ``save`` (a file, or a folder holding ``training_history.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / HISTORY_FILE
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"training history {path} does not exist") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"training history {path} is not valid JSON ({err.msg})") from None

    def plot(self, path: str | Path) -> Path | None:
        """Draw the losses to a PNG (book style: loss against tokens seen, epochs on the top axis).

        Returns the path, or ``None`` when there is nothing to plot. Written atomically.
        """
        log = self.step_log
        if not log["steps"] and not self.steps:
            return None
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        path = Path(path)
        fig, ax = plt.subplots(figsize=(7, 4))
        if log["steps"]:
            ax.plot(
                log["tokens_seen"],
                log["losses"],
                color="tab:blue",
                alpha=0.3,
                lw=0.8,
                label="training (each step)",
            )
        if self.steps:
            ax.plot(self.tokens_seen, self.train_losses, color="tab:blue", marker=".", label="training loss")
            if any(math.isfinite(x) for x in self.val_losses):
                ax.plot(
                    self.tokens_seen,
                    self.val_losses,
                    color="tab:orange",
                    ls="-.",
                    marker=".",
                    label="validation loss",
                )
        ax.set_xlabel("Tokens seen")
        ax.set_ylabel("Loss")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
        tokens, epochs = (
            (log["tokens_seen"], log["epochs"]) if log["steps"] else (self.tokens_seen, self.epochs)
        )
        if epochs and epochs[-1] and tokens[-1]:
            per_epoch = tokens[-1] / epochs[-1]  # tokens per epoch
            top = ax.secondary_xaxis("top", functions=(lambda t: t / per_epoch, lambda e: e * per_epoch))
            top.set_xlabel("Epochs")
        fig.tight_layout()
        try:
            atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=path.suffix)
        finally:
            plt.close(fig)
        return path


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")
