"""Optuna searches for real (docs/searching.md): hparams_search=lr on the tiny preset through
the train command, each trial scored from its results.json, and a search killed mid-way
finished by the same command without repeating a trial."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from alexnet_lit.checkpointing.run_folder import holder
from conftest import REPO

optuna = pytest.importorskip("optuna", reason="the search tests need Optuna: pip install -e '.[search]'")
pytestmark = pytest.mark.slow

CLASSES = 4


def search_command(sweep: Path, cache: Path, *overrides: str, n_trials: int = 3) -> list[str]:
    """An ``hparams_search=lr`` of the tiny preset on 4 synthetic classes into ``sweep``."""
    return [sys.executable, "-m", "alexnet_lit.train", "hparams_search=lr", "experiment=tiny",
            f"data.num_classes={CLASSES}", f"hydra.sweeper.n_trials={n_trials}",
            f"paths.cache_dir={cache}", f"hydra.sweep.dir={sweep}", *overrides]


def trials(sweep: Path) -> list:
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    return study.get_trials(deepcopy=False)


def score(folder: Path) -> float:
    """What the search should have told Optuna of the run in ``folder``."""
    results = json.loads((folder / "results.json").read_text())
    learned = results["learning"]["verdict"].startswith("learns")
    return results["best_val_top1_err"] if learned else 1 - 1 / CLASSES


def test_a_search_runs_its_trials_in_numbered_folders_and_writes_the_best(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    done = subprocess.run(search_command(sweep, cache_dir), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = trials(sweep)
    assert [(t.number, t.state) for t in found] == [(n, optuna.trial.TrialState.COMPLETE) for n in range(3)]
    for trial in found:
        folder = sweep / str(trial.number)
        lr = trial.params["optim.lr"]
        assert 1e-4 <= lr <= 1e-1
        assert yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())["optim"]["lr"] == lr
        assert trial.value == score(folder)
    best = yaml.safe_load((sweep / "best.yaml").read_text())
    winner = min(found, key=lambda t: t.value)
    assert (best["trial"], best["best_val_top1_err"]) == (winner.number, winner.value)
    assert best["overrides"][-1] == f"optim.lr={winner.params['optim.lr']}"
    assert "hparams_search=lr" not in best["overrides"]  # they train the best trial alone
    assert f"best of 3 trials: trial {winner.number}" in done.stdout  # Hydra logs to stdout

    other = subprocess.run(search_command(sweep, cache_dir, "trainer.max_epochs=1"), cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "give this search another hydra.sweep.dir" in other.stderr
    assert len(trials(sweep)) == 3  # another search is not mixed into this one


def test_trials_run_through_the_submitit_launcher_several_at_once(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    command = search_command(sweep, cache_dir, "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2", n_trials=2)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Submitit 'local' sweep output dir") == 1  # both trials in one batch
    for trial in trials(sweep):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        config = yaml.safe_load((sweep / str(trial.number) / ".hydra" / "config.yaml").read_text())
        assert config["optim"]["lr"] == trial.params["optim.lr"]
        assert trial.value == score(sweep / str(trial.number))
    assert len([p for p in (sweep / ".submitit").iterdir() if list(p.glob("*_result.pkl"))]) == 2


def test_a_killed_search_is_finished_by_the_same_command_without_repeating_a_trial(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    command = search_command(sweep, cache_dir, "trainer.max_epochs=3")
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:  # kill it once trial 0 is told and trial 1 has saved its first last.ckpt
            while not (sweep / "1" / "checkpoints" / "last.ckpt").is_file():
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                time.sleep(0.02)
            first.send_signal(signal.SIGKILL)
        finally:
            first.wait(timeout=60)
    before = {t.number: t.state for t in trials(sweep)}
    assert before[0] == optuna.trial.TrialState.COMPLETE and before[1] == optuna.trial.TrialState.RUNNING
    trial0 = (sweep / "0" / "results.json").read_text()

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trial 1 was left running by an interrupted search: running it again in its folder, " \
           "from its checkpoints/last.ckpt" in again.stdout
    assert "#0 :" not in again.stdout and "#1 :" in again.stdout  # trial 0 is not launched again ...
    assert (sweep / "0" / "results.json").read_text() == trial0  # ... nor its run touched
    found = trials(sweep)
    assert [(t.number, t.state) for t in found] == [(n, optuna.trial.TrialState.COMPLETE) for n in range(3)]
    resumed = json.loads((sweep / "1" / "results.json").read_text())
    assert (resumed["status"], resumed["epochs"]) == ("completed", 3)
    assert found[1].value == score(sweep / "1")
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]


def test_the_same_search_started_twice_shares_the_work(tmp_path, cache_dir):
    """Two commands of one search: the second, started while the first runs trial 0, leaves that
    trial to it (its folder's lock is held), neither fails a trial or crashes, and every score is
    kept. The first is stopped (SIGSTOP) while the second runs, so trial 0 is running whatever the
    machine's speed."""
    sweep = tmp_path / "sweep"
    command = search_command(sweep, cache_dir, n_trials=2)
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while not holder(sweep / "0"):  # trial 0 has started and holds its folder
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                time.sleep(0.02)
            os.killpg(first.pid, signal.SIGSTOP)
            try:
                second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
            finally:
                os.killpg(first.pid, signal.SIGCONT)
        finally:
            first.wait(timeout=600)
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    found = trials(sweep)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in found), [(t.number, t.state) for t in found]
    assert len(found) >= 2
    for trial in found:
        assert trial.value == score(sweep / str(trial.number))
    assert "is running in another job" in second.stdout  # the first's trial, left to it
