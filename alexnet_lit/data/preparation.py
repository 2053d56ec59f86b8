"""Writing a prepared folder (the format: alexnet_lit.data.prepared) from a folder of image
files. Preparation runs in chunks over a process pool; each finished chunk leaves a small
marker with its pixel sums, so an interrupted run resumes where it stopped.
"""
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image
from tqdm import tqdm

from alexnet_lit.data.colour import PixelSums, save_stats
from alexnet_lit.data.decode import DecodeError, check_orientation, check_policy, die_with_parent, prepare_image
from alexnet_lit.data.ilsvrc import display_names
from alexnet_lit.data.prepared import (FORMAT, JPEG_QUALITY, LAYOUTS, MARKER, PLAN, SKIPPED, STATS, STORAGE, STREAMED,
                                       checksums, is_prepared, read_meta, shard_path)
from alexnet_lit.data.samples import Samples, split_samples


def encode_jpeg(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass
class Chunk:
    """Rows start..start+len(paths) of one split, prepared by one worker into ``array`` (raw)
    or its own shard file (jpeg)."""
    array: Path
    marker: Path
    start: int
    paths: list[str]
    image_size: int
    on_error: str
    with_stats: bool
    storage: str = "raw"
    exif_orientation: str = "ignore"


def write_shard(path: Path, blobs: list[bytes]) -> dict:
    """Concatenated ``blobs``, written whole or not at all; their offsets, lengths and CRCs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    partial.write_bytes(b"".join(blobs))
    os.replace(partial, path)
    lengths = np.array([len(b) for b in blobs], np.int64)
    return dict(offsets=np.cumsum(lengths) - lengths, lengths=lengths,
                crcs=np.array([zlib.crc32(b) for b in blobs], np.int64))


def prepare_chunk(chunk: Chunk) -> int:
    images = np.load(chunk.array, mmap_mode="r+") if chunk.storage == "raw" else None
    sums, skipped, errors, blobs = PixelSums(chunk.image_size), [], [], []
    for row, path in enumerate(chunk.paths, start=chunk.start):
        try:
            pixels = prepare_image(path, chunk.image_size, chunk.exif_orientation)
        except DecodeError as err:
            if chunk.on_error == "error":
                raise
            skipped.append(row)
            errors.append(str(err))
            blobs.append(b"")
            continue
        if images is None:
            blobs.append(encode_jpeg(pixels))
        else:
            images[row] = pixels
        if chunk.with_stats:
            sums.add(pixels[None])
    shard = {}
    if images is None:
        shard = write_shard(chunk.array, blobs)
    else:
        images.flush()
        del images
    partial = chunk.marker.with_name(f"{chunk.marker.stem}.partial.npz")
    np.savez(partial, skipped=np.array(skipped, np.int64), errors=np.array(errors, dtype=str),
             **sums.state(), **shard)
    os.replace(partial, chunk.marker)  # the chunk counts as done only once this exists
    return len(chunk.paths)


def _digest(samples: Samples, source: Path) -> str:
    lines = (f"{os.path.relpath(path, source)}\t{label}" for path, label in samples)
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def _start(out: Path, plan: dict, splits: dict[str, Samples], source: Path) -> None:
    """Write the plan and allocate the arrays, or check that a started run had the same plan."""
    if (out / PLAN).is_file():
        started = json.loads((out / PLAN).read_text())
        differs = [k for k in plan if started.get(k) != plan[k]]
        if differs:
            raise ValueError(f"{out} holds a preparation with another {', '.join(differs)} than "
                             f"asked for now: choose another output folder, or delete it")
        return
    size = plan["image_size"]
    for name, samples in splits.items():
        (out / name / "chunks").mkdir(parents=True, exist_ok=True)
        if plan["storage"] == "raw":
            open_memmap(out / name / "images.npy", mode="w+", dtype=np.uint8,
                        shape=(len(samples), size, size, 3)).flush()
        np.save(out / name / "labels.npy", np.array([label for _, label in samples], np.int64))
        (out / name / "files.txt").write_text(
            "".join(f"{os.path.relpath(path, source)}\n" for path, _ in samples))
    (out / PLAN).write_text(json.dumps(plan, indent=1))


def _run(chunks: list[Chunk], workers: int, progress: bool) -> None:
    with tqdm(total=sum(len(c.paths) for c in chunks), unit="img", desc="prepare",
              disable=not progress) as bar:
        if workers == 1:
            for chunk in chunks:
                bar.update(prepare_chunk(chunk))
            return
        context = multiprocessing.get_context()  # a forked worker's parent is this process; else a server's
        parent = os.getpid() if context.get_start_method() == "fork" else None
        with ProcessPoolExecutor(workers, context, initializer=die_with_parent, initargs=(parent,)) as pool:
            futures = [pool.submit(prepare_chunk, chunk) for chunk in chunks]
            try:
                for future in as_completed(futures):
                    bar.update(future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)  # chunks in flight still finish and are kept
                raise


def data_files(out: Path, storage: str, splits) -> list[str]:
    """The files training reads, relative to ``out``: stats.npz, and each split's labels and
    pixels (images.npy, or its index and shards)."""
    names = [STATS]
    for split in splits:
        pixels = (["images.npy"] if storage == "raw" else
                  ["index.npy", *(f"shards/{p.name}" for p in sorted((out / split / "shards").glob("*.jpegs")))])
        names += [f"{split}/{name}" for name in ("labels.npy", *pixels)]
    return names


def write_prepared(out: Path, classes: list[str], source: str, image_size: int,
                   splits: dict[str, np.ndarray], sums: PixelSums, skipped: list[str],
                   storage: str = "raw", class_names: list[str] | None = None,
                   val_official_images: int | None = None, exif_orientation: str = "ignore") -> dict:
    """Finish a prepared folder: statistics, report and, last, the marker. ``splits`` maps
    each split to its labels (-1 for a skipped file); ``class_names`` are the classes' words
    (alexnet_lit.data.ilsvrc.display_names), the class names themselves if not given;
    ``val_official_images``: how many rows of the val split, from its start, are the data
    set's own validation images (the rest are held-out training images); ``exif_orientation``:
    how the images were decoded (alexnet_lit.data.decode), which a run must ask for too. The
    checksums of the files training reads (alexnet_lit.data.prepared) go into prepared.json."""
    save_stats(sums.stats(source=str(out / STATS)), out / STATS)
    (out / SKIPPED).write_text("".join(f"{line}\n" for line in skipped))
    encoding = {} if storage == "raw" else dict(jpeg_quality=JPEG_QUALITY)
    meta = dict(format=FORMAT, source=source, image_size=image_size, storage=storage, **encoding,
                exif_orientation=exif_orientation, classes=classes, class_names=class_names or classes,
                splits={name: dict(images=int((labels >= 0).sum()), skipped=int((labels < 0).sum()))
                        for name, labels in splits.items()})
    if val_official_images is not None:
        meta["val_official_images"] = val_official_images
    meta["checksums"] = checksums(out, data_files(out, storage, splits))
    (out / f"{MARKER}.partial").write_text(json.dumps(meta, indent=1))
    os.replace(out / f"{MARKER}.partial", out / MARKER)
    return meta


def write_arrays(out: Path, classes: list[str], source: str,
                 splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """A prepared folder from images already in memory (uint8 (N, S, S, 3), labels)."""
    sums = PixelSums(splits["train"][0].shape[1])
    for name, (images, labels) in splits.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        np.save(out / name / "images.npy", images)
        np.save(out / name / "labels.npy", np.asarray(labels, np.int64))
    for start in range(0, len(splits["train"][0]), 1000):
        sums.add(splits["train"][0][start:start + 1000])
    return write_prepared(out, classes, source, sums.image_sum.shape[0],
                          {name: np.asarray(labels) for name, (_, labels) in splits.items()}, sums, [])


def _finish(out: Path, plan: dict) -> dict:
    sums, skipped, labels = PixelSums(plan["image_size"]), [], {}
    for name in plan["splits"]:
        labels[name] = np.load(out / name / "labels.npy")
        index = np.zeros((len(labels[name]), 4), np.int64)  # jpeg: shard, offset, length, CRC
        for marker in sorted((out / name / "chunks").glob("[0-9]*[0-9].npz")):
            with np.load(marker) as done:
                labels[name][done["skipped"]] = -1
                skipped += list(done["errors"])
                if name == "train":
                    sums.merge(PixelSums.from_state(done))
                if plan["storage"] == "jpeg":
                    shard, start = int(marker.stem), int(marker.stem) * plan["chunk_size"]
                    index[start:start + len(done["lengths"])] = np.stack(
                        [np.full_like(done["lengths"], shard), done["offsets"], done["lengths"], done["crcs"]], 1)
        np.save(out / name / "labels.npy", labels[name])
        if plan["storage"] == "jpeg":
            np.save(out / name / "index.npy", index)
    meta = write_prepared(out, plan["classes"], plan["source"], plan["image_size"], labels, sums, skipped,
                          plan["storage"], display_names(Path(plan["source"]), plan["classes"]),
                          plan.get("val_official_images"), plan.get("exif_orientation", "ignore"))
    for name in plan["splits"]:
        shutil.rmtree(out / name / "chunks")
    return meta


def first_per_class(samples: Samples, n: int) -> tuple[Samples, Samples]:
    """The first ``n`` samples of each class, in the listing's order, and the rest."""
    if n < 1:
        raise ValueError(f"train_per_class={n}: expected a positive number of images")
    taken = Counter()
    kept, rest = [], []
    for path, label in samples:
        taken[label] += 1
        (kept if taken[label] <= n else rest).append((path, label))
    return kept, rest


def prepare(source, out, layout: str = "folder", image_size: int = 256, workers: int | None = None,
            on_error: str = "error", val_split: str = "val", val_labels: str | None = None,
            chunk_size: int = 1000, progress: bool = True, storage: str = "raw",
            train_per_class: int | None = None, held_out_to_val: bool = False,
            exif_orientation: str = "ignore") -> dict:
    """Prepare ``source`` (train/ and val_split/, see alexnet_lit.data.samples) into ``out``,
    stored ``raw`` or as ``jpeg``; resumes a run that stopped, returns prepared.json's contents.
    ``train_per_class``: keep only the first N training images of each class (by file name),
    a smaller training set beside the whole validation set; ``held_out_to_val``: the training
    images it leaves out are appended to the validation split, after the official ones (their
    count is ``val_official_images`` in prepared.json, each row's source file in files.txt),
    so that more images score each run. ``exif_orientation``: alexnet_lit.data.decode's, recorded
    in prepared.json. ``litdata``: the ``jpeg`` storage prepared in OUT/jpeg, then LitData's
    chunks of its bytes (alexnet_lit.data.streaming) in OUT, OUT/jpeg removed."""
    if storage == STREAMED:
        from alexnet_lit.data.streaming import write_litdata  # an optional dependency's
        settings = {k: v for k, v in locals().items() if k not in ("source", "out", "storage", "write_litdata")}
        out = Path(out).expanduser()
        if is_prepared(out):
            return read_meta(out)
        prepare(source, out / "jpeg", storage="jpeg", **settings)
        meta = write_litdata(out / "jpeg", out, workers or os.cpu_count() or 1)
        shutil.rmtree(out / "jpeg")
        return meta
    check_policy(on_error)
    check_orientation(exif_orientation)
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {list(LAYOUTS)}")
    if storage not in (*STORAGE, STREAMED):
        raise ValueError(f"storage={storage!r}: expected one of {[*STORAGE, STREAMED]}")
    source, out = Path(source).expanduser().resolve(), Path(out).expanduser()
    classes, train = split_samples(source, "train", synsets=layout == "imagenet")
    if held_out_to_val and train_per_class is None:
        raise ValueError("held_out_to_val needs train_per_class: without it no training image is left out")
    held_out = []
    if train_per_class is not None:
        train, held_out = first_per_class(train, train_per_class)
    _, val = split_samples(source, val_split, layout == "imagenet", classes, val_labels)
    official = len(val)
    if held_out_to_val:
        val = val + held_out
    splits = {"train": train, "val": val}
    plan = dict(format=FORMAT, source=str(source), layout=layout, image_size=image_size,
                storage=storage, chunk_size=chunk_size, classes=classes,
                splits={name: dict(images=len(s), digest=_digest(s, source)) for name, s in splits.items()})
    if train_per_class is not None:
        plan["train_per_class"] = train_per_class
    if held_out_to_val:
        plan["val_official_images"] = official
    if exif_orientation != "ignore":  # absent from the plans of folders made before the choice
        plan["exif_orientation"] = exif_orientation
    out.mkdir(parents=True, exist_ok=True)
    _start(out, plan, splits, source)
    if is_prepared(out):
        return read_meta(out)
    chunks = [Chunk(out / name / "images.npy" if storage == "raw" else shard_path(out, name, start // chunk_size),
                    out / name / "chunks" / f"{start // chunk_size:06d}.npz",
                    start, [path for path, _ in samples[start:start + chunk_size]], image_size,
                    on_error, with_stats=name == "train", storage=storage, exif_orientation=exif_orientation)
              for name, samples in splits.items() for start in range(0, len(samples), chunk_size)]
    try:
        _run([c for c in chunks if not c.marker.is_file()], workers or os.cpu_count() or 1, progress)
    except DecodeError as err:
        raise DecodeError(f"{err}\nFinished chunks are kept in {out}: run the same command again "
                          f"to resume, or with on_error=skip to leave such files out and list them.") from err
    return _finish(out, plan)
