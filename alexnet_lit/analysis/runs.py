"""A sweep's runs, read from its jobs' ``results.json`` (no network) or from the W&B API:
one :class:`Run` each, with the errors, the setting and the learning verdict the table needs."""
import shlex
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alexnet_lit.layer_table import pool_coverage
from alexnet_lit.results import Conv1Colour, LrnLayer, read_results, shown_override
from alexnet_lit.trust import run_config

PAPER_METRICS = ("val_top1", "val_top5", "train_top1")  # the columns paper_table.csv may judge on


# Our errors, as results.json's ``<name>_err`` and W&B's ``<prefix>/<topk>_err``: the first
METRICS = {"val_top1": "val top-1", "val_top5": "val top-5", "train_top1": "train top-1",
           "train_eval_top1": "clean train top-1", "train_eval_top5": "clean train top-5",
           "val_official_top1": "official val top-1", "val_official_top5": "official val top-5"}
WANDB_STATUS = {"finished": "completed", "running": "running", "failed": "failed",
                "crashed": "failed", "killed": "failed", "preempted": "interrupted"}



@dataclass
class Run:
    """One training job as reports see it: errors are fractions (0.407), None if unknown."""
    ablation: str  # the ablation names joined by '+'
    seed: int | None
    status: str  # running | completed | failed | interrupted
    source: str  # the job folder or W&B run
    val_top1: float | None = None
    val_top5: float | None = None
    train_top1: float | None = None
    train_eval_top1: float | None = None  # the clean training error (scored as validation)
    train_eval_top5: float | None = None
    val_official_top1: float | None = None  # the data set's own validation images, where val holds more
    val_official_top5: float | None = None
    wall_time_s: float | None = None
    learning: str | None = None  # results.json's learning verdict (inspect.learning.learning_verdict)
    collapsed: bool | None = None  # results.json's learning.collapsed
    lrn: dict | None = None  # per LRN layer: the divisor's mean over k ** beta
    setting: dict | None = None  # what the run was (SETTING's keys)
    conv1_colour: Conv1Colour | None = None  # Figure 3's scores, per tower
    lr_drops: list[int] | None = None  # the epochs its learning rate dropped at; None: not recorded
    git_commit: str | None = None  # the commit it ran at, ``-dirty`` with uncommitted changes
    coverage: dict | None = None  # per pool stage: (positions its windows read, positions there)

    @property
    def clean_gap(self) -> float | None:
        """Validation minus clean training top-1 error."""
        if self.val_top1 is None or self.train_eval_top1 is None:
            return None
        return self.val_top1 - self.train_eval_top1


# What a comparison with the paper must state about the runs behind it (the config's keys).
SETTING = {"classes": "data.num_classes", "init": "model.init", "inputs": "data.normalize",
           "crop": "model.input_size", "image size": "data.image_size", "batch": "data.batch_size",
           "lr": "optim.lr", "epochs": "trainer.max_epochs", "views": "data.val_views",
           "towers": "model.towers",
           "positive biases": "model.positive_bias"}


def setting_of(config: dict) -> dict:
    """SETTING's values in a run's resolved config (``.hydra/config.yaml`` or W&B's)."""
    config, values = OmegaConf.create(config), {}
    for name, key in SETTING.items():
        value = OmegaConf.select(config, key, default=None)
        values[name] = ",".join(value) if OmegaConf.is_list(value) else value
    return values


def coverage_of(config: dict | None) -> dict | None:
    """Per pool stage of the run's network, the positions its windows read and those there
    (alexnet_lit.layer_table.pool_coverage), from the config's ``model`` node, resolved; None without one."""
    model = OmegaConf.select(OmegaConf.create(config), "model", default=None) if isinstance(config, dict) else None
    if not OmegaConf.is_dict(model) or "features" not in model:
        return None
    try:
        model = OmegaConf.to_container(model, resolve=True)
        return pool_coverage(model["features"], model["input_size"], model.get("pool"))
    except (OmegaConfBaseException, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"model: not a network's layer table ({type(error).__name__}: {error})") from None


def lrn_ratios(lrn: dict[str, LrnLayer] | None) -> dict | None:
    """Each LRN layer's mean divisor over k ** beta: 1.0 is a constant rescale."""
    if not lrn:
        return None
    return {name: s.divisor_mean / s.k_beta for name, s in lrn.items() if s.divisor_mean and s.k_beta}


