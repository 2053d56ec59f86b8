"""SIGTERM, as SLURM sends it before pre-empting or timing out a job: the run saves
checkpoints/last.ckpt at the next batch boundary (never inside a validation) and, under SLURM,
requeues its job, which then resumes exactly (alexnet_lit.checkpointing.resume)."""
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_lit.private_api import set_received_sigterm
from alexnet_lit.checkpointing.resume import save

log = logging.getLogger(__name__)


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


class Preemption(Callback):
    """On SIGTERM, which Lightning turns into an exit at the next batch boundary on every
    process: saves ``path`` (checkpoints/last.ckpt), then requeues the job under SLURM;
    elsewhere the run exits cleanly and a re-run continues. The signal is held back while
    validation runs, so a resumed run never starts in the middle of one."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.lightning_handler = None  # SIGTERM's own handler, while validation holds it back
        self.signalled = False  # before or during that validation

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Hold SIGTERM back until validation ends: Lightning would stop inside it, and a run
        resumed from there skips that validation and the lr schedule's step after it."""
        if (trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
                or threading.current_thread() is not threading.main_thread()):
            return  # Lightning handles signals in the main thread only
        self.signalled = trainer.received_sigterm  # came during the last training batch
        set_received_sigterm(trainer, False)
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
            set_received_sigterm(trainer, True)
        else:
            self._release()

    def _release(self) -> None:
        if self.lightning_handler is not None:
            signal.signal(signal.SIGTERM, self.lightning_handler)
            self.lightning_handler = None

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
