"""Where the images of a split are and which class each belongs to.

Two layouts: the ImageFolder one, ``root/<split>/<class>/*``, listed with torchvision's
``make_dataset``, and ILSVRC-2012's flat validation folder, labelled from a ground truth
(alexnet_lit.data.ilsvrc). Class indices follow the sorted class folder names of the training
split; a validation split may hold only some of them.
"""
import os
import warnings
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from alexnet_lit.data.decode import only_files
from alexnet_lit.data.ilsvrc import FLAT_VAL, WNID, find_ground_truth, flat_val_samples

Samples = list[tuple[str, int]]


def class_names(folder: Path, synsets: bool = False) -> list[str]:
    """The sorted sub-folder names of ``folder``; with ``synsets``, each must be a WordNet id.
    (Not torchvision's ``find_classes``: it takes hidden folders for classes and fails on
    none, where a flat validation folder has none.)"""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if synsets:
        bad = [c for c in classes if not WNID.fullmatch(c)]
        if bad:
            raise ValueError(f"{folder}: expected one folder per ImageNet synset named by its "
                             f"WordNet id (like n01440764), found {bad[:3]}")
    return classes


def folder_samples(folder: Path, classes: list[str], present: list[str] | None = None) -> Samples:
    """(file, class index in ``classes``) for every image in the class folders ``present``
    (all of ``classes`` by default)."""
    found = make_dataset(str(folder), {name: classes.index(name) for name in present or classes},
                         extensions=IMG_EXTENSIONS, allow_empty=True)
    files, others = only_files([path for path, _ in found])
    if others:
        warnings.warn(f"{folder}: skipped, named like images but not files: {', '.join(others)}")
    kept = set(files)
    samples = [sample for sample in found if sample[0] in kept]
    empty = sorted(set(present or classes) - {classes[label] for _, label in samples})
    if empty:
        raise FileNotFoundError(f"{folder / empty[0]}: a class folder without image files "
                                f"(expected names ending in {', '.join(IMG_EXTENSIONS)})")
    return samples


def split_samples(root: Path, split: str, synsets: bool = False, classes: list[str] | None = None,
                  val_labels: str | None = None) -> tuple[list[str], Samples]:
    """(classes, samples) of ``root/split``. The training split defines the classes; pass
    them for the others, whose class folders must match, or which may be the flat layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist: expected a data set folder holding train/ "
                                f"and a validation folder of class folders, or one written by "
                                f"python -m alexnet_lit.prepare")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} does not exist: expected {root} to hold "
            + ("train/," if split == "train" else f"train/ and {split}/, each")
            + " with one folder of images per class" + (" (WordNet ids)" if synsets else "")
            + (", or the flat ILSVRC2012_val_*.JPEG files plus a ground truth" if classes else ""))
    found = class_names(folder, synsets)
    if classes is None or found:
        if not found:
            raise FileNotFoundError(f"{folder}: expected one folder of images per class, found none")
        if classes is None:
            return found, folder_samples(folder, found)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(f"{folder}: class folders unknown to the training split: {unknown[:3]}")
        warn_partial(folder, len(found), classes)
        return classes, folder_samples(folder, classes, found)
    if not any(FLAT_VAL.fullmatch(e.name) for e in os.scandir(folder)):
        raise FileNotFoundError(f"{folder} holds neither class folders nor ILSVRC2012_val_*.JPEG files")
    truth = Path(val_labels).expanduser() if val_labels else find_ground_truth(root, folder)
    samples = flat_val_samples(folder, classes, truth)
    warn_partial(f"{truth} for {folder}", len({label for _, label in samples}), classes)
    return classes, samples


def warn_partial(where, covered: int, classes: list[str]) -> None:
    """A validation set may cover only some of the training classes (a subset, a quick look):
    one line says how many have no image."""
    if covered < len(classes):
        warnings.warn(f"{where}: validation images of {covered} of the {len(classes)} training "
                      f"classes; {len(classes) - covered} classes have none", stacklevel=3)
