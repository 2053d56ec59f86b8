"""What a run leaves besides its weights: ``results.json``, the file reports and sweeps are
built from, ``csv/metrics.csv``, kept whole across resumed attempts, and in every checkpoint
the run's config and class names."""
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_lit.data.folder import TRAIN_EVAL
from alexnet_lit.lrn import LRN
from alexnet_lit.inspect.pictures import colour_specificity
from alexnet_lit.writing import replace_text


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


def shown(path: str | Path, placeholder: str) -> str:
    """How a committed record names ``path``, naming no particular machine: relative to the
    working folder where it lies inside it, else ``PLACEHOLDER/<its name>`` (the placeholder
    standing for the folder that holds it, e.g. ``DATA/imagenette2_224``)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return f"{placeholder}/{path.name}"


def shown_override(override: str) -> str:
    """A Hydra override as a record shows it: an absolute path as its value made
    :func:`shown` (``DATA`` for the ``data.`` keys, ``FOLDER`` for the others)."""
    key, sep, value = override.partition("=")
    if not sep or not Path(value).is_absolute():
        return override
    return f"{key}={shown(value, 'DATA' if key.lstrip('+~').startswith('data.') else 'FOLDER')}"


def portable(value, folders: dict[str, str | Path]):
    """``value`` with machine paths replaced: the interpreter by ``python`` and each of
    ``folders`` (NAME -> an absolute or relative folder) by NAME wherever it appears as an
    absolute path, so that a committed record names no particular machine (as :func:`shown`
    does for one path). Strings inside dicts and lists are rewritten too."""
    forms = {sys.executable: "python"}
    for name, folder in folders.items():
        forms.update({str(form): name for form in (Path(folder), Path(folder).resolve())
                      if form.is_absolute() and form != Path(form.anchor)})
    longest_first = sorted(forms, key=len, reverse=True)

    def rewrite(value):
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            for form in longest_first:
                value = value.replace(form, forms[form])
        return value

    return rewrite(value)


def write_json(path: Path, data: dict) -> None:
    """Write by replacing (alexnet_lit.writing): a reader never sees half a file."""
    replace_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def record_failure(path: Path, error: BaseException, meta: dict | None = None) -> None:
    """Mark the run of ``path`` (results.json) failed with ``error``, keeping all it holds: a
    run that stops on a bad checkpoint or config keeps what its earlier attempts measured."""
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        held = {}
    write_json(path, {**(meta or {}), **held, "status": "failed", "error": f"{type(error).__name__}: {error}"})


def _metric(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


EXPLODED = 3.0  # a training loss above this many times chance's, ln(classes), is a blow-up
CHANCE_Z = 3.0  # final val accuracy within this many binomial sds of 1/classes is chance
# The collapse rule, fixed before the table's sweep (ablations/table/README.md): a run
# collapsed where a ReLU layer has more than DEAD_LAYER of its units silent on every image the
# last validation scored, or where its training loss stayed above AT_CHANCE_LOSS x ln(classes)
# for more than AT_CHANCE_STEPS of the steps of its second half (a short run that starts at
# chance and then learns has not collapsed).
DEAD_LAYER, AT_CHANCE_LOSS, AT_CHANCE_STEPS = 0.9, 0.95, 0.5


class LossWatch:
    """The first and the largest training loss, the step of the largest, and how many steps
    from ``from_step`` on (the second half of training) had a loss above ``chance``
    (AT_CHANCE_LOSS x ln(classes)) of how many, kept on the loss's device (no host sync per step)."""

    KEYS = ("first", "largest", "step", "steps", "at_chance")

    def __init__(self, chance: float = math.inf, from_step: int | None = None):
        self.chance, self.from_step = chance, from_step
        self.first = self.largest = self.step = self.steps = self.at_chance = None

    def update(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        if self.first is None:
            zero = torch.zeros((), dtype=torch.long, device=loss.device)
            self.first, self.largest, self.step = loss, loss, zero + step
            self.steps, self.at_chance = zero, zero
        bigger = loss > self.largest
        self.largest = torch.where(bigger, loss, self.largest)
        self.step = torch.where(bigger, torch.tensor(step, device=loss.device), self.step)
        if step >= (self.from_step or 0):
            self.steps = self.steps + 1
            self.at_chance = self.at_chance + (loss > self.chance).long()

    def state_dict(self) -> dict:
        if self.first is None:
            return {}
        return dict(first=float(self.first), largest=float(self.largest), step=int(self.step),
                    steps=int(self.steps), at_chance=int(self.at_chance))

    def load_state_dict(self, state: dict) -> None:
        if state:  # checkpoints from before the step counts start them at 0
            self.first, self.largest, self.step, self.steps, self.at_chance = (
                torch.tensor(state.get(k, 0)) for k in self.KEYS)


def collapse_reasons(watch: dict, dead_units: dict[str, float]) -> list[str]:
    """Why a run counts as collapsed under the rule above (empty: it did not)."""
    reasons = [f"{layer}: {dead:.0%} of its units dead" for layer, dead in dead_units.items() if dead > DEAD_LAYER]
    if watch.get("steps") and watch["at_chance"] > AT_CHANCE_STEPS * watch["steps"]:
        reasons.append(f"training loss at chance for {watch['at_chance'] / watch['steps']:.0%} of its second half's steps")
    return reasons


def learning_verdict(classes: int, watch: dict, val_top1_err: float | None, val_images: int,
                     dead_units: dict[str, float]) -> dict:
    """Whether a run learned: ``at chance`` where the last validation's top-1 accuracy is
    within CHANCE_Z binomial standard deviations of 1/classes (``exploded and at chance``
    where a training loss also passed EXPLODED x ln(classes)), ``collapsed`` where it is not
    at chance but :func:`collapse_reasons` finds a layer mostly dead or a loss at chance for
    most of training (``collapsed``: true, with the reasons, for those at chance too),
    ``learns after a loss spike`` where the loss passed EXPLODED and the run still learned,
    else ``learns``."""
    chance_loss, chance_acc = math.log(classes), 1 / classes
    verdict = dict(chance_loss=round(chance_loss, 4), first_train_loss=watch.get("first"),
                   max_train_loss=watch.get("largest"), max_train_loss_step=watch.get("step"))
    exploded = watch.get("largest", 0) > EXPLODED * chance_loss
    at_chance = None
    if val_top1_err is not None and val_images:
        sd = math.sqrt(chance_acc * (1 - chance_acc) / val_images)
        at_chance = (1 - val_top1_err) - chance_acc < CHANCE_Z * sd
    reasons = collapse_reasons(watch, dead_units)
    if at_chance:
        verdict["verdict"] = "exploded and at chance" if exploded else "at chance"
    elif at_chance is False:
        verdict["verdict"] = "collapsed" if reasons else "learns after a loss spike" if exploded else "learns"
    else:
        verdict["verdict"] = "exploded" if exploded else "unknown"
    verdict.update(collapsed=bool(at_chance) or bool(reasons), collapse_reasons=reasons,
                   at_chance_steps=watch.get("at_chance"), steps=watch.get("steps"))
    return verdict


def layer_activity(metrics: dict, net: torch.nn.Module) -> dict:
    """``lrn``: per LRN layer the divisor's mean and 95th percentile at the last validation
    beside ``k ** beta``, its value for a constant rescale; ``dead_units``: per ReLU layer
    the fraction of units silent on every image validation scored (alexnet_lit.inspect.probes)."""
    lrn = {name.rsplit(".", 1)[-1]: dict(k_beta=layer.k ** layer.beta)
           for name, layer in net.named_modules() if isinstance(layer, LRN)}
    for name, stats in lrn.items():
        for stat in ("mean", "p95"):
            stats[f"divisor_{stat}"] = _metric(metrics, f"lrn/{name}_divisor_{stat}")
    dead = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("dead/")}
    return dict(lrn=lrn, dead_units=dead)


