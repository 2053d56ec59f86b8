"""What the network sees of a batch of uint8 (B, S, S, 3) images, computed on the device
after transfer (Section 4.1, docs/paper.md "Test time"):

- ``random``: one random crop_size x crop_size patch per image, mirrored with probability
  1/2, plus PCA colour noise (training);
- ``center``: the central patch (validation, or training under ``no_augment``);
- ``tencrop``: the four corner and the centre patches and their mirrors (B, 10, 3, c, c).

Every view subtracts the mean image cut out at the same place (and mirrored with the image),
as Caffe does, or, with ``normalize=standard``, the channel mean divided by the channel std.
"""
import torch

from alexnet_lit.data.colour import PCAColourNoise, PixelStats

VIEWS = ("center", "tencrop")  # the evaluation views; training uses "random" or "center"
TENCROP_CENTRE = 4  # where the unmirrored centre patch lies among the ten crops
NORMALIZE = ("paper", "standard")


def centre_offset(size: int, crop: int) -> int:
    return int(round((size - crop) / 2.0))  # as torchvision's CenterCrop (256 -> 227: 14, as Caffe)


def to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small tensor drawn on the host, on ``device`` without waiting for it: a copy from
    pageable memory would wait for the device's queued work (the last step) every batch."""
    return values.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else values.to(device)


def windows(images: torch.Tensor, crop: int) -> torch.Tensor:
    """(B, S, S, C) -> a view (B, n, n, crop, crop, C), n = S - crop + 1: [b, top, left] is
    image b's crop at (top, left). Nothing is copied until views are picked out of it."""
    b, size, _, channels = images.shape
    s = images.stride()
    n = size - crop + 1
    return images.as_strided((b, n, n, crop, crop, channels), (s[0], s[1], s[2], s[1], s[2], s[3]))


class PaperViews:
    """Crops, mirrors, colour noise and centring of a uint8 (B, S, S, 3) batch on its device;
    returns float (B, 3, c, c), or (B, 10, 3, c, c) for ``tencrop``."""

    def __init__(self, stats: PixelStats, crop_size: int, normalize: str = "paper",
                 pca_noise: bool = True):
        if normalize not in NORMALIZE:
            raise ValueError(f"data.normalize={normalize!r}: expected one of {list(NORMALIZE)}")
        mean = torch.as_tensor(stats.mean_image, dtype=torch.float32)
        if normalize == "paper":  # raw RGB minus the mean image
            self.mean, self.scale = mean, None
        else:  # (x/255 - channel mean) / channel std, as torchvision's Normalize
            self.mean = mean.mean(dim=(0, 1)).expand_as(mean).contiguous()
            self.scale = 1.0 / torch.as_tensor(stats.std, dtype=torch.float32)
        self.crop_size = crop_size
        self.colour_noise = PCAColourNoise(stats.eigval, stats.eigvec) if pca_noise else None

    def __call__(self, images: torch.Tensor, view: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """``generator``: where the ``random`` view's offsets, mirrors and colours come from."""
        batch, size, c, device = images.shape[0], images.shape[1], self.crop_size, images.device
        if images.shape[1:] != self.mean.shape:
            raise ValueError(f"images of shape {tuple(images.shape[1:])} but a mean image of "
                             f"{tuple(self.mean.shape)}: data.image_size must match the data")
        self.mean = self.mean.to(device)
        centred = images.float().sub_(self.mean)  # the mean image, subtracted where each pixel lies
        if self.scale is not None:
            self.scale = self.scale.to(device)
            centred.mul_(self.scale)
        crops = windows(centred, c)
        if view == "random":  # offsets, mirrors and colours drawn on the host: no device sync
            top, left = to_device(torch.randint(0, size - c + 1, (2, batch), generator=generator), device)
            x = crops[torch.arange(batch, device=device), top, left]  # (B, c, c, 3)
            mirrored = to_device(torch.nonzero(torch.rand(batch, generator=generator) < 0.5)[:, 0], device)
            x[mirrored] = x[mirrored].flip(2)
            if self.colour_noise is not None:
                noise = to_device(self.colour_noise(batch, generator), device)
                x += (noise if self.scale is None else noise * self.scale).view(batch, 1, 1, 3)
            x = x[:, None]
        elif view == "center":
            middle = centre_offset(size, c)
            x = crops[:, middle, middle][:, None].contiguous()
        elif view == "tencrop":  # top-left, top-right, bottom-left, bottom-right, centre; mirrored
            far, middle = size - c, centre_offset(size, c)
            five = crops[:, [0, 0, far, far, middle], [0, far, 0, far, middle]]  # (B, 5, c, c, 3)
            x = torch.cat([five, five.flip(3)], dim=1)
        else:
            raise ValueError(f"unknown view {view!r}: expected 'random' or one of {list(VIEWS)}")
        x = x.permute(0, 1, 4, 2, 3)  # (B, V, 3, c, c), channels-last in memory
        return x if view == "tencrop" else x[:, 0]
