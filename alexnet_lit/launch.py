"""DDP jobs inside a Hydra multirun: Lightning's ddp launcher starts a run's other processes
by re-running the command line, which in a multirun is the whole sweep. Such a job is run
alone instead, all its processes started afresh by torchrun."""
import subprocess
import sys
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd

from alexnet_lit.private_api import starts_processes_by_command_line
from alexnet_lit.results import read_results


def launches_from_command_line(trainer: L.Trainer) -> bool:
    """Whether this is a multirun job whose Trainer would start its other processes by
    re-running the command line (Lightning's ddp launcher): here that is the whole sweep."""
    return (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
            and trainer.world_size > 1 and starts_processes_by_command_line(trainer)
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
                    *hydra_cfg.overrides.task, f'hydra.run.dir="{out}"', "paths.config_dir=null"],
                   check=True, cwd=get_original_cwd())
    results = read_results(out / "results.json")
    return {"val/top1_err": results.val_top1_err, "val/top5_err": results.val_top5_err}
