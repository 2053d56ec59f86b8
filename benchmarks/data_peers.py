"""The project's data path against the libraries people pick instead, side by side in one run:
the prepared format (raw and JPEG), torchvision (ImageFolder with v2 transforms; decode_jpeg),
FFCV, LitData, MosaicML Streaming and DALI's CPU pipeline.

    nice -n 10 python benchmarks/data_peers.py --source IMAGENETTE [--images 2560] [--workers 1 2]
        [--batch-size 256] [--peers ...]

Every peer makes the same training input from the same ``--images`` training images of
``--source`` (an ImageFolder): uint8 227x227 random crops, mirrored with probability 1/2, in
batches of ``--batch-size``, with 1 and 2 loader processes (DataLoader workers; FFCV's and
DALI's threads). Peers with a format of their own convert the images first, brought to 256x256
the paper's way (alexnet_lit.data.decode: PIL, shorter side to 256, central square); the others
read the original files. Per peer and loader count, each in a fresh process:

- images/s (wall) and images per CPU second, the user + system time of the process and of every
  worker during the timed batches: the per-core figure, which other load on the machine does not
  lower;
- peak resident memory (VmHWM) of the main process and of the largest worker, and the private
  memory (USS) of each at the end (a memory map's pages count as resident but are shared);
- bytes per image on disk, and the time (wall, CPU) of converting the images, where it converts;
- exactness: the centre crop without mirroring of the first ``--exact-images`` images, against the
  reference (PIL decode, resize to 256, the same crop): largest and mean absolute difference, PSNR.

Beside them, the project's batch stage (crop, mirror, PCA colour noise, centring:
alexnet_lit.data.views) on the CPU, per image: on 256x256 images (the project's loaders hand those
over) and on 227x227 crops (the peers that crop hand those over; colour and centring remain).

A peer whose library is not installed, or fails, gets a row with the error that stopped it.
Prints and writes JSON (default ``benchmarks/results/data_peers.json``); :func:`on_device`
is part 6 of benchmarks/gpu_check.py.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from timing import interleaved, machine, median, save, synchronize

from alexnet_lit.data.colour import PixelStats
from alexnet_lit.data.decode import prepare_image
from alexnet_lit.data.folder import FolderDataModule
from alexnet_lit.data.preparation import encode_jpeg, prepare
from alexnet_lit.data.prepared import PreparedImages, PreparedJPEGs, decode_jpegs, decode_rgb
from alexnet_lit.data.views import PaperViews, centre_offset, windows

SIZE, CROP = 256, 227
PEERS = ("ours_raw", "ours_jpeg", "torchvision_imagefolder", "torchvision_decode_jpeg", "ffcv_raw",
         "ffcv_jpeg", "litdata_raw", "litdata_jpeg", "mosaicml_streaming_jpeg", "dali_cpu")


# ------------------------------------------------------------------------------ the images


def pick(source: Path, count: int) -> list[tuple[Path, int]]:
    """``count`` training images of ``source``, drawn from every class (seed 0), in class order."""
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((source / "train" / c).iterdir())]
    if count > len(files):
        raise ValueError(f"--images {count}: {source}/train holds {len(files)}")
    return [files[i] for i in sorted(np.random.default_rng(0).permutation(len(files))[:count])]


def link(files: list[tuple[Path, int]], root: Path) -> Path:
    """An ImageFolder of ``files`` (train/, and val/ of one image a class, which prepare needs),
    made once."""
    val = {}
    for f, label in files if not root.is_dir() else []:
        val.setdefault(label, f)
        for split in ("train", "val") if val[label] == f else ("train",):
            (root / split / f.parent.name).mkdir(parents=True, exist_ok=True)
            (root / split / f.parent.name / f.name).symlink_to(f.resolve())
    return root


def reference(path: Path) -> np.ndarray:
    """The reference decode: PIL, shorter side to 256, the central square, then the centre crop."""
    c = centre_offset(SIZE, CROP)
    return prepare_image(path, SIZE)[c:c + CROP, c:c + CROP]


def crop_and_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> (B, 227, 227, 3): a random crop per image, mirrored with probability
    1/2, as the batch stage draws them (alexnet_lit.data.views)."""
    batch, device = images.shape[0], images.device
    top, left = torch.randint(0, images.shape[1] - CROP + 1, (2, batch), generator=generator).to(device)
    crops = windows(images, CROP)[torch.arange(batch, device=device), top, left]
    mirrored = (torch.rand(batch, generator=generator) < 0.5).to(device)
    crops[mirrored] = crops[mirrored].flip(2)
    return crops


