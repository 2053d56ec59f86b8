"""The ablation table as ``report.md`` (the setting, what was fixed before which stage, the
runs' commits, the rows with their per-row and Holm verdicts, each seed's differences, Figure
3's towers) and as ``report.png`` (our paired changes beside the paper's)."""
import math
import shlex
import statistics
import sys
from collections import Counter
from pathlib import Path

from alexnet_lit.analysis.runs import METRICS, SETTING, Run
from alexnet_lit.analysis.stats import CONFIDENCE, Delta, Stat, detectable_gap, split_p_value
from alexnet_lit.analysis.table import BOUND, FAMILY_ALPHA, REGULARISERS, overfit_gaps
from alexnet_lit.inspect.learning import AT_CHANCE_LOSS, AT_CHANCE_STEPS, DEAD_LAYER
from alexnet_lit.results import shown
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
    """The paired Δ against the row's partner and its interval ("—" for ``none`` itself)."""
    return fmt_delta(row["vs"][metric].paired.delta) if row["vs"] else "—"


def fmt_welch(row: dict) -> str:
    """Welch's interval on the judged metric, and how wide the paired one is beside it."""
    if not row["vs"]:
        return "—"
    comparison = row["vs"][row["judged"]]
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
    """The partner where it is not ``none``, the seeds paired on the judged metric, how many
    runs had no partner, and the seeds left out for a collapse."""
    if not row["vs"]:
        return "—"
    comparison = row["vs"][row["judged"]]
    pairs = comparison.paired
    parts = [f"against `{row['against']}`"] * (row["against"] != "none")
    parts.append(f"seeds {fmt_seeds(pairs.seeds)}" if pairs.seeds else "none")
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


def fmt_coverage(coverages: list[dict]) -> str:
    """'pool1 196/225, pool2 36/49, pool5 4/9'; the arm's distinct coverages apart."""
    return " / ".join(", ".join(f"{name} {read}/{there}" for name, (read, there) in c.items()) or "no pools"
                      for c in coverages) or "—"


def fmt_drops(drops: Counter | None) -> str:
    """'same in 12 of 20, not recorded in 3'; 'not recorded' where no pair recorded its drops."""
    if not drops:
        return "—"
    recorded = drops["same"] + drops["different"]
    if not recorded:
        return "not recorded"
    missing = f", not recorded in {drops['not recorded']}" if drops["not recorded"] else ""
    return f"same in {drops['same']} of {recorded}{missing}"


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


def fixed_line(runs: list[Run], seeds: str | None, bound: float, confidence: float = CONFIDENCE,
               alpha: float = FAMILY_ALPHA, provenance: str | None = None) -> list[str]:
    """The design the verdicts rest on, and when each part of it was fixed (``provenance``:
    the table's own account, e.g. its README's stages; unstated without it): adding seeds
    until a verdict appears is optional stopping."""
    found = fmt_seeds({r.seed for r in runs if r.seed is not None}) or "none"
    sweep = f"`{seeds}` (the sweep's), runs found for seeds {found}" if seeds else f"{found} (the runs')"
    when = f"When each was fixed: {provenance.strip()}" if provenance else \
        "When each was fixed is not stated here (`--provenance FILE` states it)."
    return [f"The design: the seeds, {sweep}; the equivalence bound B = ±{bound:g} points; "
            f"the collapse rule: a run collapsed where a ReLU layer has more than {DEAD_LAYER:.0%} of its "
            f"units silent on every image its last validation scored, or where its training loss stayed "
            f"above {AT_CHANCE_LOSS:g} ln(classes) for more than {AT_CHANCE_STEPS:.0%} of the steps of its second half "
            f"(alexnet_lit.inspect.learning); the intervals' level, {level(confidence)}; Holm's family-wise error, "
            f"{alpha:g}. Adding seeds until a verdict appears would be optional stopping.", "", when, ""]


