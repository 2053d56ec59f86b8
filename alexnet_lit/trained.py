"""A trained network read back, in one place: ``alexnet_lit.load(run)`` (:func:`load`, a
:class:`Trained`) and what the commands that use one read (evaluate, predict, figures): its
network from a checkpoint of ours (rebuilt through alexnet_lit.trust) or a plain state dict, an
ensemble of several (Section 6: the predictions of similar CNNs averaged), the run folder it came
from, the data it was trained on, and its evaluation preprocessing and class probabilities of
images. The checkpoint file itself is read and checked by alexnet_lit.weights."""
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from torch.nn import functional as F

from alexnet_lit.build import build_datamodule, build_module
from alexnet_lit.checks import checkpoint_file
from alexnet_lit.data.decode import resize_centre_crop, to_rgb
from alexnet_lit.data.views import PaperViews
from alexnet_lit.module import AlexNetModule, crop_logits, view_log_probabilities
from alexnet_lit.callbacks import CheckpointRun
from alexnet_lit.trust import NETWORKS, UntrustedFile, checked, rebuild, run_config, settings
from alexnet_lit.weights import fit_weights, network_weights, read_file

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


def load_module(contents: dict, source: str | Path, val_views: list[str] | None = None) -> AlexNetModule:
    """The module of a checkpoint of ours (its ``torch.load``-ed ``contents``, read from
    ``source``): the network rebuilt from the config saved in it through the project's own
    classes (alexnet_lit.trust: nothing the file names is called), with its weights;
    ``val_views`` replaces the saved ones."""
    saved = checked(contents["hyper_parameters"], source, "hyper_parameters")
    unknown = sorted(set(saved) - (settings(AlexNetModule) - {"net"}))
    if unknown:
        raise UntrustedFile(f"{source}: hyper_parameters.{unknown[0]} is not a setting of AlexNetModule")
    if val_views is not None:
        saved["val_views"] = list(val_views)
    net = rebuild(saved["model"], NETWORKS, source, "hyper_parameters.model")
    module = AlexNetModule(net=net, **saved)
    module.net.load_state_dict(network_weights(contents))
    return module


def load_member(path: str, cfg: DictConfig) -> AlexNetModule:
    """A network to evaluate on ``cfg.data.val_views``: one of our checkpoints (or its run
    folder), built from the network config inside it, or a plain state dict loaded into
    ``cfg.model``'s network."""
    contents = read_file(checkpoint_file(path))
    if "hyper_parameters" in contents:
        return load_module(contents, path, val_views=list(cfg.data.val_views))
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


def run_folder_of(ckpt: str) -> Path | None:
    """The training run folder of a checkpoint in its checkpoints/ folder (or the folder
    itself), if it is one."""
    folder = checkpoint_file(ckpt).resolve().parent.parent
    return folder if (folder / RUN_CONFIG).is_file() else None


def data_config(cfg: DictConfig, ckpt: str) -> tuple[dict, Path | None]:
    """The data to evaluate on, and the file it was read from (None for the composed config):
    the training run's (its .hydra/config.yaml, checked: alexnet_lit.trust) unless a ``data=``
    group is chosen or there is no run folder, then the composed ``data``; the command line's
    ``data.*`` overrides apply on top, and ``data.val_views`` is always the command's, and no
    training images are scored beside the split."""
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    run, source = run_folder_of(ckpt), None
    if run is None or any(o.key_or_group == "data" for o in overrides):
        data = cfg.data
    else:
        source = run / RUN_CONFIG
        data = OmegaConf.create(run_config(source)).data
        for o in overrides:
            if o.key_or_group.startswith("data."):
                if o.is_delete():
                    raise ValueError(f"{o.input_line}: evaluate cannot delete a key of the run's data")
                OmegaConf.update(data, o.key_or_group[len("data."):], o.value(), force_add=True)
    data = OmegaConf.to_container(data, resolve=True)
    data["val_views"] = list(cfg.data.val_views)
    data["train_eval_images"] = 0  # training's own overfitting measure: evaluate scores its split only
    return data, source


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
    data, source = data_config(cfg, str(cfg.ckpt))
    check_classes(module, data, str(cfg.ckpt))
    datamodule = build_datamodule(data, source)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return module, datamodule


def class_probabilities(net: nn.Module, views: PaperViews, images: torch.Tensor, view: str) -> torch.Tensor:
    """Softmax outputs (B, classes) of uint8 (B, S, S, 3) images: of the centre crop, or the
    mean over the ten crops (Section 4.1)."""
    with torch.inference_mode():
        return view_log_probabilities(crop_logits(net, views(images, view)), view).exp()


class EvaluationTransform:
    """A run's evaluation preprocessing of one image, as torchvision's ``weights.transforms()``:
    a PIL image, or a uint8 tensor (3, H, W) as ``torchvision.io.decode_image`` gives, made 8-bit
    RGB, its shorter side brought to the data's image_size and the central square kept
    (docs/paper.md "Data"), then the centre crop normalised as the run's data was
    (``data.normalize``): float (3, crop, crop)."""

    def __init__(self, views: PaperViews, image_size: int, exif_orientation: str = "ignore"):
        self.views, self.image_size, self.exif_orientation = views, image_size, exif_orientation

    def pixels(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """uint8 (S, S, 3), as the data's loader workers hand an image over."""
        if isinstance(image, torch.Tensor):
            image = Image.fromarray(image.permute(1, 2, 0).numpy())
        return torch.from_numpy(resize_centre_crop(to_rgb(image, self.exif_orientation), self.image_size))

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        return self.views(self.pixels(image)[None], "center")[0]


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