def run_from_results(path: Path) -> Run:
    """A job folder's ``results.json`` (alexnet_lit.results.Results) and ``.hydra/config.yaml``;
    a ValueError naming ``path`` where either does not fit."""
    r = read_results(path)
    config_path = path.parent / ".hydra" / "config.yaml"
    try:
        config = run_config(config_path) if config_path.is_file() else None
        coverage = coverage_of(config)
        setting = setting_of(config) if isinstance(config, dict) else None
    except (ValueError, TypeError, OmegaConfBaseException) as error:
        raise ValueError(f"{path}: .hydra/config.yaml: {str(error).removeprefix(f'{config_path}: ')}") from None
    if setting is not None:
        setting["parameters"] = r.params
    return Run("+".join(r.ablation), r.seed, r.status, str(path.parent),
               **{m: getattr(r, f"{m}_err") for m in METRICS}, wall_time_s=r.wall_time_s,
               learning=None if r.learning is None else r.learning.verdict,
               collapsed=None if r.learning is None else r.learning.collapsed, lrn=lrn_ratios(r.lrn),
               setting=setting, conv1_colour=r.conv1_colour,
               lr_drops=None if r.lr_drops is None else [drop.epoch for drop in r.lr_drops],
               git_commit=r.git_commit, coverage=coverage)


def logged_key(metric: str) -> str:
    """The metric's name as training logs it: ``train_eval_top1`` -> ``train_eval/top1_err``."""
    prefix, k = metric.rsplit("_", 1)
    return f"{prefix}/{k}_err"


def run_from_wandb(config: dict, summary: dict, state: str, source: str) -> Run:
    """A W&B run: ``config`` and ``summary`` as the API returns them, ``state`` its run state."""
    lrn = {key.split("/")[1].removesuffix("_divisor_mean"): summary[key] for key in summary
           if key.startswith("lrn/") and key.endswith("_divisor_mean")}
    setting = dict(setting_of(config), parameters=config.get("params"))
    lrn_cfg = (config.get("model") or {}).get("lrn")
    k_beta = lrn_cfg["k"] ** lrn_cfg["beta"] if lrn_cfg else None
    return Run("+".join(config["ablation"]), config.get("seed"), WANDB_STATUS.get(state, state), source,
               **{m: summary.get(logged_key(m)) for m in METRICS}, wall_time_s=summary.get("_runtime"),
               lrn={n: v / k_beta for n, v in lrn.items()} if k_beta and lrn else None, setting=setting,
               coverage=coverage_of(config))


def sweep_runs(sweep_dir: Path) -> tuple[list[Run], dict[Path, str], list[Path]]:
    """The runs of every readable job folder below ``sweep_dir``; each results.json that
    cannot be read, with why; and the job folders (those with a ``.hydra/``) that have no
    results.json: they failed or stopped before training."""
    results = sorted(sweep_dir.rglob("results.json"))
    jobs = {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    runs, unreadable = [], {}
    for path in results:
        try:
            runs.append(run_from_results(path))
        except (OSError, ValueError) as error:
            unreadable[path] = " ".join(str(error).removeprefix(f"{path}: ").split())  # one line
    return runs, unreadable, sorted(jobs - {p.parent for p in results})


def last_attempts(api_runs: list) -> list:
    """One W&B run per job: a job resumed in its folder (after pre-emption or a crash) opens a
    W&B run for every attempt, all with the job's ``run_dir``; its latest one counts."""
    latest = {}
    for r in sorted(api_runs, key=lambda r: r.created_at):
        latest[r.config.get("run_dir") or r.id] = r
    return list(latest.values())


def wandb_sweep_runs(path: str, group: str) -> list[Run]:
    """The runs of W&B group ``group`` in ``path`` (ENTITY/PROJECT), through the W&B API."""
    import wandb

    try:
        api_runs = wandb.Api(timeout=30).runs(path, filters={"group": group})
        return [run_from_wandb(r.config, r.summary_metrics, r.state, r.url) for r in last_attempts(api_runs)]
    except (wandb.errors.Error, OSError) as error:
        raise ValueError(f"--wandb {path} --group {group}: {error}") from None


def multirun_hydra(sweep_dir: Path):
    """The ``hydra`` node of the sweep's multirun.yaml, or None without one."""
    path = sweep_dir / "multirun.yaml"
    return OmegaConf.load(path).hydra if path.is_file() else None


def sweep_command(sweep_dir: Path) -> str | None:
    """The command line that started the sweep, from Hydra's multirun.yaml."""
    hydra = multirun_hydra(sweep_dir)
    if hydra is None:
        return None
    return "python -m alexnet_lit.train -m " + " ".join(shlex.quote(shown_override(o)) for o in hydra.overrides.task)


def sweep_seeds(sweep_dir: Path) -> str | None:
    """The sweep's seeds as its multirun.yaml gives them (``0,1,2``, ``range(0,10)``): the
    command line's ``seed=``, else the preset's ``hydra.sweeper.params.seed``."""
    hydra = multirun_hydra(sweep_dir)
    if hydra is None:
        return None
    given = [o.split("=", 1)[1] for o in hydra.overrides.task if o.startswith("seed=")]
    if given:
        return given[-1]
    preset = OmegaConf.select(hydra, "sweeper.params.seed", default=None)
    return None if preset is None else str(preset)
