"""Pixel statistics: the mean image (docs/paper.md "Data") and the eigen decomposition of the RGB
covariance behind PCA colour noise (Section 4.1).

Convention: the mean image and the channel std are on the 0..255 scale; the covariance and
its eigen decomposition are of pixels scaled to 0..1 (eigenvectors are the columns), as in
released implementations: the paper's formula adds alpha * lambda, which is only sensible on
that scale (on 0..255 the eigenvalues, and the noise, would be 255x larger).
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# Published ImageNet statistics (RGB order): the fallback when a run trains straight from
# JPEGs, without a prepared data set that carries its own (see alexnet_lit.data.prepared).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
PCA_SIGMA = 0.1  # Section 4.1: alpha_i ~ N(0, 0.1)


@dataclass
class PixelStats:
    """What centring and colour noise need: ``mean_image`` (S, S, 3) and ``std`` (3,) on the
    0..255 scale, ``eigval`` (3,, descending) and ``eigvec`` (3, 3, columns) of the 0..1 RGB
    covariance, and ``source``, saying where they came from."""
    mean_image: np.ndarray
    std: np.ndarray
    eigval: np.ndarray
    eigvec: np.ndarray
    source: str

    @classmethod
    def published(cls, size: int) -> "PixelStats":
        mean = np.broadcast_to(np.asarray(IMAGENET_MEAN, np.float32), (size, size, 3))
        return cls(mean.copy(), np.asarray(IMAGENET_STD, np.float32), np.asarray(IMAGENET_EIGVAL),
                   np.asarray(IMAGENET_EIGVEC), source="published ImageNet constants")

    @classmethod
    def load(cls, path: Path) -> "PixelStats":
        with np.load(path) as f:
            return cls(f["mean_image"], f["std"], f["eigval"], f["eigvec"], source=str(path))

    @property
    def channel_mean(self) -> np.ndarray:
        return self.mean_image.mean(axis=(0, 1))


class PixelSums:
    """Exact integer sums over uint8 (N, S, S, 3) images, mergeable across chunks and
    processes; :meth:`stats` turns them into the mean image and the RGB covariance."""

    def __init__(self, size: int):
        self.images = 0
        self.image_sum = np.zeros((size, size, 3), np.int64)
        self.outer_sum = np.zeros((3, 3), np.int64)  # sum over pixels of x x^T

    def add(self, images: np.ndarray) -> None:
        self.images += len(images)
        self.image_sum += images.sum(axis=0, dtype=np.int64)
        pixels = images.reshape(-1, 3).astype(np.float64)  # exact: sums stay below 2^53
        self.outer_sum += np.rint(pixels.T @ pixels).astype(np.int64)

    def merge(self, other: "PixelSums") -> None:
        self.images += other.images
        self.image_sum += other.image_sum
        self.outer_sum += other.outer_sum

    def state(self) -> dict:
        return dict(images=self.images, image_sum=self.image_sum, outer_sum=self.outer_sum)

    @classmethod
    def from_state(cls, state) -> "PixelSums":
        sums = cls(state["image_sum"].shape[0])
        sums.images = int(state["images"])
        sums.image_sum[:] = state["image_sum"]
        sums.outer_sum[:] = state["outer_sum"]
        return sums

    def stats(self, source: str) -> PixelStats:
        if self.images == 0:
            raise ValueError(f"{source}: no images to compute pixel statistics from")
        pixels = self.images * self.image_sum.shape[0] * self.image_sum.shape[1]
        mean = self.image_sum.sum(axis=(0, 1)) / pixels
        cov = (self.outer_sum / pixels - np.outer(mean, mean)) / 255.0 ** 2
        eigval, eigvec = np.linalg.eigh(cov)  # ascending
        return PixelStats(mean_image=(self.image_sum / self.images).astype(np.float32),
                          std=(255.0 * np.sqrt(np.diag(cov))).astype(np.float32),
                          eigval=eigval[::-1].copy(), eigvec=eigvec[:, ::-1].copy(), source=source)


def save_stats(stats: PixelStats, path: Path) -> None:
    np.savez(path, mean_image=stats.mean_image, std=stats.std, eigval=stats.eigval, eigvec=stats.eigvec)


class PCAColourNoise:
    """Section 4.1: the colour [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T added to every pixel of an
    image, a_i ~ N(0, sigma) drawn per image each time it is used; returned on the 0..255
    scale (255x the 0..1 value), one RGB row per image, computed on the host (a few numbers a
    batch), as the crops and mirrors are drawn: the same colours whatever the device."""

    def __init__(self, eigval, eigvec, sigma: float = PCA_SIGMA):
        self.eigval = torch.as_tensor(np.asarray(eigval), dtype=torch.float32)
        self.eigvec = torch.as_tensor(np.asarray(eigvec), dtype=torch.float32)
        self.sigma = sigma

    def __call__(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        alpha = torch.randn(batch, 3, generator=generator) * self.sigma
        return 255.0 * (alpha * self.eigval) @ self.eigvec.T
