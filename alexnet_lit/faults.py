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
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
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


def ignore_sigterm(worker_id: int) -> None:
    """Data loader workers' ``worker_init_fn``: SIGTERM is the training process's to handle.
    SLURM sends it to every process of a job step (``scancel -s TERM``, ``--signal``); a
    worker it killed would fail the run before its checkpoint. The training process still
    shuts the workers down, and SLURM's SIGKILL ends any left after its KillWait."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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


def save(trainer: L.Trainer, path: Path, replay_batch: bool = False) -> None:
    """Write the loggers' rows so far, then the checkpoint: the logs on disk reach as far as
    it does (a resumed run drops those beyond it, alexnet_lit.results).

    ``replay_batch``: the state before the training batch in flight, which a run resumed from
    it replays. For the checkpoint, the loader takes the batch back, and the step count the
    loggers use goes back by one: Lightning, which takes any checkpoint for one saved at a
    batch's end, moves it on by one when it restores the run."""
    for logger in trainer.loggers:
        logger.save()
    if not replay_batch:
        trainer.save_checkpoint(path, weights_only=False)
        return
    sampler, loop = trainer.train_dataloader.sampler, trainer.fit_loop.epoch_loop
    sampler.taken -= 1
    loop._batches_that_stepped -= 1
    try:
        trainer.save_checkpoint(path, weights_only=False)
    finally:
        sampler.taken += 1
        loop._batches_that_stepped += 1


class LastCheckpoint(Callback):
    """``path`` (checkpoints/last.ckpt), what a re-run resumes from: every ``every_n_steps``
    optimiser steps, at the end of every epoch and of the run, and on SIGTERM.

    Saves are made before a training batch, when its step's logs have been written and, at an
    epoch's first batch, validation has run and the lr schedule has taken its step (Lightning
    steps it after every epoch-end hook). SIGTERM, which Lightning turns into an exit at the
    next batch boundary on every process, is held back while validation runs, so a resumed run
    never starts in the middle of one. Then it saves and requeues the job under SLURM;
    elsewhere the run exits cleanly and a re-run continues."""

    def __init__(self, path: str, every_n_steps: int):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: expected a positive number of steps")
        self.path, self.every_n_steps = Path(path), every_n_steps
        self.saved_step = -1
        self.lightning_handler = None  # SIGTERM's own handler, while validation holds it back
        self.signalled = False  # before or during that validation

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.saved_step = trainer.global_step  # 0, or the step of the checkpoint resumed from

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step  # not between accumulated batches: once per optimiser step
        if step != self.saved_step and (step % self.every_n_steps == 0 or batch_idx == 0):
            save(trainer, self.path, replay_batch=True)
            self.saved_step = step

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Hold SIGTERM back until validation ends: Lightning would stop inside it, and a run
        resumed from there skips that validation and the lr schedule's step after it."""
        if (trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
                or threading.current_thread() is not threading.main_thread()):
            return  # Lightning handles signals in the main thread only
        self.signalled = trainer.received_sigterm  # came during the last training batch
        trainer._signal_connector.received_sigterm = False
        self.lightning_handler = signal.signal(signal.SIGTERM, self._hold)

    def _hold(self, signum: int, frame) -> None:
        self.signalled = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Every process stops if any was signalled, decided together here. The run then stops
        at the next batch boundary, with this handler left in place: Lightning's would start
        a collective of its own on each later signal (a forwarded copy, say), which the other
        processes never join."""
        if self.lightning_handler is None:
            return
        if trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            log.info(f"SIGTERM during validation (rank {trainer.global_rank} "
                     f"{'signalled' if self.signalled else 'told'}): stopping after it")
            trainer._signal_connector.received_sigterm = True
        else:
            self._release()

    def _release(self) -> None:
        if self.lightning_handler is not None:
            signal.signal(signal.SIGTERM, self.lightning_handler)
            self.lightning_handler = None

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
        save(trainer, self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            self._release()  # an error inside validation: Lightning's handler back
            return
        save(trainer, self.path)
        log.info(f"SIGTERM: saved {self.path} at step {trainer.global_step}")
        if not SLURMEnvironment.detect():
            log.info("run the same command again to continue")
        elif trainer.is_global_zero:
            requeue_slurm_job()


def last_checkpoint_path(trainer: L.Trainer) -> Path | None:
    """Where the run's :class:`LastCheckpoint` saves, if it has one."""
    return next((cb.path for cb in trainer.callbacks if isinstance(cb, LastCheckpoint)), None)


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
        save(trainer, self.path, replay_batch=True)
        raise NonFiniteLossError(
            f"non-finite training loss at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {trainer.fit_loop.epoch_loop.batch_idx}; loss {value} on rank "
            f"{trainer.global_rank}); the state before this step is saved in {self.path}")
