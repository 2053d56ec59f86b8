"""data=streaming (docs/data.md "Beyond one machine"): a prepared set in LitData's chunks, read
from a folder served as a remote (``local:``) through a cache, as nodes read object storage."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from alexnet_lit import prepare as prepare_command
from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import PreparedJPEGs
from alexnet_lit.data.streaming import NEEDS, StreamingDataModule
from alexnet_lit.data.synthetic import synthesize
from conftest import REPO, train_command

pytest.importorskip("litdata", reason=NEEDS)
pytestmark = pytest.mark.slow  # LitData's optimize starts its own processes: seconds

COUNT = """
from pathlib import Path
from lightning.pytorch.callbacks import Callback

class CountValidation(Callback):
    \"\"\"Each process writes how many validation images it scored in the last epoch.\"\"\"
    def __init__(self, folder):
        self.folder, self.scored = Path(folder), 0

    def on_validation_epoch_start(self, trainer, pl_module):
        self.scored = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.scored += len(batch[1])

    def on_validation_epoch_end(self, trainer, pl_module):
        (self.folder / f"scored{trainer.global_rank}").write_text(str(self.scored))
"""


@pytest.fixture(scope="module")
def remote(tmp_path_factory, cache_dir):
    """The synthetic set's first 4 classes at 76x76, prepared with --storage litdata, and the
    same prepared compact (jpeg), the reference."""
    source = synthesize(cache_dir, 4, 24, 6, 76)
    folder = tmp_path_factory.mktemp("remote")
    prepare_command.main([str(source), str(folder / "litdata"), "--storage", "litdata", "--image-size", "76",
                          "--workers", "2", "--chunk-size", "40"])  # the docs' command, in this process
    prepare(source, folder / "jpeg", image_size=76, workers=2, progress=False, chunk_size=40, storage="jpeg")
    return folder


def digests(pairs) -> list[tuple[str, int]]:
    return sorted((hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest(), int(label)) for image, label in pairs)


def test_the_chunks_stream_the_compact_formats_images_through_the_cache(remote, tmp_path):
    meta = json.loads((remote / "litdata" / "prepared.json").read_text())
    assert meta["storage"] == "litdata" and not (remote / "litdata" / "jpeg").exists()  # staging removed
    data = StreamingDataModule(f"local:{remote / 'litdata'}", num_classes=4, cache_dir=str(tmp_path / "cache"),
                               image_size=76, crop_size=67, batch_size=8, num_workers=1, train_eval_images=0)
    data.setup("fit")
    reference = {split: PreparedJPEGs(remote / "jpeg", split, decode=True) for split in ("train", "val")}
    train = [(image, label) for images, labels in data.train_dataloader() for image, label in zip(images, labels)]
    assert digests(train) == digests(reference["train"][i] for i in range(len(reference["train"])))  # each once
    val = [(image, label) for images, labels in data.val_dataloader() for image, label in zip(images, labels)]
    assert digests(val) == digests(reference["val"][i] for i in range(len(reference["val"])))
    streamed = sorted(p.name for p in (tmp_path / "cache").rglob("*.bin"))
    assert streamed and len(streamed) == len(list((remote / "litdata").rglob("*.bin")))  # read via the cache
    assert data.stats.mean_image.shape == (76, 76, 3)  # the set's own statistics, fetched beside the chunks


def test_a_folder_of_another_storage_is_refused_naming_the_option(remote, tmp_path):
    data = StreamingDataModule(str(remote / "jpeg"), num_classes=4, cache_dir=str(tmp_path), image_size=76,
                               crop_size=67)
    with pytest.raises(ValueError, match="holds jpeg storage: train from it with data=folder"):
        data.setup("fit")


def test_training_streams_from_a_local_remote_as_the_docs_say(remote, tmp_path, cache_dir):
    command = "python -m alexnet_lit.train data=streaming data.root=s3://BUCKET/imagenet256"  # then local:
    assert command in (REPO / "docs" / "data.md").read_text()
    run_dir, stream_cache = tmp_path / "run", tmp_path / "stream-cache"
    done = subprocess.run(train_command(run_dir, cache_dir, "data=streaming", f"data.root=local:{remote / 'litdata'}",
                                        f"data.cache_dir={stream_cache}", "data.num_classes=4", "data.image_size=76",
                                        "data.batch_size=16", "data.num_workers=1", "trainer.max_epochs=1"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 96 // 16 and results["val_top1_err"] is not None
    assert list(stream_cache.rglob("*.bin"))
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    (position,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # LitData's, for a resume
    assert position["dataset"]["input_dir_url"].startswith("local:") and position["num_samples_yielded"] == 96


def test_two_processes_stream_one_epoch_between_them(remote, tmp_path, cache_dir):
    """DDP on two CPU processes: each streams its own share of the chunks through its own cache,
    so an epoch of 96 images in global batches of 16 is 6 steps, as on one process, and the
    processes' positions in LitData's loader together count each image once; validation scores
    every one of the 24 images once across the processes (a StreamingDataset's len() is a
    process's share: the sampler had split that share again, scoring half of them)."""
    run_dir, stream_cache = tmp_path / "run", tmp_path / "stream-cache"
    (tmp_path / "count_plugin.py").write_text(COUNT)
    done = subprocess.run(train_command(run_dir, cache_dir, "data=streaming", f"data.root=local:{remote / 'litdata'}",
                                        f"data.cache_dir={stream_cache}", "data.num_classes=4", "data.image_size=76",
                                        "data.batch_size=16", "data.num_workers=1", "trainer.max_epochs=1",
                                        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                        "+callbacks.count._target_=count_plugin.CountValidation",
                                        f"+callbacks.count.folder={tmp_path}"),
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path])))
    assert done.returncode == 0, done.stderr[-3000:]
    assert [int((tmp_path / f"scored{rank}").read_text()) for rank in (0, 1)] == [12, 12]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["steps"] == 96 // 16
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    (position,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # process 0's
    assert position["dataset"]["world_size"] == 2 and position["dataset"]["num_samples_yielded"] == 96 // 2
