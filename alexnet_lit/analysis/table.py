"""The ablation table's rows (no I/O but the paper's CSV): per ablation its errors over the
seeds, its change against ``none`` of the same seed, paired and Welch's (alexnet_lit.analysis.stats),
and the verdict against the paper's table (``paper_table.csv``, the one place its numbers live)."""
import csv
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from alexnet_lit.analysis.runs import METRICS, PAPER_METRICS, Run
from alexnet_lit.analysis.stats import CONFIDENCE, Delta, Paired, Stat, paired, verdict, welch


PAPER_TABLE = Path(__file__).resolve().parent / "paper_table.csv"  # package data
REGULARISERS = ("no_dropout", "no_augment", "no_pca", "no_weight_decay")
LEARNED = ("learns", "learns after a loss spike", "collapsed", "unknown")  # not at chance
BOUND = 2.0  # percentage points: the default equivalence bound


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


def compare(arm: list[Run], base: list[Run], metric: str, confidence: float = CONFIDENCE) -> Comparison:
    """``arm`` against ``base`` on ``metric`` over their completed runs' seeds, a seed where
    either run collapsed left out (and named); intervals at ``confidence``."""
    collapsed = sorted({r.seed for r in arm + base if r.collapsed and r.seed is not None})
    x = by_seed([r for r in arm if r.seed not in collapsed], metric)
    y = by_seed([r for r in base if r.seed not in collapsed], metric)
    pairs = paired(x, y, confidence)
    if not pairs.seeds:
        return Comparison(pairs, None, collapsed)
    return Comparison(pairs, welch(Stat.of([x[s] for s in pairs.seeds]), Stat.of([y[s] for s in pairs.seeds]),
                                   confidence), collapsed)


def summarise(runs: list[Run], paper: dict[str, dict], bound: float = BOUND,
              confidence: float = CONFIDENCE) -> list[dict]:
    """One row per ablation that has runs: the paper's order first, then any others
    (combinations); intervals at ``confidence``."""
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
                   vs_none={m: compare(arm, base, m, confidence) for m in METRICS} if name != "none" else {})
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
    """The paired interval's verdict (alexnet_lit.analysis.stats.verdict) on the row's judged metric,
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
