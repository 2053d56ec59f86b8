"""DDP through Lightning on CPU (gloo, two processes): the same validation errors and the same
gradient as one process, the global batch and lr rules, and DDP jobs inside a Hydra multirun."""
import json
import subprocess
import sys

import lightning as L
import pytest
import torch

from alexnet_lit.build import build_datamodule, optim_settings
from alexnet_lit.trained import load_module
from alexnet_lit.train import train
from conftest import REPO, job_of, read_metrics, sigterm_in_validation, train_command

DDP = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")


def run(command: list[str], cwd=REPO) -> None:
    """Run to success; on failure, every process's error lines, then the end of the output."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines()
              if any(word in line for word in ("Error", "error:", "terminate", "what()", "Abort"))]
    assert done.returncode == 0, "\n".join([*errors[:40], "...", done.stderr[-3000:]])


# 25 validation images over 2 processes, 5 a batch: 13 and 12 images, 3 and 3 batches, the
# last ones of 3 and 2. A padding sampler would count an image twice, changing the error.
UNEVEN_DATA = ("data.num_classes=5", "data.train_per_class=20", "data.val_per_class=5", "data.batch_size=10")


def assert_validates_like_one_process(run_dir, cfg) -> None:
    """The final validation errors and loss of a 2-process run equal one process's
    validation of its last weights on the data of ``cfg``."""
    ddp = json.loads((run_dir / "results.json").read_text())
    assert ddp["processes"] == 2 and 0 < ddp["val_top1_err"] < 1
    module = load_module(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True), run_dir)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (one,) = trainer.validate(module, datamodule=build_datamodule(cfg.data))
    assert one["val/top1_err"] == ddp["val_top1_err"]
    assert one["val/top5_err"] == ddp["val_top5_err"]
    (ddp_loss,) = [float(row["val/loss"]) for row in read_metrics(run_dir) if row["val/loss"]]
    assert ddp_loss == pytest.approx(one["val/loss"], rel=1e-6)  # a mean over images, not batches


@pytest.mark.slow
def test_two_processes_validate_like_one(tmp_path, compose_cfg, cache_dir):
    run_dir = tmp_path / "ddp"
    run(train_command(run_dir, cache_dir, *DDP, *UNEVEN_DATA, "trainer.max_epochs=1"))
    assert_validates_like_one_process(run_dir, compose_cfg("experiment=tiny", *UNEVEN_DATA))


def first_step_gradient(run_dir) -> dict[str, torch.Tensor]:
    """The gradient of the one step a run took: with no momentum yet and no weight decay,
    PaperSGD's velocity is -lr * gradient."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 1
    names = [n for n in ckpt["state_dict"] if n.startswith("net.")]
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    state = ckpt["optimizer_states"][0]["state"]
    return {n: -state[i]["velocity"] / lr for i, n in enumerate(names)}