def commit_lines(runs: list[Run]) -> list[str]:
    """The runs counted by the commit they ran at (results.json's ``git_commit``), those with
    uncommitted changes (``-dirty``) named."""
    commits = Counter(r.git_commit or "not recorded" for r in runs)
    dirty = [c for c in commits if c.endswith("-dirty")]
    shown_commits = ", ".join(f"`{c[:7]}{'-dirty' if c in dirty else ''}` {n}"
                              if c != "not recorded" else f"not recorded {n}" for c, n in commits.most_common())
    return [f"Commits the runs ran at (results.json's `git_commit`), runs each: {shown_commits}. "
            + (f"With uncommitted changes (`-dirty`): {sum(commits[c] for c in dirty)} runs at "
               f"{len(dirty)} commit{'s' * (len(dirty) > 1)} ({', '.join(f'`{c[:7]}`' for c in dirty)})." if dirty
               else "None ran with uncommitted changes."), ""]


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


def header_lines(rows: list[dict], bound: float, confidence: float = CONFIDENCE,
                 alpha: float = FAMILY_ALPHA) -> list[str]:
    """The table's key, and which columns it has."""
    official = " *official val*: the error on the data set's own validation images (validation " \
               "also holds held-out training images)." if any_official(rows) else ""
    return [
        f"Final-epoch error in %, mean ± sd over the n completed runs (seeds). Δ is the change against "
        "the row's partner of the same seed (`none` unless *pairs* names another) in percentage points, "
        "mean over the seeds both have, with its paired "
        f"{level(confidence)} t-interval in brackets (runs of one seed share their data order, augmentation and the "
        "initial weights of every unchanged layer); *Welch* gives the unpaired interval over the same "
        "runs on the verdict's metric and the paired interval's width over Welch's; *pairs*: the "
        "seeds paired and the completed runs left out for want of a partner. The paper's Δ is its "
        "change without the component (its row for `none`: the errors), `+` where it reports only the "
        "direction. *Verdict*, from the paired interval on the metric in brackets: *agrees* or "
        f"*disagrees* where it excludes 0, *no effect beyond ±{bound:g}* where it lies inside "
        f"±{bound:g} points (B), *not resolved* otherwise (also with one pair); a claim on training "
        "error is judged on the clean training error where every run has it; a row whose paper "
        "claim is on overfitting is also judged on the clean gap (*(clean gap)*). *Holm verdict*: "
        f"the same metric under Holm's step-down procedure at family-wise error {alpha:g} (below "
        "the table). *Clean train*: "
        "training images scored as validation scores its own; *clean gap*: val top-1 minus clean "
        "train top-1, *Δ clean gap* its paired change. *Pool coverage*: per pool stage, the "
        "positions its windows read over the positions there (alexnet_lit.layer_table.pool_coverage, "
        "from each run's `.hydra/config.yaml`). *LR drops*: over the paired seeds, how often the "
        "run's learning rate dropped at the same epochs as its partner's (results.json's "
        "`lr_drops`; *not recorded* where either run predates them). *Collapsed*: runs that collapsed under the rule above (results.json's "
        "`learning.collapsed`): the arm's collapse rate; a seed where the run of the row or of its partner "
        "collapsed is left out of the pairs (named in *pairs*), its runs kept in the means; a row where a run of it or of its partner ended at chance gets no verdict. "
        "*Learning*: each run's verdict from results.json (a loss spike: a training loss above 3 "
        "ln(classes); at chance: final val accuracy within 3 binomial sd of 1/classes). *LRN*: each "
        "LRN layer's mean divisor (k + α Σa²)^β at the last validation over k^β; 1.00 is a constant "
        "rescale." + official, ""]


OFFICIAL = ("val_official_top1", "val_official_top5")  # measured where validation also holds held-out images


def any_official(rows: list[dict]) -> bool:
    return any(row["stats"][m] for row in rows for m in OFFICIAL)


COLUMNS = ["ablation", "component switched off", "n", "collapsed", "val top-1 %", "Δ top-1", "paper",
           "val top-5 %", "Δ top-5", "paper", "train top-1 %", "Δ train top-1", "clean train top-1 %",
           "Δ clean train top-1", "clean gap", "Δ clean gap", "verdict", "Holm verdict", "Welch", "pairs",
           "learning", "LRN", "pool coverage", "LR drops as partner's"]
OFFICIAL_COLUMNS = ["official val top-1 %", "Δ official top-1", "official val top-5 %", "Δ official top-5"]


