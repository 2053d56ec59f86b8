"""Resume: after kill -9 mid-epoch, or SIGTERM, re-running the same command ends with exactly
the weights, momentum, lr schedule and metrics.csv of an uninterrupted run (CPU,
deterministic mode)."""
import json
import os
import shutil
import signal
import time

import pytest

from conftest import read_metrics, sigterm_in_validation
from helpers.resume import (STEPS_PER_EPOCH, assert_same_run, finish, last, output, signal_after_checkpoint, start,
                            wait_for_checkpoint)


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
    plugin = sigterm_in_validation()
    proc = start(run, cache_dir, *plugin)
    assert proc.wait(timeout=300) == 0, output(run)
    assert json.loads((run / "results.json").read_text())["status"] == "interrupted"
    stopped = last(run)
    assert stopped["global_step"] == STEPS_PER_EPOCH  # after the first epoch's validation
    assert read_metrics(run) == uninterrupted["rows"][:STEPS_PER_EPOCH + 2]

    finish(run, cache_dir)
    assert_same_run(run, uninterrupted)
