"""The ablation table beside the paper's.

    python -m alexnet_lit.report SWEEP_DIR [--bound B]          # the jobs' results.json, no network
    python -m alexnet_lit.report --wandb ENTITY/PROJECT --group G   # the same from the W&B API
    python -m alexnet_lit.report --figure1 SWEEP_DIR            # Figure 1 (alexnet_lit.figure1)

writes ``report.md`` and ``report.png`` (into SWEEP_DIR, or ``--out``): the setting of the runs
(network size, init, inputs, epochs, views, classes), what was fixed before the sweep (seeds,
the equivalence bound B, the collapse rule), ``none``'s clean gap (validation minus clean
training error: the condition for the regularisers' rows to mean anything), then per ablation
our final errors (mean ± sd over seeds, n completed runs, how many collapsed), the change
against ``none`` of the same seed with its paired 95% t-interval (alexnet_lit.stats; runs of
one seed share their random numbers), Welch's unpaired interval over the same runs beside it
with the ratio of their widths, the paper's change (``alexnet_lit/paper_table.csv``, the one
place its numbers live), a verdict from the paired interval (agrees or disagrees where it
excludes 0, no effect beyond ±B where it lies inside ±B, else not resolved), the clean gap,
the error on the data set's own validation images where validation holds more, whether every
run learned, and what LRN did; then each seed's difference and Figure 3's towers (conv1's
colour specificity). A seed where a run of the row or of ``none`` collapsed is left out of
the pairs and named; the collapse rate is a column; a row with a run at chance gets no verdict. Runs still going or failed are counted as such. From W&B the
errors are read from the runs' summaries; collapse and conv1's colours are unknown there.
"""
import argparse
import csv
import json
import shlex
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from alexnet_lit import figure1
from alexnet_lit.results import AT_CHANCE_LOSS, AT_CHANCE_STEPS, DEAD_LAYER, shown, shown_override
from alexnet_lit.stats import Delta, Paired, Stat, paired, split_p_value, verdict, welch

PAPER_TABLE = Path(__file__).resolve().parent / "paper_table.csv"  # package data
PAPER_METRICS = ("val_top1", "val_top5", "train_top1")  # the columns paper_table.csv may judge on
# Our errors, as results.json's ``<name>_err`` and W&B's ``<prefix>/<topk>_err``: the first
# three are in every results.json; the clean training error and the official validation
# error where the run measured them.
METRICS = {"val_top1": "val top-1", "val_top5": "val top-5", "train_top1": "train top-1",
           "train_eval_top1": "clean train top-1", "train_eval_top5": "clean train top-5",
           "val_official_top1": "official val top-1", "val_official_top5": "official val top-5"}
OFFICIAL = ("val_official_top1", "val_official_top5")
REGULARISERS = ("no_dropout", "no_augment", "no_pca", "no_weight_decay")
LEARNED = ("learns", "learns after a loss spike", "collapsed", "unknown")  # not at chance
BOUND = 2.0  # percentage points: the default equivalence bound
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
    learning: str | None = None  # results.json's learning verdict (results.learning_verdict)
    collapsed: bool | None = None  # results.json's learning.collapsed
    lrn: dict | None = None  # per LRN layer: the divisor's mean over k ** beta
    setting: dict | None = None  # what the run was (SETTING's keys)
    conv1_colour: dict | None = None  # results.conv1_colour: Figure 3's scores, per tower


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


def lrn_ratios(lrn: dict | None) -> dict | None:
    """Each LRN layer's mean divisor over k ** beta: 1.0 is a constant rescale."""
    if not lrn:
        return None
    return {name: s["divisor_mean"] / s["k_beta"] for name, s in lrn.items() if s.get("divisor_mean")}


