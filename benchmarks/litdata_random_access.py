"""Reading images by index from LitData's chunks against the project's JPEG shards: the access
``data=folder`` makes (its sampler draws a global order, seeded, resumable, the same for every
arm of a seed), where LitData's own loader reads a chunk at a time in an order of its own.

    nice -n 10 python benchmarks/litdata_random_access.py --source IMAGENETTE_DIR [--images 2560]

The same training images, prepared once as the compact format (``--storage jpeg``) and the
same JPEG bytes written into LitData's chunks (``--storage litdata``), are read undecoded in
one random order, interleaved, ``--repeats`` times (medians), one thread; images per CPU
second of:

- ``ours_shards``: alexnet_lit.data.prepared.PreparedJPEGs (``pread``, the CRC-32 checked);
- ``litdata_file_reads``: ``StreamingDataset[i]`` with ``LITDATA_POSIX_FAST=0``, LitData's
  reads of files, the only way it reads a local folder without memory maps;
- ``litdata_maps``: ``StreamingDataset[i]`` as LitData reads a local folder by default, its
  chunks memory-mapped (a chunk cut short while it is read kills the reader with SIGBUS);
- ``litdata_maps_per_item``: the same with ``batch_decode=0`` (an item decoded at a time,
  not a window of them).

Checked first (``same_bytes``): the chunks hold the shards' bytes, image for image. Also
recorded (``chunk_cut_short``): how a process reading the chunks by index, with and without
memory maps, ends when a chunk is cut short under it.

Writes benchmarks/results/litdata_random_access.json.
"""
import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data_throughput import images_at
from timing import machine, median, save

from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import PreparedJPEGs
from alexnet_lit.data.streaming import litdata

# A chunk cut short while LitData reads it by index: read the first image of the first chunk,
# cut the chunk to 1,000 bytes, read its last image. argv: the chunks' folder, LITDATA_POSIX_FAST.
CUT_SHORT = """
import json, os, sys
os.environ["LITDATA_POSIX_FAST"] = sys.argv[2]
import litdata
data = litdata.StreamingDataset(sys.argv[1], batch_decode=0)  # no window of images read ahead
first = json.load(open(os.path.join(sys.argv[1], "index.json")))["chunks"][0]
data[0]
os.truncate(os.path.join(sys.argv[1], first["filename"]), 1000)
data[first["chunk_size"] - 1]
"""


def streaming(folder: Path, maps: bool, **settings):
    """LitData's dataset of ``folder``'s chunks, with or without memory maps (read when made)."""
    os.environ["LITDATA_POSIX_FAST"] = "1" if maps else "0"
    try:
        return litdata().StreamingDataset(str(folder), **settings)
    finally:
        del os.environ["LITDATA_POSIX_FAST"]


def cut_short(folder: Path, maps: bool) -> dict:
    """How a process reading ``folder``'s chunks by index ends when a chunk is cut short under
    it (a copy of the folder is cut): its exit status (negative: the signal that killed it)
    and its last line of error."""
    copy = shutil.copytree(folder, folder.with_name(f"{folder.name}-cut-{int(maps)}"))
    done = subprocess.run([sys.executable, "-c", CUT_SHORT, str(copy), "1" if maps else "0"],
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    return dict(exit_status=done.returncode, signal=signal.Signals(-done.returncode).name if done.returncode < 0
                else None, error=lines[-1][:200] if lines else None)


def held_alike(shards: PreparedJPEGs, readers: dict) -> bool:
    """Whether the chunks hold the shards' JPEG bytes: all of them, read with the fastest of
    LitData's readers (LitData orders them as its writers finished), and for the others the
    first 32 images among them."""
    ours = {hashlib.sha1(shards.jpeg(i).numpy().tobytes()).hexdigest() for i in range(len(shards))}

    def digest(item) -> str:
        return hashlib.sha1(bytes(item["image"])).hexdigest()

    whole = {digest(readers["litdata_maps_per_item"](i)) for i in range(len(shards))}
    return whole == ours and all(digest(readers[name](i)) in ours for name in readers
                                 if name.startswith("litdata") for i in range(min(32, len(shards))))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="an ImageFolder (train/<class>/*); default: generated images")
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--reads", type=int, default=1000, help="images read by each reader a repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "litdata_random_access.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="litdata_random_access-"))
    try:
        images_at(work / "images", args.images, args.source)
        prepare(work / "images", work / "shards", storage="jpeg", workers=2, progress=False)
        prepare(work / "images", work / "chunks", storage="litdata", workers=2, progress=False)
        shards = PreparedJPEGs(work / "shards", "train", decode=False)
        order = [int(i) for i in np.random.default_rng(0).permutation(len(shards))[:args.reads]]
        readers = {"ours_shards": shards.jpeg,
                   "litdata_file_reads": streaming(work / "chunks" / "train", maps=False).__getitem__,
                   "litdata_maps": streaming(work / "chunks" / "train", maps=True).__getitem__,
                   "litdata_maps_per_item": streaming(work / "chunks" / "train", maps=True,
                                                      batch_decode=0).__getitem__}
        same_bytes = held_alike(shards, readers)
        chunk_cut_short = {"litdata_file_reads": cut_short(work / "chunks" / "train", maps=False),
                           "litdata_maps": cut_short(work / "chunks" / "train", maps=True)}
        seconds = {name: [] for name in readers}
        for repeat in range(args.repeats + 1):  # the first a warm-up, not kept
            for name in readers if repeat % 2 == 0 else reversed(readers):
                began = time.process_time()
                for i in order:
                    readers[name](i)
                if repeat:
                    seconds[name].append(time.process_time() - began)
        chunk_bytes = sum(p.stat().st_size for p in (work / "chunks" / "train").glob("*.bin"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = {name: len(order) / median(s) for name, s in seconds.items()}
    result = dict(benchmark="litdata_random_access",
                  command="nice -n 10 python " + " ".join(["benchmarks/litdata_random_access.py",
                                                           *(argv if argv is not None else sys.argv[1:])]),
                  machine=machine(torch.device("cpu")), litdata=litdata().__version__,
                  images=dict(count=len(shards), source=str(args.source or "generated photo-like JPEGs"),
                              reads=len(order), chunk_mb=round(chunk_bytes / 2 ** 20, 1)),
                  same_bytes=same_bytes, chunk_cut_short=chunk_cut_short, images_per_cpu_s={name: round(rate, 1) for name, rate in rates.items()},
                  relative_to_ours={name: round(rate / rates["ours_shards"], 4) for name, rate in rates.items()},
                  cpu_seconds={name: [round(v, 4) for v in s] for name, s in seconds.items()})
    save(result, args.out, folders={"DATA": args.source.resolve().parent} if args.source else None)
    return result


if __name__ == "__main__":
    main()
