"""Linear against nn.Linear: the same outputs and gradients, and F.linear wherever oneDNN must not run."""

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scratch_gpt.kernels import linear as linear_module
from scratch_gpt.kernels.linear import Linear, linear, onednn_linear_enabled, set_onednn_linear

needs_onednn = pytest.mark.skipif(
    linear_module._ONEDNN_LINEAR is None, reason="this PyTorch build has no oneDNN linear kernel"
)


def _pair(in_features=24, out_features=40, bias=True, seed=0):
    torch.manual_seed(seed)
    ours = Linear(in_features, out_features, bias=bias)
    ref = nn.Linear(in_features, out_features, bias=bias)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def test_is_an_nn_linear_with_the_same_parameters_and_keys():
    ours, ref = _pair()
    assert isinstance(ours, nn.Linear)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    assert ours.weight.shape == (40, 24)


@needs_onednn
@pytest.mark.parametrize("shape", [(24,), (1, 24), (3, 24), (2, 5, 24), (1, 1, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_matches_nn_linear_through_onednn(shape, bias, onednn_calls):
    ours, ref = _pair(bias=bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert onednn_calls == [shape]


@needs_onednn
def test_gradients_match_nn_linear(onednn_calls):
    ours, ref = _pair()
    x = torch.randn(2, 7, 24)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad_out = torch.randn(2, 7, 40)
    out_ours, out_ref = ours(x_ours), ref(x_ref)
    out_ours.backward(grad_out)
    out_ref.backward(grad_out)
    assert onednn_calls == [(2, 7, 24), (14, 40)]  # the forward product, then the backward's g @ W
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_frozen_weight_gets_no_gradient_and_input_does():
    ours, ref = _pair()
    ours.requires_grad_(False)
    x = torch.randn(3, 24, requires_grad=True)
    ours(x).sum().backward()
    assert ours.weight.grad is None and ours.bias.grad is None
    torch.testing.assert_close(x.grad, ref.weight.sum(0).expand(3, 24), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_gradcheck_in_double_precision_uses_f_linear(onednn_calls):
    """float64 is not sent to oneDNN; the layer is still differentiable there (a numerical gradient check)."""
    layer = Linear(4, 3).double()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))
    assert onednn_calls == []


@needs_onednn
def test_non_contiguous_input(onednn_calls):
    ours, ref = _pair()
    x = torch.randn(24, 6).t()  # (6, 24), not contiguous
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert onednn_calls == [(6, 24)]


@needs_onednn
def test_where_onednn_does_not_run(onednn_calls):
    ours, ref = _pair()
    with torch.no_grad():
        for dtype in (torch.bfloat16, torch.float64):
            x = torch.randn(2, 24, dtype=dtype)
            torch.testing.assert_close(ours.to(dtype)(x), ref.to(dtype)(x))
        ours.float(), ref.float()
        assert ours(torch.randn(0, 24)).shape == (0, 40)  # an empty batch
    assert onednn_calls == []


@needs_onednn
def test_autocast_runs_in_the_autocast_dtype_like_nn_linear(onednn_calls):
    """Mixed precision (accelerate's bf16 on CPU) casts F.linear's inputs; oneDNN in float32 would silently skip
    that."""
    ours, ref = _pair()
    x = torch.randn(3, 24)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = ours(x), ref(x)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected)
    assert onednn_calls == []


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch's own note on mkldnn.flags()
def test_switching_onednn_off_and_on(onednn_calls):
    ours, _ = _pair()
    assert onednn_linear_enabled()
    try:
        set_onednn_linear(False)
        assert not onednn_linear_enabled()
        with torch.no_grad():
            ours(torch.randn(2, 24))
        assert onednn_calls == []
    finally:
        set_onednn_linear(True)
    with torch.no_grad():
        ours(torch.randn(2, 24))
    assert onednn_calls == [(2, 24)]
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):  # PyTorch's own switch is respected too
        ours(torch.randn(2, 24))
    assert onednn_calls == [(2, 24)]


@needs_onednn
def test_small_layers_stay_on_f_linear_and_large_ones_use_onednn(monkeypatch):
    calls = []
    real = linear_module._onednn_forward
    monkeypatch.setattr(linear_module, "_onednn_forward", lambda *a: calls.append(a[0].shape) or real(*a))
    small = Linear(128, 512)  # 65,536 weights: MKL is faster
    large = Linear(256, 1024)  # 262,144 weights
    assert small.weight.numel() < linear_module.MIN_ONEDNN_WEIGHTS <= large.weight.numel()
    with torch.no_grad():
        small(torch.randn(1, 128))
        assert calls == []
        large(torch.randn(1, 256))
    assert calls == [(1, 256)]


@needs_onednn
def test_use_fast_kernels_chooses_the_kernel_per_weight_shape(onednn_calls, monkeypatch):
    """Each large weight shape is timed on its own: where F.linear measures faster (here: the most common shape)
    those layers stay on F.linear, and the others still use oneDNN (a model's output head gains most from it)."""
    import scratch_gpt.kernels
    from scratch_gpt.kernels import use_fast_kernels

    timed = []
    monkeypatch.setattr(
        scratch_gpt.kernels,
        "onednn_is_faster",
        lambda out_features, in_features: timed.append((out_features, in_features)) or out_features != 40,
    )
    model = nn.Sequential(nn.Linear(24, 40), nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 90))
    use_fast_kernels(model)
    assert sorted(timed) == [(40, 24), (40, 40), (90, 40)]  # each shape once
    with torch.no_grad():
        model(torch.randn(3, 24))
    assert onednn_calls == [(3, 40)]  # only the (90, 40) layer
    use_fast_kernels(model, measure=False)  # no timing: the choices stand
    assert len(timed) == 3


