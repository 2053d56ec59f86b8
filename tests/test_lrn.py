"""The fast LRN (alexnet_lit/lrn.py) computes Section 3.3's layer: against the formula term by
term, against nn.LocalResponseNorm, by finite differences, in every layout and precision."""
import pytest
import torch
from torch import nn

from alexnet_lit.lrn import LRN
from conftest import DEVICES, on_cuda
from test_model import lrn_loop


def relu_maps(*shape: int, scale: float = 30.0, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """ReLU outputs on the scale of conv1's with raw-pixel inputs: alpha * sum a^2 ~ k."""
    generator = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=generator, dtype=dtype) * scale)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("beta", [0.75, 0.6])  # 3/4 takes the square-root path, others pow
@pytest.mark.parametrize("alpha_over_n", [False, True])
@pytest.mark.parametrize("channels", [1, 4, 11])  # fewer channels than the window, and more
@pytest.mark.parametrize("device", DEVICES)  # on CUDA, s^-3/4 is pow, not square roots
def test_output_is_the_formula_term_by_term(size, beta, alpha_over_n, channels, device):
    a = relu_maps(2, channels, 3, 4)
    ours = LRN(size, 1e-4, beta, 2.0, alpha_over_n=alpha_over_n)(a.to(device)).cpu()
    alpha = 1e-4 / size if alpha_over_n else 1e-4
    torch.testing.assert_close(ours, lrn_loop(a, size, alpha, beta, 2.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_agrees_with_torch_local_response_norm_to_1e_6(device):
    """The benchmark's comparison, on norm1's channel count: same output and input gradient."""
    x = relu_maps(4, 96, 13, 13, dtype=torch.float32).to(device).requires_grad_()
    y = x.detach().clone().requires_grad_()
    ours = LRN(5, 1e-4, 0.75, 2.0, alpha_over_n=True)(x)
    ref = nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(y)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)
    assert (ours - ref).abs().max() > 0 or (x.grad - y.grad).abs().max() > 0  # two computations


@pytest.mark.parametrize("beta", [0.75, 0.6])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("device", DEVICES)
def test_gradient_matches_finite_differences(beta, layout, device):
    # alpha large enough that the cross-channel term dominates the gradient
    x = relu_maps(2, 7, 3, 3, scale=3.0).to(device).contiguous(memory_format=layout).requires_grad_()
    assert torch.autograd.gradcheck(LRN(5, 0.1, beta, 2.0), (x,))
    assert torch.autograd.gradcheck(LRN(3, 0.1, beta, 1.0, alpha_over_n=True), (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_keeps_its_layout_and_values(device):
    x = relu_maps(2, 16, 6, 5, dtype=torch.float32).to(device)
    nhwc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    nchw = x.clone().requires_grad_()
    layer = LRN()
    out_nhwc, out_nchw = layer(nhwc), layer(nchw)
    assert out_nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_nhwc, out_nchw, rtol=1e-6, atol=1e-6)
    grad = torch.randn_like(out_nchw)
    out_nhwc.backward(grad)
    out_nchw.backward(grad)
    torch.testing.assert_close(nhwc.grad, nchw.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_half_precision_inputs_are_normalised_in_float32(dtype, device):
    x = relu_maps(2, 16, 5, 5, dtype=torch.float32).to(device, dtype).requires_grad_()
    layer = LRN()
    out = layer(x)
    assert out.dtype == dtype
    assert torch.equal(out, layer(x.detach().float()).to(dtype))
    exact = lrn_loop(x.detach().double(), 5, 1e-4, 0.75, 2.0)

    def error(y):
        return ((y.double() - exact).abs() / exact.abs().clamp_min(1e-3)).max()
    assert error(out) <= torch.finfo(dtype).eps / 2 + 1e-6  # one rounding, of the output
    assert error(lrn_loop(x.detach(), 5, 1e-4, 0.75, 2.0)) > error(out)  # in the half type
    out.float().sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


@on_cuda
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cuda_forward_and_backward_equal_the_cpu_ones(layout):
    """norm1's input at batch 8: float32 outputs and input gradients on CUDA (pow) agree with
    the CPU's (square roots) to float32 rounding; from bfloat16 inputs, normalised in float32
    on both, the outputs differ by at most one bfloat16 unit in the last place (2^-7 relative)."""
    x = relu_maps(8, 96, 55, 55, dtype=torch.float32).contiguous(memory_format=layout)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    results = {}
    for device in ("cpu", "cuda"):
        a = x.to(device).requires_grad_()
        out = LRN()(a)
        out.backward(grad.to(device))
        results[device] = out.cpu(), a.grad.cpu(), LRN()(a.detach().bfloat16()).cpu()
    (out, grad_x, out_bf16), (ref, ref_grad, ref_bf16) = results["cuda"], results["cpu"]
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_x, ref_grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_bf16.float(), ref_bf16.float(), rtol=2 ** -7, atol=0)
