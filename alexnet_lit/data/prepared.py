"""The prepared format: every image brought to image_size x image_size once (docs/paper.md "Data"),
stored in one of two ways (``storage``, chosen when preparing and recorded in prepared.json):

- ``raw``: one uint8 (N, S, S, 3) ``.npy`` array per split, read a row at a time. It won
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

    prepared.json      classes (and their words), image size, counts, checksums; written
                       last, it marks the folder complete
    plan.json          what is being prepared (resuming checks it is the same)
    stats.npz          training set's mean image and RGB covariance eigen decomposition
    skipped.txt        files left out under on_error=skip, with their errors
    {train,val}/images.npy   uint8 (N, S, S, 3) (storage raw)
    {train,val}/shards/*.jpegs   concatenated JPEG files, one shard per chunk (storage jpeg)
    {train,val}/index.npy    int64 (N, 4): shard, byte offset, length, CRC-32 (storage jpeg)
    {train,val}/labels.npy   int64 (N,), -1 for a skipped file
    {train,val}/files.txt    source files, one per row, relative to the source folder

prepared.json's ``checksums`` hold the size of every file training reads (the pixels, index,
labels and stats.npz) and the CRC-32 of each :data:`PIECE_BYTES` piece of it. A data set checks
the sizes when it is opened and before each pass over it, reads with ``pread`` (a file cut short
while training is an error naming it, never SIGBUS), and checks its labels against the classes;
``python -m alexnet_lit.prepare --verify DIR`` checks every piece (:func:`verify`).

This module reads the format; alexnet_lit.data.preparation writes it.
"""
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

FORMAT = "alexnet-lit prepared v1"
MARKER, PLAN, STATS, SKIPPED = "prepared.json", "plan.json", "stats.npz", "skipped.txt"
LAYOUTS = ("folder", "imagenet")  # imagenet: class folders must be WordNet ids
STORAGE = ("raw", "jpeg")
STREAMED = "litdata"  # the jpeg storage's images in LitData's chunks: alexnet_lit.data.streaming
JPEG_QUALITY = 95
PIECE_BYTES = 64 << 20  # one CRC-32 per piece of this many bytes of a file
CHECK_THREADS = min(8, os.cpu_count() or 1)  # pieces read and summed at once


class DamagedData(OSError):
    """A prepared file that is not what ``prepare`` wrote (another size, other bytes, a label
    that is no class); the message names the file and says what to do."""


def is_prepared(root: Path) -> bool:
    return (Path(root) / MARKER).is_file()


def read_meta(root: Path) -> dict:
    return {"storage": "raw", **json.loads((Path(root) / MARKER).read_text())}


def shard_path(root: Path, split: str, shard: int) -> Path:
    return Path(root) / split / "shards" / f"{shard:06d}.jpegs"


def what_to_do(root: Path) -> str:
    """The end of every message about a damaged prepared folder."""
    return (f"python -m alexnet_lit.prepare --verify {root} names every damaged piece; "
            f"prepare the data again into a new folder")


def piece_crcs(root: Path, sizes: dict[str, int], piece: int = PIECE_BYTES) -> dict[str, list[int]]:
    """The CRC-32 of each ``piece``-byte piece of the first ``sizes[name]`` bytes of each file
    ``root/name``, read in threads; a piece past a file's end sums the bytes there are."""
    def crc(name: str, offset: int) -> int:
        with open(root / name, "rb") as f:
            return zlib.crc32(os.pread(f.fileno(), min(piece, sizes[name] - offset), offset))

    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        futures = {name: [pool.submit(crc, name, offset) for offset in range(0, size, piece)]
                   for name, size in sizes.items()}
    return {name: [future.result() for future in pieces] for name, pieces in futures.items()}


def checksums(root: Path, names: list[str]) -> dict:
    """prepared.json's ``checksums`` of the files ``names`` (relative to ``root``): each one's
    size and the CRC-32 of each of its pieces."""
    sizes = {name: (Path(root) / name).stat().st_size for name in names}
    crcs = piece_crcs(Path(root), sizes)
    return dict(piece_bytes=PIECE_BYTES, files={name: dict(bytes=sizes[name], crc32=crcs[name]) for name in names})


def verify(root: Path) -> list[str]:
    """Every way the files of the prepared folder ``root`` differ from its checksums, one line
    each: a file missing or of another size, a piece of other bytes (naming its byte range)."""
    root = Path(root)
    if not is_prepared(root):
        raise FileNotFoundError(f"{root}: no {MARKER}, so not a finished prepared folder")
    recorded = read_meta(root).get("checksums")
    if recorded is None:
        raise ValueError(f"{root} has no checksums in its {MARKER}: it was prepared before prepare recorded "
                         f"them (LitData's chunks have none either), so there is nothing to verify against; "
                         f"prepare the data again into a new folder to have them")
    files, piece = recorded["files"], recorded["piece_bytes"]
    found = {name: (root / name).stat().st_size for name in files if (root / name).is_file()}
    problems = [f"{root / name}: missing" for name in files if name not in found]
    problems += [f"{root / name}: {found[name]} bytes where prepare wrote {f['bytes']}"
                 for name, f in files.items() if found.get(name, f["bytes"]) != f["bytes"]]
    for name, crcs in piece_crcs(root, {name: files[name]["bytes"] for name in found}, piece).items():
        for k, (now, written) in enumerate(zip(crcs, files[name]["crc32"])):
            if now != written:
                end = min((k + 1) * piece, files[name]["bytes"])
                problems.append(f"{root / name}: bytes {k * piece}-{end - 1} differ from what prepare wrote")
    return problems


