"""Raw against compact JPEG prepared data (alexnet_lit.data.prepared): what each costs to read.

    nice -n 10 python benchmarks/prepared_formats.py [--source DIR] [--images 500]
        [--device cpu|cuda] [--batch-size 64] [--repeats 3]

The same images, prepared both ways at 256x256, are read in random order, a batch at a
time, into uint8 (B, 256, 256, 3) on ``--device``, as training reads them:

- raw: the rows (read with ``pread``), stacked and transferred;
- jpeg: the shard bytes, checked against their CRC-32, decoded as the data module decodes
  them: on a CPU each image by the loader worker (one thread here: images/s per core), on
  CUDA the whole batch by nvJPEG.

Also reported: bytes per image and the PSNR of the decoded JPEGs against the raw pixels.
Images: ``--images`` generated photo-like JPEGs of ImageNet-like sizes (data_throughput.py),
or the first of an ImageFolder ``--source``. Prints and writes JSON (default
``benchmarks/results/prepared_formats_<device>.json``); benchmarks/gpu_check.py part 6 calls
:func:`measure`.
"""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from data_throughput import images_at
from timing import interleaved, machine, median, save, synchronize

from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import PreparedImages, PreparedJPEGs, decode_jpegs

FORMATS = ("raw", "jpeg")


def psnr(decoded: torch.Tensor, exact: torch.Tensor) -> float:
    mse = (decoded.double() - exact.double()).square().mean().item()
    return 10 * np.log10(255.0 ** 2 / mse) if mse else float("inf")


def measure(folders: dict[str, Path], device: torch.device, images: int, batch_size: int,
            repeats: int = 3) -> dict:
    """Images/s of each format's batches on ``device`` (``folders``: format -> prepared folder
    of the same images), interleaved repeats, medians."""
    raw = PreparedImages(folders["raw"], "train")
    jpeg = PreparedJPEGs(folders["jpeg"], "train", decode=device.type != "cuda")
    order = np.random.default_rng(0).permutation(len(raw))[:images]
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]

    def read_raw():
        for rows in batches:
            torch.stack([raw[i][0] for i in rows]).to(device)
        synchronize(device)

    def read_jpeg():
        for rows in batches:
            samples = [jpeg[i][0] for i in rows]
            torch.stack(samples) if jpeg.decode else decode_jpegs(samples, device)
        synchronize(device)

    seconds = interleaved({"raw": read_raw, "jpeg": read_jpeg}, repeats, device)
    count = len(batches) * batch_size
    fidelity = [psnr(PreparedJPEGs(folders["jpeg"], "train", decode=True)[i][0], raw[i][0])
                for i in order[:200]]
    formats = {
        "raw": dict(images_per_s=count / median(seconds["raw"]), bytes_per_image=raw[0][0].numel(), exact=True),
        "jpeg": dict(images_per_s=count / median(seconds["jpeg"]), bytes_per_image=float(jpeg.index[:, 2].mean()),
                     exact=False, decoded_by="nvJPEG, a batch at a time" if device.type == "cuda"
                     else "torchvision.io.decode_jpeg, an image at a time",
                     psnr_db=dict(min=min(fidelity), median=float(np.median(fidelity))))}
    return dict(images=count, batch_size=batch_size, repeats=repeats, formats=formats,
                seconds={k: [round(s, 4) for s in v] for k, v in seconds.items()})


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--source", type=Path, help="an ImageFolder (train/<class>/*) to take the images from")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(1)
    out = args.out or Path(__file__).parent / "results" / f"prepared_formats_{device.type}.json"
    work = Path(tempfile.mkdtemp(prefix="prepared_formats-"))
    try:
        root = work / "jpeg"
        images_at(root, args.images, args.source)
        folders = {f: work / f"prepared_{f}" for f in FORMATS}
        for storage, folder in folders.items():
            prepare(root, folder, workers=os.cpu_count(), progress=False, storage=storage)
        result = measure(folders, device, args.images, args.batch_size, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save(dict(benchmark="prepared_formats", command="python " + " ".join(sys.argv), **result,
              source=str(args.source or "generated photo-like JPEGs (data_throughput.py)"),
              machine=machine(device)), out, folders={"DATA": args.source.resolve().parent} if args.source else None)
    return result


if __name__ == "__main__":
    main()
