"""Checkpoints that a crash cannot corrupt, saved periodically, and non-finite losses.

A re-run of the same command (``ckpt_path=last``, the default) continues from
``checkpoints/last.ckpt``; what that file holds is alexnet_lit.checkpointing.resume's, SIGTERM is
alexnet_lit.checkpointing.preemption's.
"""
import errno
import math
import shutil
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from alexnet_lit.checkpointing.resume import save
from alexnet_lit.writing import replacing


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
        try:
            with replacing(path, "wb", durable=True) as f:
                torch.save(checkpoint, f)
        except (OSError, RuntimeError) as err:
            if no_space_left(err, path.parent):
                kept = f"the previous {path.name} is kept whole" if path.exists() else f"there is no earlier {path.name}"
                raise OSError(errno.ENOSPC, f"No space left on device: cannot write {path} ({kept})") from None
            raise


def no_space_left(err: BaseException, folder: Path) -> bool:
    """Whether ``err`` (torch.save's writer reports a full disk as ``unexpected pos``) came from
    ``folder``'s file system being full."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return shutil.disk_usage(folder).free < 1 << 20 or "No space left" in str(err)


class LastCheckpoint(Callback):
    """``path`` (checkpoints/last.ckpt), what a re-run resumes from: every ``every_n_steps``
    optimiser steps and at the end of every epoch and of the run (on SIGTERM:
    alexnet_lit.checkpointing.preemption).

    Saves are made before a training batch, when its step's logs have been written and, at an
    epoch's first batch, validation has run and the lr schedule has taken its step (Lightning
    steps it after every epoch-end hook)."""

    def __init__(self, path: str, every_n_steps: int):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: expected a positive number of steps")
        self.path, self.every_n_steps = Path(path), every_n_steps
        self.saved_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.saved_step = trainer.global_step  # 0, or the step of the checkpoint resumed from

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step  # not between accumulated batches: once per optimiser step
        if step != self.saved_step and (step % self.every_n_steps == 0 or batch_idx == 0):
            save(trainer, self.path, replay_batch=True)
            self.saved_step = step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        save(trainer, self.path)


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