def centre(images: torch.Tensor) -> torch.Tensor:
    c = centre_offset(images.shape[1], CROP)
    return images[:, c:c + CROP, c:c + CROP]


def forever(make_epoch):
    """Batches across epochs: ``make_epoch()`` gives one epoch's iterable."""
    while True:
        yield from make_epoch()


# ------------------------------------------------------------------------------ the peers
# Each: convert(files, out) (None where it reads the original files), batches(out, files,
# workers, batch_size) -> an endless iterator of uint8 (B, 227, 227, 3) (or (B, 3, 227, 227))
# crops, and centres(out, files, count) -> the first ``count`` images' centre crops in file order.


def next_epoch(loader):
    """The project's training loader, moved to its next epoch as Lightning moves it."""
    loader.sampler.set_epoch(loader.sampler.epoch + 1)
    return loader


class Ours:
    """The project's prepared format through its own data module; the crop and mirror of its
    batch stage on the loaded batch."""

    library, stored = "alexnet-lit", "train"  # its val split (one image a class) left out of the count

    def __init__(self, storage: str):
        self.storage = storage

    def convert(self, files, out: Path) -> None:
        prepare(link(files, out.parent / "linked"), out, workers=2, progress=False, storage=self.storage)

    def batches(self, out: Path, files, workers: int, batch_size: int):
        data = FolderDataModule(str(out), num_classes=len({label for _, label in files}),
                                batch_size=batch_size, num_workers=workers)
        data.setup("fit")
        loader, generator = data.train_dataloader(), torch.Generator().manual_seed(0)
        return (crop_and_flip(images, generator) for images, _ in forever(lambda: next_epoch(loader)))

    def on_device(self, out: Path, files, batch_size: int, device: torch.device):
        """Batches read here and moved to ``device``; JPEG bytes decoded there as one batch
        (nvJPEG on CUDA), as the data module does when its batch stage runs on a GPU."""
        rows = np.random.default_rng(0).permutation(len(files))
        reader = PreparedJPEGs(out, "train", decode=False) if self.storage == "jpeg" else PreparedImages(out, "train")
        generator = torch.Generator().manual_seed(0)
        for start in range(0, len(rows) - batch_size + 1, batch_size):
            batch = [reader[int(i)][0] for i in rows[start:start + batch_size]]
            images = decode_jpegs(batch, device) if self.storage == "jpeg" else torch.stack(batch).to(device)
            yield crop_and_flip(images, generator)

    def centres(self, out: Path, files, count: int) -> torch.Tensor:
        data = FolderDataModule(str(out), num_classes=len({label for _, label in files}))
        data.setup("fit")
        order = {f"train/{f.parent.name}/{f.name}": i for i, (f, _) in enumerate(files)}
        rows = (out / "train" / "files.txt").read_text().split()
        images = [data.train_set[rows.index(p)][0] for p in sorted(order, key=order.get)[:count]]
        return centre(torch.stack(images))


