"""The network in one call, from the configs the commands compose (docs/python.md):

    net = alexnet_lit.alexnet(["no_lrn", "one_tower"], num_classes=10, seed=0)

is, parameter for parameter, the network ``python -m alexnet_lit.train
+ablation=[no_lrn,one_tower] data.num_classes=10 seed=0`` trains. ``alexnet_lit.load(run)``
(alexnet_lit.trained) gives a finished run's network with its config and class names.
"""
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf, open_dict
from torch import nn

from alexnet_lit.build import CONFIG_DIR, build_network, train_config
from alexnet_lit.checks import check_ablation_name
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
