"""Registers scratch_gpt's classes with the ``transformers`` Auto classes.

``register_auto_classes()`` is called by ``import scratch_gpt``. Importing ``transformers``' model machinery
costs seconds, so when it is not imported yet we do not import it: a small import hook waits until
``transformers.models.auto.modeling_auto`` (which every ``from transformers import Auto...`` loads) has
finished loading, and registers then. Either way the Auto classes know ``model_type="scratch_gpt"`` by
the time user code can call them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading

_AUTO_MODULE = "transformers.models.auto.modeling_auto"
_lock = threading.Lock()
_registered = False


def _register_now() -> None:
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from .configuration_scratch_gpt import ScratchGPTConfig
    from .modeling_scratch_gpt import (
        ScratchGPTForCausalLM,
        ScratchGPTForSequenceClassification,
        ScratchGPTModel,
    )

    AutoConfig.register(ScratchGPTConfig.model_type, ScratchGPTConfig, exist_ok=True)
    AutoModel.register(ScratchGPTConfig, ScratchGPTModel, exist_ok=True)
    AutoModelForCausalLM.register(ScratchGPTConfig, ScratchGPTForCausalLM, exist_ok=True)
    AutoModelForSequenceClassification.register(
        ScratchGPTConfig, ScratchGPTForSequenceClassification, exist_ok=True
    )
    try:  # TODO(lead): make unconditional once tokenization_scratch_gpt.py has landed
        from .tokenization_scratch_gpt import ScratchGPTTokenizerFast
    except ImportError:
        return
    AutoTokenizer.register(ScratchGPTConfig, tokenizer_class=ScratchGPTTokenizerFast, exist_ok=True)


class _RegisterAfterAutoImport(importlib.abc.MetaPathFinder):
    """Runs ``_register_now`` right after ``transformers.models.auto.modeling_auto`` has executed."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname != _AUTO_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module):  # type: ignore[no-untyped-def]
            exec_module(module)
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterAutoImport)]
            _register_now()

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel*`` / ``AutoTokenizer`` resolve ``model_type="scratch_gpt"``.

    Safe to call more than once. Registration happens immediately if ``transformers``' Auto classes are
    already imported, otherwise as soon as they are.
    """
    if _registered:
        return
    if _AUTO_MODULE in sys.modules:
        _register_now()
    elif not any(isinstance(f, _RegisterAfterAutoImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterAutoImport())
