"""The LightningModule: cross-entropy on fc8's logits, SGD with the paper's recipe, and
top-1 / top-5 error (Section 6) on train and validation."""
import math
import warnings

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from alexnet_lit.data.folder import HELD_OUT, OFFICIAL, TRAIN_EVAL
from alexnet_lit.data.views import TENCROP_CENTRE
from alexnet_lit.optim import build_optimizer, build_scheduler
from alexnet_lit.inspect.probes import DeadUnits, LayerActivity, relu_units

# A validation cut short (trainer.limit_val_batches, debug=limit) may reach no image of a stream:
# its keys are NaN and AlexNetModule.on_validation_epoch_end says which; torchmetrics' warning
# about a metric computed before any update would only repeat it, twice a key.
warnings.filterwarnings("ignore", message=r"The ``compute`` method of metric \w+ was called before the ``update``")


class TopKError(MulticlassAccuracy):
    """1 - top-k accuracy: the error rate the paper reports; NaN where no image was scored
    (not the 1.0 that accuracy's 0 of none would give)."""

    def compute(self) -> torch.Tensor:
        scored = (self.tp + self.fn).sum()
        return torch.where(scored > 0, 1 - super().compute(), torch.nan)


# The streams validation scores apart where it holds more than the data set's own images
# (alexnet_lit.data.folder.ScoredImages), by the prefix their metrics log under.
STREAMS = {"val_official": OFFICIAL, "val_held_out": HELD_OUT, "train_eval": TRAIN_EVAL}


def view_prefix(index: int, view: str) -> str:
    """Where a validation view's metrics log: the first view as ``val/...``, the others as
    ``val_<view>/...``."""
    return "val/" if index == 0 else f"val_{view}/"


def crop_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The logits (B, V, classes) of a batch's crops in one forward pass: (B, 10, C, H, W) holds
    each image's ten crops (Section 4.1), (B, C, H, W) one crop an image (V = 1)."""
    if images.dim() == 5:
        return net(images.flatten(0, 1)).unflatten(0, images.shape[:2])
    return net(images)[:, None]


def view_log_probabilities(logits: torch.Tensor, view: str) -> torch.Tensor:
    """A view's log class probabilities of each image (B, classes) from its crops' logits
    (B, V, classes): ``tencrop`` averages the ten crops' softmax outputs (Section 4.1),
    ``center`` takes the centre crop's."""
    if view == "tencrop":
        return F.softmax(logits, dim=2).mean(1).clamp_min(1e-12).log()
    return F.log_softmax(logits[:, TENCROP_CENTRE if logits.shape[1] > 1 else 0], dim=1)


def error_metrics(num_classes: int, prefix: str) -> MetricCollection:
    top5 = min(5, num_classes)
    return MetricCollection({
        "top1_err": TopKError(num_classes=num_classes, top_k=1, average="micro"),
        f"top{top5}_err": TopKError(num_classes=num_classes, top_k=top5, average="micro"),
    }, prefix=prefix, compute_groups=False)  # each metric keeps its own state (checkpoints)


class AlexNetModule(L.LightningModule):
    """``net``: the network, ready (alexnet_lit.build makes it from conf/model); ``optim``:
    conf/optim; ``model``: the network's config, kept in checkpoints so that
    alexnet_lit.trained.load_module rebuilds the network.

    ``val_views`` names the evaluation views (``center``, ``tencrop``); the first logs as
    ``val/...``, the others as ``val_<name>/...``. A validation batch of shape
    (B, 10, C, H, W) holds the ten crops of each image (Section 4.1): ``tencrop`` averages
    their softmax outputs, ``center`` scores the centre one, from the same forward pass.
    Where the data module's validation scores more than its data set's own validation images
    (``val_streams``, alexnet_lit.data.folder), ``val/...`` is over all validation images, and
    with the first view ``val_official/...`` over the data set's own, ``val_held_out/...``
    over the held-out training images it holds (a split the plateau rule can monitor,
    ``optim.scheduler.monitor=val_held_out/top1_err``, while the official images are reported),
    ``train_eval/...`` over the training images it scores the same way (centre crop, no colour
    noise, dropout off).

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
            error_metrics(num_classes, view_prefix(i, name))
            for i, name in enumerate(val_views))
        # mean loss over images, summed exactly across processes (Lightning's sync_dist mean
        # truncates the image count when processes hold different numbers of images)
        self.val_losses = nn.ModuleList(MeanMetric() for _ in val_views)
        self.stream_metrics = nn.ModuleDict({prefix: error_metrics(num_classes, f"{prefix}/")
                                             for prefix in STREAMS})
        self.stream_losses = nn.ModuleDict({prefix: MeanMetric() for prefix in self.stream_metrics})
        self.dead_units = nn.ModuleDict({name: DeadUnits(units) for name, units in relu_units(self.net).items()})

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
        images, labels, *streams = batch  # streams: where validation scores more (ScoredImages)
        with LayerActivity(self.net, lrn=batch_idx == 0) as activity:
            logits = crop_logits(self, images)
        self.log_dict(activity.stats)  # LRN's divisor, from the first batch
        for name, active in activity.active.items():
            self.dead_units[name].update(active)
            self.log(f"dead/{name}", self.dead_units[name])
        validation = streams[0] != TRAIN_EVAL if streams else torch.ones_like(labels, dtype=torch.bool)
        for view, metrics, mean_loss in zip(self.hparams.val_views, self.val_metrics, self.val_losses):
            self.score(logits[validation], labels[validation], view, metrics, mean_loss)
        if not streams or self.trainer.sanity_checking:
            return  # the sanity check's first batches hold no other stream: none to compute
        datamodule_streams = self.trainer.datamodule.val_streams
        for prefix, stream in STREAMS.items():
            if stream not in datamodule_streams or (stream == OFFICIAL and HELD_OUT not in datamodule_streams):
                continue  # val/... is the official error where nothing is held out
            chosen = streams[0] == stream
            self.score(logits[chosen], labels[chosen], self.hparams.val_views[0],
                       self.stream_metrics[prefix], self.stream_losses[prefix])

    def on_validation_epoch_end(self) -> None:
        unseen = [prefix for prefix in self.stream_metrics
                  if math.isnan(self.trainer.callback_metrics.get(f"{prefix}/loss", torch.tensor(0.0)))]
        if unseen and not self.trainer.sanity_checking:
            rank_zero_info(f"this validation reached no image of {', '.join(unseen)} (trainer.limit_val_batches="
                           f"{self.trainer.limit_val_batches}), so its keys are NaN")

    def score(self, logits: torch.Tensor, labels: torch.Tensor, view: str, metrics: MetricCollection,
              mean_loss: MeanMetric) -> None:
        """Update ``metrics`` and ``mean_loss`` with a view's scores of these images (none: a
        batch of other streams), and log them: every process logs every key in every batch,
        so the epoch's reduction across processes sees the same keys everywhere."""
        if len(labels):
            log_p = view_log_probabilities(logits, view)
            mean_loss.update(F.nll_loss(log_p, labels, reduction="none"))  # names a label out of range
            metrics.update(log_p, labels)
        self.log(f"{metrics.prefix}loss", mean_loss)
        self.log_dict(metrics)

    def configure_optimizers(self):
        settings = dict(self.hparams.optim)
        schedule = settings.pop("scheduler")
        optimizer = build_optimizer(self.parameters(), **settings)
        scheduler = build_scheduler(optimizer, **schedule)
        return optimizer if scheduler is None else dict(optimizer=optimizer, lr_scheduler=scheduler)
