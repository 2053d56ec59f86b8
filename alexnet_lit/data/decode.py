"""Decoding the real, messy files of ILSVRC-2012 (docs/paper.md "Data") and of users: every
image comes out as 8-bit RGB, whatever its format (found from its bytes: a PNG file with a
.JPEG name is read as a PNG) and mode:

- grayscale, CMYK and palette images are converted;
- 16-bit images are scaled to 8 bits (a 16-bit value v becomes round(v / 257));
- transparent pixels (RGBA, LA, a palette's or a colour's transparency) are composited on
  :data:`BACKGROUND`, white;
- the EXIF orientation tag is ignored by default, as torchvision's image loader ignores it
  (pixels as stored); ``exif_orientation="apply"`` turns the image upright as a viewer shows it.

Then the shorter side goes to image_size and the central image_size x image_size patch is kept.

A truncated or unreadable file raises :class:`DecodeError` naming it; with the ``skip``
policy it is left out instead and its name written to a report (never a silent death).
"""
import ctypes
import os
import signal
import stat
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

ON_ERROR = ("error", "skip")
EXIF_ORIENTATION = ("ignore", "apply")
BACKGROUND = (255, 255, 255)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class DecodeError(OSError):
    """An image file that cannot be decoded; the message names the file."""


def not_a_file(path) -> str | None:
    """What ``path`` is where it is not a file to read an image from (a FIFO would block the
    reader forever): ``a FIFO``, ``a socket``, ``a device``, ``a folder``; None for a file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return f"unreadable ({err.strerror})"
    kinds = ((stat.S_ISREG, None), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def only_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """``paths`` split into the files and, named with what each is, the rest (never opened)."""
    kinds = {p: not_a_file(p) for p in paths}
    return [p for p in paths if kinds[p] is None], [f"{p} ({kinds[p]})" for p in paths if kinds[p] is not None]


def check_policy(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}: expected one of {list(ON_ERROR)}")
    return on_error


def die_with_parent(parent: int | None = None) -> None:
    """In a worker process (prepare's pool, a data loader's workers): be killed the moment the
    process that started it dies, even by ``kill -9``, instead of decoding on as an orphan
    (Linux's PR_SET_PDEATHSIG; elsewhere the pools' own checks, slower, remain). ``parent``:
    the PID that forked it, for the case where that one died before this call."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:  # it died before the call
        os._exit(1)


def check_orientation(exif_orientation: str) -> str:
    if exif_orientation not in EXIF_ORIENTATION:
        raise ValueError(f"exif_orientation={exif_orientation!r}: expected one of {list(EXIF_ORIENTATION)}")
    return exif_orientation


def to_rgb(image: Image.Image, exif_orientation: str = "ignore") -> Image.Image:
    """An opened image as 8-bit RGB, by the rules above."""
    if check_orientation(exif_orientation) == "apply":
        image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        opaque = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        image = Image.alpha_composite(opaque, image.convert("RGBA"))
    return image.convert("RGB")


def load_rgb(path, exif_orientation: str = "ignore") -> Image.Image:
    """The file's pixels as 8-bit RGB (:func:`to_rgb`), whatever its format."""
    check_orientation(exif_orientation)  # a wrong choice is the caller's, not the file's
    try:
        with Image.open(path) as image:
            image.load()  # decode it all now, so that a truncated file fails here
            return to_rgb(image, exif_orientation)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DecodeError(f"cannot decode image {path}: {err}") from err


def resize_centre_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bilinear, antialiased), then the central size x size patch,
    as torchvision's Resize(size) + CenterCrop(size): uint8 (size, size, 3)."""
    return np.array(TF.center_crop(TF.resize(image, size), size))


def prepare_image(path, size: int, exif_orientation: str = "ignore") -> np.ndarray:
    return resize_centre_crop(load_rgb(path, exif_orientation), size)


class ImageFiles(Dataset):
    """(path, label) samples, each decoded in the worker to uint8 (S, S, 3).

    With ``on_error="skip"`` an undecodable file gives label -1 (the datamodule drops it from
    the batch) and its error is appended to ``skip_log``.
    """

    def __init__(self, samples: list[tuple[str, int]], image_size: int, on_error: str = "error",
                 skip_log: Path | None = None, exif_orientation: str = "ignore"):
        self.samples, self.image_size = samples, image_size
        self.on_error, self.skip_log = check_policy(on_error), skip_log
        self.exif_orientation = check_orientation(exif_orientation)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            return torch.from_numpy(prepare_image(path, self.image_size, self.exif_orientation)), label
        except DecodeError as err:
            if self.on_error == "error":
                raise
            with open(self.skip_log, "a") as log:  # one short line: atomic across processes
                log.write(f"{err}{os.linesep}")
            return torch.zeros(self.image_size, self.image_size, 3, dtype=torch.uint8), -1
