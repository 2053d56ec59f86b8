"""A prepared folder checked and its damage named: file sizes against prepared.json when the
data is opened and before each pass over it, a file cut short while training (one error naming
it, the run failed, never SIGBUS), labels against the classes, and ``prepare --verify``'s
per-piece checksums."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from alexnet_lit.data.folder import FolderDataModule
from alexnet_lit.data.prepared import MARKER, STORAGE, DamagedData, piece_crcs
from alexnet_lit.prepare import main as prepare_main
from alexnet_lit.testing import train_command
from alexnet_lit.train import train
from conftest import REPO, write_image

# Two classes of 32 training images: 8 steps an epoch at a batch of 8; 16 images a shard.
TRAIN = ("data=folder", "data.num_classes=2", "data.batch_size=8")
TRAIN_SHARD = "train/shards/000001.jpegs"

TRUNCATE = """
import os
from lightning.pytorch.callbacks import Callback

class Truncate(Callback):
    def __init__(self, path, size):
        self.path, self.size = path, size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (1, 1):  # last.ckpt saved at the epoch's first batch
            os.truncate(self.path, self.size)
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two classes of 32 training and 4 validation images prepared at experiment=tiny's 76x76,
    raw and as JPEG shards."""
    root = tmp_path_factory.mktemp("prepared")
    for c in range(2):
        for i in range(36):
            split, name = ("train", i) if i < 32 else ("val", i - 32)
            write_image(root / "src" / split / f"c{c}" / f"{name}.jpg", size=(90, 80), seed=100 * c + i)
    for storage in STORAGE:
        prepare_main([str(root / "src"), str(root / storage), "--image-size", "76", "--workers", "1",
                      "--chunk-size", "16", "--storage", storage])
    return root


@pytest.fixture
def copy_of(prepared, tmp_path):
    """A copy of the prepared folder of a storage, to damage."""
    def copy(storage: str):
        return shutil.copytree(prepared / storage, tmp_path / storage)
    return copy


def sizes_of(folder) -> dict[str, int]:
    """The sizes of a prepared folder's files, as prepare recorded them."""
    return {name: f["bytes"] for name, f in json.loads((folder / MARKER).read_text())["checksums"]["files"].items()}


def cut_short(folder, name: str, size: int) -> str:
    """The error that names ``folder/name`` cut to ``size`` bytes."""
    return (f"{folder / name}: {size} bytes where prepare wrote {sizes_of(folder)[name]}; "
            f"python -m alexnet_lit.prepare --verify {folder} names every damaged piece; "
            f"prepare the data again into a new folder")


@pytest.mark.parametrize("storage, name", [("raw", "train/images.npy"), ("jpeg", TRAIN_SHARD)])
def test_a_file_cut_short_before_a_run_is_named_in_one_line(compose_cfg, copy_of, storage, name):
    folder = copy_of(storage)
    os.truncate(folder / name, 1000)
    with pytest.raises(DamagedData) as error:
        train(compose_cfg("experiment=tiny", *TRAIN, f"data.root={folder}"))
    assert str(error.value) == cut_short(folder, name, 1000)


def test_the_files_are_checked_before_each_pass_over_the_data(copy_of):
    folder = copy_of("raw")
    data = FolderDataModule(str(folder), num_classes=2, image_size=76, crop_size=67, batch_size=8, num_workers=0)
    data.setup("fit")
    loader = data.train_dataloader()
    assert sum(1 for _ in loader) == 8
    os.truncate(folder / "val" / "images.npy", 1000)  # the training pass reads none of it, and checks it
    with pytest.raises(DamagedData) as error:
        next(iter(loader))
    assert str(error.value) == cut_short(folder, "val/images.npy", 1000)


@pytest.mark.slow
@pytest.mark.parametrize("storage, name, workers", [
    ("raw", "train/images.npy", 0),  # read by the training process (before: SIGBUS, exit status 135)
    ("jpeg", TRAIN_SHARD, 1)])  # read by a loader worker
