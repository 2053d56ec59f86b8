"""The ablation table beside the paper's.

    python -m alexnet_lit.report SWEEP_DIR [--bound B]          # the jobs' results.json, no network
    python -m alexnet_lit.report --wandb ENTITY/PROJECT --group G   # the same from the W&B API
    python -m alexnet_lit.report --figure1 SWEEP_DIR            # Figure 1 (alexnet_lit.analysis.figure1)

writes ``report.md`` and ``report.png`` (into SWEEP_DIR, or ``--out``): the setting of the runs
(network size, init, inputs, epochs, views, classes), the design (seeds, the equivalence bound
B, the collapse rule, the levels) and when each part was fixed (``--provenance FILE``: the
table's own account, e.g. before which stage), the runs counted by the commit they ran at
(those with uncommitted changes named), ``none``'s clean gap (validation minus clean
training error: the condition for the regularisers' rows to mean anything), then per ablation
our final errors (mean ± sd over seeds, n completed runs, how many collapsed), the change
against its partner of the same seed (``none``, or the arm the paper's table names in
``against``) with its paired t-interval (95%, or ``--confidence``) (alexnet_lit.analysis.stats; runs of
one seed share their random numbers), Welch's unpaired interval over the same runs beside it
with the ratio of their widths, the paper's change (``alexnet_lit/analysis/paper_table.csv``, the one
place its numbers live), a verdict from the paired interval (agrees or disagrees where it
excludes 0, no effect beyond ±B where it lies inside ±B, else not resolved) and beside it the
verdict under Holm's step-down procedure over the rows (family-wise ``--alpha``, 0.05; on the
paired t-test's p-values and, apart, TOST's for a change beyond ±B), the rows it changes named,
the clean gap and its paired change, each pool stage's coverage (positions read / there), how
often the learning rate dropped at the partner's epochs,
the error on the data set's own validation images where validation holds more, whether every
run learned, and what LRN did; then each seed's difference and Figure 3's towers (conv1's
colour specificity, and the gap each run needed for p < 0.05). A seed where a run of the row or of its partner collapsed is left out of
the pairs and named; the collapse rate is a column; a row with a run at chance gets no verdict. Runs still going or failed are counted as such. From W&B the
errors are read from the runs' summaries; collapse and conv1's colours are unknown there.
"""
import argparse
import sys
from pathlib import Path

from alexnet_lit.analysis import figure1
from alexnet_lit.analysis.render import chart, fmt_seeds, level, markdown
from alexnet_lit.analysis.runs import sweep_command, sweep_runs, sweep_seeds, wandb_sweep_runs
from alexnet_lit.analysis.stats import CONFIDENCE
from alexnet_lit.analysis.table import BOUND, FAMILY_ALPHA, PAPER_TABLE, paper_table, summarise
from alexnet_lit.checks import OneLineParser
from alexnet_lit.results import shown
from alexnet_lit.writing import replace_text


