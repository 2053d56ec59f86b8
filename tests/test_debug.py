"""conf/debug and --help: each debug option composes with real Hydra into a real Trainer and
runs (the tiny network on 4 synthetic classes); --help says what a command does and lists the
config groups."""
import json
import logging
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from alexnet_lit.train import train
from alexnet_lit.testing import train_command
from conftest import REPO

TINY = ("experiment=tiny", "data.num_classes=4")
DEBUG = {  # option: Trainer settings it must reach
    "default": dict(max_epochs=1, detect_anomaly=True),
    "fast_dev_run": dict(fast_dev_run=True),
    "limit": dict(max_epochs=3, limit_train_batches=2, limit_val_batches=1),
    "overfit": dict(max_epochs=20, overfit_batches=2),
    "profiler": dict(max_epochs=1),
}


@pytest.mark.parametrize("option", DEBUG)
def test_each_debug_option_reaches_a_real_trainer(compose_cfg, option):
    cfg = compose_cfg(*TINY, f"debug={option}")
    assert cfg.ckpt_path is None and cfg.trainer.accelerator == "cpu"  # over train.yaml's and the experiment's
    for key, value in DEBUG[option].items():
        assert cfg.trainer[key] == value, key
    trainer = instantiate(cfg.trainer)
    assert trainer.max_epochs == (1 if option == "fast_dev_run" else DEBUG[option].get("max_epochs", 1))
    assert type(trainer.profiler).__name__ == ("SimpleProfiler" if option == "profiler" else "PassThroughProfiler")


def results(tmp_path) -> dict:
    return json.loads((tmp_path / "run" / "results.json").read_text())


@pytest.mark.slow
def test_fast_dev_run_and_limit_take_the_steps_they_say(compose_cfg, tmp_path):
    train(compose_cfg(*TINY, "debug=fast_dev_run"))
    assert results(tmp_path)["steps"] == 1 and results(tmp_path)["status"] == "completed"
    train(compose_cfg(*TINY, "debug=limit"))
    assert (results(tmp_path)["steps"], results(tmp_path)["epochs"]) == (6, 3)


@pytest.mark.slow
def test_overfit_learns_its_two_batches(compose_cfg, tmp_path):
    train(compose_cfg(*TINY, "debug=overfit"))
    done = results(tmp_path)
    assert done["steps"] == 40 and done["train_top1_err"] <= 0.05
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_profiler_writes_its_table(compose_cfg, tmp_path):
    train(compose_cfg(*TINY, "debug=profiler"))
    assert "run_training_batch" in (tmp_path / "run" / "fit-profiler.txt").read_text()


def test_a_run_ends_with_its_folder_and_final_validation_errors(compose_cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="alexnet_lit.train")
    metrics = train(compose_cfg(*TINY, "debug=limit", "trainer.max_epochs=1"))
    assert metrics["val/top1_err"] == results(tmp_path)["val_top1_err"]
    assert caplog.messages[-1] == (f"run folder {tmp_path / 'run'}: final validation top-1 error "
                                   f"{metrics['val/top1_err']:.4f}, top-4 error {metrics['val/top4_err']:.4f}")


def test_a_validation_cut_short_says_what_it_did_not_reach_and_warns_of_nothing(tmp_path, cache_dir):
    """debug=limit's one validation batch holds no training image scored as validation scores
    (train_eval): one line of ours says so, and no warning is printed (torchmetrics' on a
    metric never updated, twice a key, said nothing a user could act on)."""
    done = subprocess.run(train_command(tmp_path / "run", cache_dir, "data.num_classes=4", "debug=limit",
                                        "trainer.max_epochs=1"), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "this validation reached no image of train_eval (trainer.limit_val_batches=1), so its keys are NaN" in output
    assert "Warning" not in output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["train_eval_top1_err"] is None and results["val_top1_err"] is not None  # not measured: not 1.0


@pytest.mark.parametrize("command, says", [("train", "Trains AlexNet"), ("evaluate", "Top-1 and top-5 error")])
def test_help_says_what_the_command_does_and_lists_the_groups(command, says):
    shown = subprocess.run([sys.executable, "-m", f"alexnet_lit.{command}", "--help"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout
    assert says in shown
    assert "debug: default, fast_dev_run, limit, overfit, profiler" in shown
    assert "data: cifar10, folder, imagenet, streaming, synthetic" in shown
