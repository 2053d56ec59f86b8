"""Every use of a private Lightning or W&B API, in one place, each with the public API it
stands in for. pyproject.toml bounds Lightning to the versions the tests have passed with:
a new release must pass tests/test_resume.py, test_faults.py, test_ddp*.py, test_train.py
and test_tracking.py before the bound moves."""
import csv
from contextlib import contextmanager

import lightning as L
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from alexnet_lit.writing import replacing


def starts_processes_by_command_line(trainer: L.Trainer) -> bool:
    """Whether the strategy's launcher starts the other processes by re-running the command
    line. Public: ``trainer.strategy.launcher`` (its class is private)."""
    return isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher)


def set_received_sigterm(trainer: L.Trainer, received: bool) -> None:
    """Set whether the Trainer stops at the next batch boundary as after SIGTERM. Public:
    ``trainer.received_sigterm``, read-only."""
    trainer._signal_connector.received_sigterm = received


@contextmanager
def logged_step_back(trainer: L.Trainer):
    """The step count the loggers use one lower while inside, as it was before the batch in
    flight. Public: ``trainer.global_step`` counts optimiser steps, not this one."""
    loop = trainer.fit_loop.epoch_loop
    loop._batches_that_stepped -= 1
    try:
        yield
    finally:
        loop._batches_that_stepped += 1


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv, and rewrites it in place when a
    new column appears; this one appends to it, and rewrites it by replacing it (alexnet_lit.writing).
    Overrides the private ``_check_log_dir_exists`` and ``_rewrite_with_new_header``; public:
    ``log_metrics``/``save``, which offer neither."""

    def _check_log_dir_exists(self) -> None:
        """Take up the header of this run's own file (the run folder's lock keeps other jobs
        out), its rows checked before the run starts (:meth:`_read`)."""
        if self._fs.isfile(self.metrics_file_path):
            self.metrics_keys, _ = self._read()

    def _read(self) -> tuple[list[str], list[dict]]:
        """The header and the complete rows: a process killed while appending leaves part of one
        at the end. A damaged file is refused (ValueError) naming its line and what is wrong."""
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            text = f.read()
        lines = csv.reader(text[:text.rfind("\n") + 1].splitlines())
        header, rows = next(lines, []), []
        if header and "step" not in header:
            raise self._damaged(1, "its header has no step column")
        for fields in filter(None, lines):  # csv.DictReader's way: blank lines skipped
            if len(fields) != len(header):
                raise self._damaged(lines.line_num, f"{len(fields)} fields where its header has {len(header)}")
            row = dict(zip(header, fields))
            if not row["step"].isdecimal():
                raise self._damaged(lines.line_num, f"column step holds {row['step']!r}, not a step number")
            rows.append(row)
        return header, rows

    def _damaged(self, line: int, problem: str) -> ValueError:
        return ValueError(f"{self.metrics_file_path} line {line}: {problem}; mend that line to resume, or move "
                          "the file away to resume without the rows of the attempts before")

    def _rewrite(self, rows: list[dict]) -> None:
        with replacing(self.metrics_file_path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        self._rewrite(self._read()[1])

    def forget_from(self, step: int) -> None:
        """Drop the rows of ``step`` and later, written by an attempt that went beyond the
        checkpoint the run resumes from: it logs those steps again."""
        self.metrics = [m for m in self.metrics if m["step"] < step]
        if self._fs.isfile(self.metrics_file_path):
            kept = [row for row in self._read()[1] if int(row["step"]) < step]
            self._rewrite(kept)


class AppendingCSVLogger(CSVLogger):
    """CSVLogger writing through :class:`AppendingExperimentWriter`. Sets the private
    ``_experiment``; public: ``experiment``, read-only."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_init_settings(logger: WandbLogger) -> dict:
    """The keyword arguments the logger passes to ``wandb.init``, to change before its run
    starts. Public: only the constructor's arguments."""
    return logger._wandb_init


def wandb_run_if_started(logger: WandbLogger):
    """The logger's W&B run if it has started one, else None (``logger.experiment`` starts
    one)."""
    return logger._experiment


def forget_wandb_run(logger: WandbLogger) -> None:
    """Let the logger start a new W&B run at its next use (after ``run.finish()``). Public:
    none; a WandbLogger keeps its run."""
    logger._experiment = None