@pytest.mark.parametrize("shape", [5, (5,), (5, 0), (5, -1), (5.0, 3), (True, 3), (1, 2, 3), None])
def test_prefer_f_linear_for_rejects_what_is_not_a_weight_shape(shape):
    before = set(linear_module._f_linear_faster)
    with pytest.raises(ValueError, match=r"two positive ints, got .*tuple\(layer.weight.shape\)"):
        linear_module.prefer_f_linear_for(shape)
    assert linear_module._f_linear_faster == before  # nothing recorded


def test_wrong_input_width_gives_torchs_shape_error():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        Linear(24, 40)(torch.randn(2, 23))


def test_linear_function_matches_f_linear_without_a_module():
    torch.manual_seed(1)
    x, weight, bias = torch.randn(4, 9), torch.randn(5, 9), torch.randn(5)
    torch.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear(x, weight), F.linear(x, weight), rtol=1e-5, atol=1e-5)


def _graph_targets(module, *args):
    """Compile ``module`` with dynamo (no C++ needed) and return the call targets of the one graph it captures."""
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    out = torch.compile(module, backend=record, fullgraph=True)(*args)
    assert len(graphs) == 1
    return out, {node.target for node in graphs[0].graph.nodes if node.op == "call_function"}


@needs_onednn
def test_torch_compile_keeps_the_onednn_product_as_one_operator(onednn_calls):
    """Under ``torch.compile`` the product stays on oneDNN: dynamo records ``scratch_gpt::onednn_linear`` as one node
    (fullgraph, no break), and the compiled forward and backward passes equal nn.Linear's."""
    ours, ref = _pair()
    x = torch.randn(2, 3, 24)
    with torch.no_grad():
        out, targets = _graph_targets(ours, x)
    torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-5)
    assert torch.ops.scratch_gpt.onednn_linear in targets
    assert F.linear not in targets and torch._C._nn.linear not in targets
    assert onednn_calls == [(2, 3, 24)]

    for backend in (
        "aot_eager",
        "inductor",
    ):  # aot_eager: the registered backward; inductor: the real compiler
        if backend == "inductor" and shutil.which("g++") is None:
            continue
        torch._dynamo.reset()
        ours.zero_grad(), ref.zero_grad()
        x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch.compile(ours, backend=backend, fullgraph=True)(x_ours).square().sum().backward()
        ref(x_ref).square().sum().backward()
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_torch_compile_leaves_f_linear_where_onednn_does_not_run():
    """Small layers (under the size threshold) and float64 compile to the ordinary linear layer."""
    small = Linear(24, 40)
    with torch.no_grad():
        _, targets = _graph_targets(small, torch.randn(2, 24))
    assert torch.ops.scratch_gpt.onednn_linear not in targets


