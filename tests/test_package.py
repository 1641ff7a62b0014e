"""``import scratch_gpt`` is cheap, and still makes the Auto classes know ``model_type="scratch_gpt"``."""

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_import_does_not_load_torch_or_transformers():
    out = run_python(
        """
        import sys
        import scratch_gpt
        print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_auto_classes_know_our_model_type_after_import():
    out = run_python(
        """
        import scratch_gpt
        from transformers import AutoConfig, AutoModelForCausalLM
        config = AutoConfig.for_model("scratch_gpt", n_embd=32, n_head=2, n_layer=1, vocab_size=40)
        print(type(AutoModelForCausalLM.from_config(config)).__name__)
        """
    )
    assert out.strip() == "ScratchGPTForCausalLM"


def test_registration_also_works_when_transformers_was_imported_first():
    out = run_python(
        """
        from transformers import AutoModel, AutoConfig
        import scratch_gpt
        config = AutoConfig.for_model("scratch_gpt", n_embd=32, n_head=2, n_layer=1, vocab_size=40)
        print(type(AutoModel.from_config(config)).__name__)
        """
    )
    assert out.strip() == "ScratchGPTModel"


def test_lazy_public_names_and_unknown_attribute():
    import pytest

    import scratch_gpt

    assert scratch_gpt.GPTModel.__name__ == "GPTModel"
    assert "ScratchGPTForCausalLM" in dir(scratch_gpt)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        scratch_gpt.Nope  # noqa: B018


def test_auto_tokenizer_alone_finds_our_class(tmp_path):
    """``AutoTokenizer`` without any Auto model import (the tokenizer part registers on its own)."""
    from scratch_gpt import BPETokenizer, ScratchGPTTokenizerFast

    bpe = BPETokenizer.train("low lower lowest newer wider " * 20, vocab_size=270)
    ScratchGPTTokenizerFast.from_bpe(bpe).save_pretrained(tmp_path / "tok")
    out = run_python(
        f"""
        import sys
        import scratch_gpt
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / "tok")!r})
        print(type(tokenizer).__name__)
        """
    )
    assert out.strip() == "ScratchGPTTokenizerFast"
