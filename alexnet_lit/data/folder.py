"""A data set of class folders fed the paper's way (Section 4.1, docs/paper.md "Data").

``root`` is either a folder of image files (``train/<class>/*`` and ``val/<class>/*``, or
ILSVRC-2012's flat val folder, see alexnet_lit.data.samples), which the workers decode and
bring to image_size x image_size (shorter side, then the central square), or a folder written
by ``python -m alexnet_lit.prepare``, whose images are already at that size. Either way the
workers hand over uint8 (S, S, 3) images; crops, mirrors, PCA colour noise and centring run on
the whole batch on the device (``on_after_batch_transfer``, alexnet_lit.data.views). From a
compact (``jpeg``) prepared folder, when training on a GPU, the workers hand over JPEG bytes
instead, decoded as one batch by nvJPEG straight into GPU memory (``on_before_batch_transfer``).

A prepared folder carries its own mean image and colour PCA; image files use the published
ImageNet constants.
"""
import os
import signal
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from alexnet_lit.data.colour import PixelStats
from alexnet_lit.data.decode import ImageFiles, check_orientation, check_policy, die_with_parent
from alexnet_lit.data.ilsvrc import display_names
from alexnet_lit.data.prepared import (STATS, PreparedImages, PreparedJPEGs, PreparedSplit, decode_jpegs, is_prepared,
                                       read_meta)
from alexnet_lit.data.samples import class_names, split_samples
from alexnet_lit.data.sampling import CheckedLoader, TrainLoader, TrainSampler, eval_sampler, local_batch_size
from alexnet_lit.data.views import VIEWS, PaperViews


# What validation scores, each image tagged with its stream (ScoredImages): the data set's own
# validation images, training images a prepared folder moved into its val split
# (prepare --held-out-to-val), and the fixed subset of training images scored as validation
# scores its own, for the overfitting gap the paper means (Section 4).
OFFICIAL, HELD_OUT, TRAIN_EVAL = 0, 1, 2
TRAIN_EVAL_SEED = 0  # the subset is a property of the data set: the same for every run and seed


class ScoredImages(Dataset):
    """The validation images, then the ``train_eval`` images, as (image, label, stream);
    ``official``: per validation image, whether it is one of the data set's own."""

    def __init__(self, val: Dataset, official: np.ndarray, train_eval: Dataset | None):
        self.val, self.official, self.train_eval = val, official, train_eval
        self.inner_collate = getattr(val, "collate_fn", None) or default_collate

    def __len__(self) -> int:
        return len(self.val) + (len(self.train_eval) if self.train_eval is not None else 0)

    def __getitem__(self, index: int) -> tuple:
        if index < len(self.val):
            return (*self.val[index], OFFICIAL if self.official[index] else HELD_OUT)
        return (*self.train_eval[index - len(self.val)], TRAIN_EVAL)

    def collate_fn(self, samples: list[tuple]) -> tuple:
        images, labels = self.inner_collate([(x, y) for x, y, _ in samples])
        return images, labels, torch.tensor([s for *_, s in samples])


def train_eval_subset(train: Dataset, wanted: int | None, val_size: int) -> Subset | None:
    """``wanted`` training images (``None``: as many as validation has), all of them if fewer,
    drawn once with TRAIN_EVAL_SEED; ``None`` for 0."""
    wanted = val_size if wanted is None else wanted
    if wanted < 0:
        raise ValueError(f"data.train_eval_images={wanted}: expected a count of images (0: none)")
    if wanted == 0:
        return None
    picked = np.random.default_rng(TRAIN_EVAL_SEED).permutation(len(train))[:wanted]
    return Subset(train, np.sort(picked).tolist())


def data_classes(root: Path) -> tuple[list[str], str]:
    """The classes of a data folder and where they come from: a prepared folder's
    ``prepared.json``, else the class folders of its ``train/``."""
    if is_prepared(root):
        return read_meta(root)["classes"], "its prepared.json"
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"{root}: no train/ folder of classes and no prepared.json")
    return class_names(root / "train"), "the folders of its train/"


