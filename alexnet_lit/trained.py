"""A finished run, read back for the commands that use one (evaluate, predict, figures) and for
``alexnet_lit.api.load``: its network from a checkpoint of ours or a plain state dict, an
ensemble of several (Section 6: the predictions of similar CNNs averaged), the run folder it came
from, and the data it was trained on."""
import math
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from alexnet_lit.build import build_datamodule, build_module, load_module
from alexnet_lit.checks import checkpoint_file
from alexnet_lit.module import AlexNetModule
from alexnet_lit.weights import fit_weights, read_file

RUN_CONFIG = Path(".hydra") / "config.yaml"  # a training run's config, beside its checkpoints/


class Ensemble(nn.Module):
    """The members' softmax outputs averaged (Section 6, "averaging the predictions of five
    similar CNNs"), returned as their log: scored like logits, as softmax(log p) = p."""

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(nets)
        self.input_size = nets[0].input_size

    @property
    def classifier(self) -> nn.Module:
        """The first member's classifier: fc8's class count, the same for every member."""
        return self.members[0].classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_p = torch.stack([F.log_softmax(net(x), dim=1) for net in self.members])
        return log_p.logsumexp(0) - math.log(len(self.members))


def load_member(path: str, cfg: DictConfig) -> AlexNetModule:
    """A network to evaluate on ``cfg.data.val_views``: one of our checkpoints (or its run
    folder), built from the network config inside it, or a plain state dict loaded into
    ``cfg.model``'s network."""
    contents = read_file(checkpoint_file(path))
    if "hyper_parameters" in contents:
        return load_module(contents, val_views=list(cfg.data.val_views))
    module = build_module(cfg)
    fit_weights(module.net, contents, path, strict=True)
    return module


def ensemble_of(members: list[AlexNetModule]) -> AlexNetModule:
    """One module scoring the members' averaged softmax outputs."""
    first = members[0].hparams
    sizes = {(m.net.input_size, m.net.classifier.fc8.out_features) for m in members}
    if len(sizes) > 1:
        raise ValueError(f"ckpt: an ensemble needs one input size and class count, the members "
                         f"have (input size, classes) {sorted(sizes)}")
    return AlexNetModule(net=Ensemble([m.net for m in members]), model=first.model, optim=first.optim,
                         val_views=first.val_views)


def run_folder(ckpt: str) -> Path | None:
    """The training run folder of a checkpoint in its checkpoints/ folder (or the folder
    itself), if it is one."""
    folder = checkpoint_file(ckpt).resolve().parent.parent
    return folder if (folder / RUN_CONFIG).is_file() else None


def data_config(cfg: DictConfig, ckpt: str) -> dict:
    """The data to evaluate on: the training run's (its .hydra/config.yaml) unless a ``data=``
    group is chosen or there is no run folder, then the composed ``data``; the command line's
    ``data.*`` overrides apply on top, and ``data.val_views`` is always the command's, and no training images are scored beside the split."""
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    run = run_folder(ckpt)
    if run is None or any(o.key_or_group == "data" for o in overrides):
        data = cfg.data
    else:
        data = OmegaConf.load(run / RUN_CONFIG).data
        for o in overrides:
            if o.key_or_group.startswith("data."):
                if o.is_delete():
                    raise ValueError(f"{o.input_line}: evaluate cannot delete a key of the run's data")
                OmegaConf.update(data, o.key_or_group[len("data."):], o.value(), force_add=True)
    data = OmegaConf.to_container(data, resolve=True)
    data["val_views"] = list(cfg.data.val_views)
    data["train_eval_images"] = 0  # training's own overfitting measure: evaluate scores its split only
    return data


def check_classes(module: AlexNetModule, data: dict, ckpt: str) -> None:
    """A network scores only data of as many classes as its fc8 has outputs."""
    classes = module.net.classifier.fc8.out_features
    if data.get("num_classes") != classes:
        where = data.get("root") or data.get("_target_")
        raise ValueError(f"{ckpt} has {classes} classes, the data ({where}) has data.num_classes="
                         f"{data.get('num_classes')}: score it on data of its own {classes} classes")


def trained_network(cfg: DictConfig, stage: str) -> tuple[AlexNetModule, L.LightningDataModule]:
    """``cfg.ckpt``'s network in evaluation mode and its data (:func:`data_config`), set up
    for ``stage``: what ``predict`` and ``figures`` look at."""
    module = load_member(str(cfg.ckpt), cfg).eval()
    data = data_config(cfg, str(cfg.ckpt))
    check_classes(module, data, str(cfg.ckpt))
    datamodule = build_datamodule(data)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return module, datamodule
