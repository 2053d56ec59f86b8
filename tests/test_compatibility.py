"""A checkpoint written before the package took its present layout still loads, with the outputs
it gave, and still resumes: the class paths saved in it (``alexnet_lit.faults.AtomicCheckpointIO``
and the callbacks) name modules that have since moved into ``alexnet_lit.checkpointing``.

The fixture (52 kB) was made on 2026-12-03 by ``python -m alexnet_lit.train`` with
``experiment=tiny`` and the overrides of :data:`OVERRIDES`; its logits on a fixed input were
recorded beside it the same day."""
import json
import subprocess
from pathlib import Path

import torch

from alexnet_lit.trained import load
from alexnet_lit.weights import read_file
from conftest import REPO, train_command

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_2026-12-03.ckpt"
OVERRIDES = ("data.num_classes=4", "data.train_per_class=8", "data.val_per_class=4",
             "model.features.conv1.out=4", "model.features.conv2.out=8", "model.features.conv3.out=8",
             "model.features.conv4.out=8", "model.features.conv5.out=8", "model.classifier.fc6=16",
             "model.classifier.fc7=16")


def fixed_input() -> torch.Tensor:
    return torch.randn(2, 3, 67, 67, generator=torch.Generator().manual_seed(0)) * 50


def test_the_fixture_names_the_old_class_paths():
    run = read_file(str(FIXTURE))["alexnet_lit_run"]["config"]
    assert run["trainer"]["plugins"] == [{"_target_": "alexnet_lit.faults.AtomicCheckpointIO"}]
    assert run["callbacks"]["exact_resume"]["_target_"] == "alexnet_lit.resume.ExactResume"


def test_an_old_checkpoint_loads_with_the_outputs_it_gave():
    trained = load(FIXTURE)
    expected = json.loads(FIXTURE.with_suffix(".json").read_text())["logits"]
    with torch.no_grad():
        torch.testing.assert_close(trained.net(fixed_input()), torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_an_old_checkpoint_resumes(tmp_path, cache_dir):
    run = tmp_path / "run"
    done = subprocess.run(train_command(run, cache_dir, *OVERRIDES, f"ckpt_path={FIXTURE}", "trainer.max_epochs=2"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert (results["status"], results["epochs"], results["steps"]) == ("completed", 2, 2)


def test_every_moved_class_path_names_a_class_of_the_package():
    from hydra.utils import get_class

    from alexnet_lit.checkpointing.run_folder import MOVED
    for old, new in MOVED.items():
        assert get_class(new).__name__ == old.rsplit(".", 1)[1]
