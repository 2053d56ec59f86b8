"""A run's parts from a composed config, in one place: the network (conf/model), the
LightningModule, the data module (conf/data), the loggers (conf/logger), the callbacks
(conf/callbacks, plus the results file and the W&B media) and the Trainer (conf/trainer).
``train``, ``evaluate``, ``predict``, ``summary``, ``figures``, the benchmarks and the tests all
build them here."""
import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from alexnet_lit.callbacks import CheckpointRun, ResultsWriter
from alexnet_lit.checks import (CONFIG_DIR, NO_DATA, ConfigError, check_ablation_overrides, check_config,  # noqa: F401
                                stop)
from alexnet_lit.console import progress, quiet_libraries
from alexnet_lit.data.sampling import local_batch_size
from alexnet_lit.module import AlexNetModule
from alexnet_lit.results import git_commit
from alexnet_lit.checkpointing.run_folder import job_folder
from alexnet_lit.tracking import media_callbacks
from alexnet_lit.trust import DATA_MODULES, rebuild
from alexnet_lit.weights import load_weights
from alexnet_lit.writing import replace_text

PAPER_BATCH = 128  # Section 5
# what a mistake of the user's raises (a bad value; a file not there, unreadable or damaged):
# said in one line, the traceback with HYDRA_FULL_ERROR=1
USER_ERRORS = (ValueError, OSError)

# For conf/hydra/launcher/slurm.yaml: a SLURM task asks for what the run uses.
OmegaConf.register_new_resolver("gpus_unless_cpu",
                                lambda accelerator, devices: None if accelerator == "cpu" else devices)
OmegaConf.register_new_resolver("add", lambda a, b: a + b)
OmegaConf.register_new_resolver("job_folder", job_folder)  # conf/hydra: a sweep job's folder
OmegaConf.register_new_resolver("ablations", lambda: "+".join(ablation_names()))  # experiment/table: its folders


def hydra_command(config_name: str):
    """A command's entry point: ``main = hydra_command("evaluate")(evaluate)`` composes
    conf/<config_name>.yaml with the command line, checks it (alexnet_lit.checks), saves it
    (:func:`save_config`; train saves its own once it holds its run folder) and calls
    ``evaluate(cfg)``. The command line's ablations are checked before Hydra composes; in a
    single run, a mistake of the user's (:data:`USER_ERRORS`) ends the command with one line (:func:`alexnet_lit.checks.stop`)."""
    def entry(task):
        @functools.wraps(task)
        def checked(cfg: DictConfig):
            check_config(cfg, reads_data=config_name not in NO_DATA)
            try:
                if config_name != "train":
                    save_config(cfg)
                return task(cfg)
            except (*USER_ERRORS, InstantiationException) as error:
                if HydraConfig.get().mode == RunMode.MULTIRUN:
                    raise  # the sweep records the failed job and runs the others
                stop(error.__cause__ if isinstance(error.__cause__, USER_ERRORS) else error)
        composed = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(checked)

        @functools.wraps(task)
        def main():
            quiet_libraries()
            try:
                check_ablation_overrides(sys.argv[1:])
            except ConfigError as error:
                stop(error)
            return composed()
        return main
    return entry


def save_config(cfg: DictConfig) -> None:
    """The command's config as Hydra would save it (``config.yaml`` as composed, ``hydra.yaml``,
    ``overrides.yaml``) in ``paths.config_dir`` of its run folder, each file written by replacing
    it (alexnet_lit.writing), never through a link planted there."""
    if not cfg.paths.get("config_dir") or not HydraConfig.initialized():  # called from Python: no Hydra to save
        return
    hydra_cfg = HydraConfig.get()
    folder = Path(cfg.paths.output_dir) / cfg.paths.config_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (("config", cfg), ("hydra", OmegaConf.create({"hydra": hydra_cfg})),
                       ("overrides", hydra_cfg.overrides.task)):
        replace_text(folder / f"{name}.yaml", OmegaConf.to_yaml(node))


