"""The network in one call, from the configs the commands compose (docs/python.md):

    net = alexnet_lit.alexnet(["no_lrn", "one_tower"], num_classes=10, seed=0)

is, parameter for parameter, the network ``python -m alexnet_lit.train
+ablation=[no_lrn,one_tower] data.num_classes=10 seed=0`` trains. ``alexnet_lit.load(run)``
gives a finished run's network with its config and class names.
"""
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from alexnet_lit.build import CONFIG_DIR, build_datamodule, build_network, load_module, train_config
from alexnet_lit.callbacks import CheckpointRun
from alexnet_lit.checks import check_ablation_name, checkpoint_file
from alexnet_lit.trained import RUN_CONFIG, EvaluationTransform, class_probabilities, run_folder_of
from alexnet_lit.trust import UntrustedFile, run_config
from alexnet_lit.weights import fit_weights, read_file

ABLATIONS = Path(CONFIG_DIR) / "ablation"


def alexnet(ablations: Sequence[str] = (), num_classes: int = 1000, seed: int | None = None,
            weights: str | Path | None = None, overrides: Sequence[str] = (), **model) -> nn.Module:
    """The paper's network (Section 3, conf/model/alexnet.yaml) with ``ablations`` (names of
    conf/ablation/), as the train command builds it with ``+ablation=[...]
    data.num_classes=num_classes seed=seed``: each layer's initial weights drawn from (seed,
    layer name); ``seed=None`` draws them from torch's global generator, as torchvision does.
    Keywords set ``model.*`` (``init="paper"``, ``towers=1``, ``lrn=None``; a mapping merges
    into the table, ``features={"conv3": None}``), ``overrides`` are Hydra overrides for
    anything else (``["model=alexnet224"]``). ``weights``: a local file, one of our checkpoints
    or state dicts, loaded strictly (nothing is downloaded). An ablation that changes training,
    not the network (``no_augment``, ``no_pca``, ``no_weight_decay``), is refused."""
    return _network([], ablations, num_classes, seed, weights, overrides, model)


def alexnet_torchvision(ablations: Sequence[str] = (), num_classes: int = 1000, seed: int | None = None,
                        weights: str | Path | None = None, overrides: Sequence[str] = (), **model) -> nn.Module:
    """:func:`alexnet` in torchvision's ``alexnet`` layout (conf/model/torchvision.yaml: one
    tower, no LRN, 64-192-384-256-256 kernels, 224 inputs); ``weights`` may be torchvision's
    own state dict (``alexnet-owt-*.pth``), whose inputs are normalised per channel
    (``data.normalize=standard``)."""
    return _network(["model=torchvision"], ablations, num_classes, seed, weights, overrides, model)


def _network(preset: list[str], ablations: Sequence[str], num_classes: int, seed: int | None,
             weights: str | Path | None, overrides: Sequence[str], model: dict) -> nn.Module:
    ablations = [ablations] if isinstance(ablations, str) else list(ablations)
    for name in ablations:
        check_ablation(name)
    cfg = train_config([*preset, *([f"+ablation=[{','.join(ablations)}]"] if ablations else []),
                        f"data.num_classes={num_classes}", f"seed={'null' if seed is None else seed}",
                        *overrides])
    unknown = sorted(set(model) - set(cfg.model))
    if unknown:
        raise TypeError(f"alexnet(): {', '.join(map(repr, unknown))} is not a key of conf/model; "
                        f"the keys are {', '.join(k for k in cfg.model if k not in ('_target_', 'num_classes', 'seed'))}")
    with open_dict(cfg.model):
        for key, value in model.items():
            OmegaConf.update(cfg.model, key, value, merge=True)
    net = build_network(cfg)
    if weights is not None:
        fit_weights(net, read_file(weights), weights, strict=True)
    return net


