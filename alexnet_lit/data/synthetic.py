"""The embedded default data: a deterministic, learnable image set that needs no download.

Each class has its own colour and an oriented stripe pattern; every image adds a random
phase, brightness and pixel noise. The set is written once as JPEG files in ImageFolder
layout under a cache folder and then read by the same pipeline as ImageNet.
"""
import colorsys
import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet_lit.data.folder import FolderDataModule


def synthetic_root(cache_dir: str | Path, **spec) -> Path:
    name = "synthetic-{num_classes}c-{train_per_class}-{val_per_class}-{size}px-seed{seed}"
    return Path(cache_dir).expanduser() / name.format(**spec)


def synthesize(cache_dir: str | Path, num_classes: int = 10, train_per_class: int = 100,
               val_per_class: int = 20, size: int = 256, seed: int = 0) -> Path:
    """Write the set (once) and return its root, holding train/ and val/. Processes that
    start at once (the jobs of a sweep) take turns: the first writes it, the others find it."""
    spec = dict(num_classes=num_classes, train_per_class=train_per_class,
                val_per_class=val_per_class, size=size, seed=seed)
    root = synthetic_root(cache_dir, **spec)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(f"{root.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        marker = root / "spec.json"
        if not (marker.is_file() and json.loads(marker.read_text()) == spec):
            _write(root, spec)
    return root


def _write(root: Path, spec: dict) -> None:
    """Generate the set in a staging folder, then move it into place whole."""
    num_classes, size = spec["num_classes"], spec["size"]
    staging = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    rng = np.random.default_rng(spec["seed"])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for split, count in (("train", spec["train_per_class"]), ("val", spec["val_per_class"])):
        for c in range(num_classes):
            folder = staging / split / f"class{c:03d}"
            folder.mkdir(parents=True)
            colour = np.array(colorsys.hsv_to_rgb(c / num_classes, 0.6, 0.75), np.float32) * 255
            angle, freq = np.pi * c / num_classes, 3 + 2 * (c % 4)
            stripes = np.cos(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle))
                             + rng.uniform(0, 2 * np.pi, (count, 1, 1)))
            pixels = (colour + rng.normal(0, 20, (count, 1, 1, 3))
                      + 45 * stripes[..., None] + rng.normal(0, 25, (count, size, size, 3)))
            for i, image in enumerate(pixels.clip(0, 255).astype(np.uint8)):
                Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=90)
    (staging / "spec.json").write_text(json.dumps(spec))
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)


class SyntheticDataModule(FolderDataModule):
    """``data=synthetic``: :func:`synthesize` in ``prepare_data``, then the folder pipeline."""

    def __init__(self, cache_dir: str, num_classes: int = 10, train_per_class: int = 100,
                 val_per_class: int = 20, seed: int = 0, **pipeline):
        self.spec = dict(cache_dir=cache_dir, num_classes=num_classes, train_per_class=train_per_class,
                         val_per_class=val_per_class, size=pipeline.get("image_size", 256), seed=seed)
        super().__init__(root=str(synthetic_root(**self.spec)), num_classes=num_classes, **pipeline)

    def prepare_data(self) -> None:
        synthesize(**self.spec)