def init_worker(worker_id: int) -> None:
    """Data loader workers' ``worker_init_fn``: they die with the training process, even when it
    is killed with ``kill -9``; and SIGTERM is the training process's to handle
    (alexnet_lit.checkpointing.preemption). SLURM sends it to every process of a job step (``scancel -s
    TERM``, ``--signal``); a worker it killed would fail the run before its checkpoint. The training process still
    shuts the workers down, and SLURM's SIGKILL ends any left after its KillWait."""
    die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class FolderDataModule(L.LightningDataModule):
    """``data=folder`` and ``data=imagenet`` (``synsets=True``: class folders are WordNet ids;
    ``val_labels``: the ground truth of a flat val folder, found in ``root`` if not given).
    ``on_error``: ``error`` stops at an undecodable file, naming it; ``skip`` leaves it out and
    lists it in ``skipped_images.txt`` in the run folder. After ``setup``, ``classes`` are the
    class folders' names and ``class_names`` their words where a synset-words file is in
    ``root`` (alexnet_lit.data.ilsvrc.SYNSET_WORDS)."""

    def __init__(self, root: str, num_classes: int, batch_size: int = 128, num_workers: int = 4,
                 image_size: int = 256, crop_size: int = 227, augment: bool = True,
                 pca_noise: bool = True, normalize: str = "paper", val_views: tuple = ("center",),
                 val_split: str = "val", synsets: bool = False, val_labels: str | None = None,
                 on_error: str = "error", train_eval_images: int | None = None,
                 exif_orientation: str = "ignore"):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train.py logs the whole resolved config
        if crop_size > image_size:
            raise ValueError(f"data.crop_size={crop_size} is larger than data.image_size={image_size}")
        unknown = [v for v in val_views if v not in VIEWS]
        if unknown or not val_views:
            raise ValueError(f"data.val_views={list(val_views)}: expected views from {list(VIEWS)}")
        check_policy(on_error)
        check_orientation(exif_orientation)
        self.root = Path(root).expanduser()
        self.skip_log: Path | None = None

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if is_prepared(self.root):
            meta = read_meta(self.root)
            if meta["image_size"] != h.image_size:
                raise ValueError(f"data.image_size={h.image_size} but {self.root} was prepared at "
                                 f"{meta['image_size']}x{meta['image_size']}")
            made_with = meta.get("exif_orientation", "ignore")  # folders of before the choice ignored it
            if made_with != h.exif_orientation:
                raise ValueError(f"data.exif_orientation={h.exif_orientation} but {self.root} was prepared "
                                 f"with exif_orientation={made_with}: prepare it again with --exif-orientation "
                                 f"{h.exif_orientation} into another folder, or set data.exif_orientation={made_with}")
            self.classes, stats = meta["classes"], PixelStats.load(self.root / STATS)
            self.class_names = meta.get("class_names", self.classes)
            self.train_set, self.val_set = self.prepared_sets(meta["storage"])
            official_rows = meta.get("val_official_images")  # prepare --held-out-to-val
            self.official = (self.val_set.rows < official_rows if official_rows is not None
                             else np.ones(len(self.val_set), bool))
        else:
            self.classes, train = split_samples(self.root, "train", h.synsets)
            self.class_names = display_names(self.root, self.classes)
            _, val = split_samples(self.root, h.val_split, h.synsets, self.classes, h.val_labels)
            if h.on_error == "skip":  # the report, in the run folder
                run_dir = self.trainer.default_root_dir if self.trainer is not None else "."
                self.skip_log = Path(run_dir) / "skipped_images.txt"
            self.train_set, self.val_set = (ImageFiles(s, h.image_size, h.on_error, self.skip_log, h.exif_orientation)
                                            for s in (train, val))
            self.official = np.ones(len(self.val_set), bool)
            stats = PixelStats.published(h.image_size)
        if len(self.classes) != h.num_classes:
            raise ValueError(f"data.num_classes={h.num_classes} but {self.root} holds "
                             f"{len(self.classes)} classes")
        self.stats = stats
        self.train_eval_set = train_eval_subset(self.train_set, h.train_eval_images, len(self.val_set))
        self.val_streams = [OFFICIAL] + [HELD_OUT] * (not self.official.all()) + [TRAIN_EVAL] * (self.train_eval_set is not None)
        self.views = PaperViews(stats, h.crop_size, h.normalize, pca_noise=h.pca_noise and h.augment)

    def prepared_sets(self, storage: str) -> tuple[Dataset, Dataset]:
        """The training and validation sets of a prepared folder."""
        if storage == "jpeg":  # decoded on the GPU where the batch stage runs, else by the workers
            decode = self.batch_device().type != "cuda"
            return tuple(PreparedJPEGs(self.root, s, decode) for s in ("train", "val"))
        if storage == "raw":
            return PreparedImages(self.root, "train"), PreparedImages(self.root, "val")
        raise ValueError(f"{self.root} holds {storage} storage: train from it with data=streaming "
                         f"data.root={self.root}")

    def check_files(self) -> None:
        """Before each pass over the data: a prepared folder's files still have the sizes
        prepare recorded (a :class:`~alexnet_lit.data.prepared.DamagedData` naming one that has not)."""
        for split in (self.train_set, self.val_set):
            if isinstance(split, PreparedSplit):
                split.check_sizes()

    def batch_device(self) -> torch.device:
        """Where Lightning moves each batch, and the batch stage runs."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        """Every loader is built here. ``batch_size`` is the global batch, shared by the
        processes; the samplers (alexnet_lit.data.sampling) shard the data themselves: for
        training a checkpointed, resumable order drawn from the run's seed (Lightning's
        PL_GLOBAL_SEED), for evaluation every image exactly once. Each pass starts with
        :meth:`check_files`."""
        h = self.hparams
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        settings = dict(batch_size=local_batch_size(h.batch_size, world), num_workers=h.num_workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=h.num_workers > 0,
                        generator=torch.Generator(),  # worker seeds: not from the step's RNG
                        collate_fn=getattr(dataset, "collate_fn", None),
                        worker_init_fn=init_worker,  # not Lightning's seeding: workers draw no random numbers
                        check=self.check_files)
        if shuffle:
            sampler = TrainSampler(len(dataset), h.batch_size, rank, world,
                                   seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
            return TrainLoader(dataset, sampler=sampler, **settings)
        return CheckedLoader(dataset, sampler=eval_sampler(dataset, rank, world), **settings)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_streams == [OFFICIAL]:
            return self._loader(self.val_set, shuffle=False)
        return self._loader(ScoredImages(self.val_set, self.official, self.train_eval_set), shuffle=False)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # the model summary's example input: already a view
            return batch
        images, labels, *streams = batch  # streams: ScoredImages's
        if isinstance(images, list):  # JPEG bytes of a compact prepared folder
            images = decode_jpegs(images, self.batch_device())
        keep = labels >= 0  # -1: a file skipped under on_error=skip
        return (images, labels, *streams) if keep.all() else (images[keep], labels[keep], *(s[keep] for s in streams))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 (B, S, S, 3) -> float (B, 3, c, c), or (B, 10, 3, c, c) for ten-crop. The
        ten crops hold the centre patch too: one pass over the val set serves every view."""
        if isinstance(batch, torch.Tensor):  # the model summary's example input: already a view
            return batch
        images, labels, *streams = batch
        if self.trainer is not None and self.trainer.training:
            # The views draw from a generator of their own, seeded by one number of the step's
            # stream (alexnet_lit.checkpointing.resume.StepSeeds), drawn whatever the view: the dropout masks
            # drawn after it are the same whether an ablation draws crops and colours or not.
            seed = int(torch.randint(2 ** 62, ()))
            view = "random" if self.hparams.augment else "center"
            return self.views(images, view, torch.Generator().manual_seed(seed)), labels
        view = "tencrop" if "tencrop" in self.hparams.val_views else "center"
        return self.views(images, view), labels, *streams

    def teardown(self, stage: str) -> None:
        if self.skip_log is not None and self.skip_log.is_file():
            skipped = sorted(set(self.skip_log.read_text().splitlines()))
            rank_zero_warn(f"data.on_error=skip: {len(skipped)} unreadable images were left out, "
                           f"listed in {self.skip_log}:\n" + "\n".join(skipped))
