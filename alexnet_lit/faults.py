"""Surviving faults: checkpoints that a crash cannot corrupt, a random state that a resumed run
replays exactly, SIGTERM (SLURM pre-emption) and non-finite losses.

A re-run of the same command (``ckpt_path=last``, the default) continues from
``checkpoints/last.ckpt``. That file holds everything the rest of the run depends on: the
weights, the momentum, the lr schedule, the loops' progress, the training loader's position in
its epoch (alexnet_lit.data.sampling) and the seed of the random numbers drawn each step.
"""
import logging
import math
import os
import random
import subprocess
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_lit.data.sampling import derived_seed

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint (a local path) to a partial file beside it, syncs that to disk and
    renames it over the target: a crash while writing leaves the previous checkpoint whole.
    (Lightning's own writer stages the file in the system temp folder and moves it, which is
    a plain copy into the target when that folder is on another file system.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def batches_processed(trainer: L.Trainer) -> int:
    """Training batches whose step has run, over the whole run (restored on resume)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.processed


class StepSeeds(Callback):
    """Before every training batch, seeds torch (CPU and CUDA), numpy and random from
    (seed, process rank, batches done): the random crops, mirrors, PCA colour noise and
    dropout masks of a step are the same in a resumed run as in an uninterrupted one, with
    no generator state to save. ``seed=None`` (an unseeded run) draws one, kept in the
    checkpoint."""

    def __init__(self, seed: int | None):
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(32)

    def state_dict(self) -> dict:
        return dict(seed=self.seed)

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]

    def _reseed(self, trainer: L.Trainer) -> None:
        seed = derived_seed(self.seed, trainer.global_rank, batches_processed(trainer))
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reseed(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self._reseed(trainer)  # for the next batch, whose crops are drawn before its step


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this job: SLURM restarts it with the same command."""
    job = os.environ["SLURM_JOB_ID"]
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode:
        log.warning(f"scontrol requeue {job} failed: {result.stderr.strip()}")
    else:
        log.info(f"requeued SLURM job {job}")


def save_before_batch(trainer: L.Trainer, path: Path) -> None:
    """Checkpoint the state before the training batch in flight: the loader takes the batch
    back for the checkpoint, so a run resumed from it replays that batch."""
    sampler = trainer.train_dataloader.sampler
    sampler.taken -= 1
    try:
        trainer.save_checkpoint(path, weights_only=False)
    finally:
        sampler.taken += 1


class LastCheckpoint(Callback):
    """``path`` (checkpoints/last.ckpt), what a re-run resumes from: every ``every_n_steps``
    optimiser steps, at the end of every epoch and of the run, and on SIGTERM.

    The end-of-epoch save waits for the next epoch's first batch, when validation has run and
    the lr schedule has taken its step (Lightning steps it after every epoch-end hook). On
    SIGTERM, which Lightning turns into an exit at the next batch boundary on every process,
    it saves, then requeues the job under SLURM; elsewhere the run exits cleanly and a re-run
    continues."""

    def __init__(self, path: str, every_n_steps: int):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: expected a positive number of steps")
        self.path, self.every_n_steps = Path(path), every_n_steps
        self.saved_step = -1

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if (step % self.every_n_steps == 0 and step != self.saved_step  # not between accumulated batches
                and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch):  # the epoch's save follows
            self.save(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0 and trainer.current_epoch > 0:
            save_before_batch(trainer, self.path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning skips the plateau schedule's step at the end of the epoch a run resumes
        in (it assumes the checkpoint was saved after that step); ours never are: step here."""
        if not trainer.fit_loop.restarting:
            return
        for config in trainer.lr_scheduler_configs:
            metric = trainer.callback_metrics.get(config.monitor)
            if (config.reduce_on_plateau and config.interval == "epoch" and metric is not None
                    and trainer.current_epoch % config.frequency == 0):  # as Lightning's own step
                pl_module.lr_scheduler_step(config.scheduler, metric)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self.save(trainer)
        if SLURMEnvironment.detect():
            if trainer.is_global_zero:
                requeue_slurm_job()
        else:
            log.info(f"SIGTERM: saved {self.path} at step {trainer.global_step}; "
                     "run the same command again to continue")


class NonFiniteLossError(RuntimeError):
    pass


class NonFiniteLossGuard(Callback):
    """Stops the run at the first non-finite training loss (on any process), before its
    backward pass and update: saves the state before that step to ``path`` (the batch goes
    back to the loader, so a resumed run replays it) and raises an error naming the step."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        value = loss.item()
        if not trainer.strategy.reduce_boolean_decision(not math.isfinite(value), all=False):
            return
        save_before_batch(trainer, self.path)
        raise NonFiniteLossError(
            f"non-finite training loss at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx}; loss {value} on rank "
            f"{trainer.global_rank}); the state before this step is saved in {self.path}")
