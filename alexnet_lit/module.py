"""The LightningModule: cross-entropy on fc8's logits, SGD with the paper's recipe, and
top-1 / top-5 error (Section 6) on train and validation."""
import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lit.data.views import TENCROP_CENTRE
from alexnet_lit.optim import build_optimizer, build_scheduler
from alexnet_lit.probes import LayerActivity


class TopKError(MulticlassAccuracy):
    """1 - top-k accuracy: the error rate the paper reports."""

    def compute(self) -> torch.Tensor:
        return 1 - super().compute()


def error_metrics(num_classes: int, prefix: str) -> MetricCollection:
    top5 = min(5, num_classes)
    return MetricCollection({
        "top1_err": TopKError(num_classes=num_classes, top_k=1, average="micro"),
        f"top{top5}_err": TopKError(num_classes=num_classes, top_k=top5, average="micro"),
    }, prefix=prefix, compute_groups=False)  # each metric keeps its own state (checkpoints)


class AlexNetModule(L.LightningModule):
    """``net``: the network, ready (alexnet_lit.build makes it from conf/model); ``optim``:
    conf/optim; ``model``: the network's config, kept in checkpoints so that
    alexnet_lit.build.load_module rebuilds the network.

    ``val_views`` names the evaluation views (``center``, ``tencrop``); the first logs as
    ``val/...``, the others as ``val_<name>/...``. A validation batch of shape
    (B, 10, C, H, W) holds the ten crops of each image (Section 4.1): ``tencrop`` averages
    their softmax outputs, ``center`` scores the centre one, from the same forward pass.

    ``channels_last`` and ``compile`` (conf/speed) change how fast, not what, it computes.
    """

    def __init__(self, net: nn.Module, optim: dict, val_views: list[str] = ("center",),
                 channels_last: bool = False, compile: bool = False, model: dict | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)  # train.py logs the whole resolved config
        self.net = net
        num_classes = self.net.classifier.fc8.out_features
        size = self.net.input_size  # one crop: the run's model summary shows shapes and FLOPs
        self.example_input_array = torch.zeros(1, 3, size, size)
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
    # Not LearningRateMonitor: it logs at the epoch's start under another name than ``lr``,
    # which figures and reports read.
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.epoch_lr = self.trainer.optimizers[0].param_groups[0]["lr"]  # also in a resumed epoch

    def on_train_epoch_end(self) -> None:
        self.log("lr", self.epoch_lr)  # the epoch's: epoch schedules may have stepped by now
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        with LayerActivity(self.net, enabled=batch_idx == 0) as activity:
            if images.dim() == 5:  # (B, 10, C, H, W): the ten crops, one forward pass
                logits = self(images.flatten(0, 1)).unflatten(0, images.shape[:2])
            else:
                logits = self(images)[:, None]
        self.log_dict(activity.stats)  # LRN's divisor and dead units, from the first batch
        for view, metrics, mean_loss in zip(self.hparams.val_views, self.val_metrics, self.val_losses):
            if view == "tencrop":  # the softmax outputs averaged
                scores = F.softmax(logits, dim=2).mean(1)
                loss = F.nll_loss(scores.clamp_min(1e-12).log(), labels)
            else:
                scores = logits[:, TENCROP_CENTRE if logits.shape[1] > 1 else 0]
                loss = F.cross_entropy(scores, labels)
            metrics.update(scores, labels)
            mean_loss.update(loss, weight=len(labels))
            self.log(f"{metrics.prefix}loss", mean_loss)
            self.log_dict(metrics)

    def configure_optimizers(self):
        settings = dict(self.hparams.optim)
        schedule = settings.pop("scheduler")
        optimizer = build_optimizer(self.parameters(), **settings)
        scheduler = build_scheduler(optimizer, **schedule)
        return optimizer if scheduler is None else dict(optimizer=optimizer, lr_scheduler=scheduler)
