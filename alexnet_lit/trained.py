"""A finished run, read back for the commands that use one (evaluate, predict, figures) and for
``alexnet_lit.api.load``: its network from a checkpoint of ours or a plain state dict, an
ensemble of several (Section 6: the predictions of similar CNNs averaged), the run folder it came
from, the data it was trained on, and its evaluation preprocessing and class probabilities of
images."""
import math
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from torch.nn import functional as F

from alexnet_lit.build import build_datamodule, build_module, load_module
from alexnet_lit.checks import checkpoint_file
from alexnet_lit.data.decode import resize_centre_crop, to_rgb
from alexnet_lit.data.views import PaperViews
from alexnet_lit.module import AlexNetModule, crop_logits, view_log_probabilities
from alexnet_lit.trust import run_config
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
