"""The composed config checked before anything runs, in one place: every command calls
:func:`check_config` before it builds a network, loads data or writes a file of its own (and a
single run before Hydra makes its run folder: :class:`CheckBeforeRun`), so that a wrong value
stops with one line naming its key, the value and what is allowed, not with a library's
traceback later (or after hours of training)."""
import argparse
import math
import os
import sys
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

CONFIG_DIR = next(str(d) for d in (Path(__file__).resolve().parent.parent / "conf",
                                   Path(__file__).resolve().parent / "conf")
                  if (d / "train.yaml").is_file())  # conf/ in a checkout, alexnet_lit/conf/ installed
FOLDER_DATA = "alexnet_lit.data.folder.FolderDataModule"  # data=folder, data=imagenet
NO_DATA = ("summary",)  # commands that read no data: data=imagenet only sets the class count


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the key."""


def stop(error: Exception) -> NoReturn:
    """End a command with ``error`` as one line on stderr and exit status 1, as Hydra reports a
    bad override; with ``HYDRA_FULL_ERROR=1``, raise it, for its traceback."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    sys.exit(str(error))


class OneLineParser(argparse.ArgumentParser):
    """The argparse commands' (``prepare``, ``report``) parser: a bad argument is one line on
    stderr, exit status 2, as the Hydra commands say their mistakes."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (--help lists the arguments)\n")


def ablations() -> list[str]:
    """The names of conf/ablation/."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / "ablation").glob("*.yaml"))


def check_ablation_name(name: str) -> None:
    """A :class:`ConfigError` for a name that is not an ablation, listing those there are."""
    if name not in ablations():
        raise ConfigError(f"unknown ablation {name!r}: expected one of {', '.join(ablations())}")


def check_ablation_overrides(overrides: Sequence[str]) -> None:
    """Every ablation a command line names (``+ablation=a``, ``+ablation=[a,b]``, a sweep
    ``+ablation=a,b``), checked before Hydra looks for its file, whose error would name the
    config search path, not the ablations there are; ``glob(...)`` picks among those there are."""
    overrides = [o for o in overrides if "=" in o and not o.startswith("-")]  # not Hydra's flags (-m, --cfg)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return  # a malformed override: Hydra says what is wrong with it
    for override in parsed:
        if override.key_or_group != "ablation" or override.is_delete() or override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            continue
        values = list(override.sweep_iterator()) if override.is_discrete_sweep() else [override.value()]
        for value in values:
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str):
                    check_ablation_name(name)


_ABSENT = object()


class Range:
    """Numbers from ``low`` to ``high`` (each included unless ``open_low``, ``open_high``), odd
    ones alone if ``odd``, and the values of ``also`` (value -> what it means: ``None`` for a
    null, ``-1`` for Lightning's no limit)."""

    def __init__(self, integer: bool, low: float, high: float = math.inf, *, open_low=False, open_high=False,
                 odd=False, also: dict | None = None):
        self.integer, self.low, self.high, self.odd = integer, low, high, odd
        self.open_low, self.open_high, self.also = open_low, open_high, also or {}

    def holds(self, value) -> bool:
        if value is None:
            return None in self.also
        if isinstance(value, bool) or not isinstance(value, int if self.integer else Real):
            return False
        if value in self.also:
            return True
        if not math.isfinite(value) or (self.odd and value % 2 == 0):
            return False
        return ((self.low < value if self.open_low else self.low <= value)
                and (value < self.high if self.open_high else value <= self.high))

    def __str__(self) -> str:
        kind = ("an odd integer" if self.odd else "an integer") if self.integer else "a number"
        if self.high < math.inf:
            allowed = (f"{kind} in {'(' if self.open_low else '['}{self.low}, {self.high}"
                       f"{')' if self.open_high else ']'}")
        elif self.low > -math.inf:
            allowed = f"{kind} {'>' if self.open_low else '>='} {self.low}"
        else:
            allowed = kind if self.integer else "a finite number"
        return allowed + "".join(f", or {'null' if value is None else value} ({meaning})"
                                 for value, meaning in self.also.items())


# key -> the values it may take; keys a command's config lacks are not checked; a * stands for
# every entry of the table there (model.features.*.out: the kernel count of every convolution row)
RANGES = {
    "seed": Range(True, 0, 2**32 - 1, also={None: "unseeded"}),  # what numpy and Lightning seed with
    "data.batch_size": Range(True, 1),
    "data.num_workers": Range(True, 0),
    "data.image_size": Range(True, 1),
    "data.crop_size": Range(True, 1),
    "data.num_classes": Range(True, 2),
    "data.train_eval_images": Range(True, 0, also={None: "as many as validation holds"}),
    "model.features.*.out": Range(True, 1),
    "model.features.*.kernel": Range(True, 1),
    "model.features.*.stride": Range(True, 1),
    "model.features.*.pad": Range(True, 0),
    "model.width.*": Range(False, 0, open_low=True),
    "model.pool.kernel": Range(True, 1),
    "model.pool.stride": Range(True, 1),
    "model.lrn.size": Range(True, 1, odd=True),  # a window centred on each channel
    "model.lrn.alpha": Range(False, 0),
    "model.lrn.beta": Range(False, 0),
    "model.lrn.k": Range(False, 0, open_low=True),  # 0 divides by 0 where a window is all zeros
    "model.rnorm.size": Range(True, 1, odd=True),  # a window centred on each position
    "model.rnorm.scale": Range(False, 0),
    "model.rnorm.pow": Range(False, 0),
    "model.classifier.*": Range(True, 1),
    "model.dropout": Range(False, 0, 1, open_high=True),
    "model.positive_bias": Range(False, -math.inf, also={None: "the init's own"}),
    "optim.lr": Range(False, 0),  # 0: weights that stay as drawn, a baseline (benchmarks/learns.py)
    "optim.momentum": Range(False, 0, 1, open_high=True),
    "optim.weight_decay": Range(False, 0),
    "optim.scheduler.factor": Range(False, 0, 1, open_low=True, open_high=True),
    "optim.scheduler.patience": Range(True, 0),
    "trainer.max_epochs": Range(True, 1),  # 0 would "complete" a run that trained nothing
    "trainer.max_steps": Range(True, 1, also={-1: "no limit"}),
    "trainer.num_nodes": Range(True, 1),
    "callbacks.last_checkpoint.every_n_steps": Range(True, 1),
}


