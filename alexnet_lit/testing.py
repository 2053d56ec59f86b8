"""What the test suite and ``benchmarks/gpu_check.py`` share: a command line as a user types it,
a run's ``csv/metrics.csv`` read back, and a callback that stops a run the way SLURM does (SIGTERM
inside its first validation)."""
import csv
import os
import signal
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback


def command(name: str, run_dir: Path, cache: Path, *overrides: str) -> list[str]:
    """``python -m alexnet_lit.<name> ...`` writing into ``run_dir``, its generated data in ``cache``."""
    return [sys.executable, "-m", f"alexnet_lit.{name}", f"paths.cache_dir={cache}",
            f"hydra.run.dir={run_dir}", *overrides]


def train_command(run_dir: Path, cache: Path, *overrides: str) -> list[str]:
    """``python -m alexnet_lit.train experiment=tiny ...`` writing into ``run_dir``."""
    return command("train", run_dir, cache, "experiment=tiny", *overrides)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's csv/metrics.csv."""
    with open(Path(run_dir) / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


class SigtermInValidation(Callback):
    """The process sends itself SIGTERM at the second batch of its first validation (all
    processes, or those of ``ranks``)."""

    def __init__(self, ranks: list[int] | None = None):
        self.ranks = ranks

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if (not trainer.sanity_checking and trainer.current_epoch == 0 and batch_idx == 1
                and (self.ranks is None or trainer.global_rank in self.ranks)):
            os.kill(os.getpid(), signal.SIGTERM)


def sigterm_in_validation(ranks: list[int] | None = None) -> list[str]:
    """The overrides that add :class:`SigtermInValidation` to a run."""
    overrides = [f"+callbacks.signal._target_={__name__}.SigtermInValidation"]
    if ranks is not None:
        overrides.append(f"+callbacks.signal.ranks={ranks}")
    return overrides
