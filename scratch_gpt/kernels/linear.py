"""The fully connected layer of chapters 3 and 4 as ``nn.Linear``, with its matrix product sent to the faster CPU kernel.

``Linear`` is used for the query/key/value projections, the feed-forward network and the output head.

The layer computes ``y = x @ W.T + b`` with ``W`` of shape ``(out_features, in_features)``: the same parameters,
state-dict keys and math as ``nn.Linear`` (it *is* an ``nn.Linear``, so LoRA — hand-written or peft — wraps it like
any other). Only the kernel that multiplies differs:

* On CPU, PyTorch's ``F.linear`` calls MKL, which on the AMD EPYC we measure multiplies by a weight stored
  ``(out, in)`` on a single core. That matters most when generating one token at a time: each step is a
  matrix-vector product per layer that has to stream all the weights from memory.
* ``Linear`` instead calls oneDNN's inner product: ``torch.ops.mkldnn._linear_pointwise``, the kernel PyTorch's own
  compiler picks for linear layers on CPU. It uses every core and reads ``(out, in)`` weights at full speed.
  docs/benchmarks.md has the measurements (batch-1 generation and training steps).

The product is registered as one PyTorch operator, ``torch.ops.scratch_gpt.onednn_linear`` (with a fake kernel for
its output shape and the textbook backward pass), so that ``torch.compile`` keeps it: dynamo records it as a single
node of the graph, where it would otherwise send ``F.linear`` to MKL's single-core product. Compiled static-cache
decoding (``generate(cache_implementation="static", compile_config=...)``) runs on oneDNN that way.

oneDNN runs only where it pays and is known to be right:

* weights of at least ``MIN_ONEDNN_WEIGHTS`` elements (a oneDNN call has a fixed cost of ~17 us, which MKL beats
  on small layers), of a shape where oneDNN was not measured slower (``prefer_f_linear_for``, which
  ``use_fast_kernels`` calls per shape);
* ``float32`` tensors on an x86-64 CPU (where it was measured), plain ``torch.Tensor`` inputs and weights (not
  meta or distributed tensor subclasses);
* outside ``torch.autocast`` (which casts ``F.linear``'s inputs to ``bfloat16``), in a PyTorch build that has the
  op, with ``torch.backends.mkldnn`` enabled.

Everything else — GPUs, ``bfloat16``, a build without oneDNN, or after ``set_onednn_linear(False)`` — runs
``F.linear``. The two kernels add in different orders, so results agree to float32 rounding (about 1e-6
relative), not bit for bit.

Gradients (registered with the operator): ``dL/dx = g @ W`` (a linear layer with weight ``W.T``, so oneDNN
again), ``dL/dW = g.T @ x`` (``torch.mm``, faster there), ``dL/db = sum(g)``.

Not here: quantized or low-rank layers (see ``lora.py``), fused query/key/value projections.
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F
from torch import nn

try:  # the op oneDNN's inner product is registered under; absent in builds without oneDNN
    _ONEDNN_LINEAR = torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
except (AttributeError, RuntimeError):
    _ONEDNN_LINEAR = None
if platform.machine().lower() not in ("x86_64", "amd64"):
    _ONEDNN_LINEAR = None  # measured on x86-64 only; elsewhere (e.g. Apple silicon) F.linear's BLAS is kept

_onednn_enabled = _ONEDNN_LINEAR is not None

# oneDNN's call costs ~17 us more than MKL's; below about this many weights (e.g. 1,024 x 128) MKL is faster.
MIN_ONEDNN_WEIGHTS = 1 << 17


# Weight shapes (out, in) where F.linear measured faster than oneDNN on this machine (``use_fast_kernels`` times
# each large shape of a model once per process): those layers keep F.linear.
_f_linear_faster: set[tuple[int, int]] = set()


def prefer_f_linear_for(shape: tuple[int, int], prefer: bool = True) -> None:
    """Send products with an ``(out, in)`` weight of this shape to ``F.linear`` (``prefer=False``: to oneDNN again)."""
    if not (
        isinstance(shape, (tuple, list))
        and len(shape) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(
            f"shape must be a weight's (out_features, in_features), two positive ints, got {shape!r}; "
            "e.g. tuple(layer.weight.shape)"
        )
    if prefer:
        _f_linear_faster.add(tuple(shape))
    else:
        _f_linear_faster.discard(tuple(shape))


def set_onednn_linear(enabled: bool) -> None:
    """Turn the oneDNN kernel for CPU ``float32`` linear layers on or off (on by default where it exists)."""
    global _onednn_enabled
    _onednn_enabled = bool(enabled) and _ONEDNN_LINEAR is not None


def onednn_linear_enabled() -> bool:
    """Whether ``linear`` currently sends CPU ``float32`` products to oneDNN."""
    return _onednn_enabled


def _onednn_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # x: (..., in), weight: (out, in), bias: (out,) or None -> (..., out)
    return _ONEDNN_LINEAR(x.contiguous(), weight, bias, "none", [], "")


def _uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return (
        _onednn_enabled
        and torch.backends.mkldnn.enabled  # respects torch.backends.mkldnn.flags(enabled=False)
        and x.device.type == weight.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and (bias is None or (bias.dtype == torch.float32 and bias.device.type == "cpu"))
        and type(x) is torch.Tensor
        and type(weight) in (torch.Tensor, nn.Parameter)
        and (bias is None or type(bias) in (torch.Tensor, nn.Parameter))
        and x.shape[-1] == weight.shape[-1]  # a wrong shape gets F.linear's clear error
        and x.numel() > 0
        and weight.numel() >= MIN_ONEDNN_WEIGHTS
        and (weight.shape[0], weight.shape[1]) not in _f_linear_faster
        and not torch.is_autocast_enabled("cpu")  # mixed precision: F.linear casts to the autocast dtype
    )


def _define_op() -> None:
    """Register ``scratch_gpt::onednn_linear``: the oneDNN product as one PyTorch operator.

    As an operator (rather than a Python call) the product is visible to ``torch.compile``: dynamo records it in
    the graph as a single opaque node (the fake kernel below gives the compiler its output shape), so compiled
    code — for example transformers' compiled static-cache decoding — multiplies on oneDNN too, instead of
    falling back to MKL's single-core product. The same operator serves eager mode.
    """
    if hasattr(torch.ops.scratch_gpt, "onednn_linear"):  # already registered (a reloaded module)
        return
    library = torch.library.Library("scratch_gpt", "FRAGMENT")
    library.define("onednn_linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor")
    library.impl("onednn_linear", lambda x, weight, bias: _onednn_forward(x, weight, bias), "CPU")
    _LIBRARIES.append(library)  # a Library object unregisters its operators when it is garbage-collected

    @torch.library.register_fake("scratch_gpt::onednn_linear")
    def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], weight.shape[0]))  # (..., in) -> (..., out)

    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # The textbook backward pass of y = x @ W.T + b.
        x, weight = ctx.saved_tensors
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])  # (N, out), N = all leading dimensions
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # g @ W is itself a linear layer, with weight W.T: oneDNN again
            grad_x = torch.ops.scratch_gpt.onednn_linear(grad_2d, weight.t(), None)  # (N, out) @ (out, in)
            grad_x = grad_x.view(x.shape)  # (..., in)
        if ctx.needs_input_grad[1]:
            grad_w = grad_2d.t() @ x.reshape(-1, x.shape[-1])  # (out, N) @ (N, in) -> (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_2d.sum(0)  # (out,)
        return grad_x, grad_w, grad_b

    torch.library.register_autograd("scratch_gpt::onednn_linear", backward, setup_context=setup_context)


_LIBRARIES: list[torch.library.Library] = []
if _ONEDNN_LINEAR is not None:
    _define_op()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``F.linear``'s contract): oneDNN for CPU ``float32``, else ``F.linear``."""
    if not _uses_onednn(x, weight, bias):
        return F.linear(x, weight, bias)
    return torch.ops.scratch_gpt.onednn_linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` whose product runs through ``linear`` (see the module docstring); same parameters and keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., in_features) -> (..., out_features)
        return linear(x, self.weight, self.bias)
