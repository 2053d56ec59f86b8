"""The callbacks that keep a run's own records: results.json (:class:`ResultsWriter`, its
schema alexnet_lit.results.Results), the run's config and class names in every checkpoint
(:class:`CheckpointRun`), and Figure 1's training-error curve (:class:`TrainErrorTarget`)."""
import math
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_lit.data.folder import TRAIN_EVAL
from alexnet_lit.inspect.learning import AT_CHANCE_LOSS, learning_verdict
from alexnet_lit.inspect.pictures import conv1_colour
from alexnet_lit.inspect.probes import LossWatch, recorded_activity
from alexnet_lit.results import LrDrop, Results, failure, record_failure, write_json, write_results


def _metric(metrics: dict, key: str) -> float | None:
    """A logged metric's value as a float; None where it was not logged, or measured nothing
    (NaN: a validation cut short before any image of its stream)."""
    value = metrics.get(key)
    return None if value is None or math.isnan(value) else float(value)


class ResultsWriter(Callback):
    """Keeps the record at ``path`` (alexnet_lit.results.Results) up to date: status (running,
    completed, failed with the error and its class, interrupted by SIGTERM), final and best
    validation top-1/top-5 error, train error (of the last epoch's augmented batches, dropout
    on), the clean training error (``train_eval_*``, scored as validation scores) and the error
    on the data set's own validation images where validation holds more (``val_official_*``),
    epochs, steps, processes, wall time, whether the run learns or collapsed (``learning``),
    what its LRN layers and ReLUs did at the last validation (``lrn``, ``dead_units``;
    alexnet_lit.inspect.probes), conv1's colour scores per tower (``conv1_colour``, Figure 3),
    the epochs at which the logged learning rate dropped (``lr_drops``: each the first epoch
    trained at the lower rate, with that rate), plus ``meta`` (ablation names, seed, init,
    parameter count, git commit)."""

    def __init__(self, path: str | Path, meta: dict):
        self.path, self.meta = Path(path), dict(meta)
        self.best: dict = {}
        self.elapsed_before = 0.0  # wall time of earlier, resumed-from runs
        self.start = time.time()  # reset when fitting starts; set here for errors in setup
        self.loss_watch, self.val_images = LossWatch(), 0
        self.metrics: dict[str, float] = {}  # the latest value of each logged metric
        self.lr_drops: list[dict] = []
        self.lr: list | None = None  # [epoch, lr] of the latest epoch trained
        self.trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer
        self.loss_watch.chance = AT_CHANCE_LOSS * math.log(pl_module.net.classifier.fc8.out_features)

    def _capture(self, trainer: L.Trainer) -> None:
        self.metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})

    def state_dict(self) -> dict:
        if self.trainer is not None:  # a checkpoint holds the metrics as they are at its step
            self._capture(self.trainer)
        return dict(best=self.best, elapsed=self.elapsed_before + time.time() - self.start,
                    loss_watch=self.loss_watch.state_dict(), metrics=self.metrics, val_images=self.val_images,
                    lr_drops=self.lr_drops, lr=self.lr)

    def load_state_dict(self, state: dict) -> None:
        """A resumed run starts with the metrics its checkpoint ended with: one that had
        finished trains no further and logs nothing new, yet its results stand."""
        self.best, self.elapsed_before = state["best"], state["elapsed"]
        self.loss_watch.load_state_dict(state.get("loss_watch", {}))
        self.metrics, self.val_images = state.get("metrics", {}), state.get("val_images", 0)
        self.lr_drops, self.lr = state.get("lr_drops", []), state.get("lr")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self.loss_watch.from_step is None:  # here the training data is loaded: no extra pass over it
            total = trainer.estimated_stepping_batches  # inf for a run with no limit
            self.loss_watch.from_step = int(total) // 2 if math.isfinite(total) else 0
        self.loss_watch.update(outputs["loss"], trainer.global_step - 1)  # the step just taken
        epoch, lr = trainer.current_epoch, pl_module.epoch_lr  # the lr the module logs for this epoch
        if self.lr is None or self.lr[0] != epoch:
            if self.lr is not None and lr < self.lr[1]:
                self.lr_drops.append(dict(epoch=epoch, lr=lr))
            self.lr = [epoch, lr]

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_images = 0

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:  # each process holds 1/N of them
            images = len(batch[1]) if len(batch) == 2 else int((batch[2] != TRAIN_EVAL).sum())
            self.val_images += images * trainer.world_size

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.time()
        self._write(trainer, "running")

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
        if isinstance(exception, SIGTERMException):  # checkpointed by alexnet_lit.checkpointing.preemption
            self._write(trainer, "interrupted")
        elif not self.metrics and trainer.is_global_zero:  # nothing measured yet, or restored
            record_failure(self.path, exception, self.meta)
        else:
            self._write(trainer, "failed", **failure(exception))

    def _write(self, trainer: L.Trainer, status: str, **extra) -> None:
        if not trainer.is_global_zero:
            return
        self._capture(trainer)
        m = self.metrics
        module = trainer.lightning_module
        activity = recorded_activity(m, module.net)
        errors = {f"{prefix}_top{k}_err": _metric(m, f"{prefix}/top{k}_err")
                  for prefix in ("val", "train", "train_eval", "val_official") for k in (1, 5)}
        write_results(self.path, Results(
            **self.meta, **self.best, **extra, status=status,
            learning=learning_verdict(module.net.classifier.fc8.out_features, self.loss_watch.state_dict(),
                                      _metric(m, "val/top1_err"), self.val_images, activity["dead_units"]),
            **activity, conv1_colour=conv1_colour(module.net, module.hparams.model.get("towers", 1)),
            **errors, lr_drops=[LrDrop(**drop) for drop in self.lr_drops],
            epochs=trainer.current_epoch, steps=trainer.global_step, processes=trainer.world_size,
            wall_time_s=round(self.elapsed_before + time.time() - self.start, 3)))


