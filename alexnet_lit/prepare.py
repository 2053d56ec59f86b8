"""Prepare a data set once, the paper's way (docs/paper.md "Data"): every image's shorter side to
256, the central 256x256 patch kept, written as raw uint8 arrays (or, ``--storage jpeg``, as
JPEG shards) with the training set's mean image and RGB colour PCA beside them
(alexnet_lit.data.prepared). Parallel over CPU cores, resumable: run the same command again
after an interruption. ``--verify DIR`` checks a prepared folder against the checksums
prepare recorded in its prepared.json.

    python -m alexnet_lit.prepare /data/ILSVRC2012 /fast/imagenet256 --layout imagenet
    python -m alexnet_lit.train data=imagenet data.root=/fast/imagenet256
    python -m alexnet_lit.prepare --verify /fast/imagenet256
"""
import argparse
import sys
import time
from pathlib import Path

from alexnet_lit.checks import OneLineParser
from alexnet_lit.data.decode import EXIF_ORIENTATION, ON_ERROR, DecodeError
from alexnet_lit.data.ilsvrc import GROUND_TRUTH_FORMS
from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import LAYOUTS, SKIPPED, STORAGE, STREAMED, read_meta, verify


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m alexnet_lit.prepare", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="folder holding train/<class>/* and the validation split")
    parser.add_argument("out", nargs="?", help="output folder (resumed if it holds an unfinished run)")
    parser.add_argument("--verify", metavar="DIR",
                        help="instead of preparing: check the prepared folder DIR against the checksums in its "
                             "prepared.json, naming every damaged piece (exit status 1 if any)")
    parser.add_argument("--layout", choices=LAYOUTS, default="folder",
                        help="imagenet: class folders must be WordNet ids (default: folder)")
    parser.add_argument("--image-size", type=int, default=256, help="S of the S x S images (256)")
    parser.add_argument("--val-split", default="val", help="validation folder name (val; CIFAR: test)")
    parser.add_argument("--val-labels", help=f"ground truth of a flat val folder: {GROUND_TRUTH_FORMS}")
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU core)")
    parser.add_argument("--on-error", choices=ON_ERROR, default="error",
                        help="an undecodable file stops the run (error) or is left out and listed (skip)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="images per unit of work (and per JPEG shard)")
    parser.add_argument("--storage", choices=[*STORAGE, STREAMED], default="raw",
                        help="raw: uint8 pixels, exact, S*S*3 bytes an image; jpeg: quality 95 in shard "
                             "files, 7x smaller on Imagenette, decoded on the GPU (docs/data.md); litdata: "
                             "the same JPEGs in LitData's chunks, for data=streaming from object storage")
    parser.add_argument("--train-per-class", type=int, metavar="N",
                        help="keep the first N training images of each class, by file name (a subset; "
                             "the validation split stays whole)")
    parser.add_argument("--held-out-to-val", action="store_true",
                        help="with --train-per-class: append the training images left out to the validation "
                             "split, after its own images (scored apart as val_official/...)")
    parser.add_argument("--exif-orientation", choices=EXIF_ORIENTATION, default="ignore",
                        help="ignore: pixels as stored, as torchvision's loader reads them (default); apply: "
                             "turned upright as a viewer shows them; training must ask for the same")
    args = parser.parse_args(argv)
    if args.verify is not None and args.source is not None:
        parser.error("--verify DIR takes no SOURCE or OUT")
    if args.verify is None and args.out is None:
        parser.error("expected SOURCE and OUT folders (or --verify DIR)")
    return args


def prepare_command(argv: list[str] | None = None) -> dict:
    """Prepare the folder the command line names; print one line of what was written and
    return ``prepared.json``'s contents; with ``--verify DIR``, :func:`verify_command`'s."""
    args = parse_args(argv)
    if args.verify is not None:
        return verify_command(Path(args.verify))
    began = time.perf_counter()
    try:
        meta = prepare(args.source, args.out, layout=args.layout, image_size=args.image_size,
                       workers=args.workers, on_error=args.on_error, val_split=args.val_split,
                       val_labels=args.val_labels, chunk_size=args.chunk_size, storage=args.storage,
                       train_per_class=args.train_per_class, held_out_to_val=args.held_out_to_val,
                       exif_orientation=args.exif_orientation)
    except (DecodeError, FileNotFoundError, ValueError) as err:
        sys.exit(f"prepare: {err}")
    counts = ", ".join(f"{name} {s['images']} images ({s['skipped']} skipped)"
                       for name, s in meta["splits"].items())
    print(f"{args.out}: {len(meta['classes'])} classes, {counts} at "
          f"{meta['image_size']}x{meta['image_size']}, {meta['storage']}, in {time.perf_counter() - began:.0f} s")
    if any(s["skipped"] for s in meta["splits"].values()):
        print(f"skipped files are listed in {args.out}/{SKIPPED}")
    return meta


def verify_command(root: Path) -> dict:
    """``--verify DIR``: each damaged piece of ``root`` on a line, then exit status 1; or one
    line saying every piece is as prepared, and prepared.json's contents."""
    try:
        problems = verify(root)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"prepare --verify: {err}")
    for line in problems:
        print(line)
    if problems:
        sys.exit(f"prepare --verify: {root}: {len(problems)} damaged, listed above; "
                 f"prepare the data again into a new folder")
    meta = read_meta(root)
    files = meta["checksums"]["files"].values()
    print(f"{root}: {len(files)} files, {sum(f['bytes'] for f in files)} bytes, every piece as prepared")
    return meta


def main(argv: list[str] | None = None) -> None:
    """The console script: exit status 0 once the folder is prepared or verified (nothing
    returned for ``sys.exit`` to print)."""
    prepare_command(argv)


if __name__ == "__main__":
    main()
