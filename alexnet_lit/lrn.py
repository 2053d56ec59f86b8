"""Local response normalisation (Section 3.3).

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ** beta

The paper's alpha multiplies the plain sum over the window. Krizhevsky's released
cuda-convnet, Caffe and ``torch.nn.LocalResponseNorm`` divide alpha by n first
(``alpha_over_n=True``); with the paper's alpha = 1e-4 that is a different layer.

Speed: on a CPU, a fresh activation-sized tensor costs several elementwise passes
(its pages are faulted in anew) and ``pow`` with a fractional exponent about five, so
this layer allocates four tensors for forward and backward together (the output, the
denominator, which is all it saves, the input's gradient and one scratch), works in place
otherwise, and computes the paper's beta = 3/4 power with square roots.
``benchmarks/lrn.py`` measures it against ``nn.LocalResponseNorm``.
"""
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def _neighbours(channels: int, half: int):
    """(destination, source) channel slices that pair every channel i with i - d and
    i + d, for d = 1 .. half; pairs that would leave 0 .. channels-1 are dropped."""
    for d in range(1, half + 1):
        yield slice(d, None), slice(None, channels - d)
        yield slice(None, channels - d), slice(d, None)


def _inverse_power(scale: torch.Tensor, beta: float) -> torch.Tensor:
    """A new tensor ``scale ** -beta``. On a CPU, beta = 3/4 is ``((scale ** -1/2) ** 1/2) ** 3``:
    three cheap passes in place of one slow ``pow``; on a GPU ``pow`` costs less than a pass."""
    if beta == 0.75 and scale.device.type == "cpu":
        return torch.rsqrt(scale).sqrt_().pow_(3)
    return torch.pow(scale, -beta)


def _scale(x: torch.Tensor, half: int, alpha: float, k: float) -> torch.Tensor:
    """A new tensor k + alpha * sum of a[j]^2 over each channel's window."""
    scale = torch.full_like(x, k).addcmul_(x, x, value=alpha)
    for dst, src in _neighbours(x.shape[1], half):
        scale[:, dst].addcmul_(x[:, src], x[:, src], value=alpha)
    return scale


class _LRNFunction(torch.autograd.Function):
    """s = k + alpha * window_sum(a^2), b = a * s^-beta, and the analytic backward

        dL/da = g * s^-beta - 2 alpha beta * a * window_sum(g * a * s^(-beta-1)).
    """

    @staticmethod
    def forward(ctx, x, half, alpha, beta, k):
        scale = _scale(x, half, alpha, k)
        ctx.save_for_backward(x, scale)
        ctx.consts = (half, alpha, beta)
        return _inverse_power(scale, beta).mul_(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        half, alpha, beta = ctx.consts
        grad_x = _inverse_power(scale, beta).mul_(grad)                # g * s^-beta
        cross = torch.div(grad_x, scale).mul_(x)                       # g * a * s^(-beta-1)
        weight = -2 * alpha * beta
        grad_x.addcmul_(cross, x, value=weight)
        for dst, src in _neighbours(x.shape[1], half):
            grad_x[:, dst].addcmul_(cross[:, src], x[:, dst], value=weight)
        return grad_x, None, None, None, None


class LRN(nn.Module):
    """Across-channel LRN with the paper's constants (k=2, n=5, alpha=1e-4, beta=0.75).

    Half-precision inputs (mixed precision) are normalised in float32: next to k = 2,
    bfloat16's 8-bit mantissa would round most of alpha * sum away.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 alpha_over_n: bool = False):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number (a window centred on "
                             f"each channel), got size={size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_over_n = alpha_over_n

    @property
    def window_alpha(self) -> float:
        """The factor on the plain window sum: alpha, or alpha / n in the alpha_over_n convention."""
        return self.alpha / self.size if self.alpha_over_n else self.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return _LRNFunction.apply(x, self.size // 2, self.window_alpha, self.beta, self.k).to(dtype)

    @torch.no_grad()
    def divisor(self, x: torch.Tensor) -> torch.Tensor:
        """(k + alpha * sum a^2) ** beta, what each activation is divided by. It equals k ** beta
        where the layer is a constant rescale, as at unit-scale activations (issue 12)."""
        return _scale(x.float(), self.size // 2, self.window_alpha, self.k).pow_(self.beta)

    def extra_repr(self) -> str:
        convention = "alpha/n (Caffe, PyTorch)" if self.alpha_over_n else "paper"
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, {convention}"


class MapNorm(nn.Module):
    """Response normalisation within each map, cuda-convnet's ``rnorm`` layer (in its CIFAR-10
    net of Figure 1, layers-18pct.cfg), where the paper's LRN (Section 3.3) sums across maps:

        b = a / (1 + scale / size^2 * sum of a^2 over the size x size window around a) ** pow

    the window centred on each position of the same map, clipped at the map's borders.
    cuda-convnet divides the configured ``scale`` by size^2 (and the across-map ``cmrnorm``'s
    by size), as here.
    """

    def __init__(self, size: int = 3, scale: float = 5e-5, pow: float = 0.75):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"rnorm size must be a positive odd number (a window centred on "
                             f"each position), got size={size}")
        self.size, self.scale, self.pow = size, scale, pow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the window's mean of a^2 with the outside counted as 0: its sum over size^2
        mean_square = F.avg_pool2d(x * x, self.size, 1, self.size // 2, count_include_pad=True)
        return x * mean_square.mul_(self.scale).add_(1).pow_(-self.pow)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, pow={self.pow} (cuda-convnet rnorm)"
