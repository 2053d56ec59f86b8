"""The resume suite's run and its checks, shared by tests/test_resume.py and tests/test_slurm.py
(and the session's ``uninterrupted`` fixture in tests/conftest.py): a tiny run of two epochs,
started, signalled, finished and compared with the run never stopped."""
import subprocess
import time
from pathlib import Path

import torch

from alexnet_lit.testing import read_metrics, train_command

REPO = Path(__file__).resolve().parents[2]

# 500 training images, batch 32: 15 steps an epoch, 2 epochs; a checkpoint every 5 steps;
# two workers read the sampler ahead of the training loop.
SAME = ("trainer.deterministic=true", "callbacks.last_checkpoint.every_n_steps=5", "data.num_workers=2",
        "data.train_per_class=50")
STEPS_PER_EPOCH = 15


def start(run_dir, cache, *extra: str) -> subprocess.Popen:
    """The run in the background, its output in run_dir.log."""
    log = open(f"{run_dir}.log", "w")
    return subprocess.Popen(train_command(run_dir, cache, *SAME, *extra), cwd=REPO, stdout=log,
                            stderr=log, start_new_session=True)  # its own process group


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
