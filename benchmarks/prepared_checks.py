"""What the checks of a prepared folder cost: the file sizes checked before each pass over the
data, against reading the epoch, and the reads made with ``pread`` instead of a memory map.

    nice -n 10 python benchmarks/prepared_checks.py [--source DIR] [--images 2000] [--repeats 5]

Before each pass over the data (training, then validation: two an epoch) the data module
compares the size of every file of the prepared folder with the one prepare recorded in
prepared.json (alexnet_lit.data.prepared.PreparedSplit.check_sizes). The same images, prepared
at 256x256 raw and as JPEG shards of 1,000 images, are measured in one run, interleaved:

- checks: both splits' sizes checked (a ``stat`` a file), timed over 1,000 calls;
- epoch: every training image read once in random order, as a loader worker reads it (raw:
  the pixels; jpeg: the bytes, checked against their CRC-32, undecoded as on a GPU node, the
  cheaper reading and so the larger ratio);
- raw only, epoch_memmap: the same rows copied out of a memory map, as they were read before
  a file cut short while training had to be an error rather than SIGBUS.

Reported per storage: seconds a check, a file and an epoch's two checks, the epoch's reading,
their ratio, and images/s per core. Images: the first ``--images`` of an ImageFolder
``--source`` (train/), or generated photo-like JPEGs (data_throughput.py). Writes
benchmarks/results/prepared_checks.json.
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
from timing import interleaved, machine, median, save

from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import STORAGE, PreparedImages, PreparedJPEGs

CHECKS = 1000  # checks a timed call: one takes microseconds


def measure(folder: Path, storage: str, repeats: int) -> dict:
    """The size check's cost against an epoch's reading, for the prepared ``folder``."""
    train, val = (PreparedImages(folder, split) if storage == "raw" else PreparedJPEGs(folder, split, decode=False)
                  for split in ("train", "val"))
    order = np.random.default_rng(0).permutation(len(train))

    def epoch():
        for index in order:
            train[index]

    def checks():
        for _ in range(CHECKS):
            train.check_sizes()
            val.check_sizes()

    def epoch_memmap():
        for index in order:
            torch.from_numpy(np.array(mapped[train.rows[index]]))

    contenders = dict(epoch=epoch, checks=checks)
    if storage == "raw":
        mapped = np.load(train.path, mmap_mode="r")
        contenders["epoch_memmap"] = epoch_memmap
    seconds = interleaved(contenders, repeats, torch.device("cpu"))
    check, reading = median(seconds["checks"]) / CHECKS, median(seconds["epoch"])
    files = len(train.sizes) + len(val.sizes)
    rates = {f"{name}_images_per_s": len(train) / median(seconds[name]) for name in contenders if name != "checks"}
    return dict(files=files, images=len(train), check_s=check, per_file_s=check / files, per_epoch_s=2 * check,
                epoch_reading_s=reading, ratio=2 * check / reading, **rates,
                seconds={k: [round(s, 5) for s in v] for k, v in seconds.items()})


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source", type=Path, help="an ImageFolder (train/<class>/*) to take the images from")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "prepared_checks.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="prepared_checks-"))
    try:
        images = work / "images"
        images_at(images, args.images, args.source)
        storages = {}
        for storage in STORAGE:
            prepare(images, work / storage, workers=os.cpu_count(), progress=False, storage=storage)
            storages[storage] = measure(work / storage, storage, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = dict(benchmark="prepared_checks", command="python " + " ".join(sys.argv), image_size=256,
                  chunk_size=1000, repeats=args.repeats, storages=storages,
                  source=str(args.source or "generated photo-like JPEGs (data_throughput.py)"),
                  machine=machine(torch.device("cpu")))
    save(result, args.out, echo=False, folders={"DATA": args.source.resolve().parent} if args.source else None)
    for storage, m in storages.items():
        print(f"{storage}: {m['files']} files, a check {m['check_s'] * 1e6:.0f} us ({m['per_file_s'] * 1e6:.1f} us a "
              f"file), two an epoch {m['per_epoch_s'] * 1e3:.3f} ms against {m['epoch_reading_s']:.3f} s reading "
              f"{m['images']} images: {100 * m['ratio']:.3f}%")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
