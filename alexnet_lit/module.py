"""The LightningModule: cross-entropy on fc8's logits, SGD with the paper's recipe, and
top-1 / top-5 error (Section 6) on train and validation."""
import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, MetricCollection
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

    ``channels_last`` and ``compile`` (conf/speed) change how fast, not what, it computes.
    """

    def __init__(self, model: dict, optim: dict, val_views: list[str] = ("center",),
                 channels_last: bool = False, compile: bool = False):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train.py logs the whole resolved config
        self.net: nn.Module = instantiate(model)
        num_classes = self.net.classifier.fc8.out_features
        self.num_params = sum(p.numel() for p in self.net.parameters())
        self.train_metrics = error_metrics(num_classes, "train/")
        self.val_metrics = nn.ModuleList(
            error_metrics(num_classes, "val/" if i == 0 else f"val_{name}/")
            for i, name in enumerate(val_views))
        # mean loss over images, summed exactly across processes (Lightning's sync_dist mean
        # truncates the image count when processes hold different numbers of images)
        self.val_losses = nn.ModuleList(MeanMetric() for _ in val_views)

    def configure_model(self) -> None:
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.compile:
            self.net.compile()  # in place: checkpoints keep the plain parameter names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_metrics.update(logits.detach(), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    # Logged once an epoch, not every step: a self.log call costs about a millisecond, as
    # much as a whole training step of experiment=tiny (benchmarks/train_throughput.py).
    def on_train_epoch_start(self) -> None:
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])  # in effect this epoch

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

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
        self.val_losses[dataloader_idx].update(loss, weight=len(labels))
        self.log(f"{metrics.prefix}loss", self.val_losses[dataloader_idx], add_dataloader_idx=False)
        self.log_dict(metrics, add_dataloader_idx=False)

    def configure_optimizers(self):
        settings = dict(self.hparams.optim)
        schedule = settings.pop("scheduler")
        optimizer = build_optimizer(self.parameters(), **settings)
        return dict(optimizer=optimizer, lr_scheduler=build_scheduler(optimizer, **schedule))