def train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/train.yaml composed with the command line ``overrides`` as ``python -m
    alexnet_lit.train`` composes it (without Hydra's own ``hydra`` node), for code outside a
    command (alexnet_lit.api). Called inside a Hydra app, it puts the app's Hydra back after."""
    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
    check_config(cfg, reads_data=False)  # the network's config: no data is read
    return cfg


def optim_settings(cfg: DictConfig) -> dict:
    """conf/optim for the module, with the learning rate for the global batch
    ``data.batch_size``: ``optim.lr_scaling=none`` keeps ``optim.lr`` whatever the batch and
    the number of processes; ``linear`` multiplies it by data.batch_size / 128, the paper's
    batch (Goyal et al., 2017)."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    scaling = optim.pop("lr_scaling", "none")
    if scaling == "linear":
        optim["lr"] *= cfg.data.batch_size / PAPER_BATCH
    elif scaling != "none":
        raise ValueError(f"optim.lr_scaling={scaling!r}: expected 'none' or 'linear'")
    return optim


def build_network(cfg: DictConfig) -> nn.Module:
    """The network of ``cfg.model`` (conf/model); with ``init_from`` set, its weights then
    come from that file (alexnet_lit.weights)."""
    net = instantiate(OmegaConf.to_container(cfg.model, resolve=True))
    if cfg.get("init_from"):
        load_weights(net, cfg.init_from)
    return net


def build_module(cfg: DictConfig) -> AlexNetModule:
    """The module of ``cfg``: its network (:func:`build_network`), optimiser (conf/optim),
    evaluation views (``data.val_views``) and speed settings."""
    return AlexNetModule(net=build_network(cfg), model=OmegaConf.to_container(cfg.model, resolve=True),
                         optim=optim_settings(cfg), val_views=list(cfg.data.get("val_views", ["center"])),
                         channels_last=cfg.speed.channels_last, compile=cfg.speed.compile)


def build_datamodule(data: DictConfig | dict, source: str | Path | None = None) -> L.LightningDataModule:
    """The data module of a ``data`` config (plain containers inside, so that checkpoints
    load with ``weights_only``); one read from the file ``source`` is rebuilt through the
    project's own data modules (alexnet_lit.trust), never instantiated."""
    if source is not None:
        return rebuild(data, DATA_MODULES, source, "data")
    return instantiate(data, _convert_="all")


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


@dataclass
class RunParts:
    """Everything one training run is made of; ``meta`` goes into results.json and W&B."""
    module: AlexNetModule
    datamodule: L.LightningDataModule
    trainer: L.Trainer
    loggers: list
    meta: dict


def build_run(cfg: DictConfig, callbacks: list = (), **trainer_settings) -> RunParts:
    """The run of ``cfg``: its module, data module, loggers and Trainer with conf/callbacks,
    the results file and the run's config and class names in its checkpoints
    (alexnet_lit.callbacks) and, with ``logger=wandb``, the W&B media.
    ``callbacks`` are added to those; ``trainer_settings`` override conf/trainer."""
    out = Path(cfg.paths.output_dir)
    datamodule, module = build_datamodule(cfg.data), build_module(cfg)
    meta = dict(ablation=ablation_names(), seed=cfg.seed, init=cfg.model.init,
                params=module.num_params, git_commit=git_commit(), run_dir=str(out))
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    callbacks = [*(instantiate(c) for c in (cfg.get("callbacks") or {}).values()),
                 ResultsWriter(out / "results.json", meta),
                 CheckpointRun(OmegaConf.to_container(cfg, resolve=True)),  # for alexnet_lit.load
                 *media_callbacks(loggers),  # logger=wandb: sample grid at the start, conv1 at the end
                 *callbacks]
    bar, lines = progress(cfg.trainer.get("enable_progress_bar"))
    trainer: L.Trainer = instantiate(cfg.trainer, **{"callbacks": [*callbacks, *lines], "logger": loggers or False,
                                                      "enable_progress_bar": bar, **trainer_settings})
    local_batch_size(cfg.data.batch_size, trainer.world_size)  # fail before any process starts
    return RunParts(module, datamodule, trainer, loggers, meta)