class TorchvisionImageFolder:
    """torchvision's ImageFolder with v2 transforms on PIL images."""

    library = "torchvision"

    def transform(self, train: bool):
        from torchvision.transforms import v2
        crop = [v2.RandomCrop(CROP), v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(CROP)]
        return v2.Compose([v2.Resize(SIZE), v2.CenterCrop(SIZE), *crop, v2.PILToTensor()])

    def batches(self, out, files, workers: int, batch_size: int):
        from torchvision.datasets import ImageFolder
        dataset = ImageFolder(str(link(files, out) / "train"), self.transform(train=True))
        loader = torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, drop_last=True,
                                             num_workers=workers, persistent_workers=True)
        return (images for images, _ in forever(lambda: loader))

    def centres(self, out, files, count: int) -> torch.Tensor:
        from torchvision.datasets import ImageFolder
        dataset = ImageFolder(str(link(files, out) / "train"), self.transform(train=False))
        order = {str(f.resolve()): i for i, (f, _) in enumerate(files)}
        rows = sorted(range(len(dataset)), key=lambda i: order[str(Path(dataset.samples[i][0]).resolve())])
        return torch.stack([dataset[i][0] for i in rows[:count]])


class JpegFiles(torch.utils.data.Dataset):
    """The original files decoded by torchvision.io.decode_jpeg, resized (antialiased) and cut
    as the reference is; ``train``: then a random crop and mirror."""

    def __init__(self, files, train: bool):
        self.files, self.train = files, train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
        from torchvision.transforms.v2 import functional as F
        image = decode_jpeg(read_file(str(self.files[index][0])), ImageReadMode.RGB)
        image = F.center_crop(F.resize(image, SIZE, antialias=True), SIZE)
        if not self.train:
            return F.center_crop(image, CROP)
        top, left = np.random.randint(0, SIZE - CROP + 1, 2)
        image = F.crop(image, int(top), int(left), CROP, CROP)
        return image.flip(2) if np.random.rand() < 0.5 else image


class TorchvisionDecodeJpeg:
    library = "torchvision"

    def batches(self, out, files, workers: int, batch_size: int):
        loader = torch.utils.data.DataLoader(JpegFiles(files, train=True), batch_size, shuffle=True, drop_last=True,
                                             num_workers=workers, persistent_workers=True)
        return forever(lambda: loader)

    def centres(self, out, files, count: int) -> torch.Tensor:
        dataset = JpegFiles(files, train=False)
        return torch.stack([dataset[i] for i in range(count)])


class Resized(torch.utils.data.Dataset):
    """The files as the reference brings them to 256x256: (uint8 (256, 256, 3), label)."""

    def __init__(self, files):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path, label = self.files[index]
        return prepare_image(path, SIZE), label


class FFCV:
    """FFCV's .beton file of the 256x256 images (``raw`` pixels, or ``jpg`` at quality 95); its
    random-resized-crop decoder at the one scale and ratio of a 227x227 crop."""

    library = "ffcv"

    def __init__(self, mode: str):
        self.mode = mode

    def convert(self, files, out: Path) -> None:
        from ffcv.fields import IntField, RGBImageField
        from ffcv.writer import DatasetWriter
        out.mkdir(parents=True)
        fields = {"image": RGBImageField(write_mode=self.mode, max_resolution=SIZE, jpeg_quality=95),
                  "label": IntField()}
        DatasetWriter(str(out / "data.beton"), fields, num_workers=2).from_indexed_dataset(Resized(files))

    def loader(self, out: Path, workers: int, batch_size: int, decoder, order: str, flip: bool, device=None):
        from ffcv.fields.decoders import IntDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import RandomHorizontalFlip, ToDevice, ToTensor
        image = [decoder, *([RandomHorizontalFlip()] if flip else []), ToTensor(),
                 *([ToDevice(device, non_blocking=True)] if device is not None else [])]
        return Loader(str(out / "data.beton"), batch_size=batch_size, num_workers=workers, os_cache=True,
                      order=getattr(OrderOption, order), drop_last=order == "RANDOM",
                      pipelines={"image": image, "label": [IntDecoder(), ToTensor()]})

    def batches(self, out: Path, files, workers: int, batch_size: int, device=None):
        from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
        scale = (CROP / SIZE) ** 2
        decoder = RandomResizedCropRGBImageDecoder((CROP, CROP), scale=(scale, scale), ratio=(1.0, 1.0))
        loader = self.loader(out, workers, batch_size, decoder, "RANDOM", flip=True, device=device)
        return (images for images, _ in forever(lambda: loader))

    def on_device(self, out: Path, files, batch_size: int, device: torch.device):
        """FFCV's GPU path: decoded and cropped by its threads (one per core), moved by ToDevice."""
        return self.batches(out, files, os.cpu_count(), batch_size, device)

    def centres(self, out: Path, files, count: int) -> torch.Tensor:
        from ffcv.fields.decoders import CenterCropRGBImageDecoder
        loader = self.loader(out, 1, count, CenterCropRGBImageDecoder((CROP, CROP), CROP / SIZE), "SEQUENTIAL",
                             flip=False)
        return next(iter(loader))[0]


