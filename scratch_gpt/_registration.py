"""Registers scratch_gpt's classes with the ``transformers`` Auto classes.

``register_auto_classes()`` is called by ``import scratch_gpt``. Importing ``transformers``' model machinery
costs seconds, so we do not import it ourselves: a small import hook waits until one of ``transformers``' Auto
modules (``configuration_auto``, ``modeling_auto``, ``tokenization_auto``) has finished loading, and registers
what that module serves then. Either way the Auto classes know ``model_type="scratch_gpt"`` by the time user
code can call them.

Each part (config, models, tokenizer) registers once, only when its Auto module is fully loaded; a part that
cannot register yet (one Auto module importing another mid-way) is retried when the next one finishes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from collections.abc import Callable

_AUTO = "transformers.models.auto."
_lock = threading.RLock()
_done: set[str] = set()


def _register_config() -> None:
    from transformers.models.auto.configuration_auto import AutoConfig

    from .configuration_scratch_gpt import ScratchGPTConfig

    AutoConfig.register(ScratchGPTConfig.model_type, ScratchGPTConfig, exist_ok=True)


def _register_models() -> None:
    from transformers.models.auto.modeling_auto import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )

    from .configuration_scratch_gpt import ScratchGPTConfig
    from .modeling_scratch_gpt import (
        ScratchGPTForCausalLM,
        ScratchGPTForSequenceClassification,
        ScratchGPTModel,
    )

    AutoModel.register(ScratchGPTConfig, ScratchGPTModel, exist_ok=True)
    AutoModelForCausalLM.register(ScratchGPTConfig, ScratchGPTForCausalLM, exist_ok=True)
    AutoModelForSequenceClassification.register(
        ScratchGPTConfig, ScratchGPTForSequenceClassification, exist_ok=True
    )


def _register_tokenizer() -> None:
    from transformers.models.auto.tokenization_auto import AutoTokenizer

    from .configuration_scratch_gpt import ScratchGPTConfig
    from .tokenization_scratch_gpt import ScratchGPTTokenizerFast

    AutoTokenizer.register(ScratchGPTConfig, tokenizer_class=ScratchGPTTokenizerFast, exist_ok=True)


# Auto module -> what to register once it is loaded (the config first: the others are keyed by it).
_PARTS: dict[str, Callable[[], None]] = {
    _AUTO + "configuration_auto": _register_config,
    _AUTO + "modeling_auto": _register_models,
    _AUTO + "tokenization_auto": _register_tokenizer,
}


def _fully_loaded(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


def _register_ready_parts(final: bool = False) -> None:
    """Register every part whose Auto module is loaded; with ``final``, warn about a part that fails."""
    with _lock:
        for module_name, register in _PARTS.items():
            if module_name in _done or not _fully_loaded(module_name):
                continue
            try:
                register()
            except ImportError as err:  # another Auto module is still half-imported: retry on the next hook
                if final:
                    warnings.warn(f"scratch_gpt could not register with {module_name}: {err}", stacklevel=2)
                continue
            _done.add(module_name)
        if len(_done) == len(_PARTS):
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterAutoImport)]


class _RegisterAfterAutoImport(importlib.abc.MetaPathFinder):
    """Runs ``_register_ready_parts`` right after one of ``transformers``' Auto modules has executed."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname not in _PARTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_register(module):  # type: ignore[no-untyped-def]
            exec_module(module)
            spec._initializing = (
                False  # exec is over; the import system clears this flag only after we return
            )
            _register_ready_parts()

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel*`` / ``AutoTokenizer`` resolve ``model_type="scratch_gpt"``.

    Safe to call more than once. Parts whose Auto module is already imported register now; the rest as soon as
    their module is imported.
    """
    _register_ready_parts(final=True)
    if len(_done) < len(_PARTS) and not any(isinstance(f, _RegisterAfterAutoImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterAutoImport())
