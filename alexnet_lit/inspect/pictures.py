"""Pictures of a network and its data, shared by ``figures`` and the W&B media: image grids
and conv1's kernels per tower with their colour specificity (Figure 3: in the paper the
kernels of one tower are largely colour-agnostic, those of the other colour-specific)."""
import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid

from alexnet_lit.results import Conv1Colour


def image_grid(images: torch.Tensor, nrow: int, zoom: int = 1) -> np.ndarray:
    """(N, 3, H, W) -> one HxWx3 uint8 picture, each image stretched to 0..255 on its own."""
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True, scale_each=True,
                     padding=1, pad_value=1.0)
    grid = grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def conv1_towers(net: nn.Module, towers: int) -> tuple[torch.Tensor, ...]:
    """conv1's kernels (out, 3, k, k), split into the towers' halves (Section 3.2)."""
    return dict(net.learned_layers())["conv1"].weight.detach().cpu().chunk(towers)


def colour_specificity(kernels: torch.Tensor) -> torch.Tensor:
    """Per kernel (N, 3, k, k): the share of its energy off the grey axis, ||w - mean_c w||^2 /
    ||w||^2: 0 for a kernel alike in R, G and B, 2/3 for one that sees a single channel, at
    most 1 (opponent colours)."""
    grey = kernels.mean(dim=1, keepdim=True)
    return (kernels - grey).pow(2).sum((1, 2, 3)) / kernels.pow(2).sum((1, 2, 3)).clamp_min(1e-30)


def conv1_colour(net: nn.Module, towers: int) -> Conv1Colour | None:
    """Figure 3's measure on conv1 (:func:`colour_specificity`): every kernel's score, in kernel
    order (the first ``tower_sizes[0]`` are tower 1's), and each tower's mean; None for one tower."""
    if towers < 2:
        return None
    scores = colour_specificity(dict(net.learned_layers())["conv1"].weight.detach().float().cpu())
    chunks = scores.chunk(towers)
    return Conv1Colour(kernels=[round(x, 5) for x in scores.tolist()], tower_sizes=[len(t) for t in chunks],
                       tower_means=[round(float(t.mean()), 5) for t in chunks])
