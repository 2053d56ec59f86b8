"""The LightningModule: cross-entropy on fc8's logits, SGD with the paper's recipe, and
top-1 / top-5 error (Section 6) on train and validation."""
import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lit.optim import build_optimizer, build_scheduler


class TopKError(MulticlassAccuracy):
    """1 - top-k accuracy: the error rate the paper reports."""

    def compute(self) -> torch.Tensor:
        return 1 - super().compute()


def error_metrics(num_classes: int, prefix: str) -> MetricCollection:
    top5 = min(5, num_classes)
    return MetricCollection({
        "top1_err": TopKError(num_classes=num_classes, top_k=1, average="micro"),
        f"top{top5}_err": TopKError(num_classes=num_classes, top_k=top5, average="micro"),
    }, prefix=prefix)


class AlexNetModule(L.LightningModule):
    """``model``: the network's config (with ``_target_``); ``optim``: conf/optim.

    ``val_views`` names the validation loaders in order; the first logs as ``val/...``,
    the others as ``val_<name>/...``. A batch of shape (B, V, C, H, W) is V views of each
    image (ten-crop, Section 4.1): their softmax outputs are averaged.
    """

    def __init__(self, model: dict, optim: dict, val_views: list[str] = ("center",)):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train.py logs the whole resolved config
        self.net: nn.Module = instantiate(model)
        num_classes = self.net.classifier.fc8.out_features
        self.num_params = sum(p.numel() for p in self.net.parameters())
        self.train_metrics = error_metrics(num_classes, "train/")
        self.val_metrics = nn.ModuleList(
            error_metrics(num_classes, "val/" if i == 0 else f"val_{name}/")
            for i, name in enumerate(val_views))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_metrics.update(logits.detach(), labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels = batch
        if images.dim() == 5:  # (B, V, C, H, W): average the V views' softmax outputs
            b, v = images.shape[:2]
            probs = F.softmax(self(images.flatten(0, 1)), dim=1).view(b, v, -1).mean(1)
            loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels)
            scores = probs
        else:
            scores = self(images)
            loss = F.cross_entropy(scores, labels)
        metrics = self.val_metrics[dataloader_idx]
        metrics.update(scores, labels)
        self.log(f"{metrics.prefix}loss", loss, sync_dist=True, add_dataloader_idx=False)
        self.log_dict(metrics, add_dataloader_idx=False)

    def configure_optimizers(self):
        settings = dict(self.hparams.optim)
        schedule = settings.pop("scheduler")
        optimizer = build_optimizer(self.parameters(), **settings)
        return dict(optimizer=optimizer, lr_scheduler=build_scheduler(optimizer, **schedule))