def table_row(row: dict, official: bool) -> str:
    s, paper = row["stats"], row["paper"]
    component = f"{paper['component']} ({paper['section']})" if paper else "combination"
    cells = [f"`{row['ablation']}`", component, fmt_runs(row["counts"]), fmt_collapsed(row),
             fmt_stat(s["val_top1"]), fmt_paired(row, "val_top1"), fmt_paper(row, "paper_top1"),
             fmt_stat(s["val_top5"]), fmt_paired(row, "val_top5"), fmt_paper(row, "paper_top5"),
             fmt_stat(s["train_top1"]), fmt_paired(row, "train_top1"),
             fmt_stat(s["train_eval_top1"]), fmt_paired(row, "train_eval_top1"), fmt_stat(row["gap"]),
             fmt_paired(row, "clean_gap"), row["verdict"], row["holm"], fmt_welch(row), fmt_pairs(row),
             fmt_learning(row["learning"]), fmt_lrn(row["lrn"]), fmt_coverage(row["coverage"]), fmt_drops(row["lr_drops"])]
    if official:
        cells += [cell for m in OFFICIAL for cell in (fmt_stat(s[m]), fmt_paired(row, m))]
    return "| " + " | ".join(cells) + " |"


def per_seed_lines(rows: list[dict]) -> list[str]:
    """Each paired seed's difference against the row's partner on the verdict's metric."""
    lines = ["Per-seed differences against the row's partner (percentage points, on the verdict's metric; a seed "
             "where the run of the row or of its partner collapsed is left out of the pairs):", ""]
    for row in rows:
        if not row["vs"]:
            continue
        pairs = row["vs"][row["judged"]].paired
        values = ", ".join(f"{seed}: {d:+.1f}" for seed, d in pairs.differences.items())
        lines.append(f"- `{row['ablation']}` ({METRICS[row['judged']]}, {fmt_pairs(row)}): {values or '—'}")
    return lines + [""]


def bare(verdict: str) -> str:
    """A row's verdict without the metric it is on: 'agrees (val top-1)' -> 'agrees'."""
    return verdict.split(" (")[0]


def holm_lines(rows: list[dict], bound: float, alpha: float) -> list[str]:
    """Holm's family: the rows tested, each one's p-values, and the rows whose verdict the
    correction changes."""
    family = [r for r in rows if r["p"]]
    if not family:
        return []
    n = {len(r["vs"][r["judged"]].paired.seeds) for r in family}
    changed = [f"`{r['ablation']}` ({bare(r['verdict'])} → {bare(r['holm'])})"
               for r in family if bare(r["verdict"]) != bare(r["holm"])]
    return [f"Holm's verdicts: over the {len(family)} rows with a per-row verdict from an interval, at family-wise "
            f"error {alpha:g}, Holm's step-down procedure (the k-th smallest of the {len(family)} p-values rejected "
            f"where it and every smaller one is at most {alpha:g} / ({len(family)} - k + 1)), applied to the "
            "two-sided paired t-test of no change on each row's verdict metric (n - 1 degrees of freedom, "
            f"n = {'/'.join(map(str, sorted(n)))} pairs) and, apart, to TOST's p-value of a change beyond ±{bound:g} "
            "(the larger of the two one-sided paired t-tests): a change rejected agrees or disagrees by the "
            f"paper's sign; else TOST rejected, no effect beyond ±{bound:g} (the row's interval at the "
            "corrected level lies inside ±B); else not resolved. The clean gap's verdict is per row only.", "",
            *(f"- `{r['ablation']}`: p = {r['p'][0]:.2g}, TOST p = {r['p'][1]:.2g}" for r in family), "",
            f"Changed by the correction: {', '.join(changed)}." if changed else "No verdict changed by the correction.", ""]


def fmt_needed(needed: list[float]) -> str:
    """The gaps the runs' towers needed for p < 0.05, and how many runs no gap could reach
    (too few kernels a tower)."""
    finite = [q for q in needed if math.isfinite(q)]
    parts = [f"the gap needed for p < 0.05 {fmt_stat(Stat.of(finite), 3)} ({min(finite):.3f} to {max(finite):.3f})"] \
        if finite else []
    if len(finite) < len(needed):
        parts.append(f"in {len(needed) - len(finite)} runs no split of their kernels reaches p < 0.05")
    return ", ".join(parts)


