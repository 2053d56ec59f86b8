"""ILSVRC-2012 layouts: synset folders, the flat val folder with each of the three ground-truth
forms, sorted-wnid class indices, and clear errors for missing or malformed roots."""
import csv
import multiprocessing
import tarfile

import numpy as np
import pytest
from scipy.io import savemat

from alexnet_lit.data.samples import split_samples
from alexnet_lit.data.synthetic import synthesize
from conftest import write_image

WNIDS = ["n01440764", "n01443537", "n02102040"]  # sorted: indices 0, 1, 2
DEVKIT_IDS = {"n02102040": 1, "n01440764": 2, "n01443537": 3}  # the devkit's own order differs
VAL = ["n02102040", "n01440764", "n01443537", "n01440764", "n02102040", "n01443537"]


@pytest.fixture
def imagenet(tmp_path):
    """train/<wnid>/ folders and the official flat val/ with all three ground truths."""
    root = tmp_path / "ILSVRC2012"
    for c, wnid in enumerate(WNIDS):
        for i in range(2):
            write_image(root / "train" / wnid / f"{wnid}_{i}.JPEG", seed=10 * c + i)
    for i, wnid in enumerate(VAL, start=1):
        write_image(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", seed=100 + i)
    truth = tmp_path / "truth"
    data = truth / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    # meta.mat as the devkit has it: a struct array, leaves (num_children 0) hold IDs 1..1000
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children"]
    synsets = np.zeros(4, dtype=[(f, object) for f in fields])
    for row, (wnid, i) in enumerate(list(DEVKIT_IDS.items()) + [("n00001740", 4)]):
        synsets[row] = (i, wnid, f"words of {wnid}", "", 0 if row < 3 else 2)  # the last one is an inner node
    savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{DEVKIT_IDS[w]}\n" for w in VAL))
    with tarfile.open(truth / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(truth / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    (truth / "val.txt").write_text("".join(
        f"ILSVRC2012_val_{i:08d}.JPEG {WNIDS.index(w)}\n" for i, w in enumerate(VAL, start=1)))
    with open(truth / "LOC_val_solution.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        for i, w in enumerate(VAL, start=1):
            writer.writerow([f"ILSVRC2012_val_{i:08d}", f"{w} 1 2 30 40 {w} 5 6 20 20"])
    return root, truth


def labels_by_name(samples) -> dict[str, int]:
    return {path.rsplit("/", 1)[-1]: label for path, label in samples}


EXPECTED = {f"ILSVRC2012_val_{i:08d}.JPEG": WNIDS.index(w) for i, w in enumerate(VAL, start=1)}


@pytest.mark.parametrize("form", ["ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t12.tar.gz",
                                  "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                                  "val.txt", "LOC_val_solution.csv"])
def test_flat_val_with_each_ground_truth_form(imagenet, form):
    root, truth = imagenet
    classes, train = split_samples(root, "train", synsets=True)
    assert classes == WNIDS
    assert {p.rsplit("/", 1)[-1]: label for p, label in train}["n02102040_1.JPEG"] == 2
    _, val = split_samples(root, "val", True, classes, val_labels=str(truth / form))
    assert labels_by_name(val) == EXPECTED


def test_ground_truth_found_in_root(imagenet):
    root, truth = imagenet
    (truth / "LOC_val_solution.csv").rename(root / "LOC_val_solution.csv")
    _, val = split_samples(root, "val", True, WNIDS)
    assert labels_by_name(val) == EXPECTED


def test_val_as_synset_folders_gives_the_same_labels(imagenet, tmp_path):
    root, _ = imagenet
    for name, label in EXPECTED.items():
        (root / "val" / WNIDS[label]).mkdir(exist_ok=True)
        (root / "val" / name).rename(root / "val" / WNIDS[label] / name)
    _, val = split_samples(root, "val", True, WNIDS)
    assert labels_by_name(val) == EXPECTED


def test_missing_root_and_split_name_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'} does not exist.*train/"):
        split_samples(tmp_path / "nowhere", "train")
    (tmp_path / "root").mkdir()
    with pytest.raises(FileNotFoundError, match="root/train does not exist.*one folder of images per class"):
        split_samples(tmp_path / "root", "train")


def test_a_missing_split_is_named_sensibly_whichever_it_is(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{root}/train does not exist: expected {root} to hold train/, "
                                                f"with one folder of images per class$"):
        split_samples(root, "train")
    write_image(root / "train" / "a" / "0.jpg")
    with pytest.raises(FileNotFoundError, match=f"{root}/test does not exist: expected {root} to hold train/ and "
                                                f"test/, each with one folder of images per class, or the flat"):
        split_samples(root, "test", classes=["a"])


def test_malformed_roots(imagenet, tmp_path):
    root, truth = imagenet
    with pytest.raises(FileNotFoundError, match="no ground truth.*LOC_val_solution.csv"):
        split_samples(root, "val", True, WNIDS)  # flat val, no ground truth anywhere
    write_image(root / "train" / "cats" / "a.jpg")
    with pytest.raises(ValueError, match=r"WordNet id.*\['cats'\]"):
        split_samples(root, "train", synsets=True)
    (root / "train" / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train/empty: a class folder without image files"):
        split_samples(root, "train")


def test_ground_truth_is_checked_not_assumed(imagenet):
    root, truth = imagenet
    one_based = truth / "val1.txt"  # a classic mistake: 1-based indices
    one_based.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {WNIDS.index(w) + 1}\n"
                                 for i, w in enumerate(VAL, start=1)))
    with pytest.raises(ValueError, match="line .* index in 0..2"):
        split_samples(root, "val", True, WNIDS, val_labels=str(one_based))
    short = truth / "short.txt"
    short.write_text("".join((truth / "val.txt").read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match="1 images without a label"):
        split_samples(root, "val", True, WNIDS, val_labels=str(short))
    with pytest.raises(ValueError, match="no training class folder"):  # a wnid not in train/
        split_samples(root, "val", True, WNIDS[:2] + ["n09999999"],
                      val_labels=str(truth / "LOC_val_solution.csv"))
    partial = truth / "partial.txt"  # every image in one class: accepted, with a warning
    partial.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG 0\n" for i in range(1, 7)))
    with pytest.warns(UserWarning, match="of 1 of the 3 training classes; 2 classes have none"):
        _, samples = split_samples(root, "val", True, WNIDS, val_labels=str(partial))
    assert {label for _, label in samples} == {0} and len(samples) == 6


def test_val_class_folders_may_be_a_subset_of_train_but_not_more(imagenet):
    """Issue 13: partial validation sets (subsets, a quick look) are common; the labels stay
    the training split's indices. A folder training does not know is refused."""
    root, _ = imagenet
    write_image(root / "val" / "n02102040" / "x.JPEG")
    with pytest.warns(UserWarning, match="of 1 of the 3 training classes"):
        classes, samples = split_samples(root, "val", True, WNIDS)
    assert classes == WNIDS and samples == [(str(root / "val" / "n02102040" / "x.JPEG"), 2)]
    write_image(root / "val" / "n09999999" / "y.JPEG")
    with pytest.raises(ValueError, match=r"unknown to the training split: \['n09999999'\]"):
        split_samples(root, "val", True, WNIDS)


def _synthesize_and_list(cache: str) -> list[str]:
    root = synthesize(cache, num_classes=3, train_per_class=40, val_per_class=2, size=32)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))


@pytest.mark.slow  # four processes started at once
def test_processes_that_synthesize_at_once_share_one_complete_set(tmp_path):
    """The jobs of a sweep start together on one cache: each must get the whole set, and none
    may delete it under another (a SLURM sweep once failed on a file that had vanished)."""
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        listings = pool.map(_synthesize_and_list, [str(tmp_path)] * 4)
    assert all(listing == listings[0] for listing in listings) and len(listings[0]) == 3 * 42
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []  # no staging left
