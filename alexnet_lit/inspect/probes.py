"""What the layers of a training network are doing, measured at every validation, so a
table can show that the component it switches off acted and that no layer died:

- ``lrn/<layer>_divisor_mean`` and ``_p95`` (first validation batch): the mean and 95th
  percentile of LRN's divisor
  ``(k + alpha * sum a^2) ** beta`` (Section 3.3). Where both sit at ``k ** beta`` the layer
  is a constant rescale, as with activations of order 1; the paper's raw-pixel inputs make
  the sum large.
- ``dead/<layer>``: the fraction of a ReLU layer's units (channels of a convolution, neurons
  of a fully connected layer) that output zero for every image validation scores
  (:class:`DeadUnits`, summed over processes): a network that blew up in its first steps has
  whole layers dead.
"""
import torch
from torch import nn
from torchmetrics import Metric

from alexnet_lit.lrn import LRN


def percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The q-th percentile of all of x's elements (``torch.quantile`` refuses large tensors)."""
    flat = x.flatten()
    return flat.kthvalue(max(1, round(q / 100 * flat.numel()))).values


class DeadUnits(Metric):
    """The fraction of a layer's units that were never active over every update: each update
    is one batch's per-unit activity (bool, one entry a unit)."""

    full_state_update = False

    def __init__(self, units: int):
        super().__init__()
        self.add_state("active", default=torch.zeros(units), dist_reduce_fx="sum")

    def update(self, active: torch.Tensor) -> None:
        self.active += active.float()

    def compute(self) -> torch.Tensor:
        return (self.active == 0).float().mean()


def relu_units(net: nn.Module) -> dict[str, int]:
    """Per ReLU layer of ``net`` (act1 .. act7), how many units it has: the output channels or
    neurons of the learned layer before it."""
    units, width = {}, None
    for name, layer in net.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        elif isinstance(layer, nn.ReLU):
            units[name.rsplit(".", 1)[-1]] = width
    return units


class LayerActivity:
    """A context manager that records what ``net``'s LRN (with ``lrn``) and ReLU layers do in
    the forward passes run inside it: ``stats`` maps LRN's metric names to values, ``active``
    each ReLU layer to its units' activity on the batch (bool per unit)."""

    def __init__(self, net: nn.Module, lrn: bool = True):
        self.net, self.lrn, self.stats, self.active, self.hooks = net, lrn, {}, {}, []

    def __enter__(self) -> "LayerActivity":
        for name, layer in self.net.named_modules():
            name = name.rsplit(".", 1)[-1]
            if isinstance(layer, LRN) and self.lrn:
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
            self.active[name] = alive.any(dim=0) if alive.dim() == 2 else alive.any(dim=(0, 2, 3))
        return record
