"""The ablation table beside the paper's.

    python -m alexnet_lit.report SWEEP_DIR                      # the jobs' results.json, no network
    python -m alexnet_lit.report --wandb ENTITY/PROJECT --group G   # the same from the W&B API

writes ``report.md`` and ``report.png`` (into SWEEP_DIR, or ``--out``): the setting of the runs
(network size, init, inputs, epochs, views, classes), then per ablation our final validation
top-1 and top-5 error (mean ± sd over seeds, n completed runs), the change against ``none``
with its 95% Welch t-interval, the paper's change beside it (``alexnet_lit/paper_table.csv``, the
one place its numbers live), a verdict (agrees or disagrees where the interval excludes 0,
not resolved where it holds 0), whether every run learned, and what LRN did. Runs still going
or failed are counted as such.
"""
import argparse
import csv
import json
import math
import shlex
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from scipy import stats as scipy_stats

PAPER_TABLE = Path(__file__).resolve().parent / "paper_table.csv"  # package data
METRICS = {"val_top1": "val top-1", "val_top5": "val top-5", "train_top1": "train top-1"}
WANDB_STATUS = {"finished": "completed", "running": "running", "failed": "failed",
                "crashed": "failed", "killed": "failed", "preempted": "interrupted"}


@dataclass
class Run:
    """One training job as reports see it: errors are fractions (0.407), None if unknown."""
    ablation: str  # the ablation names joined by '+'
    seed: int | None
    status: str  # running | completed | failed | interrupted
    val_top1: float | None
    val_top5: float | None
    train_top1: float | None
    source: str  # the job folder or W&B run
    wall_time_s: float | None = None
    learning: str | None = None  # results.json's learning verdict (results.learning_verdict)
    lrn: dict | None = None  # per LRN layer: the divisor's mean over k ** beta
    setting: dict | None = None  # what the run was (SETTING's keys)


# What a comparison with the paper must state about the runs behind it (the config's keys).
SETTING = {"classes": "data.num_classes", "init": "model.init", "inputs": "data.normalize",
           "crop": "model.input_size", "image size": "data.image_size", "batch": "data.batch_size",
           "lr": "optim.lr", "epochs": "trainer.max_epochs", "views": "data.val_views",
           "towers": "model.towers"}


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
        return Run("+".join(r["ablation"]), r["seed"], r["status"], r["val_top1_err"], r["val_top5_err"],
                   r["train_top1_err"], str(path.parent), r["wall_time_s"],
                   (r.get("learning") or {}).get("verdict"), lrn_ratios(r.get("lrn")), setting)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    except KeyError as error:
        raise ValueError(f"{path}: no key {error}; written by an older alexnet_lit?") from None


def run_from_wandb(config: dict, summary: dict, state: str, source: str) -> Run:
    """A W&B run: ``config`` and ``summary`` as the API returns them, ``state`` its run state."""
    lrn = {key.split("/")[1].removesuffix("_divisor_mean"): summary[key] for key in summary
           if key.startswith("lrn/") and key.endswith("_divisor_mean")}
    setting = dict(setting_of(config), parameters=config.get("params"))
    lrn_cfg = (config.get("model") or {}).get("lrn")
    k_beta = lrn_cfg["k"] ** lrn_cfg["beta"] if lrn_cfg else None
    return Run("+".join(config["ablation"]), config.get("seed"), WANDB_STATUS.get(state, state),
               summary.get("val/top1_err"), summary.get("val/top5_err"), summary.get("train/top1_err"),
               source, summary.get("_runtime"), None,
               {n: v / k_beta for n, v in lrn.items()} if k_beta and lrn else None, setting)