@needs_onednn
def test_the_operator_passes_torchs_operator_checks():
    """``torch.library.opcheck``: schema, fake kernel (shapes and strides), autograd registration, and that the
    operator works under dynamo and AOT autograd, for 1-, 2- and 3-dimensional inputs, with and without bias."""
    torch.manual_seed(0)
    weight = torch.randn(40, 24, requires_grad=True)
    bias = torch.randn(40, requires_grad=True)
    for shape in [(24,), (5, 24), (2, 3, 24)]:
        for b in (bias, None):
            x = torch.randn(*shape, requires_grad=True)
            results = torch.library.opcheck(torch.ops.scratch_gpt.onednn_linear.default, (x, weight, b))
            assert set(results.values()) == {"SUCCESS"}, results


def test_models_ship_plain_linears_and_use_fast_kernels_switches_every_one():
    """A fresh model (what save_pretrained ships) has plain nn.Linear layers and transformers' loss;
    use_fast_kernels turns each into Linear and the loss into causal_lm_loss, with the same keys and outputs."""
    from model_helpers import tiny_config

    from scratch_gpt import ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
    from scratch_gpt.kernels import causal_lm_loss, use_fast_kernels

    torch.manual_seed(0)
    ids = torch.randint(0, tiny_config().vocab_size, (2, 8))
    for model in (ScratchGPTForCausalLM(tiny_config()), ScratchGPTForSequenceClassification(tiny_config())):
        model.eval()
        linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
        assert linears and all(type(model.get_submodule(name)) is nn.Linear for name in linears), linears
        keys, before = list(model.state_dict()), model(ids).logits
        assert use_fast_kernels(model, measure=False) is model
        assert all(type(model.get_submodule(name)) is Linear for name in linears)
        assert list(model.state_dict()) == keys
        torch.testing.assert_close(model(ids).logits, before, rtol=0, atol=1e-5)
    assert model.loss_function is not causal_lm_loss  # the classifier keeps its own loss
    lm = use_fast_kernels(ScratchGPTForCausalLM(tiny_config()), measure=False)
    assert lm.loss_function is causal_lm_loss
    assert ScratchGPTForCausalLM(tiny_config()).loss_function is not causal_lm_loss  # per instance only


@needs_onednn
def test_whole_model_through_onednn_matches_gpt2_and_trains(onednn_calls):
    """The model-level guarantees hold on the oneDNN path too (the threshold is lifted, so even this small model
    uses it): a converted GPT-2 gives GPT2LMHeadModel's logits within 1e-5 and the same greedy tokens, cached and
    uncached generation agree at the logits level, and the training gradients equal those of the F.linear path."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratch_gpt import load_gpt2
    from scratch_gpt.kernels import use_fast_kernels

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=500, n_positions=64, initializer_range=0.2)
    hf = GPT2LMHeadModel(config).eval()
    ours = use_fast_kernels(load_gpt2(hf), measure=False).eval()
    ids = torch.randint(0, 500, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, rtol=0, atol=1e-5)
    assert len(onednn_calls) == 2 * 6 + 1  # q, k, v, out, fc_in, fc_out per block, and the output head
    prompt = ids[:1, :4]
    settings = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, **settings), hf.generate(prompt, **settings))
    cached, uncached = (
        ours.generate(
            prompt, **settings, use_cache=use_cache, output_logits=True, return_dict_in_generate=True
        )
        for use_cache in (True, False)
    )
    assert torch.equal(cached.sequences, uncached.sequences)
    for step_cached, step_uncached in zip(cached.logits, uncached.logits, strict=True):
        torch.testing.assert_close(step_cached, step_uncached, rtol=0, atol=1e-5)

    grads = []  # (in eval mode: no dropout, so both passes see the same function)
    for enabled in (True, False):
        set_onednn_linear(enabled)
        try:
            ours.zero_grad()
            ours(ids, labels=ids).loss.backward()
            grads.append([p.grad.clone() for p in ours.parameters()])
        finally:
            set_onednn_linear(True)
    for with_onednn, with_f_linear in zip(*grads):
        torch.testing.assert_close(with_onednn, with_f_linear, rtol=1e-4, atol=1e-6)
