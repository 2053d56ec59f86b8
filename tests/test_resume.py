"""Resume: after kill -9 mid-epoch, or SIGTERM, re-running the same command ends with exactly
the weights, momentum, lr schedule and metrics.csv of an uninterrupted run (CPU,
deterministic mode)."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch

from conftest import REPO, read_metrics, sigterm_in_validation, train_command

# 500 training images, batch 32: 15 steps an epoch, 2 epochs; a checkpoint every 5 steps;
# two workers read the sampler ahead of the training loop.
SAME = ("trainer.deterministic=true", "callbacks.last_checkpoint.every_n_steps=5", "data.num_workers=2",
        "data.train_per_class=50")
STEPS_PER_EPOCH = 15


def start(run_dir, cache, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """The run in the background, its output in run_dir.log."""
    log = open(f"{run_dir}.log", "w")
    return subprocess.Popen(train_command(run_dir, cache, *SAME, *extra), cwd=REPO, stdout=log,
                            stderr=log, env=env, start_new_session=True)  # its own process group


def output(run_dir) -> str:
    return open(f"{run_dir}.log").read()[-3000:]


def finish(run_dir, cache) -> str:
    """Run the same command again; its output."""
    done = subprocess.run(train_command(run_dir, cache, *SAME), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restored all states from the checkpoint" in done.stderr
    return done.stdout + done.stderr


def last(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def wait_for_checkpoint(run_dir, min_step: int, running) -> None:
    """Return as soon as last.ckpt holds at least ``min_step`` steps; fail if ``running()``
    turns false first."""
    path, seen = run_dir / "checkpoints" / "last.ckpt", None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and running():
        if path.exists() and path.stat().st_mtime_ns != seen:
            seen = path.stat().st_mtime_ns
            if last(run_dir)["global_step"] >= min_step:
                return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint at step {min_step} before the run ended:\n{output(run_dir)}")


def signal_after_checkpoint(proc: subprocess.Popen, run_dir, min_step: int, sig: int) -> None:
    """Send ``sig`` as soon as last.ckpt holds at least ``min_step`` steps."""
    wait_for_checkpoint(run_dir, min_step, lambda: proc.poll() is None)
    proc.send_signal(sig)


def assert_same_run(run_dir, uninterrupted: dict) -> None:
    """The same final state, and the same metrics.csv: every step's loss, every epoch's train
    error (over the whole epoch), val error and lr, each once."""
    a, b = last(run_dir), uninterrupted["state"]
    assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH
    for name, w in a["state_dict"].items():
        assert torch.equal(w, b["state_dict"][name]), name
    for p, q in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(p["velocity"], q["velocity"])
    assert a["lr_schedulers"] == b["lr_schedulers"]  # the plateau schedule saw every epoch
    assert read_metrics(run_dir) == uninterrupted["rows"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = start(run_dir, cache_dir)
    assert proc.wait(timeout=300) == 0, output(run_dir)
    logged = read_metrics(run_dir)
    assert len(logged) == 2 * (STEPS_PER_EPOCH + 2)  # a row a step, val and train-epoch rows
    return dict(state=last(run_dir), rows=logged, dir=run_dir)


@pytest.mark.slow
def test_kill9_mid_epoch_then_rerun_equals_uninterrupted(tmp_path, cache_dir, uninterrupted):
    """Killed twice: in the first epoch, and in the second after its end-of-epoch checkpoint."""
    run = tmp_path / "run"
    proc = start(run, cache_dir)
    signal_after_checkpoint(proc, run, 5, signal.SIGKILL)
    proc.wait(timeout=60)
    first = last(run)
    assert 0 < first["global_step"] < STEPS_PER_EPOCH, "killed mid-epoch 1"

    proc = start(run, cache_dir)  # the same command continues...
    signal_after_checkpoint(proc, run, STEPS_PER_EPOCH, signal.SIGKILL)
    proc.wait(timeout=60)
    second = last(run)
    assert STEPS_PER_EPOCH <= second["global_step"] < 2 * STEPS_PER_EPOCH, "killed in epoch 2"
    assert second["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["epoch"] == 1

    finish(run, cache_dir)  # ...and again
    assert_same_run(run, uninterrupted)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_cleanly_and_a_rerun_continues(tmp_path, cache_dir, uninterrupted):
    """SIGTERM to every process of the run, its loader workers too, as SLURM sends it."""
    run = tmp_path / "run"
    proc = start(run, cache_dir)
    wait_for_checkpoint(run, 5, lambda: proc.poll() is None)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, output(run)
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "interrupted"
    stopped = last(run)
    assert stopped["global_step"] == results["steps"] < 2 * STEPS_PER_EPOCH  # saved on the way out

    finish(run, cache_dir)
    assert_same_run(run, uninterrupted)
    assert json.loads((run / "results.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_rerunning_a_finished_run_keeps_its_results(tmp_path, cache_dir, uninterrupted):
    """A sweep run again into its folder resumes its unfinished jobs and re-enters the
    finished ones: those train no further, and their results.json must stay as it was."""
    run = tmp_path / "run"
    shutil.copytree(uninterrupted["dir"], run)
    before = json.loads((run / "results.json").read_text())
    said = finish(run, cache_dir)
    after = json.loads((run / "results.json").read_text())
    assert f"final validation top-1 error {before['val_top1_err']:.4f}" in said  # not "not run"
    for key in ("status", "val_top1_err", "val_top5_err", "train_top1_err", "best_val_top1_err", "learning",
                "lrn", "dead_units", "steps", "epochs"):
        assert after[key] == before[key], key
    assert before["val_top1_err"] is not None and before["learning"]["verdict"] != "unknown"
    assert read_metrics(run) == uninterrupted["rows"]


@pytest.mark.slow
def test_sigterm_during_validation_finishes_it_first(tmp_path, cache_dir, uninterrupted):
    """A resumed run never starts inside a validation: the signal waits for its end."""
    run = tmp_path / "run"
    plugin, env = sigterm_in_validation(tmp_path)
    proc = start(run, cache_dir, *plugin, env=env)
    assert proc.wait(timeout=300) == 0, output(run)
    assert json.loads((run / "results.json").read_text())["status"] == "interrupted"
    stopped = last(run)
    assert stopped["global_step"] == STEPS_PER_EPOCH  # after the first epoch's validation
    assert read_metrics(run) == uninterrupted["rows"][:STEPS_PER_EPOCH + 2]

    finish(run, cache_dir)
    assert_same_run(run, uninterrupted)
