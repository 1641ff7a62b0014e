"""The Hugging Face classes: save/load, Auto classes, tying, dtypes, resizing, checkpointing, generate()."""

import json

import pytest
import torch
from model_helpers import random_ids, tiny_config
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    DynamicCache,
    GPT2Config,
    GPT2LMHeadModel,
)

from scratch_gpt import (
    ScratchGPTConfig,
    ScratchGPTForCausalLM,
    ScratchGPTForSequenceClassification,
    ScratchGPTModel,
)


@pytest.fixture
def lm():
    torch.manual_seed(0)
    return ScratchGPTForCausalLM(tiny_config()).eval()


@pytest.fixture
def saved_lm(lm, tmp_path):
    lm.save_pretrained(tmp_path)
    return tmp_path


def test_auto_classes_resolve_our_model_type():
    config = AutoConfig.for_model("scratch_gpt", n_embd=32, n_head=2, n_layer=1, vocab_size=50)
    assert isinstance(config, ScratchGPTConfig)
    assert isinstance(AutoModelForCausalLM.from_config(config), ScratchGPTForCausalLM)
    assert isinstance(AutoModel.from_config(config), ScratchGPTModel)
    assert isinstance(
        AutoModelForSequenceClassification.from_config(config), ScratchGPTForSequenceClassification
    )


def test_save_and_load_round_trip_exact(lm, saved_lm):
    loaded, info = AutoModelForCausalLM.from_pretrained(saved_lm, output_loading_info=True)
    assert isinstance(loaded, ScratchGPTForCausalLM)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.lm_head.weight is loaded.transformer.gpt.tok_emb.weight  # still tied
    ids = random_ids(2, 9)
    torch.testing.assert_close(loaded.eval()(ids).logits, lm(ids).logits, atol=0, rtol=0)
    assert (saved_lm / "model.safetensors").is_file()
    auto_map = json.loads((saved_lm / "config.json").read_text())["auto_map"]
    assert set(auto_map) >= {
        "AutoConfig",
        "AutoModel",
        "AutoModelForCausalLM",
        "AutoModelForSequenceClassification",
    }


def test_untied_model_keeps_separate_head(tmp_path):
    model = ScratchGPTForCausalLM(tiny_config(tie_word_embeddings=False))
    assert model.lm_head.weight is not model.transformer.gpt.tok_emb.weight
    model.save_pretrained(tmp_path)
    loaded = ScratchGPTForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is not loaded.transformer.gpt.tok_emb.weight
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight)


def test_a_model_re_classed_by_fsdp_saves_as_its_own_class(lm, tmp_path):
    """FSDP2's ``fully_shard`` (and so ``Trainer`` with FSDP) swaps the model's class for a generated
    ``FSDPScratchGPTForCausalLM`` (FSDPModule + ours, made in a torch module); ``save_pretrained`` on it writes our
    auto_map and our remote-code files, not PyTorch's, and the model keeps its run-time class afterwards."""
    from torch.distributed.fsdp import FSDPModule

    run_time_class = type(f"FSDP{ScratchGPTForCausalLM.__name__}", (FSDPModule, ScratchGPTForCausalLM), {})
    run_time_class.__module__ = FSDPModule.__module__  # as fully_shard builds it: type() in a torch module
    lm.__class__ = run_time_class
    lm.save_pretrained(tmp_path / "saved")
    assert type(lm) is run_time_class
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForCausalLM"] == "modeling_scratch_gpt.ScratchGPTForCausalLM"
    assert all(".FSDP" not in target for target in saved["auto_map"].values()), saved["auto_map"]
    assert saved["architectures"] == ["ScratchGPTForCausalLM"]
    copied = {path.name for path in (tmp_path / "saved").glob("*.py")}
    assert "modeling_scratch_gpt.py" in copied and not any("fsdp" in name for name in copied), copied
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded) is ScratchGPTForCausalLM
    ids = random_ids(1, 5)
    with torch.no_grad():
        lm.__class__ = ScratchGPTForCausalLM
        torch.testing.assert_close(loaded(ids).logits, lm(ids).logits, rtol=0, atol=0)


