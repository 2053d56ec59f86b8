"""Faults: a crash while a checkpoint is written, and a non-finite loss."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from alexnet_lit.checkpointing.faults import AtomicCheckpointIO
from conftest import REPO, train_command


def test_kill9_while_writing_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import torch
        from alexnet_lit.checkpointing.faults import AtomicCheckpointIO
        AtomicCheckpointIO().save_checkpoint({{"step": 2, "w": torch.zeros(100_000_000)}}, {str(path)!r})
        """)])
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 0 for p in tmp_path.glob(".last.ckpt.*.partial")):  # 400 MB on their way
        assert writer.poll() is None and time.monotonic() < deadline, "the writer ended first"
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    old = AtomicCheckpointIO().load_checkpoint(path, weights_only=True)
    assert old["step"] == 1 and torch.equal(old["w"], torch.ones(3))

    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)  # the next save replaces the debris
    assert torch.load(path, weights_only=True) == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.slow
def test_nonfinite_loss_stops_naming_the_step_after_saving_the_state_before_it(tmp_path, cache_dir):
    """lr=1000 blows the weights up within a few steps."""
    run = tmp_path / "run"
    command = train_command(run, cache_dir, "optim.lr=1000", "data.train_per_class=50")
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    step = ckpt["global_step"]
    message = f"non-finite training loss at step {step} (epoch 0, batch {step}; loss nan on rank 0)"
    assert message in failed.stderr
    assert 0 < step < 15  # stopped in the first epoch, with steps behind it
    assert all(torch.isfinite(w).all() for w in ckpt["state_dict"].values())
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and message in results["error"]

    # the checkpoint is the state right before that step: the same command replays it
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and message in again.stderr
