"""The ablation table as ``report.md`` (the setting, what was fixed before the sweep, the rows,
each seed's differences, Figure 3's towers) and as ``report.png`` (our paired changes beside the
paper's)."""
import shlex
import statistics
import sys
from collections import Counter
from pathlib import Path

from alexnet_lit.analysis.runs import METRICS, SETTING, Run
from alexnet_lit.analysis.stats import CONFIDENCE, Delta, Stat, split_p_value
from alexnet_lit.analysis.table import BOUND, REGULARISERS, overfit_gaps
from alexnet_lit.results import AT_CHANCE_LOSS, AT_CHANCE_STEPS, DEAD_LAYER, shown
from alexnet_lit.writing import save_figure


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


def level(confidence: float) -> str:
    """An interval's level as the report writes it: 95%, 97.5%."""
    return f"{100 * confidence:g}%"


def fixed_line(runs: list[Run], seeds: str | None, bound: float, confidence: float = CONFIDENCE) -> list[str]:
    """What was fixed before the sweep: adding seeds until a verdict appears is optional stopping."""
    found = fmt_seeds({r.seed for r in runs if r.seed is not None}) or "none"
    sweep = f"`{seeds}` (the sweep's), runs found for seeds {found}" if seeds else f"{found} (the runs')"
    return [f"Fixed before the sweep: the seeds, {sweep}; the equivalence bound B = ±{bound:g} points; and "
            f"the collapse rule: a run collapsed where a ReLU layer has more than {DEAD_LAYER:.0%} of its "
            f"units silent on every image its last validation scored, or where its training loss stayed "
            f"above {AT_CHANCE_LOSS:g} ln(classes) for more than {AT_CHANCE_STEPS:.0%} of the steps of its second half "
            f"(alexnet_lit.results); the intervals' level, {level(confidence)}. Adding seeds until a verdict appears "
            "would be optional stopping.", ""]


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


def header_lines(rows: list[dict], bound: float, confidence: float = CONFIDENCE) -> list[str]:
    """The table's key, and which columns it has."""
    official = " *official val*: the error on the data set's own validation images (validation " \
               "also holds held-out training images)." if any_official(rows) else ""
    return [
        f"Final-epoch error in %, mean ± sd over the n completed runs (seeds). Δ is the change against "
        "`none` of the same seed in percentage points, mean over the seeds both have, with its paired "
        f"{level(confidence)} t-interval in brackets (runs of one seed share their data order, augmentation and the "
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


OFFICIAL = ("val_official_top1", "val_official_top5")  # measured where validation also holds held-out images


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
             "alexnet_lit.inspect.pictures.colour_specificity, averaged over the tower: 0 grey, 2/3 one channel); "
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


def earlier_lines(rows: list[dict], earlier: tuple[str, dict[str, str]] | None) -> list[str]:
    """Each row's verdict at an earlier look at the sweep (``earlier``: what that look was, and
    its verdicts by ablation) beside this one's, and the rows whose verdict changed."""
    if earlier is None:
        return []
    what, before = earlier
    judged = [r for r in rows if r["verdict"] and r["ablation"] in before]
    changed = [f"`{r['ablation']}`" for r in judged if before[r["ablation"]] != r["verdict"]]
    return [f"Verdicts at the earlier look ({what}) beside these:", "", "| ablation | earlier | now |", "|---|---|---|",
            *(f"| {r['ablation']} | {before[r['ablation']]} | {r['verdict']} |" for r in judged), "",
            f"Changed: {', '.join(changed)}." if changed else "No verdict changed.", ""]


def markdown(rows: list[dict], runs: list[Run], source: str, command: str | None, missing: list[Path],
             seeds: str | None = None, bound: float = BOUND, unreadable: dict[Path, str] | None = None,
             confidence: float = CONFIDENCE, earlier: tuple[str, dict[str, str]] | None = None) -> str:
    official = any_official(rows)
    columns = COLUMNS + (OFFICIAL_COLUMNS if official else [])
    lines = [
        "# The ablation table beside the paper's", "",
        f"Source: {source}  ", *([f"Sweep: `{command}`  "] if command else []),
        f"Training time: {sum(r.wall_time_s or 0 for r in runs) / 60:.1f} min, summed over the runs  ",
        f"Report: `python -m alexnet_lit.report {shlex.join(shown_argv(sys.argv[1:]))}`", "",
        *setting_lines(runs), "", *fixed_line(runs, seeds, bound, confidence), *overfitting_line(runs),
        *header_lines(rows, bound, confidence),
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
        *(table_row(row, official) for row in rows), "",
    ]
    if missing:
        lines += ["Job folders without results.json (failed or stopped before training began): "
                  + ", ".join(f"`{p}`" for p in missing), ""]
    if unreadable:
        lines += ["Unreadable results, left out of the table:", "",
                  *(f"- `{p}`: {why}" for p, why in unreadable.items()), ""]
    lines += [*earlier_lines(rows, earlier), *per_seed_lines(rows), *figure3_lines(runs), "What the paper says:", ""]
    lines += [f"- `{r['ablation']}`: {r['paper']['paper_says']}" for r in rows if r["paper"]]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, bound: float = BOUND, confidence: float = CONFIDENCE) -> None:
    """Our paired Δ top-1 and top-5 (with their intervals) against the paper's, per ablation,
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
                label=f"ours, paired over seeds ({level(confidence)} interval)", xerr=errors, color="tab:blue")
        ax.barh([y - 0.2 for y in ys], paper, height=0.4, label="paper (ILSVRC-2012)", color="tab:orange")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"Δ {METRICS[metric]} error vs none of the same seed (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(ys), [r["ablation"] for r in rows])
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
