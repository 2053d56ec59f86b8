"""``data=streaming``: a prepared data set in LitData's chunks (``pip install -e ".[streaming]"``),
read where it lies: object storage (``s3://``, ``gs://``, ``azure://``, ``hf://``), a folder
every node mounts, or ``local:/path`` (a folder served as a remote). No node holds a copy
beforehand: each training process streams the chunks of its own share into ``cache_dir``
(at most ``max_cache_size``), and LitData's loader shuffles chunks, then images within them,
and resumes mid-epoch from a checkpoint.

``python -m alexnet_lit.prepare SRC OUT --storage litdata`` writes it: the 256x256 images of the
compact format as JPEG (quality 95) bytes with their labels, in ``OUT/train`` and ``OUT/val``
(LitData's ``optimize``), beside ``prepared.json`` and ``stats.npz`` (alexnet_lit.data.prepared).
As from a compact prepared folder, the loader workers hand over the bytes and nvJPEG decodes the
batch where the batch stage runs on a GPU; elsewhere the workers decode.
"""
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from alexnet_lit.data.folder import FolderDataModule
from alexnet_lit.data.prepared import MARKER, STATS, STREAMED, PreparedJPEGs, collate_jpegs, decode_rgb, read_meta
from alexnet_lit.data.sampling import local_batch_size

NEEDS = 'data=streaming needs LitData: pip install -e ".[streaming]"'


def litdata():
    try:
        import litdata
    except ImportError as err:
        raise ImportError(NEEDS) from err
    return litdata


class ShardImages:
    """LitData's ``optimize`` function: one shard of a compact prepared split -> its images'
    JPEG bytes and labels, skipped files left out."""

    def __init__(self, prepared: Path, split: str):
        self.images = PreparedJPEGs(prepared, split, decode=False)

    def __call__(self, shard: int):
        for row in np.flatnonzero(self.images.index[self.images.rows, 0] == shard):
            yield dict(image=self.images.jpeg(row).numpy().tobytes(), label=int(self.images.labels[row]))


def write_litdata(prepared: Path, out: Path, workers: int) -> dict:
    """LitData chunks of a compact (``jpeg``) prepared folder, the JPEG bytes as they are, into
    ``out``; prepared.json (storage ``litdata``) and stats.npz beside them."""
    meta = read_meta(prepared)
    if "val_official_images" in meta:
        raise ValueError("--storage litdata keeps one validation stream: leave out --held-out-to-val")
    for split in meta["splits"]:
        shards = sorted(int(p.stem) for p in (prepared / split / "shards").glob("*.jpegs"))
        litdata().optimize(fn=ShardImages(prepared, split), inputs=shards, output_dir=str(out / split),
                           chunk_bytes="64MB", num_workers=min(workers, len(shards)), mode="overwrite",
                           verbose=False,  # workers forked, not spawned: none imports torch again
                           start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    shutil.copy(prepared / STATS, out / STATS)
    meta.pop("checksums", None)  # the shards', not those of the chunks
    meta["storage"] = STREAMED
    (out / MARKER).write_text(json.dumps(meta, indent=1))
    return meta


class Decoded:
    """An item of the chunks -> (JPEG bytes as 1-D uint8, or with ``decode`` the uint8 (S, S, 3)
    image, label)."""

    def __init__(self, decode: bool):
        self.decode = decode

    def __call__(self, item: dict) -> tuple[torch.Tensor, int]:
        data = torch.frombuffer(bytearray(item["image"]), dtype=torch.uint8)
        return decode_rgb(data) if self.decode else data, int(item["label"])


class Indexed(Dataset):
    """A StreamingDataset read by index (validation: the project's sampler gives each process its
    images, every one once)."""

    def __init__(self, streaming):
        self.streaming, self.collate_fn = streaming, streaming.collate_fn

    def __len__(self) -> int:  # every image: a StreamingDataset's len() is a DDP process's share
        return sum(end - start for start, end in self.streaming.region_of_interest)

    def __getitem__(self, index: int):
        return self.streaming[index]


class StreamingDataModule(FolderDataModule):
    """FolderDataModule's batches, crops and views from LitData chunks at ``root`` (a URL or a
    folder); ``cache_dir``: where a remote's chunks are streamed to, ``max_cache_size`` at most."""

    def __init__(self, root: str, num_classes: int, cache_dir: str, max_cache_size: str = "50GB", **kwargs):
        super().__init__(root, num_classes, **kwargs)
        self.url, self.cache = root.rstrip("/"), Path(cache_dir).expanduser()

    def fetch(self) -> Path:
        """The folder of prepared.json and stats.npz: the data's own, or for a remote their copies
        in the cache."""
        if "://" not in self.url and not self.url.startswith("local:"):
            return Path(self.url).expanduser()
        from litdata.streaming.downloader import get_downloader
        self.cache.mkdir(parents=True, exist_ok=True)
        downloader = get_downloader(self.url, str(self.cache), [])
        for name in (MARKER, STATS):
            downloader.download_file(f"{self.url}/{name}", str(self.cache / name))
        return self.cache

    def setup(self, stage: str | None = None) -> None:
        self.root = self.fetch()
        super().setup(stage)

    def prepared_sets(self, storage: str) -> tuple[Dataset, Dataset]:
        if storage != STREAMED:
            raise ValueError(f"data=streaming reads what prepare --storage litdata writes; {self.url} holds "
                             f"{storage} storage: train from it with data=folder")
        decode = self.batch_device().type != "cuda"
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        # Training: LitData gives each process chunks of its own, through one cache a node shares.
        # Validation is read by index, each process's images from every chunk: a cache of its own,
        # or one process would evict a chunk while another reads it.
        rank = self.trainer.global_rank if self.trainer else 0
        caches = dict(train=self.cache / "train", val=self.cache / "val" / f"process{rank}")
        made = [litdata().StreamingDataset(f"{self.url}/{split}", cache_dir=str(caches[split]), shuffle=train,
                                           drop_last=train, seed=seed, transform=Decoded(decode),
                                           max_cache_size=self.hparams.max_cache_size)
                for split, train in (("train", True), ("val", False))]
        for dataset in made:
            dataset.collate_fn = None if decode else collate_jpegs
        return made[0], Indexed(made[1])

    def _loader(self, dataset, shuffle: bool):
        """Training: LitData's loader, which shards, shuffles and resumes (its state is in the
        checkpoint); evaluation: the project's, every image once across processes."""
        if not shuffle:
            return super()._loader(dataset, shuffle)
        h = self.hparams
        return litdata().StreamingDataLoader(
            dataset, batch_size=local_batch_size(h.batch_size, self.trainer.world_size if self.trainer else 1),
            num_workers=h.num_workers, collate_fn=dataset.collate_fn, pin_memory=torch.cuda.is_available())
