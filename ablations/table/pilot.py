"""One line per run of a pilot (ablations/table/pilot.sh): its seed, errors in percent
(validation, the official validation images alone, clean and augmented training), learning
verdict, steps with the loss at chance, and each ReLU layer with more than 5% of its units dead.

    python ablations/table/pilot.py SWEEP/NAME
"""
import sys
from pathlib import Path

from alexnet_lit.results import read_results


def percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main(folder: str) -> None:
    print("| seed | status | val | official val | clean train | augmented train | verdict | loss at chance | dead units |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = [read_results(p) for p in Path(folder).rglob("results.json")]
    for r in sorted(runs, key=lambda r: r.seed):
        dead = ", ".join(f"{k} {v:.0%}" for k, v in (r.dead_units or {}).items() if v > 0.05) or "none over 5%"
        print(f"| {r.seed} | {r.status} | {percent(r.val_top1_err)} | {percent(r.val_official_top1_err)} "
              f"| {percent(r.train_eval_top1_err)} | {percent(r.train_top1_err)} | {r.learning.verdict} "
              f"| {r.learning.at_chance_steps} of {r.learning.steps} | {dead} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
