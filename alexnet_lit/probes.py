"""What the layers of a training network are doing, measured on the first validation batch
of every validation (issue 12), so a table can show that the component it switches off acted:

- ``lrn/<layer>_divisor_mean`` and ``_p95``: the mean and 95th percentile of LRN's divisor
  ``(k + alpha * sum a^2) ** beta`` (Section 3.3). Where both sit at ``k ** beta`` the layer
  is a constant rescale, as with activations of order 1; the paper's raw-pixel inputs make
  the sum large.
- ``dead/<layer>``: the fraction of a ReLU layer's units (channels of a convolution, neurons
  of a fully connected layer) that output zero for every image of the batch: a network that
  blew up in its first steps has whole layers dead.
"""
import torch
from torch import nn

from alexnet_lit.lrn import LRN


def percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The q-th percentile of all of x's elements (``torch.quantile`` refuses large tensors)."""
    flat = x.flatten()
    return flat.kthvalue(max(1, round(q / 100 * flat.numel()))).values


class LayerActivity:
    """A context manager that records what ``net``'s LRN and ReLU layers do in the forward
    passes run inside it (if ``enabled``); ``stats`` then maps metric names to values."""

    def __init__(self, net: nn.Module, enabled: bool = True):
        self.net, self.enabled, self.stats, self.hooks = net, enabled, {}, []

    def __enter__(self) -> "LayerActivity":
        for name, layer in self.net.named_modules() if self.enabled else ():
            name = name.rsplit(".", 1)[-1]
            if isinstance(layer, LRN):
                self.hooks.append(layer.register_forward_hook(self._lrn(name)))
            elif isinstance(layer, nn.ReLU):
                self.hooks.append(layer.register_forward_hook(self._dead(name)))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()

    def _lrn(self, name: str):
        def record(layer: LRN, inputs, output) -> None:
            divisor = layer.divisor(inputs[0].detach())
            self.stats[f"lrn/{name}_divisor_mean"] = divisor.mean()
            self.stats[f"lrn/{name}_divisor_p95"] = percentile(divisor, 95)
        return record

    def _dead(self, name: str):
        def record(layer: nn.ReLU, inputs, output) -> None:
            alive = output.detach() > 0  # (B, C, H, W) or (B, C)
            per_unit = alive.any(dim=0) if alive.dim() == 2 else alive.any(dim=(0, 2, 3))
            self.stats[f"dead/{name}"] = 1 - per_unit.float().mean()
        return record
