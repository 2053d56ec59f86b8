"""Input pipeline throughput per CPU core: (a) the standard torchvision ImageFolder pipeline
(full JPEG decode + RandomResizedCrop(224) + flip + ToTensor + Normalize) against (b) this
project's training path from the prepared format (alexnet_lit.prepare), on the same images of
ImageNet-like sizes; and the measurement behind the prepared format (raw uint8 in a memory map
against re-encoded JPEG or PNG bytes, the payload of WebDataset- or litdata-style shards).

    nice -n 10 python benchmarks/data_throughput.py [--images 300] [--source DIR] [--repeats 3]

Everything runs in this one process on one thread (torch.set_num_threads(1)): figures are
images per second per core. (b) is reported twice: "loader", what the DataLoader workers do
(read the 256x256 image; the batched crop, mirror, colour noise and centring run on the GPU
after transfer), and "loader + device stage on CPU", with that batched stage run here too, as
on a machine without an accelerator. Passes alternate (timing.interleaved); medians.

Images: ``--images`` generated JPEGs (quality 90, 1/f-noise content like photographs, sides
of 300..520 px, ILSVRC-2012's typical 4:3, 3:2, 1:1 and portrait shapes, about 400x350 on
average), or the image files of an ImageFolder ``--source``. Prints and writes JSON
(default ``benchmarks/results/data_throughput.json``).
"""
import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, io as tvio, transforms as T

from timing import interleaved, machine, median, save

from alexnet_lit.data.colour import IMAGENET_MEAN, IMAGENET_STD
from alexnet_lit.data.folder import FolderDataModule
from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import PreparedImages

ASPECTS = (4 / 3, 3 / 2, 1.0, 3 / 4, 2 / 3, 5 / 4)


def photo_like(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Noise with a 1/f amplitude spectrum per channel: the statistics of natural images."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(w, h))
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        channel = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(h, w))
        channels.append((channel - channel.mean()) / channel.std())
    pixels = 128 + 45 * np.stack(channels, axis=-1) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def generate(root: Path, count: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        long_side, aspect = int(rng.integers(300, 521)), ASPECTS[i % len(ASPECTS)]
        w, h = (long_side, int(long_side / aspect)) if aspect >= 1 else (int(long_side * aspect), long_side)
        for split in ("train", "val"):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            if split == "train" or i < classes:
                photo_like(rng, w, h).save(folder / f"{i:05d}.JPEG", quality=90)


def link_images(source: Path, root: Path, count: int) -> None:
    """The first ``count`` image files of an ImageFolder ``source`` (train/), as train and val."""
    files = sorted(p for p in (source / "train").glob("*/*") if p.is_file())[:count]
    for split in ("train", "val"):
        for f in files if split == "train" else files[:10]:
            (root / split / f.parent.name).mkdir(parents=True, exist_ok=True)
            (root / split / f.parent.name / f.name).symlink_to(f.resolve())


def images_at(root: Path, count: int, source: Path | None) -> None:
    """``count`` images in ``root`` (train/ and val/): those of ``source`` where given, else generated."""
    link_images(source, root, count) if source else generate(root, count)


def one_pass(make_loader, stage=None):
    """One epoch: a fresh loader each time (the training sampler remembers where it stopped)."""
    def run():
        for images, labels in make_loader():
            if stage is not None:
                stage(images)
    return run


def format_readers(prepared: Path, count: int) -> tuple[dict, dict]:
    """Random-order readers of the same 256x256 images in each candidate storage format."""
    raw = PreparedImages(prepared, "train")
    pixels = [raw[i][0].numpy() for i in range(len(raw))]
    encoded = {"jpeg_q95": [], "png": []}
    for p in pixels:
        for name, kwargs in (("jpeg_q95", dict(format="JPEG", quality=95)), ("png", dict(format="PNG"))):
            buffer = io.BytesIO()
            Image.fromarray(p).save(buffer, **kwargs)
            encoded[name].append(buffer.getvalue())
    jpeg_tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded["jpeg_q95"]]
    order = np.random.default_rng(1).permutation(len(raw))

    def pil(blobs):
        return lambda: [np.asarray(Image.open(io.BytesIO(blobs[i])).convert("RGB")) for i in order]

    readers = {"raw_uint8_memmap": lambda: [raw[i] for i in order],
               "jpeg_q95_pil": pil(encoded["jpeg_q95"]),
               "jpeg_q95_torchvision": lambda: [tvio.decode_jpeg(jpeg_tensors[i]) for i in order],
               "png_pil": pil(encoded["png"])}
    exact = {"raw_uint8_memmap": True, "jpeg_q95_pil": False, "jpeg_q95_torchvision": False,
             "png_pil": True}
    sizes = {"raw_uint8_memmap": pixels[0].nbytes, "jpeg_q95_pil": np.mean([len(b) for b in encoded["jpeg_q95"]]),
             "png_pil": np.mean([len(b) for b in encoded["png"]])}
    sizes["jpeg_q95_torchvision"] = sizes["jpeg_q95_pil"]
    return readers, {k: dict(exact=exact[k], bytes_per_image=int(sizes[k])) for k in readers}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--source", type=Path, help="an ImageFolder (train/<class>/*) to take the images from")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_throughput.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="data_throughput-"))
    try:
        root = work / "jpeg"
        images_at(root, args.images, args.source)
        files = sorted((root / "train").glob("*/*"))
        sizes = np.array([Image.open(f).size for f in files])

        began = time.perf_counter()
        prepare(root, work / "prepared", workers=1, progress=False)
        prepare_rate = len(files) / (time.perf_counter() - began)

        baseline = datasets.ImageFolder(str(root / "train"), T.Compose([
            T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
            T.Normalize([m / 255 for m in IMAGENET_MEAN], [s / 255 for s in IMAGENET_STD])]))
        ours = FolderDataModule(str(work / "prepared"), num_classes=10, batch_size=args.batch_size,
                                num_workers=0, image_size=256, crop_size=227)
        ours.setup("fit")
        contenders = {
            "a_torchvision_imagefolder": one_pass(
                lambda: DataLoader(baseline, args.batch_size, shuffle=True, drop_last=True)),
            "b_prepared_loader": one_pass(ours.train_dataloader),
            "b_prepared_loader_plus_device_stage_on_cpu": one_pass(
                ours.train_dataloader, lambda x: ours.views(x, "random")),
        }
        per_pass = (len(files) // args.batch_size) * args.batch_size
        seconds = interleaved(contenders, args.repeats, torch.device("cpu"))
        rates = {name: per_pass / median(s) for name, s in seconds.items()}

        readers, formats = format_readers(work / "prepared", len(files))
        format_seconds = interleaved(readers, args.repeats, torch.device("cpu"))
        for name, s in format_seconds.items():
            formats[name]["images_per_s_per_core"] = round(len(files) / median(s), 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    baseline_rate = rates["a_torchvision_imagefolder"]
    result = dict(
        command="nice -n 10 python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        machine={**machine(torch.device("cpu")), "pillow": PIL.__version__},
        images=dict(count=len(files), source=str(args.source or "generated 1/f-noise JPEGs, quality 90"),
                    mean_width=round(float(sizes[:, 0].mean())), mean_height=round(float(sizes[:, 1].mean()))),
        images_per_s_per_core={k: round(v, 1) for k, v in rates.items()},
        ratio_vs_torchvision={k: round(v / baseline_rate, 1) for k, v in rates.items()},
        prepare_images_per_s_per_core=round(prepare_rate, 1),
        prepared_format_candidates=formats,
        seconds_per_pass=seconds,
    )
    save(result, args.out)
    return result


if __name__ == "__main__":
    main()
