"""Train AlexNet: ``python -m alexnet_lit.train [+ablation=NAME] [group=option] [key=value]``.

Composes conf/train.yaml with Hydra, builds the run from it (alexnet_lit.build), fits it with
a Lightning Trainer and leaves in the run folder: .hydra/ (the resolved config),
checkpoints/{last,best}.ckpt, csv/metrics.csv and results.json. ``hparams_search=lr`` makes it
an Optuna search of such runs (docs/searching.md).
"""
import logging
from contextlib import nullcontext
from pathlib import Path

import lightning as L
from hydra.core.plugins import Plugins
from omegaconf import DictConfig, OmegaConf

from alexnet_lit import records
from alexnet_lit.build import build_run, hydra_command, save_config
from alexnet_lit.callbacks import ResultsWriter
from alexnet_lit.checkpointing.faults import last_checkpoint_path
from alexnet_lit.console import errors
from alexnet_lit.launch import launches_from_command_line, train_under_torchrun
from alexnet_lit.results import read_results, record_failure
from alexnet_lit.checkpointing.resume import resume_path
from alexnet_lit.checkpointing.run_folder import NotThisRun, check_resume, run_folder_lock
from alexnet_lit.speed import reuse_host_memory
from alexnet_lit.tracking import wandb_runs
from alexnet_lit.weights import CheckpointError
from hydra_plugins.alexnet_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit one run described by ``cfg``; returns its final metrics (a job already kept in
    ``paths.records``: those of its record, trained no further)."""
    done = records.recorded(cfg)
    if done is not None:
        return done
    if cfg.speed.reuse_host_memory:
        reuse_host_memory()
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    run = build_run(cfg)
    out = Path(cfg.paths.output_dir)
    ckpt_path = resume_path(cfg.get("ckpt_path"), last_checkpoint_path(run.trainer))

    def resumable():  # a whole checkpoint of this run, or none
        try:
            check_resume(ckpt_path, cfg)
        except CheckpointError as err:
            if run.trainer.global_rank == 0 and not isinstance(err, NotThisRun):  # refused: nothing changes
                record_failure(out / "results.json", err, run.meta)  # damaged: the run's record says so
            raise

    # one job in a run folder at a time; its other processes share the lock of process 0, which
    # checks the checkpoint before it names itself there (a refused job leaves the folder as it was)
    if run.trainer.global_rank:
        resumable()
    with run_folder_lock(out, check=resumable) if run.trainer.global_rank == 0 else nullcontext():
        if launches_from_command_line(run.trainer):  # a DDP job in a multirun
            save_config(cfg)  # its torchrun processes save none
            return train_under_torchrun(run.trainer, out)
        if run.trainer.global_rank == 0:
            save_config(cfg)  # the folder is this job's: its config goes beside its run
        with wandb_runs(run.loggers, run.meta):  # one W&B run per job, failed if the job raised
            for lg in run.loggers:
                lg.log_hyperparams(dict(OmegaConf.to_container(cfg, resolve=True), **run.meta))
            run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=ckpt_path,
                            weights_only=True)  # no pickled code runs when loading a checkpoint
    # The results writer's metrics: those of this attempt, or, for a finished run re-entered
    # (a sweep run again), those its checkpoint ended with.
    writer = next(c for c in run.trainer.callbacks if isinstance(c, ResultsWriter))
    metrics = {**writer.metrics, **{k: float(v) for k, v in run.trainer.callback_metrics.items()}}
    if run.trainer.is_global_zero:
        log.info(final_line(out, metrics))
        if read_results(out / "results.json").status == "completed":
            records.keep(cfg, out)
    return metrics


def final_line(out: Path, metrics: dict) -> str:
    """Where the run's folder is and its final validation errors."""
    return f"run folder {out}: final validation {errors(metrics, 'val/') or 'not run'}"


@hydra_command("train")
def run(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/top1_err")  # what Hydra's sweepers get; hparams_search reads results.json


def main() -> None:
    # hparams_search's sweeper, registered by hand: an editable install (pip install -e .)
    # maps hydra_plugins/ through an import hook that Hydra's plugin scan (pkgutil) cannot list.
    Plugins.instance().register(OptunaSweeper)
    run()


if __name__ == "__main__":
    main()
