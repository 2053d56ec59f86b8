"""ILSVRC-2012's validation ground truth and class words.

The official validation folder is flat, ``root/val/ILSVRC2012_val_*.JPEG``; its labels come from
one of three ground-truth forms: the devkit (ILSVRC2012_validation_ground_truth.txt, whose
class ids meta.mat maps to WordNet ids), Caffe's ``val.txt`` (``filename index`` with indices in
sorted-wnid order) or Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` whose
first word is the wnid). Class indices follow the sorted wnids (the torchvision convention);
every ground truth is checked against them. Words per wnid come from Kaggle's or Caffe's
synset-words file or the devkit's meta.mat.
"""
import csv
import io
import os
import re
import tarfile
from pathlib import Path

WNID = re.compile(r"n\d{8}")
FLAT_VAL = re.compile(r"(ILSVRC2012_val_\d{8})\.(jpe?g|png)", re.IGNORECASE)
DEVKIT_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
GROUND_TRUTH = ("LOC_val_solution.csv", "val.txt", "ILSVRC2012_devkit_t12",
                "ILSVRC2012_devkit_t12.tar.gz", DEVKIT_TRUTH)
# WordNet id -> words ("n01440764 tench, Tinca tinca"): Kaggle's, Caffe's, or the devkit's meta.mat
SYNSET_WORDS = ("LOC_synset_mapping.txt", "synset_words.txt", "ILSVRC2012_devkit_t12",
                "ILSVRC2012_devkit_t12.tar.gz")
GROUND_TRUTH_FORMS = ("a devkit (ILSVRC2012_devkit_t12 folder or .tar.gz, or its "
                      f"{DEVKIT_TRUTH} beside meta.mat), Caffe's val.txt or LOC_val_solution.csv")


def _devkit_files(path: Path) -> tuple[bytes, str]:
    """(meta.mat, the ground-truth text) of a devkit folder, archive or ground-truth file."""
    try:
        if path.is_file() and path.name != DEVKIT_TRUTH:  # the devkit archive
            with tarfile.open(path) as tar:
                members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
                return (tar.extractfile(members["meta.mat"]).read(),
                        tar.extractfile(members[DEVKIT_TRUTH]).read().decode())
        data = path.parent if path.is_file() else next(
            (d for d in (path / "data", path) if (d / DEVKIT_TRUTH).is_file()), path / "data")
        return (data / "meta.mat").read_bytes(), (data / DEVKIT_TRUTH).read_text()
    except (KeyError, FileNotFoundError, tarfile.TarError) as err:
        raise FileNotFoundError(f"{path}: expected the ILSVRC-2012 devkit, holding data/meta.mat and "
                                f"data/{DEVKIT_TRUTH} ({err})") from err


def _devkit_wnids(path: Path) -> dict[str, str]:
    from scipy.io import loadmat  # only the devkit form needs it

    meta, truth = _devkit_files(path)
    synsets = loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    leaves = {int(i): str(w) for i, w, n in zip(synsets["ILSVRC2012_ID"], synsets["WNID"],
                                                 synsets["num_children"]) if n == 0}
    wnids = {}
    for number, line in enumerate(truth.split(), start=1):
        if int(line) not in leaves:
            raise ValueError(f"{path}: line {number} of {DEVKIT_TRUTH} holds class id {line}, "
                             f"which is no leaf synset of meta.mat")
        wnids[f"ILSVRC2012_val_{number:08d}"] = leaves[int(line)]
    return wnids


def synset_words(root: Path) -> dict[str, str]:
    """WordNet id -> its words, from the first of SYNSET_WORDS found in ``root``; {} if none."""
    for name in SYNSET_WORDS:
        path = Path(root) / name
        if not path.exists():
            continue
        if name.endswith(".txt"):
            words = {}
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                wnid, _, text = line.strip().partition(" ")
                if line.strip() and not (WNID.fullmatch(wnid) and text):
                    raise ValueError(f"{path}, line {number} ({line!r}): expected 'wnid words'")
                if text:
                    words[wnid] = text.strip()
            return words
        from scipy.io import loadmat  # only the devkit form needs it

        synsets = loadmat(io.BytesIO(_devkit_files(path)[0]), squeeze_me=True)["synsets"]
        return {str(w): str(words) for w, words in zip(synsets["WNID"], synsets["words"])}
    return {}


def display_names(root: Path, classes: list[str]) -> list[str]:
    """Each class's words where ``root`` holds a synset-words file, its folder name otherwise."""
    words = synset_words(root)
    return [words.get(c, c) for c in classes]


def _loc_wnids(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["ImageId", "PredictionString"]:
        raise ValueError(f"{path}: expected LOC_val_solution.csv's header ImageId,PredictionString")
    return {row[0]: row[1].split()[0] for row in rows[1:] if row}


def _caffe_indices(path: Path, classes: list[str]) -> dict[str, int]:
    indices = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) >= len(classes):
            raise ValueError(f"{path}, line {number} ({line!r}): expected 'filename index' with "
                             f"an index in 0..{len(classes) - 1} (sorted-wnid order, as Caffe's)")
        indices[Path(fields[0]).name.rsplit(".", 1)[0]] = int(fields[1])
    return indices


def read_ground_truth(path: Path, classes: list[str]) -> dict[str, int]:
    """Class index of each val image (by file name without extension) in any of the forms."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such ground-truth file; expected {GROUND_TRUTH_FORMS}")
    if path.suffix == ".csv":
        wnids = _loc_wnids(path)
    elif path.is_dir() or path.name == DEVKIT_TRUTH or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        wnids = _devkit_wnids(path)
    else:
        return _caffe_indices(path, classes)
    index = {wnid: i for i, wnid in enumerate(classes)}
    unknown = sorted(set(wnids.values()) - set(index))
    if unknown:
        raise ValueError(f"{path} labels images with {len(unknown)} wnids that have no training "
                         f"class folder, such as {unknown[:3]}")
    return {name: index[wnid] for name, wnid in wnids.items()}


def flat_val_samples(folder: Path, classes: list[str], truth: Path) -> list[tuple[str, int]]:
    """The official flat val folder, each file labelled from ``truth``; checked both ways."""
    labels = read_ground_truth(truth, classes)
    files = sorted(e.name for e in os.scandir(folder) if FLAT_VAL.fullmatch(e.name))
    stems = [FLAT_VAL.fullmatch(f).group(1) for f in files]
    unlabelled = [f for f, s in zip(files, stems) if s not in labels]
    missing = sorted(set(labels) - set(stems))
    if unlabelled or missing:
        raise ValueError(f"{truth} does not match {folder}: {len(unlabelled)} images without a "
                         f"label (such as {unlabelled[:2]}), {len(missing)} labels without an "
                         f"image (such as {missing[:2]})")
    return [(str(folder / f), labels[s]) for f, s in zip(files, stems)]


def find_ground_truth(root: Path, folder: Path) -> Path:
    for place in (root, folder):
        for name in GROUND_TRUTH:
            if (place / name).exists():
                return place / name
    raise FileNotFoundError(
        f"{folder} holds the flat ILSVRC2012_val_*.JPEG layout but no ground truth was given "
        f"(data.val_labels, or --val-labels) or found in {root}: expected {GROUND_TRUTH_FORMS}")
