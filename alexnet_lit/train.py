"""Train AlexNet: ``python -m alexnet_lit.train [+ablation=NAME] [group=option] [key=value]``.

Composes conf/train.yaml with Hydra, trains with a Lightning Trainer and leaves in the run
folder: .hydra/ (the resolved config), checkpoints/{last,best}.ckpt, csv/metrics.csv and
results.json.
"""
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet_lit.module import AlexNetModule
from alexnet_lit.results import ResultsWriter, git_commit

CONFIG_DIR = next(str(d) for d in (Path(__file__).resolve().parent.parent / "conf",
                                   Path(__file__).resolve().parent / "conf")
                  if (d / "train.yaml").is_file())


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


def train(cfg: DictConfig) -> dict:
    """Fit one run described by ``cfg``; returns the final callback metrics."""
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data, _convert_="all")  # plain containers: weights_only checkpoints
    module = AlexNetModule(model=OmegaConf.to_container(cfg.model, resolve=True),
                           optim=OmegaConf.to_container(cfg.optim, resolve=True),
                           val_views=list(cfg.data.get("val_views", ["center"])))
    meta = dict(ablation=ablation_names(), seed=cfg.seed, init=cfg.model.init,
                params=module.num_params, git_commit=git_commit(), run_dir=str(out))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks.append(ResultsWriter(out / "results.json", meta))
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(dict(OmegaConf.to_container(cfg, resolve=True), **meta))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("val/top1_err")  # the value a Hydra sweeper would minimise


if __name__ == "__main__":
    main()
