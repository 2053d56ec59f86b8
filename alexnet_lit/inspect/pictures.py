"""Pictures of a network and its data, shared by ``figures`` and the W&B media: image grids
and conv1's kernels per tower with their colour specificity (Figure 3: in the paper the
kernels of one tower are largely colour-agnostic, those of the other colour-specific)."""
import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid


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