class LitData:
    """LitData's chunks (``optimize``) of the 256x256 images, raw uint8 or JPEG (quality 95),
    read by its StreamingDataset and StreamingDataLoader; the batch stage's crop and mirror."""

    library = "litdata"

    def __init__(self, payload: str):
        self.payload = payload

    def convert(self, files, out: Path) -> None:
        from litdata import optimize
        optimize(fn=Encoded(self.payload), inputs=[(str(f), label, row) for row, (f, label) in enumerate(files)],
                 output_dir=str(out), chunk_bytes="64MB", num_workers=2, mode="overwrite", verbose=False)

    def batches(self, out: Path, files, workers: int, batch_size: int):
        from litdata import StreamingDataLoader, StreamingDataset
        dataset = StreamingDataset(str(out), shuffle=True, drop_last=True, transform=decoded)
        loader = StreamingDataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=True)
        generator = torch.Generator().manual_seed(0)
        return (crop_and_flip(images, generator) for images, _ in forever(lambda: loader))

    def centres(self, out: Path, files, count: int) -> torch.Tensor:
        """By the row each item was written with: optimize's workers write in their own order."""
        from litdata import StreamingDataset
        dataset = StreamingDataset(str(out))
        items = {item["row"]: item for item in (dataset[i] for i in range(len(dataset))) if item["row"] < count}
        return centre(torch.stack([decoded(items[row])[0] for row in range(count)]))


class Encoded:
    """(image file, label, row) -> {"image": 256x256 pixels (``raw``) or their JPEG bytes, "label", "row"}."""

    def __init__(self, payload: str):
        self.payload = payload

    def __call__(self, item) -> dict:
        pixels = prepare_image(item[0], SIZE)
        return dict(image=pixels if self.payload == "raw" else encode_jpeg(pixels), label=item[1], row=item[2])


def decoded(item: dict) -> tuple[torch.Tensor, int]:
    image = item["image"]
    if not isinstance(image, np.ndarray):  # JPEG bytes
        image = decode_rgb(torch.frombuffer(bytearray(image), dtype=torch.uint8))
    return torch.as_tensor(image), int(item["label"])


class MosaicStreaming:
    """MosaicML Streaming's MDS shards of the 256x256 images as JPEG (quality 95)."""

    library = "mosaicml-streaming"

    def convert(self, files, out: Path) -> None:
        from streaming import MDSWriter
        with MDSWriter(out=str(out), columns={"image": "bytes", "label": "int"}, size_limit="64mb") as writer:
            for path, label in files:
                writer.write(dict(image=encode_jpeg(prepare_image(path, SIZE)), label=label))

    def dataset(self, out: Path, batch_size: int, shuffle: bool):
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        class Images(StreamingDataset):
            def __getitem__(self, index):
                return decoded(super().__getitem__(index))

        clean_stale_shared_memory()
        return Images(local=str(out), shuffle=shuffle, batch_size=batch_size)

    def batches(self, out: Path, files, workers: int, batch_size: int):
        loader = torch.utils.data.DataLoader(self.dataset(out, batch_size, True), batch_size=batch_size,
                                             num_workers=workers, persistent_workers=True, drop_last=True)
        generator = torch.Generator().manual_seed(0)
        return (crop_and_flip(images, generator) for images, _ in forever(lambda: loader))

    def centres(self, out: Path, files, count: int) -> torch.Tensor:
        dataset = self.dataset(out, count, False)
        return centre(torch.stack([dataset[i][0] for i in range(count)]))