def main(argv: list[str] | None = None, prog: str = "python -m alexnet_lit.report") -> None:
    parser = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a multirun folder (its jobs' results.json)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", help="the W&B group of the sweep (with --wandb)")
    parser.add_argument("--out", type=Path, help="folder for report.md and report.png "
                        "(default: SWEEP_DIR, or the working directory with --wandb)")
    parser.add_argument("--paper", type=Path, default=PAPER_TABLE, help="the paper's table (CSV)")
    parser.add_argument("--bound", type=float, default=BOUND, metavar="B", help="percentage points: a paired "
                        "interval inside ±B reads 'no effect beyond ±B'; fix it before the sweep (default 2)")
    parser.add_argument("--seeds", help="the seeds fixed before the sweep (e.g. 0-9), where it ran as several "
                             "commands; runs of other seeds are left out, counted; default: the sweep's "
                             "multirun.yaml (every run found)")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE, metavar="C", help="the level of every "
                        "interval (default 0.95); fix it before the sweep")
    parser.add_argument("--alpha", type=float, default=FAMILY_ALPHA, metavar="A", help="the family-wise error "
                        "of Holm's verdicts over the table's rows (default 0.05); fix it before the sweep")
    parser.add_argument("--provenance", type=Path, metavar="FILE", help="a text file stating when each part "
                        "of the design was fixed (before which stage), put in the report's header as it is")
    parser.add_argument("--earlier-look", type=earlier_look, metavar="SEEDS:C", help="also take every verdict on "
                        "the runs of SEEDS alone at level C (e.g. 0-9:0.95, a look at the sweep before seeds were "
                        "added), shown beside this one's, the rows whose verdict changed named")
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
    if args.seeds:
        try:
            seed_set(args.seeds)
        except ValueError:
            parser.error(f"--seeds {args.seeds}: expected seeds such as 0-9 or 0,2,4-6")
    for option, value in (("--confidence", args.confidence), ("--alpha", args.alpha)):
        if not 0 < value < 1:
            parser.error(f"{option} {value:g}: a level is between 0 and 1, e.g. 0.95 or 0.05")
    try:
        provenance = args.provenance.read_text(encoding="utf-8") if args.provenance else None
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"--provenance {args.provenance}: {error}")
    try:
        paper = paper_table(args.paper)
        if args.sweep_dir is not None:
            runs, unreadable, missing = sweep_runs(args.sweep_dir)
            runs, outside = of_seeds(runs, args.seeds)
            source, command = f"`{shown(args.sweep_dir, 'SWEEP')}` ({len(runs)} runs{outside})", sweep_command(args.sweep_dir)
            seeds = args.seeds or sweep_seeds(args.sweep_dir)
        else:
            (runs, outside), unreadable, missing, seeds = of_seeds(wandb_sweep_runs(args.wandb, args.group), args.seeds), {}, [], args.seeds
            source, command = f"W&B `{args.wandb}`, group `{args.group}` ({len(runs)} runs{outside})", None
        if not runs and not missing:
            why = "".join(f"; {path}: {reason}" for path, reason in unreadable.items())
            sys.exit(f"report: no runs in {args.sweep_dir or f'{args.wandb} group {args.group}'}{why}")
        rows = summarise(runs, paper, args.bound, args.confidence, args.alpha)
        earlier = None
        if args.earlier_look:
            seeds_then, confidence_then = args.earlier_look
            then = summarise([r for r in runs if r.seed in seeds_then], paper, args.bound, confidence_then)
            earlier = (f"seeds {fmt_seeds(seeds_then)}, {level(confidence_then)} intervals",
                       {r["ablation"]: r["verdict"] for r in then})
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"report: {error}")
    out = args.out or args.sweep_dir or Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    within = (lambda p: p.relative_to(args.sweep_dir)) if args.sweep_dir else (lambda p: p)  # named in the sweep
    replace_text(out / "report.md", markdown(rows, runs, source, command, [within(p) for p in missing], seeds,
                                             args.bound, {within(p): why for p, why in unreadable.items()},
                                             args.confidence, earlier, args.alpha, provenance))
    chart(rows, out / "report.png", args.bound, args.confidence)
    print(f"wrote {out / 'report.md'} and {out / 'report.png'}")
    if unreadable:  # a damaged file is an error, after the report of the others
        sys.exit("report: left out of the table: " + "; ".join(f"{p}: {why}" for p, why in unreadable.items()))


def seed_set(text: str) -> set[int]:
    """``0-9``, ``0,2,4-6``: the seeds named (ValueError for anything else)."""
    chosen = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    return chosen


def of_seeds(runs: list, seeds: str | None) -> tuple[list, str]:
    """The runs of the seeds fixed before the sweep (``--seeds``; all without it), and how
    the others are named in the report's source line: left out, not added to the design."""
    if not seeds:
        return runs, ""
    chosen = seed_set(seeds)
    outside = {r.seed for r in runs if r.seed not in chosen}
    kept = [r for r in runs if r.seed in chosen]
    return kept, f"; {len(runs) - len(kept)} of seeds {fmt_seeds(outside)} left out: not among --seeds" if outside else ""


def earlier_look(text: str) -> tuple[set[int], float]:
    """``SEEDS:C`` (``0-9:0.95``, ``0,2,4-6:0.9``): the seeds and the level of an earlier look."""
    try:
        seeds, confidence = text.rsplit(":", 1)
        chosen = seed_set(seeds)
        confidence = float(confidence)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEEDS:C, e.g. 0-9:0.95") from None
    if not chosen or not 0 < confidence < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected some seeds and a level between 0 and 1, e.g. 0-9:0.95")
    return chosen, confidence


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


def figure1_main(argv: list[str] | None = None) -> None:
    """``alexnet-figure1 SWEEP [--out DIR]``: the same as ``alexnet-report --figure1 SWEEP``."""
    main(["--figure1", *(sys.argv[1:] if argv is None else argv)], prog="alexnet-figure1 (alexnet-report --figure1)")


if __name__ == "__main__":
    main()
