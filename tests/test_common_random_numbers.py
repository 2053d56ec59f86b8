"""Arms of one seed share every random draw their ablation does not change (issue 19): each
step's images, crops, mirrors and colour noise, and the random state dropout draws from; and
the clean training error training logs is what `evaluate` scores on those images."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO, command, finished_run

RECORD_BATCHES = """
import torch
from lightning.pytorch.callbacks import Callback

class RecordBatches(Callback):
    '''Each training step's batch as the network sees it, and torch's random state after the
    views were drawn (what dropout draws its masks from).'''
    def __init__(self, path):
        self.path, self.steps = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images, labels = batch
        self.steps.append(dict(images=images.clone(), labels=labels.clone(), rng=torch.get_rng_state()))

    def on_train_end(self, trainer, pl_module):
        torch.save(self.steps, self.path)
"""
ARMS = ("none", "no_lrn", "no_dropout", "no_conv3", "no_pca", "no_augment")


@pytest.mark.slow
def test_every_arm_of_a_seed_sees_the_same_batches_and_random_state(tmp_path, cache_dir):
    (tmp_path / "record_batches.py").write_text(RECORD_BATCHES)
    done = subprocess.run(
        [sys.executable, "-m", "alexnet_lit.train", "-m", "experiment=tiny", f"+ablation={','.join(ARMS)}",
         "seed=5", "data.num_classes=4", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
         "trainer.limit_val_batches=1", "+callbacks.record._target_=record_batches.RecordBatches",
         "+callbacks.record.path=${paths.output_dir}/batches.pt", f"paths.cache_dir={cache_dir}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path])))
    assert done.returncode == 0, done.stderr[-3000:]
    steps = {}
    for job in (p.parent.parent for p in (tmp_path / "sweep").glob("*/.hydra/overrides.yaml")):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        (arm,) = [o.split("=")[1] for o in overrides if o.startswith("+ablation=")]
        steps[arm] = torch.load(job / "batches.pt", weights_only=True)
    none = steps["none"]
    assert len(none) == 6 and not torch.equal(none[0]["images"], none[3]["images"])
    for arm in ARMS:
        assert len(steps[arm]) == len(none), arm
        for step, (mine, base) in enumerate(zip(steps[arm], none)):
            assert torch.equal(mine["labels"], base["labels"]), (arm, step)  # the same images, in the same order
            assert torch.equal(mine["rng"], base["rng"]), (arm, step)  # the same dropout masks where shapes agree
            if arm in ("no_lrn", "no_dropout", "no_conv3"):  # the data is not theirs to change
                assert torch.equal(mine["images"], base["images"]), (arm, step)
    for mine, base in zip(steps["no_pca"], none):
        # the same crops and mirrors: PCA noise adds one RGB offset to every pixel of an image
        shift = base["images"] - mine["images"]
        per_image = shift.flatten(2)
        torch.testing.assert_close(per_image, per_image[..., :1].expand_as(per_image), atol=1e-4, rtol=0)
        assert shift.abs().max() > 1e-3
    for mine, base in zip(steps["no_augment"], none):
        assert not torch.equal(mine["images"], base["images"])  # centre crops, no noise: not the random views


@pytest.mark.slow
def test_the_clean_training_error_is_what_evaluate_scores_on_the_training_images(tmp_path, cache_dir):
    """train_eval/... scores training images as validation scores its own: evaluating the last
    checkpoint on the training split (all 400 images scored) gives the same error."""
    run = finished_run(tmp_path / "run", cache_dir, "data.num_classes=4", "trainer.max_epochs=2",
                       "data.train_eval_images=400")
    results = json.loads((run / "results.json").read_text())
    assert results["val_official_top1_err"] is None  # validation holds only the data set's own images
    assert 0 < results["train_eval_top1_err"] < 0.75
    done = subprocess.run(command("evaluate", tmp_path / "eval", cache_dir,
                                  f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "+data.val_split=train"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["images"] == 400
    (scores,) = report["results"].values()
    assert scores["center"]["top1_err"] == pytest.approx(results["train_eval_top1_err"], abs=1e-6)
