"""Network weights from a file, without the rest of a run: one of our Lightning checkpoints,
a state dict of our AlexNet, or torchvision's ``alexnet`` state dict (its layer numbers
renamed to conv1..fc8). Used by ``init_from=PATH`` and by ``evaluate`` on a plain state dict."""
import pickle
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from alexnet_lit.callbacks import CheckpointRun
from alexnet_lit.trust import BUILT, checked

# torchvision.models.alexnet: features.{0,3,6,8,10} are conv1..conv5, classifier.{1,4,6} fc6..fc8
TORCHVISION_NAMES = {"features.0": "features.conv1", "features.3": "features.conv2",
                     "features.6": "features.conv3", "features.8": "features.conv4",
                     "features.10": "features.conv5", "classifier.1": "classifier.fc6",
                     "classifier.4": "classifier.fc7", "classifier.6": "classifier.fc8"}


class CheckpointError(ValueError):
    """A checkpoint or state dict file that cannot be used; the message names it, says what is
    wrong with it and what to do."""


START_OVER = ("to start the run afresh in its folder, ckpt_path=null (its results.json and "
              "csv/metrics.csv start again too); to go on from another checkpoint, ckpt_path=PATH")


def _zipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def damage(path: Path) -> str | None:
    """What is wrong with the file's bytes, if anything: empty, truncated, not a PyTorch
    file, or a record whose CRC does not match (bytes overwritten). A file of torch.save's
    zip format is checked whole; one of its older format can only be read."""
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    if not _zipped(path):
        return None  # torch.load says whether it is a PyTorch file of the older format
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"truncated ({size} bytes; {err})"
    return f"damaged: its record {bad} fails its CRC check (bytes overwritten)" if bad else None


def read_file(path: str | Path, mmap: bool = False) -> dict:
    """What ``torch.load`` finds in ``path`` (tensors and plain containers only: no pickled
    code runs; ``mmap``: tensors mapped, not read), checked whole first (:func:`damage`); a
    :class:`CheckpointError` names the file and what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint or state dict file")
    problem = damage(path)
    if problem:
        raise CheckpointError(f"{path}: unreadable checkpoint, {problem}; {START_OVER}")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True, mmap=(mmap and _zipped(path)) or None)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError) as err:
        # torch's message advises weights_only=False, the unsafe step on a file from elsewhere: not repeated
        found = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), None)
        if found:
            raise CheckpointError(f"{path}: refused: it holds Python objects beyond tensors and plain values "
                                  f"({found}); a checkpoint of this project never needs weights_only=False, "
                                  "and a file from elsewhere must never be loaded with it") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or state dict ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); {START_OVER}") from None
    if not isinstance(contents, dict):
        raise CheckpointError(f"{path}: holds a {type(contents).__name__}, expected a state dict")
    check_configs(contents, path)
    return contents


def check_configs(contents: dict, path: Path) -> None:
    """A checkpoint's network and data configs (its hyper-parameters, its run record's ``model``
    and ``data``) are data: plain values, and no ``_target_`` but this project's
    (alexnet_lit.trust), whatever reads the file. The record's other nodes (callbacks, a user's
    own among them) are never built from a file."""
    if "hyper_parameters" in contents:
        checked(contents["hyper_parameters"], path, "hyper_parameters")
    config = (contents.get(CheckpointRun.KEY) or {}).get("config") or {}
    for node in BUILT:
        if node in config:
            checked(config[node], path, f"{CheckpointRun.KEY}.config.{node}")


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