def entries(cfg: DictConfig, key: str) -> list[tuple[str, object]]:
    """(key, value) for ``key`` in ``cfg``, a ``*`` in it standing for each entry of the table
    there; none where the config lacks it."""
    table, star, rest = key.partition(".*")
    if not star:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        return [] if value is _ABSENT else [(key, value)]
    rows = OmegaConf.select(cfg, table, default=None)
    if not OmegaConf.is_dict(rows):
        return []
    return [found for name in rows for found in entries(cfg, f"{table}.{name}{rest}")]


def check_data(cfg: DictConfig, reads_data: bool = True) -> None:
    """Class folders (``data=folder``, ``imagenet``): ``data.root`` given and there, and
    ``data.num_classes`` its number of classes (a prepared folder's ``prepared.json``, or the
    folders of its ``train/``); set to it where not given. A command that ``reads_data`` not
    (``summary``) needs a root only to count the classes."""
    data = cfg.get("data")
    if data is None or data.get("_target_") != FOLDER_DATA:
        return
    if OmegaConf.is_missing(data, "root") and not reads_data:
        if OmegaConf.is_missing(data, "num_classes"):
            raise ConfigError("data.num_classes is not given: expected the number of classes, or data.root "
                              "to count them in")
        return
    if OmegaConf.is_missing(data, "root"):
        raise ConfigError("data.root is not given: expected the data set's folder (train/<class>/*, "
                          "val/...), or one written by alexnet-prepare")
    from alexnet_lit.data.folder import data_classes  # the data package only for folder data
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={data.root}: no such folder")
    try:
        classes, where = data_classes(root)
    except FileNotFoundError as error:
        raise ConfigError(f"data.root={error}") from None  # the error names the folder
    if OmegaConf.is_missing(data, "num_classes"):
        with read_write(data), open_dict(data):
            data.num_classes = len(classes)
    elif data.num_classes != len(classes):
        raise ConfigError(f"data.num_classes={data.num_classes} but data.root={data.root} holds {len(classes)} "
                          f"classes ({where}): leave data.num_classes out to take it from the data")


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint named by itself or by its run folder (then its ``checkpoints/best.ckpt``)."""
    path = Path(path).expanduser()
    return path / "checkpoints" / "best.ckpt" if path.is_dir() else path


def check_checkpoints(cfg: DictConfig) -> None:
    """Every ``ckpt`` (``evaluate``, ``predict``, ``figures``) a file, or a run folder with one."""
    if OmegaConf.select(cfg, "ckpt") is None or OmegaConf.is_missing(cfg, "ckpt"):
        return
    for path in cfg.ckpt if OmegaConf.is_list(cfg.ckpt) else [cfg.ckpt]:
        if not checkpoint_file(str(path)).is_file():
            raise ConfigError(f"ckpt={path}: no checkpoint file there, nor a run folder with checkpoints/best.ckpt")


def check_config(cfg: DictConfig, reads_data: bool = True) -> None:
    """Raise :class:`ConfigError` naming every key of :data:`RANGES` present in ``cfg`` whose
    value is of the wrong type or out of range, and a crop larger than the image; then check
    the data's folder (:func:`check_data`) and the checkpoints named (:func:`check_checkpoints`)."""
    problems, values = [], {}
    for key, allowed in RANGES.items():
        try:
            found = entries(cfg, key)
        except Exception as err:  # an interpolation that does not resolve
            problems.append(f"{key}: {err}")
            continue
        values.update(found)
        problems += [f"{name}={value!r}: expected {allowed}" for name, value in found if not allowed.holds(value)]
    crop, size = values.get("data.crop_size"), values.get("data.image_size")
    if RANGES["data.crop_size"].holds(crop) and RANGES["data.image_size"].holds(size) and crop > size:
        problems.append(f"data.crop_size={crop} is larger than data.image_size={size}: "
                        "the crops are cut from the image")
    if problems:
        raise ConfigError("bad config value" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))
    check_data(cfg, reads_data)
    check_checkpoints(cfg)


class CheckBeforeRun(Callback):
    """conf/hydra/default.yaml: a single run's config checked (:func:`check_config`) before
    Hydra makes its run folder, so that a mistake leaves no folder behind; a filled-in
    ``data.num_classes`` goes into the run's saved config. A sweep's jobs are checked as they
    start (alexnet_lit.build.hydra_command)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)  # ${hydra:...} keys resolve, as in the job
        try:
            check_config(config, reads_data=config.hydra.job.config_name not in NO_DATA)
        except ConfigError as error:  # Hydra would only warn of an error raised here
            stop(error)