def figure3_lines(runs: list[Run]) -> list[str]:
    """Figure 3 as a claim: in each two-tower run of ``none``, its more and its less
    colour-specific tower, and how often random splits of its conv1 kernels are as far apart."""
    towers = sorted((r for r in runs if r.ablation == "none" and r.status == "completed" and r.conv1_colour
                     and len(r.conv1_colour.tower_means) == 2), key=lambda r: (r.seed is None, r.seed))
    if not towers:
        return []
    more = [max(r.conv1_colour.tower_means) for r in towers]
    less = [min(r.conv1_colour.tower_means) for r in towers]
    p = [split_p_value(r.conv1_colour.kernels, r.conv1_colour.tower_sizes[0]) for r in towers]
    needed = [detectable_gap(r.conv1_colour.kernels, r.conv1_colour.tower_sizes[0]) for r in towers]
    lines = ["## Figure 3: conv1's colour specificity per tower", "",
             "The paper: in every run one tower's conv1 kernels are largely colour-agnostic, the other's "
             "colour-specific. Which GPU gets which tower is arbitrary, so each run's towers are compared as "
             "its more and its less colour-specific one (a kernel's share of energy off the grey axis, "
             "alexnet_lit.inspect.pictures.colour_specificity, averaged over the tower: 0 grey, 2/3 one channel); "
             "*p*: how often a random split of the same run's conv1 kernels into groups of the towers' "
             "sizes is as far apart (10,000 splits); *needs*: the gap a run's towers must reach for p < 0.05, "
             "the smallest of its random splits' gaps with p < 0.05 (about their 95th percentile): what the test could detect.", "",
             f"`none`, {len(towers)} two-tower runs: the more colour-specific tower {fmt_stat(Stat.of(more), 3)}, "
             f"the less {fmt_stat(Stat.of(less), 3)}, difference "
             f"{fmt_stat(Stat.of([a - b for a, b in zip(more, less)]), 3)}; further apart than random splits "
             f"(p < 0.05) in {sum(x < 0.05 for x in p)} of {len(towers)} runs; {fmt_needed(needed)}.", ""]
    lines += [f"- seed {r.seed}: {a:.3f} against {b:.3f} (tower {1 + r.conv1_colour.tower_means.index(a)} "
              f"the more colour-specific), p = {x:.3f}, " + (f"needs {q:.3f}" if math.isfinite(q) else "no split reaches p < 0.05")
              for r, a, b, x, q in zip(towers, more, less, p, needed)]
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
             confidence: float = CONFIDENCE, earlier: tuple[str, dict[str, str]] | None = None,
             alpha: float = FAMILY_ALPHA, provenance: str | None = None) -> str:
    official = any_official(rows)
    columns = COLUMNS + (OFFICIAL_COLUMNS if official else [])
    lines = [
        "# The ablation table beside the paper's", "",
        f"Source: {source}  ", *([f"Sweep: `{command}`  "] if command else []),
        f"Training time: {sum(r.wall_time_s or 0 for r in runs) / 60:.1f} min, summed over the runs  ",
        f"Report: `python -m alexnet_lit.report {shlex.join(shown_argv(sys.argv[1:]))}`", "",
        *setting_lines(runs), "", *fixed_line(runs, seeds, bound, confidence, alpha, provenance),
        *commit_lines(runs), *overfitting_line(runs), *header_lines(rows, bound, confidence, alpha),
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
        *(table_row(row, official) for row in rows), "",
    ]
    if missing:
        lines += ["Job folders without results.json (failed or stopped before training began): "
                  + ", ".join(f"`{p}`" for p in missing), ""]
    if unreadable:
        lines += ["Unreadable results, left out of the table:", "",
                  *(f"- `{p}`: {why}" for p, why in unreadable.items()), ""]
    lines += [*holm_lines(rows, bound, alpha), *earlier_lines(rows, earlier), *per_seed_lines(rows), *figure3_lines(runs), "What the paper says:", ""]
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
        ours = [r["vs"][metric].paired.delta or Delta(float("nan")) for r in rows]
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
