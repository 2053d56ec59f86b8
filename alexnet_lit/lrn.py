"""Local response normalisation (Section 3.3).

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ** beta

The paper's alpha multiplies the plain sum over the window. Krizhevsky's released
cuda-convnet, Caffe and ``torch.nn.LocalResponseNorm`` divide alpha by n first
(``alpha_over_n=True``); with the paper's alpha = 1e-4 that is a different layer.
"""
import torch
from torch import nn
from torch.nn import functional as F


def _window_sum(t: torch.Tensor, half: int) -> torch.Tensor:
    """Sum of t over channels i-half .. i+half (zero outside), for NCHW tensors."""
    channels = t.shape[1]
    padded = F.pad(t, (0, 0, 0, 0, half, half))
    out = padded[:, : channels] + padded[:, 1 : channels + 1]
    for shift in range(2, 2 * half + 1):
        out += padded[:, shift : shift + channels]
    return out


class _LRNFunction(torch.autograd.Function):
    """Forward and an analytic backward; the backward is one more window sum:
    dL/da = g * s^-beta - 2 alpha beta a * window_sum(g * b / s), s = k + alpha * window_sum(a^2).
    """

    @staticmethod
    def forward(ctx, x, half, alpha, beta, k):
        scale = _window_sum(x * x, half).mul_(alpha).add_(k)
        inv = scale.pow(-beta)
        ctx.save_for_backward(x, scale, inv)
        ctx.consts = (half, alpha, beta)
        return x * inv

    @staticmethod
    def backward(ctx, grad):
        x, scale, inv = ctx.saved_tensors
        half, alpha, beta = ctx.consts
        grad_inv = grad * inv
        cross = _window_sum(grad_inv * x / scale, half)
        return grad_inv - (2 * alpha * beta) * x * cross, None, None, None, None


class LRN(nn.Module):
    """Across-channel LRN with the paper's constants (k=2, n=5, alpha=1e-4, beta=0.75)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 alpha_over_n: bool = False):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number (a window centred on "
                             f"each channel), got size={size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_over_n = alpha_over_n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha / self.size if self.alpha_over_n else self.alpha
        return _LRNFunction.apply(x, self.size // 2, alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        convention = "alpha/n (Caffe, PyTorch)" if self.alpha_over_n else "paper"
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, {convention}"
