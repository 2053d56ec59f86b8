"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, Section 3), built from a layer table.

The table lives in ``conf/model/alexnet.yaml``: an ordered mapping from layer name to
either a convolution row ``{out, kernel, stride, pad, split}`` or one of the words ``lrn``
(across maps, Section 3.3), ``rnorm`` (within each map, cuda-convnet's CIFAR-10 nets of
Figure 1), ``maxpool`` or ``avgpool``. A row set to ``null`` is removed; the next layer's input channels follow
from what is left, so depth ablations are one line. ``split: true`` marks the layers
that see only their own tower's maps (Section 3.2): they get ``groups=towers``. ``width``
multiplies the kernels of the rows it names, relative to whatever table was composed
(``one_tower`` halves conv1..conv4 of the full net and of every preset alike).
"""
import math
import zlib
from collections import OrderedDict

import torch
from torch import nn

from alexnet_lit.data.sampling import derived_seed
from alexnet_lit.layer_table import POOL, map_sizes, pool_coverage
from alexnet_lit.lrn import LRN, MapNorm

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}  # Section 3.1
INITS = ("paper", "caffe", "paper_gain", "kaiming", "cuda_convnet")
POOLS = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}  # the layers of layer_table.POOL_ROWS
# The paper network's fan-in (inputs per output unit) of each learned layer, for paper_gain.
PAPER_FAN_IN = {"conv1": 3 * 11 * 11, "conv2": 48 * 5 * 5, "conv3": 256 * 3 * 3, "conv4": 192 * 3 * 3,
                "conv5": 192 * 3 * 3, "fc6": 256 * 6 * 6, "fc7": 4096, "fc8": 4096}
# Section 5: "We initialized the neuron biases in the second, fourth, and fifth
# convolutional layers, as well as in the fully-connected hidden layers, with 1."
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")


class AlexNet(nn.Module):
    """conv1..conv5 (``features``) then fc6, fc7, fc8 (``classifier``); fc8 returns logits."""

    def __init__(self, features: dict, classifier: dict, num_classes: int = 1000,
                 input_size: int = 227, towers: int = 2, activation: str = "relu",
                 lrn: dict | None = None, rnorm: dict | None = None, pool: dict | None = None,
                 dropout: float = 0.5,
                 init: str = "paper", width: dict | None = None, seed: int | None = None,
                 positive_bias: float | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r}: expected one of {sorted(ACTIVATIONS)}")
        if init not in INITS:
            raise ValueError(f"model.init={init!r}: expected one of {list(INITS)}")
        if towers not in (1, 2):
            raise ValueError(f"model.towers={towers}: the paper's net has 2 towers, its comparison net 1")
        act = ACTIVATIONS[activation]
        pool = {**POOL, **(pool or {})}
        width = width or {}
        unknown = sorted(set(width) - set(features))
        if unknown:
            raise ValueError(f"model.width names {unknown}, which are not rows of model.features")
        self.input_size, self.init, self.activation, self.seed = input_size, init, activation, seed
        self.positive_bias = positive_bias

        sizes = map_sizes(features, input_size, pool)
        self.coverage = pool_coverage(features, input_size, pool)
        layers, channels = OrderedDict(), 3
        for name, row in features.items():
            if row is None:
                continue
            if row == "lrn":
                if lrn is not None:
                    layers[name] = LRN(**lrn)
            elif row == "rnorm":
                if rnorm is not None:
                    layers[name] = MapNorm(**rnorm)
            elif isinstance(row, str):  # a pool: map_sizes has refused any other word
                layers[name] = POOLS[row](pool["kernel"], pool["stride"], ceil_mode=pool["ceil_mode"])
            else:
                groups = towers if row.get("split", False) else 1
                out = round(row["out"] * width.get(name, 1))
                layers[name] = nn.Conv2d(channels, out, row["kernel"], row["stride"],
                                         row["pad"], groups=groups)
                layers[name.replace("conv", "act")] = act()
                channels = out
        size = sizes[next(reversed(sizes))][1]
        self.features = nn.Sequential(layers)

        head, width = OrderedDict(), channels * size * size
        for name, out in classifier.items():  # fc6, fc7: ReLU then dropout (Section 4.2)
            head[name] = nn.Linear(width, out)
            head[f"act{name[2:]}"] = act()
            head[f"drop{name[2:]}"] = nn.Dropout(dropout)
            width = out
        head["fc8"] = nn.Linear(width, num_classes)  # logits: no ReLU, no softmax
        self.classifier = nn.Sequential(head)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

    def learned_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, module) for every conv and fc layer, in order: conv1 .. fc8."""
        children = [*self.features.named_children(), *self.classifier.named_children()]
        return [(n, m) for n, m in children if isinstance(m, (nn.Conv2d, nn.Linear))]

    def layer_generator(self, name: str) -> torch.Generator | None:
        """The generator layer ``name`` draws its initial weights from: seeded by (``seed``,
        the layer's name), so that removing or resizing one layer changes no other layer's
        weights, and a layer of the same shape starts the same in every ablation of a seed
        (common random numbers). ``seed=None``: torch's global generator."""
        if self.seed is None:
            return None
        return torch.Generator().manual_seed(derived_seed(self.seed, zlib.crc32(name.encode())))

    def reset_parameters(self) -> None:
        """Initialise by ``self.init``, each layer from :meth:`layer_generator`:

        - ``paper`` (Section 5): weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5,
          fc6, fc7 and 0 elsewhere. Often fails to start learning at lr 0.01. The biases of 1
          are there "to provide the ReLUs with positive inputs": with tanh units they are 0
          (at 1 every tanh sits near tanh(1), and the tanh arm stayed at chance).
        - ``caffe`` (bvlc_alexnet): as paper, but those biases 0.1 and std 0.005 on fc6, fc7.
        - ``paper_gain``: as paper, with each layer's std scaled by sqrt(paper's fan-in / its
          fan-in), so a narrower network (the CPU presets) passes signals on with the paper
          network's gain per layer instead of letting them fade.
        - ``kaiming``: He-normal weights (fan-in, gain for the activation), biases 0,
          fc8 ~ N(0, 0.01).
        - ``cuda_convnet`` (Figure 1's net, cuda-convnet's layers-18pct.cfg ``initW``): weights
          ~ N(0, 1e-4) in conv1 and N(0, 0.01) elsewhere, biases 0.

        ``positive_bias``, where given, replaces the constant of the positive biases (BIAS_ONE's
        layers, ReLU nets) of ``paper``, ``paper_gain`` and ``caffe``.
        """
        for name, layer in self.learned_layers():
            weight, bias = layer.weight, layer.bias
            if self.init == "cuda_convnet":
                std, one = (1e-4 if name == "conv1" else 0.01), 0.0
            elif self.init == "kaiming" and name != "fc8":  # He-normal on fan-in
                std, one = nn.init.calculate_gain(self.activation) / math.sqrt(weight[0].numel()), 0.0
            else:
                std = 0.005 if self.init == "caffe" and name in ("fc6", "fc7") else 0.01
                if self.init == "paper_gain":
                    std *= math.sqrt(PAPER_FAN_IN[name] / weight[0].numel())
                one = {"paper": 1.0, "paper_gain": 1.0, "caffe": 0.1, "kaiming": 0.0}[self.init]
                one = self.positive_bias if self.positive_bias is not None and self.init != "kaiming" else one
                one = one if name in BIAS_ONE and self.activation == "relu" else 0.0
            with torch.no_grad():
                weight.normal_(0.0, std, generator=self.layer_generator(name))
                bias.fill_(one)