def test_a_file_cut_short_while_training_fails_the_run_naming_it(tmp_path, cache_dir, copy_of, storage, name, workers):
    folder = copy_of(storage)
    (tmp_path / "truncate_plugin.py").write_text(TRUNCATE)
    run = tmp_path / "run"
    done = subprocess.run(
        train_command(run, cache_dir, *TRAIN, f"data.root={folder}", f"data.num_workers={workers}",
                      "+callbacks.cut._target_=truncate_plugin.Truncate", f"+callbacks.cut.path={folder / name}",
                      "+callbacks.cut.size=1000"),
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path])))
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == cut_short(folder, name, 1000)
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and results["error"] == f"DamagedData: {cut_short(folder, name, 1000)}"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8


def test_a_label_out_of_range_is_named_when_the_data_is_opened(copy_of):
    folder = copy_of("raw")
    labels = np.load(folder / "val" / "labels.npy")
    labels[5] = 57
    np.save(folder / "val" / "labels.npy", labels)
    data = FolderDataModule(str(folder), num_classes=2, image_size=76, crop_size=67)
    expected = (f"{folder / 'val' / 'labels.npy'}: label 57 at index 5 is not a class of {folder / MARKER} "
                f"(0 to 1, or -1 for a skipped file); out of range: 1 of its 8 labels; python -m")
    with pytest.raises(DamagedData, match=re.escape(expected)):
        data.setup("fit")


def test_verify_passes_a_whole_folder_and_names_every_damaged_piece(copy_of, capsys):
    raw, jpeg = copy_of("raw"), copy_of("jpeg")
    for folder in (raw, jpeg):
        prepare_main(["--verify", str(folder)])
        assert capsys.readouterr().out.endswith(" bytes, every piece as prepared\n")
    # pieces of 4 kB, to name two of one file (prepare's, of 64 MB, are one a file here)
    meta, sizes = json.loads((raw / MARKER).read_text()), sizes_of(raw)
    meta["checksums"] = dict(piece_bytes=4096, files={name: dict(bytes=sizes[name], crc32=crcs)
                                                      for name, crcs in piece_crcs(raw, sizes, 4096).items()})
    (raw / MARKER).write_text(json.dumps(meta))
    with open(raw / "train" / "images.npy", "r+b") as f:
        for offset in (5000, 13000, 13001):
            f.seek(offset)
            flipped = f.read(1)[0] ^ 0xFF
            f.seek(offset)
            f.write(bytes([flipped]))
    os.truncate(jpeg / TRAIN_SHARD, 1000)
    (jpeg / "val" / "labels.npy").unlink()
    shard = sizes_of(jpeg)[TRAIN_SHARD]
    for folder, said in ((raw, [f"{raw}/train/images.npy: bytes 4096-8191 differ from what prepare wrote",
                                f"{raw}/train/images.npy: bytes 12288-16383 differ from what prepare wrote"]),
                         (jpeg, [f"{jpeg}/val/labels.npy: missing",
                                 f"{jpeg}/{TRAIN_SHARD}: 1000 bytes where prepare wrote {shard}",
                                 f"{jpeg}/{TRAIN_SHARD}: bytes 0-{shard - 1} differ from what prepare wrote"])):
        with pytest.raises(SystemExit, match=f"prepare --verify: {folder}: {len(said)} damaged, listed above"):
            prepare_main(["--verify", str(folder)])
        assert capsys.readouterr().out.splitlines() == said


def test_verify_says_plainly_that_a_folder_of_before_checksums_has_none(copy_of):
    folder = copy_of("raw")
    meta = json.loads((folder / MARKER).read_text())
    del meta["checksums"]
    (folder / MARKER).write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match=f"prepare --verify: {folder} has no checksums in its {MARKER}: it was "
                                         f"prepared before prepare recorded them"):
        prepare_main(["--verify", str(folder)])