class CheckpointRun(Callback):
    """Writes the run's resolved ``config`` and its data's class names (index -> name) into
    every checkpoint under :attr:`KEY`, so that ``alexnet_lit.load`` gives a checkpoint's
    network with both wherever the file is taken."""

    KEY = "alexnet_lit_run"

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        names = getattr(trainer.datamodule, "class_names", None)
        checkpoint[self.KEY] = dict(config=self.config, class_names=None if names is None else list(names))


class TrainErrorTarget(EarlyStopping):
    """Stops training once the training error counted over an epoch (``train/top1_err``, the
    error of the updates as they were made, as cuda-convnet reports it) is below ``target``,
    and keeps ``path`` up to date: the target, that error after every epoch, and the epoch and
    step at which it was reached (null until then). A run resumed after reaching it trains no
    further."""

    def __init__(self, path: str, target: float = 0.25):
        super().__init__(monitor="train/top1_err", mode="min", stopping_threshold=target,
                         patience=float("inf"), check_on_train_epoch_end=True, strict=True)
        self.path, self.target = Path(path), target
        self.curve: list[float] = []
        self.reached: dict | None = None

    def state_dict(self) -> dict:
        return dict(super().state_dict(), curve=self.curve, reached=self.reached)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.curve, self.reached = list(state["curve"]), state["reached"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.reached is not None:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        error = trainer.callback_metrics[self.monitor]
        self.curve.append(float(error))
        if self.reached is None and self.monitor_op(error, self.stopping_threshold):  # as EarlyStopping decides
            self.reached = dict(epoch=trainer.current_epoch + 1, step=trainer.global_step)
        if trainer.is_global_zero:
            write_json(self.path, dict(target=self.target, train_error=self.curve, reached=self.reached))
        super().on_train_epoch_end(trainer, pl_module)
