"""Weights & Biases for ablation sweeps (``logger=wandb``).

One W&B run per training job (and per ``evaluate`` or ``figures`` command): grouped by the sweep, ``job_type`` the ablation names, one
tag per switched-off component, the resolved config with the parameter count, the metrics,
a grid of augmented training images at the start (Section 4.1) and the conv1 kernels at the
end (Figure 3). Only global rank 0 talks to W&B. Without an API key or a reachable server
the run is written offline, with a one-line notice, for ``wandb sync`` later.
"""
import logging
import netrc
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from alexnet_lit.checkpointing.faults import last_checkpoint_path
from alexnet_lit.inspect.pictures import conv1_towers, image_grid
from alexnet_lit.private_api import forget_wandb_run, wandb_init_settings, wandb_run_if_started
from alexnet_lit.writing import replace_text

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.wandb.ai"


def sweep_group() -> str | None:
    """The W&B group of this job: its multirun folder (relative to the working directory
    when below it, as passed to ``python -m alexnet_lit.report``); None for a single run."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(HydraConfig.get().sweep.dir).resolve()
    return str(sweep_dir.relative_to(Path.cwd()) if sweep_dir.is_relative_to(Path.cwd()) else sweep_dir)


def offline_reason(base_url: str, timeout_s: float = 3.0) -> str | None:
    """Why a run cannot go online (no API key, server unreachable), or None if it can try."""
    url = urlsplit(base_url)
    if not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE")):
        try:
            found = netrc.netrc(os.environ.get("NETRC")).authenticators(url.hostname) is not None
        except (OSError, netrc.NetrcParseError):
            found = False
        if not found:
            return "no API key in WANDB_API_KEY or ~/.netrc"
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout_s).close()
    except OSError as error:
        return f"{base_url} unreachable ({error})"
    return None


RUN_ID = "wandb_run_id"  # in the run folder: a job resumed there continues its own W&B run


class WandbTracker(WandbLogger):
    """Lightning's WandbLogger with the sweep's metadata, an offline fallback and, with
    ``log_model``, last.ckpt logged beside best.ckpt.

    ``group`` defaults to :func:`sweep_group`; :func:`wandb_runs` sets ``job_type`` (unless
    given) to the ablation names joined by ``+`` and adds one tag per name to ``tags``.
    A job resumed in its run folder continues the W&B run of its first attempt (its id is
    kept in ``RUN_ID`` there). ``mode`` is ``online``, ``offline`` or ``disabled``; ``None`` honours ``WANDB_MODE`` if
    set and otherwise goes online only when :func:`offline_reason` finds nothing against it
    and ``wandb.init`` succeeds within ``init_timeout_s``. ``samples`` training images go
    into the grid logged at the start.
    """

    def __init__(self, project: str, entity: str | None = None, group: str | None = None,
                 job_type: str | None = None, tags: list[str] = (), mode: str | None = None,
                 init_timeout_s: float = 30.0, samples: int = 32, **kwargs):
        import wandb

        super().__init__(project=project, entity=entity, group=group or sweep_group(),
                         job_type=job_type, tags=list(tags),
                         settings=wandb.Settings(init_timeout=init_timeout_s), **kwargs)
        self.mode, self.samples = mode, samples
        self.log_checkpoints = kwargs.get("log_model", False)
        self.last_checkpoint: Path | None = None  # set by TrainingMedia

    def describe(self, ablation: list[str]) -> None:
        """Name the run after its ablations; call before the run starts."""
        settings = wandb_init_settings(self)
        settings["job_type"] = settings["job_type"] or "+".join(ablation)
        settings["tags"] = [*ablation, *settings["tags"]]

    @property
    def experiment(self):
        if wandb_run_if_started(self) is None and rank_zero_only.rank == 0:
            self._start_run()
        return super().experiment

    def _start_run(self) -> None:
        import wandb

        mode = self.mode or os.environ.get("WANDB_MODE")
        automatic, reason = mode is None, None
        if automatic:
            reason = offline_reason(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL))
            mode = "offline" if reason else "online"
        settings = wandb_init_settings(self)
        settings["mode"] = mode
        id_file = Path(self.save_dir or ".") / RUN_ID
        if id_file.is_file():  # an attempt of this job ran before: continue its W&B run
            settings.update(id=id_file.read_text().strip(), resume="allow")
        try:
            run = super().experiment
        except wandb.errors.Error as error:
            if not automatic or mode != "online":
                raise
            reason = f"wandb.init failed: {str(error).splitlines()[0]}"
            settings["mode"] = "offline"
            run = super().experiment
        id_file.parent.mkdir(parents=True, exist_ok=True)
        replace_text(id_file, run.id)
        if reason:
            run_dir = Path(run.dir).parent
            log.warning(f"W&B offline ({reason}): run saved in {run_dir}; upload it later with "
                        f"`wandb sync {run_dir}`")

    def finalize(self, status: str) -> None:
        """At a successful end, with ``log_model``: Lightning's logger logs the ModelCheckpoint's
        best.ckpt as the run's model artifact (aliases ``best``, ``latest``); last.ckpt, what a
        resumed run continues from, is added as a version of it with the alias ``last``."""
        super().finalize(status)
        last = self.last_checkpoint
        if (status != "success" or not self.log_checkpoints or wandb_run_if_started(self) is None
                or last is None or not last.is_file()):
            return
        import wandb

        artifact = wandb.Artifact(f"model-{self.experiment.id}", type="model",
                                  metadata={"original_filename": last.name})
        artifact.add_file(str(last), name="model.ckpt")
        self.experiment.log_artifact(artifact, aliases=["last"])

    def finish(self, exit_code: int) -> None:
        """End this run (exit code 1 marks it failed), so the next job opens its own."""
        run = wandb_run_if_started(self)
        if run is not None:
            run.finish(exit_code=exit_code)
            forget_wandb_run(self)


@contextmanager
def wandb_runs(loggers: list, meta: dict):
    """Around one job: each W&B tracker among ``loggers`` starts a run named after
    ``meta["ablation"]`` and ends it with the job, marked failed if the job raised.

    (Lightning's WandbLogger leaves its run open: the next job of a multirun in the same
    process would log into it.)"""
    trackers = [lg for lg in loggers if isinstance(lg, WandbTracker)]
    for tracker in trackers:
        tracker.describe(meta["ablation"])
    try:
        yield
    except BaseException:
        for tracker in trackers:
            tracker.finish(exit_code=1)
        raise
    for tracker in trackers:
        tracker.finish(exit_code=0)


@contextmanager
def command_tracker(cfg: DictConfig, job_type: str):
    """With ``logger=wandb``, a W&B run for a command that reads finished runs (``evaluate``,
    ``figures``; ``job_type`` unless logger.wandb.job_type is set), holding its config and
    ended with it: yields its tracker, or None without ``logger=wandb``."""
    settings = (cfg.get("logger") or {}).get("wandb")
    if settings is None:
        yield None
        return
    tracker = instantiate(settings, job_type=settings.job_type or job_type)
    with wandb_runs([tracker], {"ablation": []}):
        tracker.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        yield tracker


class TrainingMedia(Callback):
    """Logs to ``tracker``: the first training batch as the network sees it (random crop,
    flip, PCA colour noise, centred) and, at the end, conv1's kernels, one picture per tower
    (Figure 3: in the paper one tower's are colour-agnostic, the other's colour-specific)."""

    def __init__(self, tracker: WandbTracker):
        self.tracker = tracker

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tracker.last_checkpoint = last_checkpoint_path(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        if trainer.global_step == batch_idx == 0 and trainer.is_global_zero and self.tracker.samples:
            images = batch[0][: self.tracker.samples]
            self.tracker.log_image("samples/train", [image_grid(images, nrow=8)], step=0, caption=[
                f"{len(images)} augmented training images, each rescaled to 0..1"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        towers = conv1_towers(pl_module.net, pl_module.hparams.model["towers"])
        self.tracker.log_image(
            "conv1/kernels", [image_grid(t, nrow=8, zoom=4) for t in towers], step=trainer.global_step,
            caption=[f"tower {i + 1}: conv1 kernels {i * len(t)}..{(i + 1) * len(t) - 1}"
                     for i, t in enumerate(towers)])


def media_callbacks(loggers: list) -> list[Callback]:
    """The :class:`TrainingMedia` callback for each W&B tracker among ``loggers``."""
    return [TrainingMedia(lg) for lg in loggers if isinstance(lg, WandbTracker)]
