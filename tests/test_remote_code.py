"""A saved checkpoint loads with ``trust_remote_code=True`` in a fresh process where scratch_gpt cannot be imported.

In-process, a locally registered class wins even with ``trust_remote_code=True``, so the remote route is tested in a
subprocess: ``python -I`` (no user site, no PYTHONPATH), cwd and ``HF_HOME`` in ``tmp_path``, and
``sys.modules["scratch_gpt"] = None`` as its first line (``-I`` does not hide an editable install).
"""

import json
import os
import subprocess
import sys
import textwrap

import torch
from model_helpers import random_ids, tiny_config

from scratch_gpt import ScratchGPTForCausalLM

CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["scratch_gpt"] = None  # the package must not be importable
    import json, torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    ckpt, ids_file, out_file = sys.argv[1:4]
    ids = torch.tensor(json.load(open(ids_file)))
    lm = AutoModelForCausalLM.from_pretrained(ckpt, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(ckpt, trust_remote_code=True).eval()
    clf = AutoModelForSequenceClassification.from_pretrained(ckpt, trust_remote_code=True, num_labels=2).eval()
    with torch.no_grad():
        result = {
            "modules": [type(m).__module__ for m in (lm, base, clf)],
            "classes": [type(m).__name__ for m in (lm, base, clf)],
            "logits": lm(ids).logits.tolist(),
            "hidden": base(ids).last_hidden_state.tolist(),
            "clf_shape": list(clf(ids).logits.shape),
            "greedy": lm.generate(ids[:1], max_new_tokens=8, do_sample=False).tolist(),
        }
    json.dump(result, open(out_file, "w"))
    """
)


def test_checkpoint_loads_without_the_package(tmp_path):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    assert (ckpt / "modeling_scratch_gpt.py").is_file() and (ckpt / "configuration_scratch_gpt.py").is_file()

    ids = random_ids(2, 6)
    (tmp_path / "ids.json").write_text(json.dumps(ids.tolist()))
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-I", "child.py", str(ckpt), "ids.json", "out.json"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())

    assert all(m.startswith("transformers_modules.") for m in result["modules"]), result["modules"]
    assert result["classes"] == [
        "ScratchGPTForCausalLM",
        "ScratchGPTModel",
        "ScratchGPTForSequenceClassification",
    ]
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(result["logits"]), model(ids).logits, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(
            torch.tensor(result["hidden"]), model.transformer(ids).last_hidden_state, atol=1e-6, rtol=1e-6
        )
        expected = model.generate(ids[:1], max_new_tokens=8, do_sample=False)
    assert result["clf_shape"] == [2, 2]
    assert result["greedy"] == expected.tolist()
