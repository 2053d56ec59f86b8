"""What a run leaves besides checkpoints: ``results.json``, the file reports and sweeps are
built from, and ``csv/metrics.csv``, kept whole across resumed attempts."""
import csv
import json
import math
import os
import subprocess
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, with ``-dirty`` if it has edits."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _metric(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


class ResultsWriter(Callback):
    """Keeps ``path`` up to date: status (running, completed, failed, interrupted by
    SIGTERM), final and best validation top-1/top-5 error, train error, epochs, steps,
    processes, wall time, plus ``meta``
    (ablation names, seed, init, parameter count, git commit)."""

    def __init__(self, path: str | Path, meta: dict):
        self.path, self.meta = Path(path), dict(meta)
        self.best: dict = {}
        self.elapsed_before = 0.0  # wall time of earlier, resumed-from runs

    def state_dict(self) -> dict:
        return dict(best=self.best, elapsed=self.elapsed_before + time.time() - self.start)

    def load_state_dict(self, state: dict) -> None:
        self.best, self.elapsed_before = state["best"], state["elapsed"]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.time()
        self._write(trainer, "running")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:  # the state is restored by now: its step is known
            if isinstance(logger, ResumableCSVLogger):
                logger.forget_from(trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        top1 = _metric(trainer.callback_metrics, "val/top1_err")
        if top1 is not None and not math.isnan(top1) and top1 < self.best.get("best_val_top1_err", math.inf):
            self.best = dict(best_val_top1_err=top1, best_epoch=trainer.current_epoch,
                             best_val_top5_err=_metric(trainer.callback_metrics, "val/top5_err"))
        self._write(trainer, "running")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "completed")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):  # checkpointed by faults.LastCheckpoint
            self._write(trainer, "interrupted")
        else:
            self._write(trainer, "failed", error=f"{type(exception).__name__}: {exception}")

    def _write(self, trainer: L.Trainer, status: str, **extra) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        write_json(self.path, dict(
            self.meta, **self.best, **extra, status=status,
            val_top1_err=_metric(m, "val/top1_err"), val_top5_err=_metric(m, "val/top5_err"),
            train_top1_err=_metric(m, "train/top1_err"), train_top5_err=_metric(m, "train/top5_err"),
            epochs=trainer.current_epoch, steps=trainer.global_step, processes=trainer.world_size,
            wall_time_s=round(self.elapsed_before + time.time() - self.start, 3)))


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv, and rewrites it in place when a new
    column appears; this one appends to it, and rewrites it through a partial file."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def _rows(self) -> list[dict]:
        """The complete rows: a process killed while appending leaves part of one at the end."""
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            text = f.read()
        return list(csv.DictReader(text[:text.rfind("\n") + 1].splitlines()))

    def _rewrite(self, rows: list[dict]) -> None:
        partial = f"{self.metrics_file_path}.partial"
        with self._fs.open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        self._fs.mv(partial, self.metrics_file_path)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        self._rewrite(self._rows())

    def forget_from(self, step: int) -> None:
        """Drop the rows of ``step`` and later, written by an attempt that went beyond the
        checkpoint the run resumes from: it logs those steps again."""
        self.metrics = [m for m in self.metrics if m["step"] < step]
        if self._fs.isfile(self.metrics_file_path):
            kept = [row for row in self._rows() if int(row["step"]) < step]
            self._rewrite(kept)


class ResumableCSVLogger(CSVLogger):
    """``csv/metrics.csv``: a run resumed into its folder (``ckpt_path=last``) adds its rows to
    those of the attempts before it instead of deleting them, less any rows of the steps it
    replays; the file then reads as one uninterrupted run's."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def forget_from(self, step: int) -> None:
        self.experiment.forget_from(step)
