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

And during training, the first and the largest training loss and how often it sat at chance
(:class:`LossWatch`). results.json records them (:func:`recorded_activity`, and the verdict
of alexnet_lit.inspect.learning).
"""
import math

import torch
from torch import nn
from torchmetrics import Metric

from alexnet_lit.lrn import LRN
from alexnet_lit.results import LrnLayer


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


def recorded_activity(metrics: dict[str, float], net: nn.Module) -> dict:
    """What the last validation's probes measured (``metrics``: the logged values), as
    results.json records it: ``lrn``, per LRN layer the divisor's mean and 95th percentile
    beside ``k ** beta``, its value for a constant rescale; ``dead_units``, per ReLU layer the
    fraction of units silent on every image validation scored."""
    layers = {name.rsplit(".", 1)[-1]: layer for name, layer in net.named_modules() if isinstance(layer, LRN)}
    lrn = {name: LrnLayer(k_beta=layer.k ** layer.beta, divisor_mean=metrics.get(f"lrn/{name}_divisor_mean"),
                          divisor_p95=metrics.get(f"lrn/{name}_divisor_p95")) for name, layer in layers.items()}
    dead = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("dead/")}
    return dict(lrn=lrn, dead_units=dead)


class LossWatch:
    """The first and the largest training loss, the step of the largest, and how many steps
    from ``from_step`` on (the second half of training) had a loss above ``chance``
    (AT_CHANCE_LOSS x ln(classes)) of how many, kept on the loss's device (no host sync per step)."""

    KEYS = ("first", "largest", "step", "steps", "at_chance")

    def __init__(self, chance: float = math.inf, from_step: int | None = None):
        self.chance, self.from_step = chance, from_step
        self.first = self.largest = self.step = self.steps = self.at_chance = None

    def update(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        if self.first is None:
            zero = torch.zeros((), dtype=torch.long, device=loss.device)
            self.first, self.largest, self.step = loss, loss, zero + step
            self.steps, self.at_chance = zero, zero
        bigger = loss > self.largest
        self.largest = torch.where(bigger, loss, self.largest)
        self.step = torch.where(bigger, torch.tensor(step, device=loss.device), self.step)
        if step >= (self.from_step or 0):
            self.steps = self.steps + 1
            self.at_chance = self.at_chance + (loss > self.chance).long()

    def state_dict(self) -> dict:
        if self.first is None:
            return {}
        return dict(first=float(self.first), largest=float(self.largest), step=int(self.step),
                    steps=int(self.steps), at_chance=int(self.at_chance))

    def load_state_dict(self, state: dict) -> None:
        if state:  # checkpoints from before the step counts start them at 0
            self.first, self.largest, self.step, self.steps, self.at_chance = (
                torch.tensor(state.get(k, 0)) for k in self.KEYS)
