"""The composed config checked before anything runs, in one place: every command calls
:func:`check_config` (alexnet_lit.build.command) before it builds a network, loads data or
writes a file of its own, so that a wrong value stops with its key, the value and what is
allowed, not with a library's message later (or after hours of training)."""
import math
from numbers import Real

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the key."""


_ABSENT = object()


class Range:
    """Numbers from ``low`` (included) to ``high`` (included unless ``open_high``)."""

    def __init__(self, integer: bool, low: float, high: float = math.inf, open_high=False):
        self.integer, self.low, self.high, self.open_high = integer, low, high, open_high

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else Real):
            return False
        if not math.isfinite(value):
            return False
        return self.low <= value and (value < self.high if self.open_high else value <= self.high)

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high == math.inf:
            return f"{kind} >= {self.low}"
        return f"{kind} in [{self.low}, {self.high}{')' if self.open_high else ']'}"


# key -> the values it may take; keys a command's config lacks are not checked
RANGES = {
    "data.batch_size": Range(True, 1),
    "data.num_workers": Range(True, 0),
    "data.image_size": Range(True, 1),
    "data.crop_size": Range(True, 1),
    "data.num_classes": Range(True, 2),
    "data.train_eval_images": Range(True, 0),
    "optim.lr": Range(False, 0),  # 0: weights that stay as drawn, a baseline (benchmarks/learns.py)
    "optim.momentum": Range(False, 0, 1, open_high=True),
    "optim.weight_decay": Range(False, 0),
    "model.dropout": Range(False, 0, 1, open_high=True),
    "trainer.num_nodes": Range(True, 1),
    "callbacks.last_checkpoint.every_n_steps": Range(True, 1),
}
NULLABLE = {"data.train_eval_images"}  # null: as many training images as validation holds


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming every key of :data:`RANGES` present in ``cfg`` whose
    value is of the wrong type or out of range, and a crop larger than the image."""
    problems, values = [], {}
    for key, allowed in RANGES.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT)
        except Exception as err:  # an interpolation that does not resolve
            problems.append(f"{key}: {err}")
            continue
        values[key] = value
        if value is _ABSENT or (value is None and key in NULLABLE):
            continue
        if not allowed.holds(value):
            problems.append(f"{key}={value!r}: expected {allowed}")
    crop, size = values.get("data.crop_size"), values.get("data.image_size")
    if RANGES["data.crop_size"].holds(crop) and RANGES["data.image_size"].holds(size) and crop > size:
        problems.append(f"data.crop_size={crop} is larger than data.image_size={size}: "
                        "the crops are cut from the image")
    if problems:
        raise ConfigError("bad config value" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))