class Dali:
    """DALI's CPU pipeline on the original files: decoder, resize of the shorter side to 256 and
    the central square, then crop_mirror_normalize to uint8 227x227 crops (``device_id=None``)."""

    library = "nvidia-dali-cuda120"

    def pipeline(self, files, threads: int, batch_size: int, train: bool, device: str = "cpu"):
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=None if device == "cpu" else 0)
        def images():
            jpegs, _ = fn.readers.file(files=[str(f) for f, _ in files], labels=[label for _, label in files],
                                       random_shuffle=train, name="files")
            decoded = fn.decoders.image(jpegs, device="cpu" if device == "cpu" else "mixed", output_type=types.RGB)
            square = fn.crop(fn.resize(decoded, resize_shorter=SIZE, antialias=True), crop=(SIZE, SIZE))
            middle = centre_offset(SIZE, CROP) / (SIZE - CROP)  # DALI rounds 0.5's 14.5 up
            where = dict(crop_pos_x=fn.random.uniform(range=(0.0, 1.0)), crop_pos_y=fn.random.uniform(range=(0.0, 1.0)),
                         mirror=fn.random.coin_flip()) if train else dict(crop_pos_x=middle, crop_pos_y=middle)
            return fn.crop_mirror_normalize(square, crop=(CROP, CROP), dtype=types.UINT8, output_layout="HWC", **where)

        pipe = images()
        pipe.build()
        return pipe

    def batches(self, out, files, workers: int, batch_size: int):
        pipe = self.pipeline(files, workers, batch_size, train=True)
        while True:
            (images,) = pipe.run()
            yield torch.from_numpy(images.as_array())

    def on_device(self, out, files, batch_size: int, device: torch.device):
        """DALI's mixed decoder (nvJPEG, the A100's and H100's hardware decoder where present), its
        resize and crops on the GPU; a CUDA device only."""
        if device.type != "cuda":
            raise RuntimeError("DALI's mixed decoder needs a CUDA device")
        from nvidia.dali.plugin.pytorch import DALIGenericIterator
        pipe = self.pipeline(files, os.cpu_count(), batch_size, train=True, device="mixed")
        return (batch[0]["images"] for batch in DALIGenericIterator(pipe, ["images"]))

    def centres(self, out, files, count: int) -> torch.Tensor:
        (images,) = self.pipeline(files, 1, count, train=False).run()
        return torch.from_numpy(images.as_array())


DEVICE_PEERS = ("ours_raw", "ours_jpeg", "ffcv_jpeg", "dali_mixed")  # the peers with a GPU path


def make(name: str):
    return {"ours_raw": lambda: Ours("raw"), "ours_jpeg": lambda: Ours("jpeg"),
            "torchvision_imagefolder": TorchvisionImageFolder, "torchvision_decode_jpeg": TorchvisionDecodeJpeg,
            "ffcv_raw": lambda: FFCV("raw"), "ffcv_jpeg": lambda: FFCV("jpg"),
            "litdata_raw": lambda: LitData("raw"), "litdata_jpeg": lambda: LitData("jpeg"),
            "mosaicml_streaming_jpeg": MosaicStreaming, "dali_cpu": Dali, "dali_mixed": Dali}[name]()


# ------------------------------------------------------------------------------ measuring
# Each step runs in a fresh process (``--step``), so that one library's threads, memory and
# imports do not touch another's figures; it prints one JSON line.


def family(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return [pid, *(p for c in children for p in family(c))]


def cpu_seconds(pid: int) -> float:
    """User + system time of process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict:
    """Peak resident memory (VmHWM) and private memory now (USS) of ``pid``, MiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    private = sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))
    return dict(peak_rss=int(status["VmHWM"].split()[0]) / 1024, uss=private / 1024)