def split_labels(root: Path, split: str, classes: int) -> np.ndarray:
    """``split``'s labels.npy, every label checked to be one of ``classes`` (or -1: a skipped file)."""
    path = root / split / "labels.npy"
    labels = np.load(path)
    bad = np.flatnonzero((labels < -1) | (labels >= classes))
    if len(bad):
        raise DamagedData(f"{path}: label {labels[bad[0]]} at index {bad[0]} is not a class of {root / MARKER} "
                          f"(0 to {classes - 1}, or -1 for a skipped file); out of range: {len(bad)} of its "
                          f"{len(labels)} labels; {what_to_do(root)}")
    return labels


class PreparedSplit(Dataset):
    """What the storages share: one split of a prepared folder, its labels checked against the
    classes and those of skipped files left out (``rows``: the others' rows); the sizes prepare
    recorded for its files (none in folders of before them), checked when it is opened and by
    :meth:`check_sizes`; :meth:`read`. Files are opened in each process that reads."""

    def __init__(self, root: Path, split: str):
        self.root, self.split = Path(root), split
        meta = read_meta(self.root)
        recorded = meta.get("checksums", {"files": {}})["files"]
        self.sizes = {self.root / name: f["bytes"] for name, f in recorded.items() if name.startswith(f"{split}/")}
        self.check_sizes()
        labels = split_labels(self.root, split, len(meta["classes"]))
        self.rows = np.flatnonzero(labels >= 0)
        self.labels = labels[self.rows]
        self._files = {}  # path -> open file

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}

    def __len__(self) -> int:
        return len(self.rows)

    def check_sizes(self) -> None:
        """A :class:`DamagedData` naming the first file of the split whose size is not the one
        prepare recorded."""
        for path, size in self.sizes.items():
            now = path.stat().st_size
            if now != size:
                raise DamagedData(f"{path}: {now} bytes where prepare wrote {size}; {what_to_do(self.root)}")

    def read(self, path: Path, buffer: np.ndarray, offset: int, row: int) -> np.ndarray:
        """``buffer`` filled from byte ``offset`` of ``path``, which holds row ``row``. Read with
        ``pread``, not through a memory map: a file cut short while it is read is a
        :class:`DamagedData`, where a map would be killed by SIGBUS."""
        if path not in self._files:
            self._files[path] = open(path, "rb", buffering=0)
        if os.preadv(self._files[path].fileno(), [buffer], offset) != buffer.nbytes:
            raise DamagedData(f"{path}: ends before the {buffer.nbytes} bytes of row {row} at byte {offset}, "
                              f"cut short since it was opened; {what_to_do(self.root)}")
        return buffer


class PreparedImages(PreparedSplit):
    """One split of a prepared folder: uint8 (S, S, 3) images and their labels, skipped files
    left out."""

    def __init__(self, root: Path, split: str):
        super().__init__(root, split)
        self.path = self.root / split / "images.npy"
        with open(self.path, "rb") as f:
            header = npy.read_array_header_1_0 if npy.read_magic(f) == (1, 0) else npy.read_array_header_2_0
            self.shape, self.offset = header(f)[0][1:], f.tell()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = int(self.rows[index])
        image = np.empty(self.shape, np.uint8)
        self.read(self.path, image, self.offset + row * image.nbytes, row)
        return torch.from_numpy(image), int(self.labels[index])


class PreparedJPEGs(PreparedSplit):
    """One split of a compact (``jpeg``) prepared folder: each image's JPEG bytes (1-D uint8),
    checked against the CRC-32 in the index, or with ``decode`` the uint8 (S, S, 3) image.
    Undecoded bytes come in batches as a list (:func:`collate_jpegs`)."""

    def __init__(self, root: Path, split: str, decode: bool):
        super().__init__(root, split)
        self.decode = decode
        self.index = np.load(self.root / split / "index.npy")
        self.collate_fn = None if decode else collate_jpegs

    def jpeg(self, index: int) -> torch.Tensor:
        row = int(self.rows[index])
        shard, offset, length, crc = (int(v) for v in self.index[row])
        path = shard_path(self.root, self.split, shard)
        data = self.read(path, np.empty(length, np.uint8), offset, row)
        if zlib.crc32(data) != crc:
            raise DamagedData(f"corrupt shard {path}: the image of row {row} ({length} bytes at byte {offset}) "
                              f"is not what was written; {what_to_do(self.root)}")
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