def conv1_colour(net: torch.nn.Module, towers: int) -> dict | None:
    """Figure 3's measure on conv1 (alexnet_lit.inspect.pictures.colour_specificity): every kernel's
    score, in kernel order (the first ``tower_sizes[0]`` are tower 1's), and each tower's mean;
    None for one tower."""
    if towers < 2:
        return None
    scores = colour_specificity(dict(net.learned_layers())["conv1"].weight.detach().float().cpu())
    sizes = [len(t) for t in scores.chunk(towers)]
    return dict(kernels=[round(x, 5) for x in scores.tolist()], tower_sizes=sizes,
                tower_means=[round(float(t.mean()), 5) for t in scores.chunk(towers)])


class ResultsWriter(Callback):
    """Keeps ``path`` up to date: status (running, completed, failed, interrupted by
    SIGTERM), final and best validation top-1/top-5 error, train error (of the last epoch's
    augmented batches, dropout on), the clean training error (``train_eval_*``, scored as
    validation scores) and the error on the data set's own validation images where validation
    holds more (``val_official_*``), epochs, steps, processes, wall time, whether the run
    learns or collapsed (``learning``), what its LRN layers and ReLUs did at the last
    validation (``lrn``, ``dead_units``; alexnet_lit.inspect.probes), conv1's colour scores per tower
    (``conv1_colour``, Figure 3), the epochs at which the logged learning rate dropped
    (``lr_drops``: each the first epoch trained at the lower rate, with that rate), plus ``meta``
    (ablation names, seed, init, parameter count, git commit)."""

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
            self._write(trainer, "failed", error=f"{type(exception).__name__}: {exception}")

    def _write(self, trainer: L.Trainer, status: str, **extra) -> None:
        if not trainer.is_global_zero:
            return
        self._capture(trainer)
        m = self.metrics
        module = trainer.lightning_module
        activity = layer_activity(m, module.net)
        errors = {f"{prefix}_top{k}_err": _metric(m, f"{prefix}/top{k}_err")
                  for prefix in ("val", "train", "train_eval", "val_official") for k in (1, 5)}
        write_json(self.path, dict(
            self.meta, **self.best, **extra, status=status,
            learning=learning_verdict(module.net.classifier.fc8.out_features, self.loss_watch.state_dict(),
                                      _metric(m, "val/top1_err"), self.val_images, activity["dead_units"]),
            **activity, conv1_colour=conv1_colour(module.net, module.hparams.model.get("towers", 1)),
            **errors, lr_drops=self.lr_drops,
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