def check_ablation(name: str) -> None:
    """An error for an ablation that is not in conf/ablation/, or that sets no ``model``
    key: it changes how the network is trained, not the network."""
    check_ablation_name(name)
    changes = OmegaConf.load(ABLATIONS / f"{name}.yaml")
    if changes and "model" not in changes:
        raise ValueError(f"ablation {name!r} changes training, not the network (conf/ablation/{name}.yaml "
                         f"sets {', '.join(changes)}, not model): train it with "
                         f"python -m alexnet_lit.train +ablation={name}")


@dataclass
class Trained:
    """A finished run's network in evaluation mode, the config it was trained with and its
    class names (``class_names[i]`` is fc8's output ``i``); ``source``, the file the config was
    read from (a file from elsewhere: its data module is rebuilt through alexnet_lit.trust)."""
    net: nn.Module
    config: DictConfig
    class_names: list[str]
    source: Path

    def transforms(self) -> EvaluationTransform:
        """The run's evaluation preprocessing of one image (a PIL image or a uint8 (3, H, W)
        tensor) into the network's input, as torchvision's ``weights.transforms()``; its data
        must be there (the mean image, or the class folders)."""
        data = build_datamodule(OmegaConf.to_container(self.config.data, resolve=True), self.source)
        data.setup("predict")
        return EvaluationTransform(data.views, data.hparams.image_size, data.hparams.get("exif_orientation", "ignore"))

    def predict(self, images: Sequence, topk: int = 5, view: str = "tencrop") -> list[list[tuple[str, float]]]:
        """Each image's ``topk`` (class name, probability), most probable first, scored as
        ``alexnet-predict`` scores a file: its ten crops' softmax outputs averaged
        (``view="center"``: the centre crop's; Section 4.1, Figure 4's lists)."""
        transform = self.transforms()
        pixels = torch.stack([transform.pixels(image) for image in images])
        top = class_probabilities(self.net, transform.views, pixels, view).topk(min(topk, len(self.class_names)))
        return [[(self.class_names[i], p) for p, i in zip(probabilities, indices)]
                for probabilities, indices in zip(top.values.tolist(), top.indices.tolist())]


def load(path: str | Path) -> Trained:
    """A run folder's network (its ``checkpoints/best.ckpt``), or a checkpoint of ours. The
    config and class names are those stored in the checkpoint; for a checkpoint from before
    they were, the run folder's ``.hydra/config.yaml`` and the class folders of its data where
    they are found, else the network's config alone and the class indices."""
    ckpt = checkpoint_file(path)
    contents = read_file(ckpt)
    if "hyper_parameters" not in contents:
        raise ValueError(f"{ckpt}: a state dict, not a checkpoint of a run; "
                         f"alexnet(weights={str(ckpt)!r}, ...) loads it into the network you name")
    net = load_module(contents, ckpt).net.eval()
    run, folder, source = contents.get(CheckpointRun.KEY), run_folder_of(str(ckpt)), ckpt
    if run is not None:
        config, names = OmegaConf.create(run["config"]), run["class_names"]  # checked by read_file
    elif folder is not None:  # as saved: ${hydra:...} keys do not resolve outside the run
        source = folder / RUN_CONFIG
        config = OmegaConf.create(run_config(source))
        names = data_class_names(config, source)
    else:
        config, names = OmegaConf.create({k: contents["hyper_parameters"][k] for k in ("model", "optim")}), None
    if names is None:
        warnings.warn(f"{ckpt}: no class names stored with it or found in its run's data: "
                      f"class_names are the class indices")
        names = [str(i) for i in range(net.classifier.fc8.out_features)]
    return Trained(net, config, names, source)


def data_class_names(config: DictConfig, source: Path) -> list[str] | None:
    """The class names of the data of a run config read from ``source``, if its data can still
    be found."""
    try:
        datamodule = build_datamodule(OmegaConf.to_container(config.data, resolve=True), source)
        datamodule.setup("predict")
    except UntrustedFile:
        raise
    except (OSError, ValueError):
        return None
    return getattr(datamodule, "class_names", None)