def test_base_and_classifier_load_from_lm_checkpoint(lm, saved_lm):
    base, info = AutoModel.from_pretrained(saved_lm, output_loading_info=True)
    assert not info["missing_keys"]
    ids = random_ids(1, 5)
    torch.testing.assert_close(base.eval()(ids).last_hidden_state, lm.transformer(ids).last_hidden_state)
    clf, info = AutoModelForSequenceClassification.from_pretrained(
        saved_lm, num_labels=3, output_loading_info=True
    )
    assert info["missing_keys"] == {"score.weight"}
    assert clf(ids).logits.shape == (1, 3)


def test_bf16_and_device_map_loading(saved_lm):
    model = AutoModelForCausalLM.from_pretrained(saved_lm, dtype=torch.bfloat16)
    assert model.transformer.gpt.tok_emb.weight.dtype == torch.bfloat16
    out = model.generate(random_ids(1, 4), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)
    mapped = AutoModelForCausalLM.from_pretrained(saved_lm, device_map="auto")
    assert mapped.device.type == "cpu"


def test_resize_token_embeddings_keeps_tie(lm):
    lm.resize_token_embeddings(107, pad_to_multiple_of=8)
    assert lm.config.vocab_size == 112
    assert lm.lm_head.weight.shape[0] == 112
    assert lm.lm_head.weight is lm.transformer.gpt.tok_emb.weight
    assert lm(torch.tensor([[111, 3]])).logits.shape == (1, 2, 112)


def test_attn_implementation_eager_and_sdpa(saved_lm):
    eager = AutoModelForCausalLM.from_pretrained(saved_lm, attn_implementation="eager").eval()
    sdpa = AutoModelForCausalLM.from_pretrained(saved_lm, attn_implementation="sdpa").eval()
    assert eager.config._attn_implementation == "eager"
    ids = random_ids(2, 16)
    torch.testing.assert_close(eager(ids).logits, sdpa(ids).logits, atol=1e-5, rtol=1e-5)


def test_labels_give_the_shifted_cross_entropy(lm):
    ids = random_ids(2, 10)
    out = lm(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 100), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_same_logits_as_gpt2_architecture_with_copied_weights():
    """Our block structure is GPT-2's: copy weights by hand into a GPT2LMHeadModel and compare (conversion oracle)."""
    torch.manual_seed(0)
    ours = ScratchGPTForCausalLM(tiny_config(qkv_bias=True)).eval()
    ref = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=100,
            n_positions=32,
            n_embd=64,
            n_layer=2,
            n_head=4,
            resid_pdrop=0,
            embd_pdrop=0,
            attn_pdrop=0,
        )
    ).eval()
    g = ours.transformer.gpt
    with torch.no_grad():
        ref.transformer.wte.weight.copy_(g.tok_emb.weight)
        ref.transformer.wpe.weight.copy_(g.pos_emb.weight)
        for blk, hb in zip(g.trf_blocks, ref.transformer.h):
            att = blk.att
            hb.attn.c_attn.weight.copy_(
                torch.cat([att.W_query.weight, att.W_key.weight, att.W_value.weight]).T
            )
            hb.attn.c_attn.bias.copy_(torch.cat([att.W_query.bias, att.W_key.bias, att.W_value.bias]))
            hb.attn.c_proj.weight.copy_(att.out_proj.weight.T)
            hb.attn.c_proj.bias.copy_(att.out_proj.bias)
            hb.mlp.c_fc.weight.copy_(blk.ff.fc_in.weight.T)
            hb.mlp.c_fc.bias.copy_(blk.ff.fc_in.bias)
            hb.mlp.c_proj.weight.copy_(blk.ff.fc_out.weight.T)
            hb.mlp.c_proj.bias.copy_(blk.ff.fc_out.bias)
            for ours_norm, ref_norm in ((blk.norm1, hb.ln_1), (blk.norm2, hb.ln_2)):
                ref_norm.weight.copy_(ours_norm.scale)
                ref_norm.bias.copy_(ours_norm.shift)
        ref.transformer.ln_f.weight.copy_(g.final_norm.scale)
        ref.transformer.ln_f.bias.copy_(g.final_norm.shift)
    ids = random_ids(3, 20)
    torch.testing.assert_close(ours(ids).logits, ref(ids).logits, atol=1e-5, rtol=1e-5)


