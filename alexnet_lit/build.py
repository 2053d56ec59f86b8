"""A run's parts from a composed config, in one place: ``train``, ``evaluate``, ``predict``,
``summary`` and ``figures`` all build the LightningModule and the data module here."""
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet_lit.module import AlexNetModule
from alexnet_lit.weights import load_weights

# conf/ beside the package in a checkout, alexnet_lit/conf/ in an installed package
CONFIG_DIR = next(str(d) for d in (Path(__file__).resolve().parent.parent / "conf",
                                   Path(__file__).resolve().parent / "conf")
                  if (d / "train.yaml").is_file())
PAPER_BATCH = 128  # Section 5


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


def build_module(cfg: DictConfig) -> AlexNetModule:
    """The module of ``cfg``: its network (conf/model), optimiser (conf/optim), evaluation
    views (``data.val_views``) and speed settings; with ``init_from`` set, the network's
    weights then come from that file (alexnet_lit.weights)."""
    module = AlexNetModule(model=OmegaConf.to_container(cfg.model, resolve=True),
                           optim=optim_settings(cfg),
                           val_views=list(cfg.data.get("val_views", ["center"])),
                           channels_last=cfg.speed.channels_last, compile=cfg.speed.compile)
    if cfg.get("init_from"):
        load_weights(module.net, cfg.init_from)
    return module


def build_datamodule(data: DictConfig | dict) -> L.LightningDataModule:
    """The data module of a ``data`` config (plain containers inside, so that checkpoints
    load with ``weights_only``)."""
    return instantiate(data, _convert_="all")