def sweep_runs(sweep_dir: Path) -> tuple[list[Run], list[Path]]:
    """The runs of every job folder below ``sweep_dir``, and the job folders (those with a
    ``.hydra/``) that have no results.json: they failed or stopped before training."""
    results = sorted(sweep_dir.rglob("results.json"))
    jobs = {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    missing = sorted(jobs - {p.parent for p in results})
    return [run_from_results(p) for p in results], missing


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


def sweep_command(sweep_dir: Path) -> str | None:
    """The command line that started the sweep, from Hydra's multirun.yaml."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    overrides = OmegaConf.load(path).hydra.overrides.task
    return "python -m alexnet_lit.train -m " + " ".join(shlex.quote(o) for o in overrides)


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
        if row["metric"] not in METRICS:
            raise ValueError(f"{path}: row {row['ablation']!r} has metric {row['metric']!r}; "
                             f"expected one of {list(METRICS)}")
        rows[row["ablation"]] = row
    return rows


CONFIDENCE = 0.95


@dataclass
class Delta:
    """A difference of two means (percentage points) with its Welch t-interval: ``low`` and
    ``high`` are None without two runs on each side or with no spread at all."""
    value: float
    low: float | None = None
    high: float | None = None

    @property
    def resolved(self) -> bool:
        """The interval excludes 0."""
        return self.low is not None and (self.low > 0 or self.high < 0)


@dataclass
class Stat:
    """Mean and sample standard deviation, in percent, over n completed runs."""
    mean: float
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> "Stat | None":
        values = [100 * v for v in values if v is not None and not math.isnan(v)]
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None,
                   len(values))

    def minus(self, other: "Stat") -> Delta:
        """The difference of means and its CONFIDENCE Welch t-interval (unequal variances, the
        Welch-Satterthwaite degrees of freedom): with 2 or 3 runs a side it is wide, as it must be."""
        value = self.mean - other.mean
        if self.sd is None or other.sd is None:
            return Delta(value)
        a, b = self.sd ** 2 / self.n, other.sd ** 2 / other.n
        if a + b == 0:
            return Delta(value)
        dof = (a + b) ** 2 / (a ** 2 / (self.n - 1) + b ** 2 / (other.n - 1))
        half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * math.sqrt(a + b)
        return Delta(value, value - half, value + half)


def summarise(runs: list[Run], paper: dict[str, dict]) -> list[dict]:
    """One row per ablation that has runs: the paper's order first, then any others
    (combinations)."""
    present = {r.ablation for r in runs}
    names = [n for n in paper if n in present] + sorted(present - set(paper))
    stats = {}
    for name in names:
        done = [r for r in runs if r.ablation == name and r.status == "completed"]
        stats[name] = {m: Stat.of([getattr(r, m) for r in done]) for m in METRICS}
    rows = []
    for name in names:
        mine = [r for r in runs if r.ablation == name]
        done = [r for r in mine if r.status == "completed"]
        row = dict(ablation=name, paper=paper.get(name), stats=stats[name],
                   counts=Counter(r.status for r in mine),
                   learning=Counter(r.learning or "unknown" for r in done), lrn=mean_lrn(done))
        base = stats.get("none", {}) if name != "none" else {}
        row["delta"] = {m: stats[name][m].minus(base[m]) if stats[name][m] and base.get(m) else None
                        for m in METRICS}
        rows.append(row)
    learned = {row["ablation"]: all(v.startswith("learns") or v == "unknown" for v in row["learning"])
               for row in rows}
    for row in rows:
        row["comparable"] = learned[row["ablation"]] and learned.get("none", True)
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


def agreement(row: dict) -> str:
    """On the paper row's metric: ``agrees`` or ``disagrees`` where our interval excludes 0 (on
    the paper's side of it or not), ``not resolved`` where it holds 0 or there is none; ``no
    verdict`` where a run of the row or of ``none`` did not learn."""
    sign = expected_sign(row["paper"])
    if sign is None:
        return ""
    metric = row["paper"]["metric"]
    delta = row["delta"][metric]
    if delta is None:
        return "no data"
    if not row["comparable"]:
        return f"no verdict: a run did not learn ({METRICS[metric]})"
    if not delta.resolved:
        return f"not resolved ({METRICS[metric]})"
    return f"{'agrees' if delta.value * sign > 0 else 'disagrees'} ({METRICS[metric]})"


def fmt_stat(stat: Stat | None) -> str:
    if stat is None:
        return "—"
    return f"{stat.mean:.1f}" + (f" ± {stat.sd:.1f}" if stat.sd is not None else "")


def fmt_delta(delta: Delta | None) -> str:
    if delta is None:
        return "—"
    interval = f" [{delta.low:+.1f}, {delta.high:+.1f}]" if delta.low is not None else ""
    return f"{delta.value:+.1f}{interval}"


def fmt_learning(learning: Counter) -> str:
    """'3 learns', '2 learns, 1 exploded and at chance'."""
    return ", ".join(f"{n} {verdict}" for verdict, n in sorted(learning.items(), key=lambda kv: -kv[1]))


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


def overfitting_line(runs: list[Run]) -> list[str]:
    """Does ``none`` overfit? Its runs' gap between validation and training top-1 error:
    regularisers can only show their worth where it is clearly above 0."""
    gaps = [100 * (r.val_top1 - r.train_top1) for r in runs if r.ablation == "none" and r.status == "completed"
            and r.val_top1 is not None and r.train_top1 is not None]
    if not gaps:
        return []
    return [f"`none` overfits by {statistics.fmean(gaps):.1f} percentage points (validation minus training "
            f"top-1 error, {min(gaps):.1f} to {max(gaps):.1f} over {len(gaps)} runs; the training error is "
            "that of the last epoch's augmented batches with dropout on, so it overstates the error "
            "on the training images themselves).", ""]


def markdown(rows: list[dict], runs: list[Run], source: str, command: str | None,
             missing: list[Path]) -> str:
    lines = [
        "# The ablation table beside the paper's", "",
        f"Source: {source}  ", *([f"Sweep: `{command}`  "] if command else []),
        f"Training time: {sum(r.wall_time_s or 0 for r in runs) / 60:.1f} min, summed over the runs  ",
        f"Report: `python -m alexnet_lit.report {shlex.join(sys.argv[1:])}`", "",
        *setting_lines(runs), "", *overfitting_line(runs),
        "Final-epoch error in %, mean ± sd over the n completed runs (seeds). Δ is the change "
        "against `none` in percentage points with its 95% Welch t-interval in brackets (none "
        "without two runs on each side); with n = 2 or 3 a side such intervals are wide, as "
        "they must be. The paper's Δ is its change without the component (its row for `none`: "
        "the errors), `+` where it reports only the direction. *Verdict*, on the metric in "
        "brackets: *agrees* or *disagrees* where the interval excludes 0, *not resolved* where "
        "it holds 0; no verdict where a run of the row or of `none` ended at chance. *Learning*: "
        "each run's verdict from results.json (a loss spike: a training loss above 3 ln(classes); at "
        "chance: final val accuracy within 3 binomial sd of 1/classes). *LRN*: each LRN layer's "
        "mean divisor (k + α Σa²)^β at the last validation over k^β; 1.00 is a constant rescale.",
        "",
        "| ablation | component switched off | n | val top-1 % | Δ top-1 | paper | "
        "val top-5 % | Δ top-5 | paper | train top-1 % | Δ train top-1 | verdict | learning | LRN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s, d, paper = row["stats"], row["delta"], row["paper"]
        component = f"{paper['component']} ({paper['section']})" if paper else "combination"
        lines.append(" | ".join([
            f"| `{row['ablation']}`", component, fmt_runs(row["counts"]),
            fmt_stat(s["val_top1"]), fmt_delta(d["val_top1"]), fmt_paper(row, "paper_top1"),
            fmt_stat(s["val_top5"]), fmt_delta(d["val_top5"]), fmt_paper(row, "paper_top5"),
            fmt_stat(s["train_top1"]), fmt_delta(d["train_top1"]), agreement(row),
            fmt_learning(row["learning"]), fmt_lrn(row["lrn"])]) + " |")
    if missing:
        lines += ["", "Job folders without results.json (failed or stopped before training began): "
                  + ", ".join(f"`{p}`" for p in missing)]
    lines += ["", "What the paper says:", ""]
    lines += [f"- `{r['ablation']}`: {r['paper']['paper_says']}" for r in rows if r["paper"]]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> None:
    """Our Δ top-1 and top-5 (with 95% intervals) against the paper's, per ablation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["ablation"] != "none"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True)
    ys = range(len(rows))
    for ax, metric, key in zip(axes, ("val_top1", "val_top5"), ("paper_top1", "paper_top5")):
        ours = [r["delta"][metric] or Delta(math.nan) for r in rows]
        paper = [r["paper"][key] if r["paper"] and r["paper"][key] is not None else math.nan for r in rows]
        errors = [[d.value - d.low if d.low is not None else 0 for d in ours],
                  [d.high - d.value if d.high is not None else 0 for d in ours]]
        ax.barh([y + 0.2 for y in ys], [d.value for d in ours], height=0.4,
                label="ours (95% interval)", xerr=errors, color="tab:blue")
        ax.barh([y - 0.2 for y in ys], paper, height=0.4, label="paper (ILSVRC-2012)", color="tab:orange")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"Δ {METRICS[metric]} error vs none (percentage points)")
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
    args = parser.parse_args(argv)
    if (args.sweep_dir is None) == (args.wandb is None) or (args.wandb and not args.group):
        parser.error("give either SWEEP_DIR or --wandb ENTITY/PROJECT --group G")
    if args.sweep_dir is not None and not args.sweep_dir.is_dir():
        parser.error(f"SWEEP_DIR {args.sweep_dir} is not a folder")
    try:
        paper = paper_table(args.paper)
        if args.sweep_dir is not None:
            runs, missing = sweep_runs(args.sweep_dir)
            source, command = f"`{args.sweep_dir}` ({len(runs)} runs)", sweep_command(args.sweep_dir)
        else:
            runs, missing = wandb_runs(args.wandb, args.group), []
            source, command = f"W&B `{args.wandb}`, group `{args.group}` ({len(runs)} runs)", None
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"report: {error}")
    if not runs and not missing:
        sys.exit(f"report: no runs in {args.sweep_dir or f'{args.wandb} group {args.group}'}")
    rows = summarise(runs, paper)
    out = args.out or args.sweep_dir or Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(rows, runs, source, command, missing), encoding="utf-8")
    chart(rows, out / "report.png")
    print(f"wrote {out / 'report.md'} and {out / 'report.png'}")


if __name__ == "__main__":
    main()