# --- generate() and the KV cache ------------------------------------------------------------------------------------


def test_generate_with_cache_equals_without_at_logits_level(lm):
    prompt = random_ids(1, 5)
    kwargs = dict(max_new_tokens=20, do_sample=False, return_dict_in_generate=True, output_logits=True)
    cached = lm.generate(prompt, use_cache=True, **kwargs)
    uncached = lm.generate(prompt, use_cache=False, **kwargs)
    new_tokens = cached.sequences[0, 5:]
    assert len(set(new_tokens.tolist())) > 3, "degenerate model: the test would pass vacuously"
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.logits, uncached.logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_prefill_then_decode_with_dynamic_cache_equals_full_forward(lm):
    ids = random_ids(2, 12)
    full = lm(ids, use_cache=False).logits
    cache = DynamicCache(config=lm.config)
    first = lm(ids[:, :8], cache=cache, use_cache=True)
    assert first.cache is cache and cache.get_seq_length() == 8
    rest = [lm(ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(8, 12)]
    torch.testing.assert_close(torch.cat([first.logits, *rest], dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_gives_each_prompt_its_own_result(lm):
    short, long = random_ids(1, 3, seed=1), random_ids(1, 7, seed=2)
    pad = lm.config.pad_token_id
    batch = torch.cat([torch.cat([torch.full((1, 4), pad), short], dim=1), long])
    mask = torch.cat([torch.cat([torch.zeros(1, 4), torch.ones(1, 3)], dim=1), torch.ones(1, 7)]).long()
    kwargs = dict(
        max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_logits=True, pad_token_id=pad
    )
    together = lm.generate(batch, attention_mask=mask, **kwargs)
    for row, prompt in enumerate((short, long)):
        alone = lm.generate(prompt, **kwargs)
        assert torch.equal(together.sequences[row, 7:], alone.sequences[0, prompt.shape[1] :])
        for step_batch, step_alone in zip(together.logits, alone.logits):
            torch.testing.assert_close(step_batch[row], step_alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(do_sample=True, temperature=0.7),
        dict(do_sample=True, top_k=5),
        dict(do_sample=True, top_p=0.9),
        dict(num_beams=3, do_sample=False),
    ],
)
def test_sampling_modes_and_beam_search_run_and_respect_seed(lm, kwargs):
    prompt = random_ids(2, 4)
    torch.manual_seed(123)
    a = lm.generate(prompt, max_new_tokens=6, **kwargs)
    torch.manual_seed(123)
    b = lm.generate(prompt, max_new_tokens=6, **kwargs)
    assert a.shape == (2, 10) and torch.equal(a, b)
    assert torch.equal(a[:, :4], prompt)  # the prompt is kept
    if kwargs.get("do_sample"):  # and the seed matters: 12 draws from a near-uniform random model
        torch.manual_seed(321)
        assert not torch.equal(lm.generate(prompt, max_new_tokens=6, **kwargs), a)


def test_per_row_eos_stops_rows_independently(lm):
    prompt = random_ids(2, 4)
    free = lm.generate(prompt, max_new_tokens=10, do_sample=False)
    new0 = free[0, 4:].tolist()
    step = next(k for k in range(1, 10) if new0[k] not in new0[:k])  # a token row 0 first makes at step k
    eos = new0[step]
    stopped = lm.generate(prompt, max_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(stopped[0, 4 : 5 + step], free[0, 4 : 5 + step])
    assert (stopped[0, 5 + step :] == 0).all()  # row 0 stopped at eos and was padded
    first_eos_row1 = (free[1, 4:] == eos).nonzero()
    end = 4 + (int(first_eos_row1[0]) + 1 if len(first_eos_row1) else 10)
    assert torch.equal(stopped[1, 4:end], free[1, 4:end])  # row 1 went on as before


# --- loading bad checkpoints ----------------------------------------------------------------------------------------


def test_missing_weights_file_raises_clearly(saved_lm):
    (saved_lm / "model.safetensors").unlink()
    with pytest.raises(OSError, match="model.safetensors|pytorch_model.bin|no file named"):
        AutoModelForCausalLM.from_pretrained(saved_lm)


def test_corrupt_weights_file_raises_clearly(saved_lm):
    (saved_lm / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ"):
        AutoModelForCausalLM.from_pretrained(saved_lm)


def test_checkpoint_of_different_architecture_raises(saved_lm, tmp_path):
    other = ScratchGPTForCausalLM(tiny_config(n_embd=32, n_head=2))
    other.save_pretrained(tmp_path / "other")
    config = json.loads((saved_lm / "config.json").read_text())
    (tmp_path / "other" / "config.json").write_text(json.dumps(config))  # config says 64 wide, weights are 32
    with pytest.raises(Exception, match="(?i)size mismatch|mismatched|shape"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "other")


def test_classifier_rejects_labels_beyond_its_classes():
    clf = ScratchGPTForSequenceClassification(tiny_config(num_labels=2))
    with pytest.raises(ValueError, match=r"label 2 is outside the classifier's 2 classes"):
        clf(random_ids(2, 5), labels=torch.tensor([0, 2]))
    ids, labels = random_ids(2, 5), torch.tensor([0, 1])
    out = clf(ids, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_text_generation_pipeline(tmp_path):
    from transformers import pipeline

    from scratch_gpt import BPETokenizer, ScratchGPTTokenizerFast

    bpe = BPETokenizer.train("the cat sat on the mat. the dog sat on the log. " * 30, vocab_size=290)
    tokenizer = ScratchGPTTokenizerFast.from_bpe(bpe, model_max_length=32)
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path), tokenizer=str(tmp_path))
    out = generator(["the cat", "a dog sat"], max_new_tokens=5, do_sample=False)
    assert [o[0]["generated_text"].startswith(p) for o, p in zip(out, ["the cat", "a dog sat"])] == [
        True,
        True,
    ]
    ids = tokenizer("the cat", return_tensors="pt").input_ids
    expected = tokenizer.decode(generator.model.generate(ids, max_new_tokens=5, do_sample=False)[0])
    assert out[0][0]["generated_text"] == expected


# --- padding in a direct forward (no generate(), no position_ids) ---------------------------------------------------


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_left_padded_forward_without_position_ids_equals_unpadded_rows(lm, attn_implementation):
    lm.set_attn_implementation(attn_implementation)
    short, long = random_ids(1, 4, seed=1), random_ids(1, 7, seed=2)
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1), long])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    logits = lm(batch, attention_mask=mask).logits  # positions come from the mask
    torch.testing.assert_close(logits[0, 3:], lm(short).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], lm(long).logits[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_classifier_logits_are_the_same_for_left_right_and_no_padding(attn_implementation):
    torch.manual_seed(0)
    model = ScratchGPTForSequenceClassification(tiny_config()).eval()
    model.set_attn_implementation(attn_implementation)
    text = random_ids(1, 5, seed=3)
    pad = torch.zeros(1, 3, dtype=torch.long)
    alone = model(text).logits
    left = model(torch.cat([pad, text], 1), attention_mask=torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])).logits
    right = model(torch.cat([text, pad], 1), attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])).logits
    right_by_pad_id = model(
        torch.cat([text, pad], 1)
    ).logits  # no mask: pad_token_id (0) finds the last token
    for padded in (left, right, right_by_pad_id):
        torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_auto_classes_know_us_when_the_modeling_module_is_imported_first():
    # the modeling module imports transformers' GradientCheckpointingLayer, which loads the AutoModel mapping while
    # the module is half-built; the classes must still be registered afterwards (a fresh process: import order)
    import subprocess
    import sys

    code = (
        "from scratch_gpt.modeling_scratch_gpt import ScratchGPTForCausalLM\n"
        "from scratch_gpt import ScratchGPTConfig\n"
        "from transformers import AutoModelForCausalLM\n"
        "config = ScratchGPTConfig(n_layer=1, n_embd=32, n_head=2, vocab_size=50)\n"
        "print(type(AutoModelForCausalLM.from_config(config)).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ScratchGPTForCausalLM", result.stderr[-2000:]
