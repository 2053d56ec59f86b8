"""Run folders under what users do to them (issue 20), with real commands and files: two
sweeps started into one folder, kill -9 just after the first best.ckpt, damaged
checkpoints, a full disk, a sweep grown by a seed, and a folder resumed with another config."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet_lit.checkpointing.faults import AtomicCheckpointIO
from alexnet_lit.checkpointing.run_folder import job_folder
from conftest import FINISHED_RUN, REPO, survivors, train_command

TRAINED = (*FINISHED_RUN, "trainer.max_epochs=4", "trainer.enable_model_summary=false")  # conftest.trained_run


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, **kw)


def sweep_command(sweep: Path, cache: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "alexnet_lit.train", "-m", "experiment=tiny", *FINISHED_RUN,
            f"paths.cache_dir={cache}", f"hydra.sweep.dir={sweep}", "trainer.enable_model_summary=false",
            *overrides]


def assert_whole(folder: Path) -> dict:
    """A run folder's files as one uninterrupted run leaves them; returns its results."""
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "completed", results.get("error")
    with open(folder / "csv" / "metrics.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header and header[0] and all(len(row) == len(header) for row in rows)
    assert header not in rows  # written once
    steps = [(int(r[header.index("step")]), tuple(bool(v) for v in r)) for r in rows]
    assert len(steps) == len(set(steps))  # no row twice
    assert not list(folder.rglob("*.partial"))
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    best = torch.load(folder / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == results["best_epoch"]
    return results


@pytest.mark.slow
def test_two_sweeps_started_at_once_into_one_folder_share_the_jobs(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    cmd = sweep_command(sweep, cache_dir, "seed=0,1,2,3", "trainer.max_epochs=3")
    first, second = (subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for _ in range(2))
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    skipped = [line for out in outputs for line in out.splitlines() if "skipped: run folder" in line]
    assert skipped, outputs[1][-3000:]  # each sweep ran some jobs and named those the other held
    for line in skipped:
        assert "is in use by another job (pid " in line and " on host " in line
    for sweeper, out in zip((first, second), outputs):  # a sweep that skipped a job ends non-zero
        assert (sweeper.returncode != 0) == ("skipped: run folder" in out)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == [f"data.num_classes=4,experiment=tiny,seed={s}" for s in range(4)]
    for seed, job in enumerate(jobs):
        assert assert_whole(job)["seed"] == seed


@pytest.mark.slow
def test_kill9_just_after_the_first_best_checkpoint_then_resume_keeps_one_best(tmp_path, cache_dir):
    (tmp_path / "kill_plugin.py").write_text(KILL_AFTER_FIRST_BEST)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    folder = tmp_path / "run"
    killed = run(train_command(folder, cache_dir, *TRAINED, "data.num_workers=2",
                               "+callbacks.kill._target_=kill_plugin.KillAfterFirstBest"), env=env)
    assert killed.returncode == -signal.SIGKILL
    assert (folder / "checkpoints" / "best.ckpt").is_file()
    workers = json.loads((folder / "workers.json").read_text())
    assert len(workers) >= 2 and not survivors(workers)  # the data loader workers died with it
    resumed = run(train_command(folder, cache_dir, *TRAINED))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_whole(folder)  # one best.ckpt (never best-v1.ckpt), of the epoch results.json names


KILL_AFTER_FIRST_BEST = """
import json, os, signal
from pathlib import Path
from lightning.pytorch.callbacks import Checkpoint
from conftest import worker_pids

class KillAfterFirstBest(Checkpoint):  # a Checkpoint: Lightning runs it after ModelCheckpoint
    def on_validation_end(self, trainer, pl_module):
        folder = Path(trainer.default_root_dir)
        if not trainer.sanity_checking and (folder / "checkpoints" / "best.ckpt").is_file():
            (folder / "workers.json").write_text(json.dumps(worker_pids(os.getpid())))
            os.kill(os.getpid(), signal.SIGKILL)
"""


def contents(folder: Path) -> dict:
    """Every file below ``folder``: its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def damaged_copy(trained_run: Path, tmp_path: Path, damage: str) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    last = folder / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    if damage == "truncated":
        last.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    else:  # bytes overwritten in the middle of the weights
        middle = len(data) // 2
        last.write_bytes(data[:middle] + b"\x7f" * 64 + data[middle + 64:])
    return folder


@pytest.mark.parametrize("damage, said", [("truncated", "truncated"), ("empty", "empty (0 bytes)"),
                                          ("overwritten", "damaged: its record archive/data/")])
def test_a_damaged_last_checkpoint_is_named_and_the_results_are_kept(tmp_path, cache_dir, trained_run, damage, said):
    folder = damaged_copy(trained_run, tmp_path, damage)
    before = json.loads((folder / "results.json").read_text())
    done = run(train_command(folder, cache_dir, *TRAINED))
    assert done.returncode != 0
    last = folder / "checkpoints" / "last.ckpt"
    error = done.stderr.strip().splitlines()[-1]  # the command's last line, the whole error
    assert error.startswith(f"{last}: unreadable checkpoint, ") and said in error
    assert "ckpt_path=null" in error  # what the user can do
    after = json.loads((folder / "results.json").read_text())
    assert after["status"] == "failed" and str(last) in after["error"]
    for key in ("val_top1_err", "val_top5_err", "best_val_top1_err", "best_epoch", "steps", "epochs", "learning"):
        assert after[key] == before[key]  # nothing measured is erased


def damaged_log(rows: list[list[str]], damage: str) -> tuple[list[list[str]], str]:
    """metrics.csv's ``rows`` (its header first) damaged, and where the error must say the damage is.
    Before, a resume raised KeyError: 'step', TypeError (int() of None) and ValueError (int('x'))."""
    header, step = rows[0], rows[0].index("step")
    if damage == "header":
        return [[name.replace("step", "stp") for name in header], *rows[1:]], "line 1: its header has no step column"
    if damage == "short row":
        return [*rows[:2], rows[2][:step], *rows[3:]], f"line 3: {step} fields where its header has {len(header)}"
    return [*rows[:3], [*rows[3][:step], "x", *rows[3][step + 1:]], *rows[4:]], "line 4: column step holds 'x', not a step number"


@pytest.mark.parametrize("damage", ["header", "short row", "step"])
def test_a_damaged_metrics_csv_is_named_before_the_run_resumes_and_nothing_is_changed(tmp_path, cache_dir, trained_run, damage):
    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    log = folder / "csv" / "metrics.csv"
    with open(log, newline="") as f:
        rows, said = damaged_log(list(csv.reader(f)), damage)
    with open(log, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    files = {p: p.read_bytes() for p in folder.rglob("*")
             if p.is_file() and ".hydra" not in p.parts and p.name not in ("train.log", ".lock")}  # the job's own
    resumed = run(train_command(folder, cache_dir, *FINISHED_RUN, "trainer.max_epochs=5"))
    assert resumed.returncode != 0
    assert resumed.stderr.strip().splitlines()[-1] == (  # the command's last line, the whole error
        f"{log} {said}; mend that line to resume, or move the file away to resume without the rows of the attempts before")
    assert {p: p.read_bytes() for p in files} == files  # results.json, checkpoints and the log as they were


def test_a_folder_resumes_only_its_own_run(tmp_path, cache_dir, trained_run):
    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    before = contents(folder)
    other = run(train_command(folder, cache_dir, *TRAINED, "optim.lr=0.01", "seed=5"))
    assert other.returncode != 0
    error = other.stderr.strip().splitlines()[-1]  # the command's last line, the whole error
    assert "last.ckpt is another run's: its config differs from this job's in optim.lr: 0.02 -> 0.01; seed: 0 -> 5. " in error
    assert contents(folder) == before  # refused: results.json, .hydra/ and train.log byte for byte as they were
    longer = run(train_command(folder, cache_dir, *FINISHED_RUN, "trainer.max_epochs=5"))
    assert longer.returncode == 0, longer.stderr[-3000:]  # a longer schedule is the same run, resumed
    assert json.loads((folder / "results.json").read_text())["epochs"] == 5


def test_a_second_job_in_a_held_folder_changes_nothing(tmp_path, cache_dir, trained_run):
    """The lock as an OS lock: held by a live process, gone with it (kill -9 leaves nothing stale)."""
    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    before = contents(folder)
    refused = run(train_command(folder, cache_dir, *TRAINED, "optim.lr=0.05"))
    assert refused.returncode != 0
    assert f"run folder {folder} is in use by another job (pid {holder.pid} on host " in refused.stderr
    assert contents(folder) == before  # not a file touched: .hydra/ and train.log included
    holder.kill()
    holder.wait()
    again = run(train_command(folder, cache_dir, *TRAINED))
    assert again.returncode == 0, again.stderr[-3000:]


HOLD = """
import sys, time
from alexnet_lit.checkpointing.run_folder import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_sweep_grown_by_a_seed_renames_no_job(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    assert run(sweep_command(sweep, cache_dir, "+ablation=none,no_lrn", "seed=0", "trainer.max_epochs=1")).returncode == 0
    first = {p.name: p.joinpath("results.json").read_text() for p in sweep.iterdir() if (p / "results.json").is_file()}
    grown = run(sweep_command(sweep, cache_dir, "+ablation=none,no_lrn", "seed=0,1", "trainer.max_epochs=1"))
    assert grown.returncode == 0, grown.stderr[-3000:]
    now = {p.name: json.loads(p.joinpath("results.json").read_text()) for p in sweep.iterdir()
           if (p / "results.json").is_file()}
    assert set(now) == {f"+ablation={a},data.num_classes=4,experiment=tiny,seed={s}"
                        for a in ("none", "no_lrn") for s in (0, 1)}
    for name, results in now.items():  # each folder holds its own (ablation, seed)
        assert name.startswith(f"+ablation={results['ablation'][0]},") and name.endswith(f"seed={results['seed']}")
    for name, text in first.items():  # the first jobs re-entered finished, their results as they were
        assert json.loads(text)["val_top1_err"] == now[name]["val_top1_err"]


def test_job_folder_names_leave_out_what_may_change_on_resume():
    assert job_folder(["seed=1", "+ablation=no_lrn", "trainer.max_epochs=9", "paths.cache_dir=/a/b",
                       "logger=wandb", "data.root=/data/x"]) == "+ablation=no_lrn,data.root=_data_x,seed=1"
    assert job_folder([]) == "default"
    long = job_folder([f"key{i}=value{i}" for i in range(40)])
    assert len(long.encode()) <= 200 and long != job_folder([f"key{i}=value{i}" for i in range(41)])


def mounted_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_full_disk_ends_in_one_line_naming_the_file(tmp_path, cache_dir):
    folder = tmp_path / "small"
    if not mounted_tmpfs(folder, "1m"):  # room for best.ckpt (0.66 MB) and not for last.ckpt beside it
        pytest.skip("needs to mount a 1 MB tmpfs (root and mount(8)): the disk-full test fills it")
    try:
        done = run(train_command(folder / "run", cache_dir, *TRAINED))
        last = folder / "run" / "checkpoints" / "last.ckpt"
        assert done.returncode != 0
        error = done.stderr.strip().splitlines()[-1]  # the command's last line, the whole error
        assert error.endswith(f"No space left on device: cannot write {last} (there is no earlier last.ckpt)")
        assert "enforce fail" not in error
        assert not list(folder.rglob("*.partial"))
        results = json.loads((folder / "run" / "results.json").read_text())
        assert results["status"] == "failed" and "No space left" in results["error"]
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("earlier", [True, False], ids=["earlier", "first"])
def test_a_full_disk_says_whether_an_earlier_checkpoint_is_kept(tmp_path, earlier):
    folder = tmp_path / "small"
    if not mounted_tmpfs(folder, "256k"):
        pytest.skip("needs to mount a 256 KB tmpfs (root and mount(8)): the disk-full test fills it")
    try:
        best = folder / "best.ckpt"
        if earlier:
            AtomicCheckpointIO().save_checkpoint({"step": 1}, best)
        with pytest.raises(OSError) as error:
            AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(1 << 20)}, best)  # 4 MB
        said = "the previous best.ckpt is kept whole" if earlier else "there is no earlier best.ckpt"
        assert str(error.value) == f"[Errno 28] No space left on device: cannot write {best} ({said})"
        assert torch.load(best)["step"] == 1 if earlier else not best.exists()
        assert not list(folder.rglob("*.partial"))
    finally:
        subprocess.run(["umount", str(folder)], check=True)
