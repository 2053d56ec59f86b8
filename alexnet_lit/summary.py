"""The network layer by layer, as Section 3 counts it: ``python -m alexnet_lit.summary
[overrides]`` prints, for the composed network (any model or ablation), each layer's output
shape, neurons, parameters and multiply-adds for one image, with totals.

The paper lists 253,440-186,624-64,896-64,896-43,264-4096-4096-1000 neurons; its first figure
is an erratum for conv1's 55x55x96 = 290,400 (docs/paper.md "Architecture").
"""
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from alexnet_lit.build import hydra_command
from alexnet_lit.lrn import LRN
from alexnet_lit.model import AlexNet

PAPER_NEURONS = {"conv1": 253_440, "conv2": 186_624, "conv3": 64_896, "conv4": 64_896,
                 "conv5": 43_264, "fc6": 4096, "fc7": 4096, "fc8": 1000}
CONV1_NEURONS = 290_400  # 55 x 55 x 96: the paper's 253,440 is an erratum


@dataclass
class Layer:
    name: str
    shape: tuple[int, ...]  # output of one image: (C, H, W) or (N,)
    neurons: int            # outputs of a learned layer (conv, fc); 0 for LRN and pooling
    params: int
    mult_adds: int          # of the learned layer, for one image


def layer_table(net: AlexNet) -> list[Layer]:
    """One row per conv, LRN, pooling and fc layer, from a forward pass of one image."""
    rows, hooks = [], []

    def record(name: str, layer: nn.Module, inputs, output) -> None:
        shape, size = tuple(output.shape[1:]), output[0].numel()
        learned = isinstance(layer, (nn.Conv2d, nn.Linear))
        if isinstance(layer, nn.Conv2d):
            mult_adds = size * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        else:
            mult_adds = layer.in_features * layer.out_features if learned else 0
        rows.append(Layer(name, shape, size if learned else 0,
                          sum(p.numel() for p in layer.parameters()), mult_adds))

    for name, layer in [*net.features.named_children(), *net.classifier.named_children()]:
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.MaxPool2d, LRN)):
            hooks.append(layer.register_forward_hook(
                lambda layer, inputs, output, name=name: record(name, layer, inputs, output)))
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, net.input_size, net.input_size))
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def paper_note(rows: list[Layer]) -> str | None:
    """How the neuron counts compare with the paper's list, when this is the paper's net."""
    neurons = {r.name: r.neurons for r in rows if r.neurons}
    if neurons != {**PAPER_NEURONS, "conv1": CONV1_NEURONS}:
        return None
    total = sum(neurons.values())
    return (f"The paper's neurons per layer, {'-'.join(f'{n:,}' for n in PAPER_NEURONS.values())} "
            f"(\"650,000 neurons\"), except conv1: its 253,440 is an erratum for "
            f"55x55x96 = {CONV1_NEURONS:,}, making {total:,} in all.")


def format_table(rows: list[Layer]) -> str:
    """The rows as a fixed-width table with a total line."""
    def line(name: str, shape: str, *counts: int) -> str:
        numbers = (f"{n:,}" if n else "" for n in counts)
        return f"{name:<7} {shape:>14} " + " ".join(f"{n:>{w}}" for n, w in zip(numbers, (10, 12, 15)))

    lines = [f"{'layer':<7} {'output':>14} {'neurons':>10} {'parameters':>12} {'mult-adds':>15}"]
    lines += [line(r.name, "x".join(map(str, r.shape)), r.neurons, r.params, r.mult_adds) for r in rows]
    lines.append(line("total", "", *(sum(getattr(r, k) for r in rows) for k in ("neurons", "params", "mult_adds"))))
    return "\n".join(lines)


@hydra_command("summary")
def main(cfg: DictConfig) -> list[Layer]:
    net = instantiate(cfg.model)
    rows = layer_table(net)
    print(f"{cfg.model._target_.rsplit('.', 1)[-1]}: {net.input_size}x{net.input_size} input, "
          f"{cfg.model.towers} tower(s), {cfg.data.num_classes} classes")
    print(format_table(rows))
    note = paper_note(rows)
    if note:
        print(note)
    return rows


if __name__ == "__main__":
    main()
