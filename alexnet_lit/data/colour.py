"""Pixel statistics: centring (PAPER.md "Data") and PCA colour noise (Section 4.1)."""
import torch

# Published ImageNet statistics, the fallback when no prepared data set supplies its own
# (RGB order). Mean and std on the 0..255 scale. The eigen decomposition is of the RGB
# covariance of pixels scaled to 0..1 (eigenvectors are the columns), as in released
# implementations: the paper's formula adds alpha * lambda, which is only sensible on that
# scale (on 0..255 the eigenvalues, and the noise, would be 255x larger).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
NORMALIZE = ("paper", "standard")


def centre(images: torch.Tensor, normalize: str) -> torch.Tensor:
    """``paper``: raw 0..255 RGB minus the mean; ``standard``: (x/255 - mean) / std."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    if normalize == "paper":
        return images - mean
    if normalize == "standard":
        return (images - mean) / images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    raise ValueError(f"data.normalize={normalize!r}: expected one of {list(NORMALIZE)}")


class PCAColourNoise:
    """Add [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T (0..1 units, so x255 on 0..255 images) to every
    pixel, a_i ~ N(0, sigma) drawn per image each time it is used."""

    def __init__(self, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, sigma: float = 0.1):
        self.eigval, self.eigvec, self.sigma = torch.tensor(eigval), torch.tensor(eigvec), sigma

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        alpha = torch.randn(images.shape[0], 3, device=images.device) * self.sigma
        shift = 255.0 * (alpha * self.eigval.to(images.device)) @ self.eigvec.to(images.device).T
        return images + shift.view(-1, 3, 1, 1).to(images.dtype)
