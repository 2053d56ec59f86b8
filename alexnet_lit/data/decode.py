"""Decoding the real, messy files of ILSVRC-2012 (docs/paper.md "Data"): grayscale and CMYK JPEGs
and a PNG file with a .JPEG name all come out as RGB; then the shorter side goes to
image_size and the central image_size x image_size patch is kept.

A truncated or unreadable file raises :class:`DecodeError` naming it; with the ``skip``
policy it is left out instead and its name written to a report (never a silent death).
"""
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

ON_ERROR = ("error", "skip")


class DecodeError(OSError):
    """An image file that cannot be decoded; the message names the file."""


def check_policy(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}: expected one of {list(ON_ERROR)}")
    return on_error


def load_rgb(path) -> Image.Image:
    """The file's pixels as RGB, whatever its format (found from its bytes, not its name)."""
    try:
        with Image.open(path) as image:
            image.load()  # decode it all now, so that a truncated file fails here
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DecodeError(f"cannot decode image {path}: {err}") from err


def resize_centre_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bilinear, antialiased), then the central size x size patch,
    as torchvision's Resize(size) + CenterCrop(size): uint8 (size, size, 3)."""
    return np.array(TF.center_crop(TF.resize(image, size), size))


def prepare_image(path, size: int) -> np.ndarray:
    return resize_centre_crop(load_rgb(path), size)


class ImageFiles(Dataset):
    """(path, label) samples, each decoded in the worker to uint8 (S, S, 3).

    With ``on_error="skip"`` an undecodable file gives label -1 (the datamodule drops it from
    the batch) and its error is appended to ``skip_log``.
    """

    def __init__(self, samples: list[tuple[str, int]], image_size: int, on_error: str = "error",
                 skip_log: Path | None = None):
        self.samples, self.image_size = samples, image_size
        self.on_error, self.skip_log = check_policy(on_error), skip_log

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            return torch.from_numpy(prepare_image(path, self.image_size)), label
        except DecodeError as err:
            if self.on_error == "error":
                raise
            with open(self.skip_log, "a") as log:  # one short line: atomic across processes
                log.write(f"{err}{os.linesep}")
            return torch.zeros(self.image_size, self.image_size, 3, dtype=torch.uint8), -1
