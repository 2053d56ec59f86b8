"""Train AlexNet: ``python -m alexnet_lit.train [+ablation=NAME] [group=option] [key=value]``.

Composes conf/train.yaml with Hydra, trains with a Lightning Trainer and leaves in the run
folder: .hydra/ (the resolved config), checkpoints/{last,best}.ckpt, csv/metrics.csv and
results.json.
"""
import json
import subprocess
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import get_original_cwd, instantiate
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

from alexnet_lit.build import CONFIG_DIR, build_datamodule, build_module
from alexnet_lit.data.sampling import local_batch_size
from alexnet_lit.faults import last_checkpoint_path
from alexnet_lit.results import ResultsWriter, git_commit
from alexnet_lit.speed import reuse_host_memory
from alexnet_lit.tracking import media_callbacks, wandb_runs


# For conf/hydra/launcher/slurm.yaml: a SLURM task asks for what the run uses.
OmegaConf.register_new_resolver("gpus_unless_cpu",
                                lambda accelerator, devices: None if accelerator == "cpu" else devices)
OmegaConf.register_new_resolver("add", lambda a, b: a + b)


def ablation_names() -> list[str]:
    """The ablation files this run composed (``+ablation=a`` or ``+ablation=[a,b]``)."""
    if not HydraConfig.initialized():
        return ["none"]
    hydra_cfg = HydraConfig.get()
    choice = hydra_cfg.runtime.choices.get("ablation")  # set for a single file
    for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
        if override.key_or_group == "ablation":  # a list of files shows up only here
            choice = override.value()
    if not choice:
        return ["none"]
    return [choice] if isinstance(choice, str) else list(choice)


def resume_path(ckpt_path: str | None, trainer: L.Trainer) -> str | None:
    """``last``: this run folder's last.ckpt if an earlier attempt left one, else a fresh start."""
    if ckpt_path != "last":
        return ckpt_path
    last = last_checkpoint_path(trainer)
    return str(last) if last is not None and last.is_file() else None


def launches_from_command_line(trainer: L.Trainer) -> bool:
    """Whether this is a multirun job whose Trainer would start its other processes by
    re-running the command line (Lightning's ddp launcher): here that is the whole sweep."""
    return (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
            and trainer.world_size > 1 and isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher)
            and not trainer.strategy.cluster_environment.creates_processes_externally)


def train_under_torchrun(trainer: L.Trainer, out: Path) -> dict:
    """Run this multirun job alone, all its processes started afresh by torchrun with the
    job's own overrides and writing into the job's folder; returns its final val errors."""
    if trainer.num_nodes > 1:
        raise ValueError(f"trainer.num_nodes={trainer.num_nodes} in a multirun needs a cluster "
                         "launcher that starts every process (hydra/launcher=submitit_slurm)")
    hydra_cfg = HydraConfig.get()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={trainer.num_devices}", "-m", "alexnet_lit.train",
                    *hydra_cfg.overrides.task, f'hydra.run.dir="{out}"', "hydra.output_subdir=null"],
                   check=True, cwd=get_original_cwd())
    results = json.loads((out / "results.json").read_text())
    return {"val/top1_err": results["val_top1_err"], "val/top5_err": results["val_top5_err"]}


def train(cfg: DictConfig) -> dict:
    """Fit one run described by ``cfg``; returns the final callback metrics."""
    if cfg.speed.reuse_host_memory:
        reuse_host_memory()
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    datamodule, module = build_datamodule(cfg.data), build_module(cfg)
    meta = dict(ablation=ablation_names(), seed=cfg.seed, init=cfg.model.init,
                params=module.num_params, git_commit=git_commit(), run_dir=str(out))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks.append(ResultsWriter(out / "results.json", meta))
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    callbacks += media_callbacks(loggers)  # logger=wandb: sample grid at the start, conv1 at the end
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    local_batch_size(cfg.data.batch_size, trainer.world_size)  # fail before any process starts
    if launches_from_command_line(trainer):
        return train_under_torchrun(trainer, out)
    with wandb_runs(loggers, meta):  # one W&B run per job, failed if the job raised
        for lg in loggers:
            lg.log_hyperparams(dict(OmegaConf.to_container(cfg, resolve=True), **meta))
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(cfg.get("ckpt_path"), trainer),
                    weights_only=True)  # no pickled code runs when loading a checkpoint
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/top1_err")  # the value a Hydra sweeper would minimise


if __name__ == "__main__":
    main()