@pytest.mark.slow
def test_one_ddp_step_of_2x64_matches_one_step_of_1x128(tmp_path, cache_dir):
    """Same global batch of 128 (the samplers give the same images whatever the process
    count); no dropout and centre crops, so nothing random differs between the runs."""
    same = ("data.batch_size=128", "data.augment=false", "model.dropout=0", "optim.weight_decay=0",
            "trainer.max_steps=1", "+trainer.num_sanity_val_steps=0")
    run(train_command(tmp_path / "one", cache_dir, *same))
    run(train_command(tmp_path / "two", cache_dir, *same, *DDP))
    one, two = first_step_gradient(tmp_path / "one"), first_step_gradient(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "results.json").read_text())["processes"] == 2
    for name, g in one.items():
        assert g.abs().max() > 1e-4, name  # a real step
        torch.testing.assert_close(two[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_mid_epoch_checkpoint_holds_the_training_error_counts_of_both_processes(tmp_path, cache_dir):
    """What a run resumed mid-epoch goes on counting from (alexnet_lit.module)."""
    run(train_command(tmp_path / "run", cache_dir, *DDP, "trainer.max_steps=3",
                      "+trainer.num_sanity_val_steps=0", "callbacks.model_checkpoint.monitor=null",
                      "callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.filename='step{step}'",
                      "+callbacks.model_checkpoint.every_n_train_steps=2"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step2.ckpt", weights_only=True)
    counts = ckpt["train_error_counts"]["top1_err"]
    assert int(counts["tp"] + counts["fn"]) == 2 * 32  # two global batches of 32: 16 per process


RESUMED = (*DDP, "data.train_per_class=50", "trainer.deterministic=true")


@pytest.fixture(scope="module")
def whole_ddp_run(tmp_path_factory, cache_dir):
    """Two processes of RESUMED, never stopped: the folder both SIGTERM cases end as."""
    folder = tmp_path_factory.mktemp("ddp") / "whole"
    run(train_command(folder, cache_dir, *RESUMED))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [None, [1]], ids=["both-signalled", "one-signalled"])
def test_two_processes_stopped_by_sigterm_in_validation_resume_into_the_uninterrupted_run(
        tmp_path, cache_dir, whole_ddp_run, ranks):
    """Both processes signalled (as SLURM does), or one: validation finishes, every process
    saves and exits; the same command then ends with the weights and metrics.csv of a run
    never stopped."""
    stopped = tmp_path / "stopped"
    run(train_command(stopped, cache_dir, *RESUMED, *sigterm_in_validation(ranks)))
    results = json.loads((stopped / "results.json").read_text())
    assert (results["status"], results["steps"], results["best_epoch"]) == ("interrupted", 15, 0)
    run(train_command(stopped, cache_dir, *RESUMED))
    resumed, whole = (torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (stopped, whole_ddp_run))
    assert resumed["global_step"] == whole["global_step"] == 30
    for name, w in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], w), name
    assert resumed["lr_schedulers"] == whole["lr_schedulers"]
    assert read_metrics(stopped) == read_metrics(whole_ddp_run)


def test_a_global_batch_that_does_not_split_fails_before_any_process_starts(compose_cfg):
    cfg = compose_cfg("experiment=tiny", *DDP[:2], "trainer.devices=3", "data.batch_size=32")
    with pytest.raises(ValueError, match=r"data.batch_size=32 is the global batch .* 3 processes"):
        train(cfg)


def test_learning_rate_rule(compose_cfg):
    """Unchanged by default whatever the batch; linear scaling from the paper's 128 on request."""
    assert optim_settings(compose_cfg("experiment=tiny", "data.batch_size=256"))["lr"] == 0.02
    linear = compose_cfg("experiment=tiny", "data.batch_size=256", "optim.lr_scaling=linear")
    assert optim_settings(linear)["lr"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="optim.lr_scaling='sqrt'"):
        optim_settings(compose_cfg("experiment=tiny", "optim.lr_scaling=sqrt"))


@pytest.mark.slow
def test_ddp_jobs_inside_a_multirun_write_into_their_own_folders(tmp_path, cache_dir):
    sweep, cwd = tmp_path / "sweep", tmp_path / "cwd"
    cwd.mkdir()
    run([sys.executable, "-m", "alexnet_lit.train", "-m", "experiment=tiny", *DDP, "seed=0,1",
         f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}", "trainer.max_steps=3",
         "trainer.limit_val_batches=1", "+trainer.num_sanity_val_steps=0"], cwd=cwd)
    assert not list(cwd.iterdir())  # no stray outputs/ folder from a process that lost its job
    assert sorted(p.name for p in sweep.iterdir() if p.is_file()) == ["multirun.yaml"]
    assert len([p for p in sweep.iterdir() if p.is_dir()]) == 2
    weights = []
    for seed in (0, 1):
        job = job_of(sweep, f"seed={seed}")
        results = json.loads((job / "results.json").read_text())
        assert results["status"] == "completed" and results["processes"] == 2
        assert results["seed"] == seed and results["steps"] == 3
        assert (job / ".hydra" / "overrides.yaml").read_text().count(f"seed={seed}") == 1
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        weights.append(ckpt["state_dict"]["net.classifier.fc8.weight"])
    assert not torch.equal(*weights)  # each job ran with its own overrides
