"""Real training runs: a Lightning Trainer on generated JPEGs, from the real configs."""
import json
import os
import subprocess
import sys

import pytest
import torch

from alexnet_lit.checkpointing.resume import ResumableCSVLogger
from alexnet_lit.train import train
from conftest import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def epoch_values(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


def test_two_epoch_cpu_run_on_synthetic_data(compose_cfg, tmp_path):
    cfg = compose_cfg("experiment=tiny", "+ablation=no_dropout", "trainer.max_epochs=2")
    train(cfg)
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["epochs"] == 2 and results["steps"] == 2 * (1000 // 32)
    assert results["ablation"] == ["no_dropout"] and results["seed"] == 0
    assert results["init"] == "kaiming"
    assert results["params"] == sum(p.numel() for p in torch.load(
        run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"].values())
    # learnable: well below the 90% error of chance on 10 classes
    assert results["best_val_top1_err"] < 0.6
    rows = read_metrics(run)
    assert epoch_values(rows, "val/top1_err")[-1] == pytest.approx(results["val_top1_err"])
    assert min(epoch_values(rows, "val/top1_err")) == pytest.approx(results["best_val_top1_err"])
    assert len(epoch_values(rows, "train/top1_err")) == 2
    assert epoch_values(rows, "lr") == pytest.approx([0.02, 0.02])
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["epoch"] == results["best_epoch"]


def test_plateau_divides_lr_by_ten_when_val_error_stops_improving(compose_cfg, tmp_path):
    # lr so small that nothing is learnt: val error stays flat, and with patience 0 the lr
    # drops after every epoch but the first (which sets the best so far)
    cfg = compose_cfg("experiment=tiny", "optim.lr=1e-6", "optim.scheduler.patience=0",
                      "trainer.max_epochs=4", "trainer.limit_train_batches=2")
    train(cfg)
    rows = read_metrics(tmp_path / "run")
    assert len(set(epoch_values(rows, "val/top1_err"))) == 1
    assert epoch_values(rows, "lr") == pytest.approx([1e-6, 1e-6, 1e-7, 1e-8], rel=1e-5)
    # results.json names each drop: the first epoch at the lower rate, and that rate
    drops = json.loads((tmp_path / "run" / "results.json").read_text())["lr_drops"]
    assert [d["epoch"] for d in drops] == [2, 3]
    assert [d["lr"] for d in drops] == pytest.approx([1e-7, 1e-8], rel=1e-5)


def test_milestones_schedule(compose_cfg, tmp_path):
    cfg = compose_cfg("experiment=tiny", "optim=milestones", "optim.scheduler.milestones=[1]",
                      "trainer.max_epochs=2", "trainer.limit_train_batches=2")
    train(cfg)
    assert epoch_values(read_metrics(tmp_path / "run"), "lr") == pytest.approx([0.02, 0.002])


def test_a_resumed_run_keeps_the_metrics_of_the_attempt_before(compose_cfg, tmp_path):
    train(compose_cfg("experiment=tiny", "trainer.max_epochs=1"))
    train(compose_cfg("experiment=tiny", "trainer.max_epochs=2"))  # resumes from last.ckpt
    rows = read_metrics(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows if r["val/top1_err"]] == [0, 1]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["epochs"] == 2


def test_resuming_drops_the_rows_beyond_the_checkpoint_and_a_half_written_one(tmp_path):
    """A run killed while appending to metrics.csv, resumed from its checkpoint at step 3."""
    path = tmp_path / "csv" / "metrics.csv"
    path.parent.mkdir()
    path.write_text("epoch,step,train/loss\r\n" + "".join(f"0,{s},0.{s}\r\n" for s in range(5)) + "0,1")
    logger = ResumableCSVLogger(tmp_path, name="csv", version="")
    logger.forget_from(3)
    logger.log_metrics({"train/loss": 0.7, "epoch": 0}, step=3)
    logger.save()
    assert [(r["step"], r["train/loss"]) for r in read_metrics(tmp_path)] == [
        ("0", "0.0"), ("1", "0.1"), ("2", "0.2"), ("3", "0.7")]


def final_weights(compose_cfg, seed, run) -> torch.Tensor:
    cfg = compose_cfg("experiment=tiny", f"seed={seed}", "trainer.max_epochs=1",
                      "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", run=run)
    train(cfg)
    state = torch.load(cfg.paths.output_dir + "/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    return state["net.features.conv1.weight"]


def test_seed_zero_is_honoured(compose_cfg):
    a, b, c = (final_weights(compose_cfg, s, run) for s, run in ((0, "a"), (0, "b"), (1, "c")))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.slow
def test_readme_quick_start(tmp_path):
    """The README's first command (its install step done by the suite's own install)."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    command = "pip install -e . && python -m alexnet_lit.train experiment=quickstart"
    assert command in readme
    env = dict(os.environ, ALEXNET_LIT_CACHE=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-m", "alexnet_lit.train", "experiment=quickstart",
                    f"hydra.run.dir={tmp_path / 'run'}"],
                   cwd=tmp_path, env=env, check=True, timeout=900)
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs"] == 2
    assert results["params"] == 56_909_194  # the paper's network with a 10-way fc8
    assert results["val_top1_err"] < 0.8  # chance is 0.9
    assert results["learning"]["verdict"] == "learns"  # at chance for its first epoch only: not collapsed
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert list((tmp_path / "cache").glob("synthetic-*/train/class009/*.jpg"))


def test_an_error_in_setup_ends_in_one_error_and_a_failed_results_json(compose_cfg, tmp_path):
    """Issue 13: a missing data folder raised while the Trainer set up was followed by an
    AttributeError from the results writer, which hid it and left no results.json."""
    cfg = compose_cfg("experiment=tiny", "data=folder", f"data.root={tmp_path / 'absent'}", "data.num_classes=10")
    with pytest.raises(FileNotFoundError, match="absent does not exist") as error:
        train(cfg)
    assert error.value.__context__ is None or not isinstance(error.value.__context__, AttributeError)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and "absent does not exist" in results["error"]