def step_convert(peer, files, out: Path, exact_images: int) -> dict:
    """Convert (timed, wall and CPU of this process and the helpers it waited for), then the
    exactness of the first images' centre crops."""
    result = {}
    if hasattr(peer, "convert"):
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        began = time.perf_counter()
        peer.convert(files, out)
        result["seconds"] = time.perf_counter() - began
        after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        result["cpu_seconds"] = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, usage))
    images = peer.centres(out, files, exact_images)
    if images.shape[1] == 3:
        images = images.permute(0, 2, 3, 1)
    exact = torch.from_numpy(np.stack([reference(f) for f, _ in files[:exact_images]]))
    difference = (images.int() - exact.int()).abs()
    mse = difference.double().square().mean().item()
    result["exactness"] = dict(images=exact_images, max_abs_diff=int(difference.max()),
                               mean_abs_diff=difference.double().mean().item(),
                               psnr_db=10 * np.log10(255.0 ** 2 / mse) if mse else None)
    return result


def step_measure(peer, files, out: Path, workers: int, batch_size: int, warmup: int, batches: int) -> dict:
    """Images/s and images per CPU second over ``batches`` batches after ``warmup``."""
    stream = peer.batches(out, files, workers, batch_size)
    for _ in range(warmup):
        first = next(stream)
    pids = family(os.getpid())
    before = {p: cpu_seconds(p) for p in pids}
    began = time.perf_counter()
    for _ in range(batches):
        next(stream)
    seconds = time.perf_counter() - began
    pids = family(os.getpid())
    cpu = sum(cpu_seconds(p) - before.get(p, 0.0) for p in pids)
    memory = {p: memory_mib(p) for p in pids}
    images = batches * batch_size
    return dict(shape=list(first.shape), dtype=str(first.dtype), processes=len(pids), seconds=seconds,
                cpu_seconds=cpu, images_per_s=images / seconds,
                images_per_cpu_s=images / cpu if cpu else None,  # CPU time comes in clock ticks (10 ms)
                main_mib=memory[os.getpid()],
                largest_worker_mib=max((m for p, m in memory.items() if p != os.getpid()),
                                       key=lambda m: m["peak_rss"], default=None))


