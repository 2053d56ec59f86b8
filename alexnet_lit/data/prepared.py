"""The prepared format: every image brought to image_size x image_size once (docs/paper.md "Data"),
stored in one of two ways (``storage``, chosen when preparing and recorded in prepared.json):

- ``raw``: one uint8 (N, S, S, 3) ``.npy`` array per split, read through a memory map. It won
  the per-core measurement (``benchmarks/data_throughput.py``): a read is a copy, with no
  decoding, any number of DDP processes share one file through the page cache, and the bytes
  are exactly the resized originals. The price is disk: S*S*3 bytes an image (196,608 at 256,
  so about 252 GB for ILSVRC-2012's training set, beyond a node's page cache).
- ``jpeg``: the same S x S images as JPEG (quality 95), 7x smaller on Imagenette, in large
  shard files with an index; decoded in batches by nvJPEG where the batch stage runs on a GPU
  (alexnet_lit.data.folder), by the loader workers otherwise. Every image's CRC-32 is in the
  index: a corrupt shard is reported, naming the file, never decoded into wrong pixels.

The mean image and colour PCA are of the resized pixels before any encoding, in both.

Layout of a prepared folder::

    prepared.json      classes (and their words), image size, counts; written last, it marks
                       the folder complete
    plan.json          what is being prepared (resuming checks it is the same)
    stats.npz          training set's mean image and RGB covariance eigen decomposition
    skipped.txt        files left out under on_error=skip, with their errors
    {train,val}/images.npy   uint8 (N, S, S, 3) (storage raw)
    {train,val}/shards/*.jpegs   concatenated JPEG files, one shard per chunk (storage jpeg)
    {train,val}/index.npy    int64 (N, 4): shard, byte offset, length, CRC-32 (storage jpeg)
    {train,val}/labels.npy   int64 (N,), -1 for a skipped file
    {train,val}/files.txt    source files, one per row, relative to the source folder

This module reads the format; alexnet_lit.data.preparation writes it.
"""
import json
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet_lit.data.decode import DecodeError

FORMAT = "alexnet-lit prepared v1"
MARKER, PLAN, STATS, SKIPPED = "prepared.json", "plan.json", "stats.npz", "skipped.txt"
LAYOUTS = ("folder", "imagenet")  # imagenet: class folders must be WordNet ids
STORAGE = ("raw", "jpeg")
STREAMED = "litdata"  # the jpeg storage's images in LitData's chunks: alexnet_lit.data.streaming
JPEG_QUALITY = 95


def is_prepared(root: Path) -> bool:
    return (Path(root) / MARKER).is_file()


def read_meta(root: Path) -> dict:
    return {"storage": "raw", **json.loads((Path(root) / MARKER).read_text())}


def shard_path(root: Path, split: str, shard: int) -> Path:
    return Path(root) / split / "shards" / f"{shard:06d}.jpegs"


class PreparedImages(Dataset):
    """One split of a prepared folder: uint8 (S, S, 3) images and their labels, skipped files
    left out. The memory map is opened in each process that reads (it does not pickle)."""

    def __init__(self, root: Path, split: str):
        self.path = Path(root) / split / "images.npy"
        labels = np.load(Path(root) / split / "labels.npy")
        self.rows = np.flatnonzero(labels >= 0)
        self.labels = labels[self.rows]
        self._images = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self._images[self.rows[index]])), int(self.labels[index])


class PreparedJPEGs(Dataset):
    """One split of a compact (``jpeg``) prepared folder: each image's JPEG bytes (1-D uint8),
    checked against the CRC-32 in the index, or with ``decode`` the uint8 (S, S, 3) image.
    Undecoded bytes come in batches as a list (:func:`collate_jpegs`)."""

    def __init__(self, root: Path, split: str, decode: bool):
        self.root, self.split, self.decode = Path(root), split, decode
        labels = np.load(self.root / split / "labels.npy")
        self.index = np.load(self.root / split / "index.npy")
        self.rows = np.flatnonzero(labels >= 0)
        self.labels = labels[self.rows]
        self.collate_fn = None if decode else collate_jpegs
        self._shards = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": {}}

    def __len__(self) -> int:
        return len(self.rows)

    def jpeg(self, index: int) -> torch.Tensor:
        row = self.rows[index]
        shard, offset, length, crc = (int(v) for v in self.index[row])
        path = shard_path(self.root, self.split, shard)
        if shard not in self._shards:
            self._shards[shard] = np.memmap(path, np.uint8, mode="r")
        data = np.array(self._shards[shard][offset:offset + length])
        if len(data) != length or zlib.crc32(data) != crc:
            raise DecodeError(f"corrupt shard {path}: the image of row {row} ({length} bytes at byte "
                              f"{offset}) is {'cut short' if len(data) != length else 'not what was written'}; "
                              f"prepare {self.root} again")
        return torch.from_numpy(data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        data = self.jpeg(index)
        return decode_rgb(data) if self.decode else data, int(self.labels[index])


def decode_rgb(jpeg: torch.Tensor) -> torch.Tensor:
    """JPEG bytes (1-D uint8) -> uint8 (S, S, 3) RGB, on the CPU."""
    return decode_jpeg(jpeg, ImageReadMode.RGB).permute(1, 2, 0)


def collate_jpegs(samples: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [data for data, _ in samples], torch.tensor([label for _, label in samples])


def decode_jpegs(batch: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """JPEG bytes -> uint8 (B, S, S, 3) on ``device``, as one batch (nvJPEG on CUDA)."""
    images = decode_jpeg(batch, ImageReadMode.RGB, device=device)
    return torch.stack([image.permute(1, 2, 0) for image in images])
