"""The ablation table's rows (no I/O but the paper's CSV): per ablation its errors over the
seeds, its change against its partner arm of the same seed (``none`` unless the paper's table
names another), paired and Welch's (alexnet_lit.analysis.stats), the verdict against the paper's
table (``paper_table.csv``, the one place its numbers live) per row and under Holm over the
rows, its pools' coverage, and how often its learning-rate drops fell where its partner's did."""
import csv
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from alexnet_lit.analysis.runs import METRICS, PAPER_METRICS, Run
from alexnet_lit.analysis.stats import (CONFIDENCE, Delta, Paired, Stat, family_verdicts, p_values, paired,
                                        verdict, welch)


PAPER_TABLE = Path(__file__).resolve().parent / "paper_table.csv"  # package data
REGULARISERS = ("no_dropout", "no_augment", "no_pca", "no_weight_decay")
LEARNED = ("learns", "learns after a loss spike", "collapsed", "unknown")  # not at chance
BOUND = 2.0  # percentage points: the default equivalence bound
FAMILY_ALPHA = 0.05  # the default family-wise error of Holm's verdicts
COMPARED = (*METRICS, "clean_gap")  # what each row is paired on against its partner


def paper_table(path: Path = PAPER_TABLE) -> dict[str, dict]:
    """The paper's rows by ablation name (an arm of several ablations joined by ``+``).
    ``against``: the arm it is paired with (``none`` where empty; for ``none`` itself nothing);
    ``paper_top1``/``paper_top5``: the change in validation error (percentage points) without
    the component, for ``none`` the errors themselves; ``sign``: the direction the paper reports
    where it gives no number; ``metric``: our column the sign is checked on; ``gap_sign``: the
    direction the paper gives for the clean gap, where the row is also judged on it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the paper's table is missing (pass --paper CSV)")
    rows = {}
    for row in csv.DictReader(path.open(encoding="utf-8")):
        for key in ("paper_top1", "paper_top5"):
            row[key] = float(row[key]) if row[key] else None
        if row["metric"] not in PAPER_METRICS:
            raise ValueError(f"{path}: row {row['ablation']!r} has metric {row['metric']!r}; "
                             f"expected one of {list(PAPER_METRICS)}")
        row["against"] = None if row["ablation"] == "none" else row.get("against") or "none"
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
    clean training error where every run (of the row and of its partner) has it."""
    metric = paper_row["metric"] if paper_row else "val_top1"
    if metric == "train_top1" and runs and all(r.train_eval_top1 is not None for r in runs):
        return "train_eval_top1"
    return metric


@dataclass
class Comparison:
    """An arm against its partner on one metric: paired over the seeds where neither run
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
              confidence: float = CONFIDENCE, alpha: float = FAMILY_ALPHA) -> list[dict]:
    """One row per ablation that has runs: the paper's order first, then any others
    (combinations, against ``none``); intervals at ``confidence``, Holm's verdicts at
    family-wise ``alpha``."""
    present = {r.ablation for r in runs}
    names = [n for n in paper if n in present] + sorted(present - set(paper))
    done = {name: [r for r in runs if r.ablation == name and r.status == "completed"] for name in names}
    learned = {name: all((r.learning or "unknown") in LEARNED for r in done[name]) for name in names}
    rows = []
    for name in names:
        against = partner(name, paper)
        arm, base = done[name], done.get(against, [])
        row = dict(ablation=name, paper=paper.get(name), against=against,
                   counts=Counter(r.status for r in runs if r.ablation == name),
                   stats={m: Stat.of(percent(arm, m)) for m in METRICS}, gap=Stat.of(overfit_gaps(arm)),
                   collapsed=[r.seed for r in arm if r.collapsed],
                   collapse_known=sum(r.collapsed is not None for r in arm),
                   learning=Counter(r.learning or "unknown" for r in arm), lrn=mean_lrn(arm),
                   coverage=coverages(arm), lr_drops=same_drops(arm, base) if against else None,
                   judged=judged_metric(paper.get(name), arm + base),
                   comparable=learned[name] and learned.get(against, True),
                   vs={m: compare(arm, base, m, confidence) for m in COMPARED} if against else {})
        row["verdict"] = agreement(row, bound)
        row["p"] = tested(row, bound)
        rows.append(row)
    family = {row["ablation"]: row["p"] for row in rows if row["p"]}
    holm = family_verdicts(family, bound, alpha)
    for row in rows:
        row["holm"] = f"{holm[row['ablation']]} ({METRICS[row['judged']]})" if row["p"] else ""
    return rows


def partner(name: str, paper: dict[str, dict]) -> str | None:
    """The arm ``name`` is paired with: the paper table's ``against``, else ``none`` (``none``
    itself: no partner)."""
    if name == "none":
        return None
    return paper[name]["against"] if name in paper else "none"


def coverages(runs: list[Run]) -> list[dict]:
    """The runs' pool coverages (alexnet_lit.analysis.runs.coverage_of), each one once."""
    found = []
    for run in runs:
        if run.coverage is not None and run.coverage not in found:
            found.append(run.coverage)
    return found


def same_drops(arm: list[Run], base: list[Run]) -> Counter:
    """Over the seeds both arms completed: how many dropped the learning rate at the same
    epochs as the partner's run (``same``), at others (``different``), or where either run
    did not record them (``not recorded``)."""
    theirs = {r.seed: r for r in base}
    pairs = [(r, theirs[r.seed]) for r in arm if r.seed in theirs]
    return Counter("not recorded" if a.lr_drops is None or b.lr_drops is None
                   else "same" if a.lr_drops == b.lr_drops else "different" for a, b in pairs)


def tested(row: dict, bound: float) -> tuple[float, float, bool] | None:
    """For a row with a per-row verdict from an interval: its p-value of no change, its TOST
    p-value of a change beyond ±bound (alexnet_lit.analysis.stats.p_values) and whether the
    change has the paper's sign; None otherwise (no sign, no interval, a run at chance)."""
    sign = expected_sign(row["paper"])
    pairs = row["vs"][row["judged"]].paired if row["vs"] else None
    if sign is None or pairs is None or not row["comparable"]:
        return None
    p = p_values(list(pairs.differences.values()), bound)
    return None if p is None else (*p, pairs.delta.value * sign > 0)


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
    named in brackets, and on the clean gap where the paper gives its direction; ``no verdict``
    where a run of the row or of its partner ended at chance."""
    sign = expected_sign(row["paper"])
    if sign is None:
        return ""
    metric = row["judged"]
    delta = row["vs"][metric].paired.delta
    if delta is None:
        return "no data"
    if not row["comparable"]:
        return f"no verdict: a run did not learn ({METRICS[metric]})"
    gap_sign = {"+": 1, "-": -1}.get(row["paper"].get("gap_sign") or "")
    gap = f"; {verdict(row['vs']['clean_gap'].paired.delta, gap_sign, bound)} (clean gap)" if gap_sign else ""
    return f"{verdict(delta, sign, bound)} ({METRICS[metric]}){gap}"