def in_process(step: str, name: str, work: Path, **options) -> dict:
    """One step of one peer in a fresh process: its JSON, or the error that stopped it."""
    command = [sys.executable, __file__, "--step", step, "--peer", name, "--work", str(work),
               "--options", json.dumps(options)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return dict(error=lines[-1] if lines else f"exit status {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def distribution(name: str) -> str:
    library = make(name).library
    try:
        return f"{library} {version(library)}"
    except PackageNotFoundError:
        return f"{library}: not installed"


def peer_row(name: str, files, work: Path, args) -> dict:
    """Every figure of one peer: conversion and exactness, then each loader count."""
    row = dict(library=distribution(name))
    done = in_process("convert", name, work, exact_images=args.exact_images)
    if "error" in done:
        return dict(row, status="failed", reason=done["error"])
    converts = "seconds" in done
    stored = (folder_bytes(work / name / "data" / getattr(make(name), "stored", "")) if converts
              else sum(f.stat().st_size for f, _ in files))
    row.update(reads="its own files of the 256x256 images" if converts else "the original files",
               bytes_per_image=stored / len(files), exactness=done["exactness"])
    if converts:
        row["convert"] = dict(seconds=done["seconds"], cpu_seconds=done["cpu_seconds"], bytes=stored,
                              images_per_cpu_s=len(files) / done["cpu_seconds"])
    row["loaders"] = {str(w): in_process("measure", name, work, workers=w, batch_size=args.batch_size,
                                         warmup=args.warmup, batches=args.batches) for w in args.workers}
    failed = [m["error"] for m in row["loaders"].values() if "error" in m]
    return dict(row, status="failed", reason=failed[0]) if failed else dict(row, status="measured")


def projection(rows: dict, stage: dict, target: int = 40_000) -> dict:
    """CPU cores that feed ``target`` images/s, from each peer's best images per CPU second:
    the loader alone (the rest of the batch stage, colour noise and centring, on the GPU) and
    with that rest on the CPU too."""
    cores = {}
    for name, row in rows.items():
        rates = [m["images_per_cpu_s"] for m in row.get("loaders", {}).values() if m.get("images_per_cpu_s")]
        if row["status"] != "measured" or not rates:
            continue
        rate = max(rates)
        stage_rate = stage["images_per_s_per_core"]["from_227"]  # every peer hands over 227x227 crops
        cores[name] = dict(loader=target / rate, loader_and_batch_stage_on_cpu=target / rate + target / stage_rate)
    return dict(images_per_s=target, cores=cores)


def batch_stage(batch_size: int, repeats: int) -> dict:
    """The project's batch stage on the CPU, one thread, per image: on 256x256 images (crop,
    mirror, colour noise, centring) and on 227x227 crops (the same, the crop a copy)."""
    rates = {}
    for size in (SIZE, CROP):
        views = PaperViews(PixelStats.published(size), CROP)
        images = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8)
        generator = torch.Generator().manual_seed(0)
        seconds = interleaved({"stage": lambda: views(images, "random", generator)}, repeats, torch.device("cpu"))
        rates[f"from_{size}"] = batch_size / median(seconds["stage"])
    return dict(images_per_s_per_core=rates, batch_size=batch_size)


def on_device(source: Path, work: Path, device: torch.device, images: int, batch_size: int) -> dict:
    """Each peer's GPU path (DEVICE_PEERS; part 6 of benchmarks/gpu_check.py): images/s of uint8
    227x227 crops landing on ``device``, after one warm-up batch; a peer that fails gets its error."""
    files, rows = pick(source, images), {}
    for name in DEVICE_PEERS:
        peer, out = make(name), work / name / "data"
        try:
            if hasattr(peer, "convert") and not out.exists():
                peer.convert(files, out)
            stream = peer.on_device(out, files, batch_size, device)
            first = next(stream)
            synchronize(device)
            began, count = time.perf_counter(), 0
            for _ in range(images // batch_size - 1):
                count += len(next(stream))
            synchronize(device)
            rows[name] = dict(status="measured", library=distribution(name), device=str(first.device),
                              shape=list(first.shape), images_per_s=count / (time.perf_counter() - began))
        except Exception as err:  # recorded: the next peer runs
            rows[name] = dict(status="failed", library=distribution(name), reason=f"{type(err).__name__}: {err}".splitlines()[0])
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="an ImageFolder (train/<class>/*): Imagenette")
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="loader processes (threads)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3, help="batches before the timed ones")
    parser.add_argument("--batches", type=int, default=12, help="timed batches")
    parser.add_argument("--exact-images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="of the batch stage's timing")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_peers.json")
    parser.add_argument("--step", choices=["convert", "measure"], help=argparse.SUPPRESS)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.step:
        files = [(Path(f), label) for f, label in json.loads((args.work / "files.json").read_text())]
        step = step_convert if args.step == "convert" else step_measure
        print(json.dumps(step(make(args.peer), files, args.work / args.peer / "data", **json.loads(args.options))),
              flush=True)
        os._exit(0)  # not waiting for the loaders' workers and threads to wind down
    if args.source is None:
        parser.error("--source is required")
    files = pick(args.source, args.images)
    work = args.work or Path(tempfile.mkdtemp(prefix="data_peers-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        (work / "files.json").write_text(json.dumps([[str(f), label] for f, label in files]))
        rows = {}
        for name in args.peers:
            rows[name] = peer_row(name, files, work, args)
            print(f"{name}: {json.dumps(rows[name])}", flush=True)
        stage = batch_stage(args.batch_size, args.repeats)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = dict(benchmark="data_peers", command="nice -n 10 python " + " ".join(["benchmarks/data_peers.py", *(
                      argv if argv is not None else sys.argv[1:])]),
                  machine=machine(torch.device("cpu")), images=dict(count=len(files), source=str(args.source)),
                  batch_size=args.batch_size, warmup=args.warmup, batches=args.batches, peers=rows,
                  batch_stage=stage, projection=projection(rows, stage))
    save(result, args.out, echo=False, folders={"DATA": args.source.resolve().parent, "WORK": work})
    return result


if __name__ == "__main__":
    main()
