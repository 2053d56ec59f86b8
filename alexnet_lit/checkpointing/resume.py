"""Exact resume, in one place: a re-run of the same command (``ckpt_path=last``, the default)
continues from ``checkpoints/last.ckpt`` exactly as the run would have gone on. What that
checkpoint holds, and who puts it there:

- weights, momentum, lr schedule, the loops' progress: Lightning;
- the training loader's position in its epoch: alexnet_lit.data.sampling.TrainLoader;
- the seed of the random numbers drawn each step: :class:`StepSeeds`;
- the counts behind the epoch's training error so far, and the plateau schedule's step at the
  end of the epoch it resumes in: :class:`ExactResume`;
- the best validation error, wall time and loss watch of results.json:
  alexnet_lit.callbacks.ResultsWriter;
- saved before a training batch, never inside validation: :func:`save`, called by
  alexnet_lit.checkpointing.faults (periodically, at the end, on a non-finite loss) and
  alexnet_lit.checkpointing.preemption (SIGTERM).

On resume, csv/metrics.csv (:class:`ResumableCSVLogger`) drops the rows of the steps the run
replays (:class:`ExactResume`).
"""
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from alexnet_lit.data.sampling import derived_seed
from alexnet_lit.private_api import AppendingCSVLogger, logged_step_back


def batches_processed(trainer: L.Trainer) -> int:
    """Training batches whose step has run, over the whole run (restored on resume)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.processed


def save(trainer: L.Trainer, path: Path, replay_batch: bool = False) -> None:
    """Write the loggers' rows so far, then the checkpoint: the logs on disk reach as far as
    it does (a resumed run drops those beyond it).

    ``replay_batch``: the state before the training batch in flight, which a run resumed from
    it replays. For the checkpoint, the loader takes the batch back, and the step count the
    loggers use goes back by one: Lightning, which takes any checkpoint for one saved at a
    batch's end, moves it on by one when it restores the run."""
    for logger in trainer.loggers:
        logger.save()
    if not replay_batch:
        trainer.save_checkpoint(path, weights_only=False)
        return
    sampler = trainer.train_dataloader.sampler
    sampler.taken -= 1
    try:
        with logged_step_back(trainer):
            trainer.save_checkpoint(path, weights_only=False)
    finally:
        sampler.taken += 1


def resume_path(ckpt_path: str | None, last: Path | None) -> str | None:
    """``last``: this run folder's last checkpoint ``last`` if an earlier attempt left one,
    else a fresh start; any other ``ckpt_path`` as given."""
    if ckpt_path != "last":
        return ckpt_path
    return str(last) if last is not None and last.is_file() else None


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


class ExactResume(Callback):
    """What Lightning leaves out of a resume from a checkpoint saved before a batch:

    - the module's training error counts so far in the epoch, summed over the processes
      (every process saves; they sync here): a run resumed mid-epoch reports the whole
      epoch's error, as an uninterrupted one does;
    - the plateau schedule's step at the end of the epoch a run resumes in, which Lightning
      skips (it takes the checkpoint for one saved after that step);
    - csv/metrics.csv's rows of the steps the resumed run replays, dropped."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["train_error_counts"] = {}
        for name, metric in pl_module.train_metrics.items(keep_base=True):
            with metric.sync_context():
                checkpoint["train_error_counts"][name] = {
                    k: v.detach().cpu().clone() for k, v in metric.metric_state.items()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Process 0 takes the saved counts, the others start from zero: summed, they are the
        counts saved."""
        if trainer.global_rank != 0:
            return
        for name, state in checkpoint.get("train_error_counts", {}).items():
            metric = pl_module.train_metrics[name]
            for k, v in state.items():
                setattr(metric, k, v.to(getattr(metric, k).device))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:  # the state is restored by now: its step is known
            if isinstance(logger, ResumableCSVLogger):
                logger.forget_from(trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fit_loop.restarting:
            return
        for config in trainer.lr_scheduler_configs:
            metric = trainer.callback_metrics.get(config.monitor)
            if (config.reduce_on_plateau and config.interval == "epoch" and metric is not None
                    and trainer.current_epoch % config.frequency == 0):  # as Lightning's own step
                pl_module.lr_scheduler_step(config.scheduler, metric)


class ResumableCSVLogger(AppendingCSVLogger):
    """``csv/metrics.csv``: a run resumed into its folder (``ckpt_path=last``) adds its rows to
    those of the attempts before it instead of deleting them, less any rows of the steps it
    replays; the file then reads as one uninterrupted run's."""

    @rank_zero_only
    def forget_from(self, step: int) -> None:
        self.experiment.forget_from(step)
