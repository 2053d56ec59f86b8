"""One line per run of a pilot (ablations/table/pilot.sh): its seed, errors in percent
(validation, the official validation images alone, clean and augmented training), learning
verdict, steps with the loss at chance, and each ReLU layer with more than 5% of its units dead.

    python ablations/table/pilot.py SWEEP/NAME
"""
import json
import sys
from pathlib import Path


def percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main(folder: str) -> None:
    print("| seed | status | val | official val | clean train | augmented train | verdict | loss at chance | dead units |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = [json.loads(p.read_text()) for p in Path(folder).rglob("results.json")]
    for r in sorted(runs, key=lambda r: r["seed"]):
        learning = r["learning"]
        dead = ", ".join(f"{k} {v:.0%}" for k, v in r["dead_units"].items() if v and v > 0.05) or "none over 5%"
        print(f"| {r['seed']} | {r['status']} | {percent(r['val_top1_err'])} | {percent(r.get('val_official_top1_err'))} "
              f"| {percent(r.get('train_eval_top1_err'))} | {percent(r.get('train_top1_err'))} | {learning['verdict']} "
              f"| {learning.get('at_chance_steps')} of {learning.get('steps')} | {dead} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