def run_from_results(path: Path) -> Run:
    """A job folder's ``results.json`` (alexnet_lit/results.py) and ``.hydra/config.yaml``."""
    try:
        r = json.loads(path.read_text())
        config = path.parent / ".hydra" / "config.yaml"
        setting = setting_of(OmegaConf.to_container(OmegaConf.load(config))) if config.is_file() else None
        if setting is not None:
            setting["parameters"] = r.get("params")
        learning = r.get("learning") or {}
        return Run("+".join(r["ablation"]), r["seed"], r["status"], str(path.parent),
                   **{m: r[f"{m}_err"] if m in PAPER_METRICS else r.get(f"{m}_err") for m in METRICS},
                   wall_time_s=r["wall_time_s"], learning=learning.get("verdict"),
                   collapsed=learning.get("collapsed"), lrn=lrn_ratios(r.get("lrn")), setting=setting,
                   conv1_colour=r.get("conv1_colour"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    except KeyError as error:
        raise ValueError(f"{path}: no key {error}; written by an older alexnet_lit?") from None


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
               lrn={n: v / k_beta for n, v in lrn.items()} if k_beta and lrn else None, setting=setting)


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
            unreadable[path] = str(error).removeprefix(f"{path}: ")
    return runs, unreadable, sorted(jobs - {p.parent for p in results})


def last_attempts(api_runs: list) -> list:
    """One W&B run per job: a job resumed in its folder (after pre-emption or a crash) opens a
    W&B run for every attempt, all with the job's ``run_dir``; its latest one counts."""
    latest = {}
    for r in sorted(api_runs, key=lambda r: r.created_at):
        latest[r.config.get("run_dir") or r.id] = r
    return list(latest.values())


def wandb_runs(path: str, group: str) -> list[Run]:
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


def paper_table(path: Path = PAPER_TABLE) -> dict[str, dict]:
    """The paper's rows by ablation name. ``paper_top1``/``paper_top5``: the change in
    validation error (percentage points) without the component, for ``none`` the errors
    themselves; ``sign``: the direction the paper reports where it gives no number;
    ``metric``: our column the sign is checked on."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the paper's table is missing (pass --paper CSV)")
    rows = {}
    for row in csv.DictReader(path.open(encoding="utf-8")):
        for key in ("paper_top1", "paper_top5"):
            row[key] = float(row[key]) if row[key] else None
        if row["metric"] not in PAPER_METRICS:
            raise ValueError(f"{path}: row {row['ablation']!r} has metric {row['metric']!r}; "
                             f"expected one of {list(PAPER_METRICS)}")
        rows[row["ablation"]] = row
    return rows


def percent(runs: list[Run], metric: str) -> list[float]:
    """The runs' known values of ``metric``, in percent."""
    return [100 * getattr(r, metric) for r in runs if getattr(r, metric) is not None]


def by_seed(runs: list[Run], metric: str) -> dict[int, float]:
    """``metric`` in percent by seed, for pairing; two runs of one seed are an error."""
    values = {}
    for run in runs:
        if run.seed is None or getattr(run, metric) is None:
            continue
        if run.seed in values:
            raise ValueError(f"two completed `{run.ablation}` runs of seed {run.seed} (one is {run.source}): "
                             "report each sweep on its own")
        values[run.seed] = 100 * getattr(run, metric)
    return values


def overfit_gaps(runs: list[Run], train: str = "train_eval_top1") -> list[float]:
    """Each run's validation minus training top-1 error (points), the clean one by default."""
    return [100 * (r.val_top1 - getattr(r, train)) for r in runs
            if r.val_top1 is not None and getattr(r, train) is not None]


def judged_metric(paper_row: dict | None, runs: list[Run]) -> str:
    """The metric the row's verdict is on: the paper's; for a claim on training error the
    clean training error where every run (of the row and of ``none``) has it."""
    metric = paper_row["metric"] if paper_row else "val_top1"
    if metric == "train_top1" and runs and all(r.train_eval_top1 is not None for r in runs):
        return "train_eval_top1"
    return metric


@dataclass
class Comparison:
    """An arm against ``none`` on one metric: paired over the seeds where neither run
    collapsed, and Welch's on the same runs; ``collapsed``: the seeds left out for a collapse."""
    paired: Paired
    welch: Delta | None
    collapsed: list[int]

    @property
    def ratio(self) -> float | None:
        """The paired interval's width over Welch's: how much pairing narrowed it."""
        p, w = self.paired.delta, self.welch
        if p is None or p.width is None or w is None or not w.width:
            return None
        return p.width / w.width


def compare(arm: list[Run], base: list[Run], metric: str) -> Comparison:
    """``arm`` against ``base`` on ``metric`` over their completed runs' seeds, a seed where
    either run collapsed left out (and named)."""
    collapsed = sorted({r.seed for r in arm + base if r.collapsed and r.seed is not None})
    x = by_seed([r for r in arm if r.seed not in collapsed], metric)
    y = by_seed([r for r in base if r.seed not in collapsed], metric)
    pairs = paired(x, y)
    if not pairs.seeds:
        return Comparison(pairs, None, collapsed)
    return Comparison(pairs, welch(Stat.of([x[s] for s in pairs.seeds]), Stat.of([y[s] for s in pairs.seeds])),
                      collapsed)


def summarise(runs: list[Run], paper: dict[str, dict], bound: float = BOUND) -> list[dict]:
    """One row per ablation that has runs: the paper's order first, then any others
    (combinations)."""
    present = {r.ablation for r in runs}
    names = [n for n in paper if n in present] + sorted(present - set(paper))
    done = {name: [r for r in runs if r.ablation == name and r.status == "completed"] for name in names}
    learned = {name: all((r.learning or "unknown") in LEARNED for r in done[name]) for name in names}
    rows = []
    for name in names:
        arm, base = done[name], done.get("none", [])
        row = dict(ablation=name, paper=paper.get(name), counts=Counter(r.status for r in runs if r.ablation == name),
                   stats={m: Stat.of(percent(arm, m)) for m in METRICS}, gap=Stat.of(overfit_gaps(arm)),
                   collapsed=[r.seed for r in arm if r.collapsed],
                   collapse_known=sum(r.collapsed is not None for r in arm),
                   learning=Counter(r.learning or "unknown" for r in arm), lrn=mean_lrn(arm),
                   judged=judged_metric(paper.get(name), arm + base),
                   comparable=learned[name] and learned.get("none", True),
                   vs_none={m: compare(arm, base, m) for m in METRICS} if name != "none" else {})
        row["verdict"] = agreement(row, bound)
        rows.append(row)
    return rows


def mean_lrn(runs: list[Run]) -> dict[str, float]:
    """Per LRN layer the mean, over the runs, of its divisor over k ** beta."""
    layers = {}
    for run in runs:
        for name, ratio in (run.lrn or {}).items():
            layers.setdefault(name, []).append(ratio)
    return {name: statistics.fmean(v) for name, v in layers.items()}


def expected_sign(paper_row: dict) -> int | None:
    if paper_row is None or paper_row["ablation"] == "none":
        return None
    if paper_row["paper_top1"] is not None:
        return 1 if paper_row["paper_top1"] > 0 else -1
    return {"+": 1, "-": -1}.get(paper_row["sign"])


def agreement(row: dict, bound: float) -> str:
    """The paired interval's verdict (alexnet_lit.stats.verdict) on the row's judged metric,
    named in brackets; ``no verdict`` where a run of the row or of ``none`` ended at chance."""
    sign = expected_sign(row["paper"])
    if sign is None:
        return ""
    metric = row["judged"]
    delta = row["vs_none"][metric].paired.delta
    if delta is None:
        return "no data"
    if not row["comparable"]:
        return f"no verdict: a run did not learn ({METRICS[metric]})"
    return f"{verdict(delta, sign, bound)} ({METRICS[metric]})"


def fmt_stat(stat: Stat | None, digits: int = 1) -> str:
    if stat is None:
        return "—"
    return f"{stat.mean:.{digits}f}" + (f" ± {stat.sd:.{digits}f}" if stat.sd is not None else "")


def fmt_delta(delta: Delta | None) -> str:
    if delta is None:
        return "—"
    interval = f" [{delta.low:+.1f}, {delta.high:+.1f}]" if delta.low is not None else ""
    return f"{delta.value:+.1f}{interval}"


def fmt_paired(row: dict, metric: str) -> str:
    """The paired Δ against ``none`` and its interval ("—" for ``none`` itself)."""
    return fmt_delta(row["vs_none"][metric].paired.delta) if row["vs_none"] else "—"


def fmt_welch(row: dict) -> str:
    """Welch's interval on the judged metric, and how wide the paired one is beside it."""
    if not row["vs_none"]:
        return "—"
    comparison = row["vs_none"][row["judged"]]
    ratio = f" (paired {comparison.ratio:.2f}×)" if comparison.ratio is not None else ""
    return fmt_delta(comparison.welch) + ratio


def fmt_seeds(seeds: list[int]) -> str:
    """Seeds as runs of consecutive numbers: '0-2, 5, 7-9'."""
    spans = []
    for seed in sorted(seeds):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def fmt_pairs(row: dict) -> str:
    """The seeds paired on the judged metric, how many runs had no partner, and the seeds
    left out for a collapse."""
    if not row["vs_none"]:
        return "—"
    comparison = row["vs_none"][row["judged"]]
    pairs = comparison.paired
    parts = [f"seeds {fmt_seeds(pairs.seeds)}" if pairs.seeds else "none"]
    if pairs.left_out:
        parts.append(f"{pairs.left_out} left out")
    if comparison.collapsed:
        parts.append(f"collapsed: {fmt_seeds(comparison.collapsed)}")
    return "; ".join(parts)


def fmt_collapsed(row: dict) -> str:
    return f"{len(row['collapsed'])} of {row['collapse_known']}" if row["collapse_known"] else "—"


def fmt_learning(learning: Counter) -> str:
    """'3 learns', '2 learns, 1 exploded and at chance'."""
    return ", ".join(f"{n} {name}" for name, n in sorted(learning.items(), key=lambda kv: (-kv[1], kv[0])))


def fmt_lrn(lrn: dict[str, float]) -> str:
    return ", ".join(f"{name} {ratio:.2f}" for name, ratio in lrn.items()) if lrn else "off"


def fmt_paper(row: dict, key: str) -> str:
    paper = row["paper"]
    if paper is None:
        return ""
    if paper[key] is None:
        return paper["sign"] if key == "paper_top1" else ""
    return f"{paper[key]:.1f}" if row["ablation"] == "none" else f"{paper[key]:+.1f}"


def fmt_runs(counts: Counter) -> str:
    """Completed runs, then the others by status: '2 (1 running, 1 failed)'."""
    extra = [f"{n} {status}" for status, n in sorted(counts.items()) if status != "completed"]
    return str(counts["completed"]) + (f" ({', '.join(extra)})" if extra else "")


INPUTS = {"paper": "raw RGB minus the mean image (the paper's)",
          "standard": "per-channel standardised (x/255 - mean) / std"}


def setting_lines(runs: list[Run]) -> list[str]:
    """What the runs were, as a comparison with the paper must say: each SETTING key's values
    over the runs (one value where the sweep held it fixed), and the size of ``none``."""
    settings = [r.setting for r in runs if r.setting]
    if not settings:
        return ["Setting: unknown (no run config found)."]
    values = {key: sorted({str(s.get(key)) for s in settings}) for key in SETTING}
    values["inputs"] = [INPUTS.get(v, v) for v in values["inputs"]]
    values["positive biases"] = [v if v != "None" else "the init's" for v in values["positive biases"]]
    size = sorted({s["parameters"] for r, s in zip(runs, settings) if r.ablation == "none" and s.get("parameters")})
    parts = [f"{key} {' / '.join(v)}" for key, v in values.items()]
    lines = ["Setting of our runs: " + "; ".join(parts) + "."]
    if size:
        lines.append(f"The full model (`none`) has {' / '.join(f'{p:,}' for p in size)} parameters "
                     "(the paper's: 60,965,224).")
    lines.append("The paper's numbers are ILSVRC-2012 (1000 classes, 1.2 M images, about 90 epochs), "
                 "its single-CNN errors from ten-crop prediction: top-5 of 1000 classes is a far "
                 "harder task than top-5 of a few, so compare the direction and rough size of "
                 "changes, not errors.")
    return lines


def fixed_line(runs: list[Run], seeds: str | None, bound: float) -> list[str]:
    """What was fixed before the sweep: adding seeds until a verdict appears is optional stopping."""
    found = fmt_seeds({r.seed for r in runs if r.seed is not None}) or "none"
    sweep = f"`{seeds}` (the sweep's), runs found for seeds {found}" if seeds else f"{found} (the runs')"
    return [f"Fixed before the sweep: the seeds, {sweep}; the equivalence bound B = ±{bound:g} points; and "
            f"the collapse rule: a run collapsed where a ReLU layer has more than {DEAD_LAYER:.0%} of its "
            f"units silent on every image its last validation scored, or where its training loss stayed "
            f"above {AT_CHANCE_LOSS:g} ln(classes) for more than {AT_CHANCE_STEPS:.0%} of the steps of its second half "
            "(alexnet_lit.results). Adding seeds until a verdict appears would be optional stopping.", ""]


GAP_TRAINING = {  # the training error a gap is measured against, the first the runs have
    "train_eval_top1": "clean training top-1 error: training images scored as validation scores its own, "
                       "centre crop, no colour noise, dropout off",
    "train_top1": "training top-1 error of the last epoch's augmented batches with dropout on, which "
                  "overstates the error on the training images themselves; no clean one was measured"}


def overfitting_line(runs: list[Run]) -> list[str]:
    """Does ``none`` overfit? Its runs' gap between validation and clean training top-1 error
    (that of augmented, dropped-out batches where no clean one was measured): the regularisers'
    rows mean something only where it is clearly above 0."""
    done = [r for r in runs if r.ablation == "none" and r.status == "completed"]
    regularisers = ", ".join(f"`{name}`" for name in REGULARISERS)
    for train, how in GAP_TRAINING.items():
        if gaps := overfit_gaps(done, train):
            return [f"`none` overfits by {statistics.fmean(gaps):.1f} percentage points (validation minus "
                    f"{how}; {min(gaps):.1f} to {max(gaps):.1f} over {len(gaps)} runs). This gap is the "
                    f"condition for the regularisers' rows ({regularisers}) to mean anything: where it is "
                    "not clearly above 0 there is no overfitting for them to prevent.", ""]
    return []


def header_lines(rows: list[dict], bound: float) -> list[str]:
    """The table's key, and which columns it has."""
    official = " *official val*: the error on the data set's own validation images (validation " \
               "also holds held-out training images)." if any_official(rows) else ""
    return [
        f"Final-epoch error in %, mean ± sd over the n completed runs (seeds). Δ is the change against "
        "`none` of the same seed in percentage points, mean over the seeds both have, with its paired "
        "95% t-interval in brackets (runs of one seed share their data order, augmentation and the "
        "initial weights of every unchanged layer); *Welch* gives the unpaired interval over the same "
        "runs on the verdict's metric and the paired interval's width over Welch's; *pairs*: the "
        "seeds paired and the completed runs left out for want of a partner. The paper's Δ is its "
        "change without the component (its row for `none`: the errors), `+` where it reports only the "
        "direction. *Verdict*, from the paired interval on the metric in brackets: *agrees* or "
        f"*disagrees* where it excludes 0, *no effect beyond ±{bound:g}* where it lies inside "
        f"±{bound:g} points (B), *not resolved* otherwise (also with one pair); a claim on training "
        "error is judged on the clean training error where every run has it. *Clean train*: "
        "training images scored as validation scores its own; *clean gap*: val top-1 minus clean "
        "train top-1. *Collapsed*: runs that collapsed under the rule above (results.json's "
        "`learning.collapsed`): the arm's collapse rate; a seed where the run of the row or of `none` "
        "collapsed is left out of the pairs (named in *pairs*), its runs kept in the means; a row where a run of it or of `none` ended at chance gets no verdict. "
        "*Learning*: each run's verdict from results.json (a loss spike: a training loss above 3 "
        "ln(classes); at chance: final val accuracy within 3 binomial sd of 1/classes). *LRN*: each "
        "LRN layer's mean divisor (k + α Σa²)^β at the last validation over k^β; 1.00 is a constant "
        "rescale." + official, ""]


def any_official(rows: list[dict]) -> bool:
    return any(row["stats"][m] for row in rows for m in OFFICIAL)


COLUMNS = ["ablation", "component switched off", "n", "collapsed", "val top-1 %", "Δ top-1", "paper",
           "val top-5 %", "Δ top-5", "paper", "train top-1 %", "Δ train top-1", "clean train top-1 %",
           "Δ clean train top-1", "clean gap", "verdict", "Welch", "pairs", "learning", "LRN"]
OFFICIAL_COLUMNS = ["official val top-1 %", "Δ official top-1", "official val top-5 %", "Δ official top-5"]


def table_row(row: dict, official: bool) -> str:
    s, paper = row["stats"], row["paper"]
    component = f"{paper['component']} ({paper['section']})" if paper else "combination"
    cells = [f"`{row['ablation']}`", component, fmt_runs(row["counts"]), fmt_collapsed(row),
             fmt_stat(s["val_top1"]), fmt_paired(row, "val_top1"), fmt_paper(row, "paper_top1"),
             fmt_stat(s["val_top5"]), fmt_paired(row, "val_top5"), fmt_paper(row, "paper_top5"),
             fmt_stat(s["train_top1"]), fmt_paired(row, "train_top1"),
             fmt_stat(s["train_eval_top1"]), fmt_paired(row, "train_eval_top1"), fmt_stat(row["gap"]),
             row["verdict"], fmt_welch(row), fmt_pairs(row), fmt_learning(row["learning"]), fmt_lrn(row["lrn"])]
    if official:
        cells += [cell for m in OFFICIAL for cell in (fmt_stat(s[m]), fmt_paired(row, m))]
    return "| " + " | ".join(cells) + " |"


def per_seed_lines(rows: list[dict]) -> list[str]:
    """Each paired seed's difference against ``none`` on the verdict's metric."""
    lines = ["Per-seed differences against `none` (percentage points, on the verdict's metric; a seed "
             "where the run of the row or of `none` collapsed is left out of the pairs):", ""]
    for row in rows:
        if not row["vs_none"]:
            continue
        pairs = row["vs_none"][row["judged"]].paired
        values = ", ".join(f"{seed}: {d:+.1f}" for seed, d in pairs.differences.items())
        lines.append(f"- `{row['ablation']}` ({METRICS[row['judged']]}, {fmt_pairs(row)}): {values or '—'}")
    return lines + [""]


def figure3_lines(runs: list[Run]) -> list[str]:
    """Figure 3 as a claim: in each two-tower run of ``none``, its more and its less
    colour-specific tower, and how often random splits of its conv1 kernels are as far apart."""
    towers = sorted((r for r in runs if r.ablation == "none" and r.status == "completed" and r.conv1_colour
                     and len(r.conv1_colour["tower_means"]) == 2), key=lambda r: (r.seed is None, r.seed))
    if not towers:
        return []
    more = [max(r.conv1_colour["tower_means"]) for r in towers]
    less = [min(r.conv1_colour["tower_means"]) for r in towers]
    p = [split_p_value(r.conv1_colour["kernels"], r.conv1_colour["tower_sizes"][0]) for r in towers]
    lines = ["## Figure 3: conv1's colour specificity per tower", "",
             "The paper: in every run one tower's conv1 kernels are largely colour-agnostic, the other's "
             "colour-specific. Which GPU gets which tower is arbitrary, so each run's towers are compared as "
             "its more and its less colour-specific one (a kernel's share of energy off the grey axis, "
             "alexnet_lit.pictures.colour_specificity, averaged over the tower: 0 grey, 2/3 one channel); "
             "*p*: how often a random split of the same run's conv1 kernels into groups of the towers' "
             "sizes is as far apart (10,000 splits).", "",
             f"`none`, {len(towers)} two-tower runs: the more colour-specific tower {fmt_stat(Stat.of(more), 3)}, "
             f"the less {fmt_stat(Stat.of(less), 3)}, difference "
             f"{fmt_stat(Stat.of([a - b for a, b in zip(more, less)]), 3)}; further apart than random splits "
             f"(p < 0.05) in {sum(x < 0.05 for x in p)} of {len(towers)} runs.", ""]
    lines += [f"- seed {r.seed}: {a:.3f} against {b:.3f} (tower {1 + r.conv1_colour['tower_means'].index(a)} "
              f"the more colour-specific), p = {x:.3f}" for r, a, b, x in zip(towers, more, less, p)]
    return lines + [""]


def shown_argv(argv: list[str]) -> list[str]:
    """The report's own command line, its absolute paths :func:`shown` (the sweep, --out)."""
    return [shown(a, "SWEEP") if Path(a).is_absolute() else a for a in argv]


def markdown(rows: list[dict], runs: list[Run], source: str, command: str | None, missing: list[Path],
             seeds: str | None = None, bound: float = BOUND, unreadable: dict[Path, str] | None = None) -> str:
    official = any_official(rows)
    columns = COLUMNS + (OFFICIAL_COLUMNS if official else [])
    lines = [
        "# The ablation table beside the paper's", "",
        f"Source: {source}  ", *([f"Sweep: `{command}`  "] if command else []),
        f"Training time: {sum(r.wall_time_s or 0 for r in runs) / 60:.1f} min, summed over the runs  ",
        f"Report: `python -m alexnet_lit.report {shlex.join(shown_argv(sys.argv[1:]))}`", "",
        *setting_lines(runs), "", *fixed_line(runs, seeds, bound), *overfitting_line(runs),
        *header_lines(rows, bound),
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
        *(table_row(row, official) for row in rows), "",
    ]
    if missing:
        lines += ["Job folders without results.json (failed or stopped before training began): "
                  + ", ".join(f"`{p}`" for p in missing), ""]
    if unreadable:
        lines += ["Unreadable results, left out of the table:", "",
                  *(f"- `{p}`: {why}" for p, why in unreadable.items()), ""]
    lines += [*per_seed_lines(rows), *figure3_lines(runs), "What the paper says:", ""]
    lines += [f"- `{r['ablation']}`: {r['paper']['paper_says']}" for r in rows if r["paper"]]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, bound: float = BOUND) -> None:
    """Our paired Δ top-1 and top-5 (with 95% intervals) against the paper's, per ablation,
    with the ±B band of the equivalence verdict."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["ablation"] != "none"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True)
    ys = range(len(rows))
    for ax, metric, key in zip(axes, ("val_top1", "val_top5"), ("paper_top1", "paper_top5")):
        ours = [r["vs_none"][metric].paired.delta or Delta(float("nan")) for r in rows]
        paper = [r["paper"][key] if r["paper"] and r["paper"][key] is not None else float("nan") for r in rows]
        errors = [[d.value - d.low if d.low is not None else 0 for d in ours],
                  [d.high - d.value if d.high is not None else 0 for d in ours]]
        ax.axvspan(-bound, bound, color="tab:green", alpha=0.12, label=f"±B = ±{bound:g} (no effect beyond)")
        ax.barh([y + 0.2 for y in ys], [d.value for d in ours], height=0.4,
                label="ours, paired over seeds (95% interval)", xerr=errors, color="tab:blue")
        ax.barh([y - 0.2 for y in ys], paper, height=0.4, label="paper (ILSVRC-2012)", color="tab:orange")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"Δ {METRICS[metric]} error vs none of the same seed (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(ys), [r["ablation"] for r in rows])
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m alexnet_lit.report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a multirun folder (its jobs' results.json)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", help="the W&B group of the sweep (with --wandb)")
    parser.add_argument("--out", type=Path, help="folder for report.md and report.png "
                        "(default: SWEEP_DIR, or the working directory with --wandb)")
    parser.add_argument("--paper", type=Path, default=PAPER_TABLE, help="the paper's table (CSV)")
    parser.add_argument("--bound", type=float, default=BOUND, metavar="B", help="percentage points: a paired "
                        "interval inside ±B reads 'no effect beyond ±B'; fix it before the sweep (default 2)")
    parser.add_argument("--seeds", help="the seeds fixed before the sweep (e.g. 0-9), where it ran as several "
                             "commands; default: the sweep's multirun.yaml")
    parser.add_argument("--figure1", action="store_true", help="SWEEP_DIR is an experiment=figure1 sweep: "
                        "write figure1.png, .md and .json (ReLU against tanh, Section 3.1)")
    parser.add_argument("--target", type=float, help="with --figure1: the training error the speed-up is "
                        "measured at (default: the one the runs stopped at; not below it)")
    args = parser.parse_args(argv)
    if args.figure1:
        return figure1_report(parser, args)
    if (args.sweep_dir is None) == (args.wandb is None) or (args.wandb and not args.group):
        parser.error("give either SWEEP_DIR or --wandb ENTITY/PROJECT --group G")
    if args.sweep_dir is not None and not args.sweep_dir.is_dir():
        parser.error(f"SWEEP_DIR {args.sweep_dir} is not a folder")
    if args.bound < 0:
        parser.error(f"--bound {args.bound:g}: a bound is at least 0 points")
    try:
        paper = paper_table(args.paper)
        if args.sweep_dir is not None:
            runs, unreadable, missing = sweep_runs(args.sweep_dir)
            source, command = f"`{shown(args.sweep_dir, 'SWEEP')}` ({len(runs)} runs)", sweep_command(args.sweep_dir)
            seeds = args.seeds or sweep_seeds(args.sweep_dir)
        else:
            runs, unreadable, missing, seeds = wandb_runs(args.wandb, args.group), {}, [], args.seeds
            source, command = f"W&B `{args.wandb}`, group `{args.group}` ({len(runs)} runs)", None
        if not runs and not missing:
            sys.exit(f"report: no runs in {args.sweep_dir or f'{args.wandb} group {args.group}'}")
        rows = summarise(runs, paper, args.bound)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"report: {error}")
    out = args.out or args.sweep_dir or Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    within = (lambda p: p.relative_to(args.sweep_dir)) if args.sweep_dir else (lambda p: p)  # named in the sweep
    (out / "report.md").write_text(markdown(rows, runs, source, command, [within(p) for p in missing], seeds,
                                            args.bound, {within(p): why for p, why in unreadable.items()}),
                                   encoding="utf-8")
    chart(rows, out / "report.png", args.bound)
    print(f"wrote {out / 'report.md'} and {out / 'report.png'}")
    if unreadable:  # a damaged file is an error, after the report of the others
        sys.exit("report: left out of the table: " + "; ".join(f"{p}: {why}" for p, why in unreadable.items()))


def figure1_report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--figure1 SWEEP_DIR``: the figure, the speed-up and every rate tried, from the sweep's
    folder (or any folder holding several sweeps of it, each resumed in place)."""
    if args.sweep_dir is None or args.wandb:
        parser.error("--figure1 needs SWEEP_DIR (and no --wandb)")
    if not args.sweep_dir.is_dir():
        parser.error(f"SWEEP_DIR {args.sweep_dir} is not a folder")
    commands = [c for c in map(sweep_command, sorted({p.parent for p in args.sweep_dir.rglob("multirun.yaml")})) if c]
    out = args.out or args.sweep_dir
    try:
        summary = figure1.report(args.sweep_dir, out, commands, args.target)
    except ValueError as error:
        sys.exit(f"report: {error}")
    for warning in summary["warnings"]:
        print(warning)
    print(f"{summary['text']}; fastest rates {summary['fastest_lr']}; wrote {out / 'figure1.png'}, "
          f"{out / 'figure1.md'} and {out / 'figure1.json'}")


if __name__ == "__main__":
    main()
