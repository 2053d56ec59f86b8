"""What a command prints while it works: Lightning's progress bar where the output is a terminal;
elsewhere (a log file, SLURM) one line per training epoch and per validation, not a bar's
carriage returns; and none of the libraries' messages a user cannot act on."""
import logging
import sys
import time
import warnings

from lightning.pytorch.callbacks import Callback

# torch's deprecation of a class that Lightning 2.6's own _pytree.py still uses
LIBRARY_WARNINGS = [(FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated")]
LIBRARY_ADVERTS = ("💡 Tip:",)  # Lightning's suggestion of its cloud logger, at every Trainer start


def quiet_libraries() -> None:
    """Leave out the library messages of :data:`LIBRARY_WARNINGS` and :data:`LIBRARY_ADVERTS`."""
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith(LIBRARY_ADVERTS))


def progress(enable_progress_bar: bool | None) -> tuple[bool, list[Callback]]:
    """``trainer.enable_progress_bar`` as a command shows progress: ``true``, Lightning's bar;
    ``null``, the bar where stdout is a terminal, else :class:`EpochLines`; ``false``, neither.
    Returns the Trainer's ``enable_progress_bar`` and the callbacks to add."""
    if enable_progress_bar is None and not sys.stdout.isatty():
        return False, [EpochLines()]
    return enable_progress_bar is not False, []


def errors(metrics: dict, prefix: str) -> str:
    """``top-1 error 0.4500, top-5 error 0.2000`` of the metrics logged under ``prefix``."""
    return ", ".join(f"top-{key[len(prefix) + 3:-4]} error {float(value):.4f}" for key, value in metrics.items()
                     if key.startswith(f"{prefix}top") and key.endswith("_err"))


class EpochLines(Callback):
    """One line on stderr per training epoch (its training errors, the validation's after it,
    the learning rate, its seconds) and per validation run alone (``evaluate``), from process 0.
    An epoch's line waits for the module's own epoch end, where it logs the training errors,
    which Lightning calls after its callbacks'."""

    def __init__(self):
        self.ended: tuple[int, float] | None = None  # the epoch not yet said, and its seconds
        self.began = time.monotonic()  # a resumed epoch does not start again

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.say_epoch(trainer)
        self.began = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.ended = trainer.current_epoch, time.monotonic() - self.began

    def on_train_end(self, trainer, pl_module) -> None:
        self.say_epoch(trainer)

    def say_epoch(self, trainer) -> None:
        if self.ended is None:
            return
        (epoch, seconds), m = self.ended, trainer.callback_metrics
        parts = [f"train {errors(m, 'train/')}" if "train/top1_err" in m else None,
                 f"validation {errors(m, 'val/')}" if "val/top1_err" in m else None,
                 f"lr {float(m['lr']):.3g}" if "lr" in m else None, f"{seconds:.0f} s"]
        self.say(trainer, f"epoch {epoch + 1}/{trainer.max_epochs}: " + "; ".join(p for p in parts if p))
        self.ended = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "validate":  # in training, the epoch's line says it
            m = trainer.callback_metrics
            self.say(trainer, f"validation: {errors(m, 'val/')}, loss {float(m['val/loss']):.4f}")

    @staticmethod
    def say(trainer, line: str) -> None:
        if trainer.is_global_zero:
            print(line, file=sys.stderr, flush=True)
