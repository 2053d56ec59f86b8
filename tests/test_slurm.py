"""SLURM for real, on the one-node cluster the tests start (conftest.slurm): a sweep and an
Optuna search through hydra/launcher=slurm, a 2-process DDP job under srun, and jobs stopped
by SIGTERM (scancel, or their time limit's --signal) that requeue themselves and end as an
uninterrupted run."""
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from alexnet_lit import report
from conftest import REPO, compose_config, report_table, train_command
from test_ddp import DDP, UNEVEN_DATA, assert_validates_like_one_process
from helpers.resume import SAME, STEPS_PER_EPOCH, assert_same_run, output, wait_for_checkpoint
from test_sweep import jobs_results, multirun

try:
    import optuna
except ImportError:
    optuna = None

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one cluster, on one test worker

SLOW_FIRST_ATTEMPT = """
import os, time
from lightning.pytorch.callbacks import Callback

class SlowFirstAttempt(Callback):
    def __init__(self, seconds):
        self.seconds = seconds

    def on_train_batch_end(self, *args):
        if int(os.environ.get("SLURM_RESTART_COUNT", 0)) == 0:
            time.sleep(self.seconds)
"""


def submit(slurm, run_dir, cache, *overrides: str, options: tuple[str, ...] = (), prelude: str = "") -> str:
    """sbatch of the one-run script of docs/scale-and-faults.md: ``srun python -m alexnet_lit.train ...`` into
    ``run_dir``, requeueable, every attempt's output appended to run_dir.log; the job id."""
    script = run_dir.parent / f"{run_dir.name}.sbatch"
    command = shlex.join(train_command(run_dir, cache, *overrides))
    script.write_text(f"#!/bin/bash\n{prelude}srun {command}\n")
    return slurm.sbatch(script, "--requeue", "--open-mode=append", f"--output={run_dir}.log", f"--chdir={REPO}",
                        *options)


def test_a_sweep_through_the_slurm_launcher_completes_and_reports(tmp_path, cache_dir, slurm):
    """One SLURM job per seed, on CPU: no GPUs asked for, one CPU each."""
    done = multirun(tmp_path, cache_dir, "hydra/launcher=slurm", "seed=0,1", "data.train_per_class=20",
                    env=slurm.env)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    results = jobs_results(sweep)
    assert sorted(r["seed"] for r in results.values()) == [0, 1]
    for r in results.values():
        assert r["status"] == "completed" and r["epochs"] == 1
        assert r["val_top1_err"] is not None and r["val_top5_err"] is not None and r["train_top1_err"] is not None
    job_ids = [p.name for p in (sweep / ".submitit").iterdir() if list(p.glob("*_result.pkl"))]
    assert len(job_ids) == 2  # an array job of two tasks, run by SLURM
    for job_id in job_ids:
        job = slurm.wait(job_id, timeout=60)  # submitit is done at the result file, SLURM soon after
        assert (job["JobState"], job["NumCPUs"], job["TRES"]) == ("COMPLETED", "1", "cpu=1,node=1,billing=1")

    report.main([str(sweep)])
    assert report_table((sweep / "report.md").read_text())["none"][2] == "2"


@pytest.mark.skipif(optuna is None, reason="the search needs Optuna: pip install -e '.[search]'")
def test_an_optuna_search_runs_its_trials_as_slurm_jobs(tmp_path, cache_dir, slurm):
    """hparams_search=lr through hydra/launcher=slurm: two trials in one batch, each a SLURM
    job in its trial's folder, each scored from its results.json."""
    from test_search import score, search_command, trials
    sweep = tmp_path / "sweep"
    command = search_command(sweep, cache_dir, "hydra/launcher=slurm", "hydra.sweeper.n_jobs=2", n_trials=2)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=slurm.env)
    assert done.returncode == 0, done.stderr[-3000:]
    for trial in trials(sweep):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == score(sweep / str(trial.number))
    job_ids = [p.name for p in (sweep / ".submitit").iterdir() if list(p.glob("*_result.pkl"))]
    assert len(job_ids) == 2
    for job_id in job_ids:
        assert slurm.wait(job_id, timeout=60)["JobState"] == "COMPLETED"


def test_two_tasks_under_srun_validate_like_one_process(tmp_path, cache_dir, slurm):
    """The sbatch script of docs/scale-and-faults.md on CPU: SLURM starts both DDP processes, Lightning joins them."""
    run_dir = tmp_path / "ddp"
    job = submit(slurm, run_dir, cache_dir, *DDP, *UNEVEN_DATA, "trainer.max_epochs=1",
                 options=("--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1"))
    info = slurm.wait(job, timeout=300)
    assert (info["JobState"], info["NumTasks"]) == ("COMPLETED", "2"), output(run_dir)
    assert_validates_like_one_process(run_dir, compose_config(["experiment=tiny", *UNEVEN_DATA], cache=cache_dir))


def saved_steps(run_dir) -> list[int]:
    """The step of each checkpoint saved on SIGTERM, as the job's attempts logged them."""
    log = Path(f"{run_dir}.log").read_text()
    return [int(step) for step in re.findall(r"SIGTERM: saved \S+ at step (\d+)", log)]


def test_sigterm_from_slurm_requeues_the_job_which_ends_as_the_uninterrupted_run(
        tmp_path, cache_dir, slurm, uninterrupted):
    run_dir = tmp_path / "run"
    job = submit(slurm, run_dir, cache_dir, *SAME)
    wait_for_checkpoint(run_dir, 5, lambda: slurm.job(job)["JobState"] in ("PENDING", "RUNNING"))
    slurm.client("scancel", "--signal=TERM", job)
    info = slurm.wait(job, timeout=300)
    assert (info["JobState"], info["Restarts"]) == ("COMPLETED", "1"), output(run_dir)
    (stopped,) = saved_steps(run_dir)
    assert 5 <= stopped < STEPS_PER_EPOCH, "stopped mid-epoch 1"
    log = Path(f"{run_dir}.log").read_text()
    assert "requeued SLURM job" in log and "Restored all states from the checkpoint" in log
    assert_same_run(run_dir, uninterrupted)


def test_a_job_signalled_ahead_of_its_time_limit_requeues_and_ends_as_the_uninterrupted_run(
        tmp_path, cache_dir, slurm, uninterrupted):
    """--time=2 --signal=TERM@45: slurmctld looks at time limits every 30 s and signals a job
    once it is within 45 + 30 s of its limit, so each attempt is signalled 45 to 75 s after it
    starts (well after Python has set up its handlers, well before the limit). The first
    attempt is slow (3 s more a step, 90 s in all), so it is stopped mid-run; a later one
    still running 45 s in would be requeued again."""
    run_dir = tmp_path / "run"
    (tmp_path / "slow_plugin.py").write_text(SLOW_FIRST_ATTEMPT)
    job = submit(slurm, run_dir, cache_dir, *SAME, "+callbacks.slow._target_=slow_plugin.SlowFirstAttempt",
                 "+callbacks.slow.seconds=3", prelude=f"export PYTHONPATH={tmp_path}:$PYTHONPATH\n",
                 options=("--time=2", "--signal=TERM@45"))
    info = slurm.wait(job, timeout=400)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, output(run_dir)
    stopped = saved_steps(run_dir)
    assert len(stopped) == int(info["Restarts"]) and 0 < stopped[0] < 2 * STEPS_PER_EPOCH, stopped
    assert_same_run(run_dir, uninterrupted)
