"""Network weights from a file, without the rest of a run: one of our Lightning checkpoints,
a state dict of our AlexNet, or torchvision's ``alexnet`` state dict (its layer numbers
renamed to conv1..fc8). Used by ``init_from=PATH`` and by ``evaluate`` on a plain state dict."""
import pickle
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

# torchvision.models.alexnet: features.{0,3,6,8,10} are conv1..conv5, classifier.{1,4,6} fc6..fc8
TORCHVISION_NAMES = {"features.0": "features.conv1", "features.3": "features.conv2",
                     "features.6": "features.conv3", "features.8": "features.conv4",
                     "features.10": "features.conv5", "classifier.1": "classifier.fc6",
                     "classifier.4": "classifier.fc7", "classifier.6": "classifier.fc8"}


def read_file(path: str | Path) -> dict:
    """What ``torch.load`` finds in ``path`` (tensors and plain containers only: no pickled
    code runs), with an error naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint or state dict file")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: not a PyTorch checkpoint or state dict ({err})") from err
    if not isinstance(contents, dict):
        raise ValueError(f"{path}: holds a {type(contents).__name__}, expected a state dict")
    return contents


def network_weights(contents: dict) -> dict[str, torch.Tensor]:
    """The network's parameters under our names (``features.conv1.weight`` ...), from a
    Lightning checkpoint of AlexNetModule (its ``net.`` entries) or a state dict."""
    if "state_dict" in contents:
        contents = {k[len("net."):]: v for k, v in contents["state_dict"].items() if k.startswith("net.")}
    weights = {}
    for key, value in contents.items():
        layer, _, param = key.rpartition(".")
        weights[f"{TORCHVISION_NAMES.get(layer, layer)}.{param}"] = value
    return weights


def _layer(key: str) -> str:
    return key.rpartition(".")[0].rpartition(".")[2]  # features.conv1.weight -> conv1


def load_weights(net: nn.Module, path: str | Path, strict: bool = False) -> list[str]:
    """Copy every parameter of ``path`` whose name and shape match into ``net``; returns the
    layers that did not match (a warning names each). ``strict``: any mismatch is an error."""
    return fit_weights(net, read_file(path), path, strict)


def fit_weights(net: nn.Module, contents: dict, path: str | Path, strict: bool = False) -> list[str]:
    """:func:`load_weights` from the ``contents`` of ``path``, already read."""
    source, target = network_weights(contents), net.state_dict()
    problems = {}  # layer -> what is wrong with it (its first parameter that does not fit)
    for key, value in target.items():
        if key not in source:
            problems.setdefault(_layer(key), f"{_layer(key)}: not in the file")
        elif source[key].shape != value.shape:
            problems.setdefault(_layer(key), f"{_layer(key)}: {key.rpartition('.')[2]} of shape "
                                             f"{tuple(source[key].shape)} in the file, {tuple(value.shape)} here")
    for key in source.keys() - target.keys():
        problems.setdefault(_layer(key), f"{key}: in the file, not in this network")
    matched = {k: v for k, v in source.items() if k in target and _layer(k) not in problems}
    if not matched or (strict and problems):
        raise ValueError(f"{path} does not fit this network (model=...): "
                         + "; ".join(problems.values()))
    net.load_state_dict(matched, strict=False)
    if problems:
        loaded = list(dict.fromkeys(_layer(k) for k in target if k in matched))
        rank_zero_warn(f"{path}: loaded {', '.join(loaded)}; left as initialised: "
                    + "; ".join(problems.values()))
    return sorted(problems)
