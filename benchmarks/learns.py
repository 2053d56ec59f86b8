"""Does a recipe learn on real images? Trains each arm with ``python -m alexnet_lit.train``
and reports, against chance, its training loss along the way, its training and validation
top-1 error per epoch, and what results.json says of it (learning verdict, dead units, LRN's
divisor). Issue 12: the paper's literal recipe blew up and collapsed on Imagenette; this is
the evidence for the defaults, and the check that every ablation learns in a preset.

    python benchmarks/learns.py --data DIR [--epochs 2] [--device cpu|cuda]
        [--arm NAME "OVERRIDE ..."]... [--out benchmarks/results/learns_cpu.json]
    python benchmarks/learns.py --base "experiment=quickstart" --ablations   # every ablation

``--data`` trains on a folder of class folders or a prepared folder (Imagenette); without it
the arms' overrides choose the data. Without ``--arm`` or ``--ablations`` it runs the
defaults and the paper's literal recipe (``model.init=paper``). Prints each arm as it ends
and keeps the JSON up to date.
"""
import argparse
import csv
import math
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from timing import machine, save

from alexnet_lit.build import CONFIG_DIR
from alexnet_lit.results import read_results

DEFAULT_ARMS = {"defaults": "", "paper (literal)": "model.init=paper"}


def train(overrides: list[str], run_dir: Path) -> dict:
    """One run of the real entry point; its results.json and csv/metrics.csv, summarised."""
    command = [sys.executable, "-m", "alexnet_lit.train", *overrides, "trainer.log_every_n_steps=10",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise RuntimeError(f"{shlex.join(command)} left no results.json:\n{done.stderr[-3000:]}")
    results = asdict(read_results(results_file))
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    number = lambda row, key: float(row[key]) if row.get(key) else None  # noqa: E731
    losses = [(int(r["step"]), number(r, "train/loss")) for r in rows if r.get("train/loss")]
    epochs_seen = {}
    for r in rows:
        for key in ("train/top1_err", "val/top1_err"):
            if r.get(key):
                epochs_seen.setdefault(int(r["epoch"]), {})[key.replace("/", "_")] = number(r, key)
    return dict(command=shlex.join(command), status=results["status"], wall_s=time.perf_counter() - began,
                learning=results["learning"], dead_units=results["dead_units"], lrn=results["lrn"],
                train_loss=losses, epochs=[dict(epoch=e, **v) for e, v in sorted(epochs_seen.items())],
                error=results["error"])


def print_arm(name: str, arm: dict) -> None:
    learning = arm["learning"] or {}
    print(f"\n{name}: {arm['status']}, {learning.get('verdict')} in {arm['wall_s']:.0f} s "
          f"(chance: loss {learning.get('chance_loss', math.nan):.2f})")
    print("  train loss by step: " + ", ".join(f"{s}: {v:.2f}" for s, v in arm["train_loss"][::3]))
    for e in arm["epochs"]:
        print(f"  epoch {e['epoch']}: train top-1 {e.get('train_top1_err', math.nan):.3f}, "
              f"val top-1 {e.get('val_top1_err', math.nan):.3f}")
    if arm["dead_units"]:
        print("  dead units: " + ", ".join(f"{k} {v:.2f}" for k, v in arm["dead_units"].items()))
    if arm["lrn"]:
        print("  LRN divisor / k^beta: " + ", ".join(
            f"{k} {v['divisor_mean'] / v['k_beta']:.3f}" for k, v in arm["lrn"].items() if v.get("divisor_mean")))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="class folders or a prepared folder (Imagenette)")
    parser.add_argument("--classes", type=int, default=10, help="of --data")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--base", default="", help="overrides of every arm, e.g. 'experiment=quickstart'")
    parser.add_argument("--arm", nargs=2, action="append", metavar=("NAME", "OVERRIDES"),
                        help="a name and its Hydra overrides in one string (repeatable)")
    parser.add_argument("--ablations", action="store_true", help="one arm per file of conf/ablation/")
    parser.add_argument("--runs", help="folder for the runs (default: a temporary one)")
    parser.add_argument("--out", default=None, help="JSON (default benchmarks/results/learns_<device>.json)")
    args = parser.parse_args(argv)
    arms = dict(args.arm or [])
    if args.ablations:
        arms.update({p.stem: f"+ablation={p.stem}" for p in sorted((Path(CONFIG_DIR) / "ablation").glob("*.yaml"))})
    arms = arms or DEFAULT_ARMS
    common = [f"trainer.accelerator={args.device}", *shlex.split(args.base)]
    if args.data:
        common += ["data=folder", f"data.root={args.data}", f"data.num_classes={args.classes}"]
    if args.epochs:
        common.append(f"trainer.max_epochs={args.epochs}")
    out = Path(args.out or Path(__file__).parent / "results" / f"learns_{args.device}.json")
    runs = Path(args.runs or tempfile.mkdtemp(prefix="learns-"))
    report = dict(machine=machine(torch.device(args.device)), common=common, arms={})
    for i, (name, overrides) in enumerate(arms.items()):
        report["arms"][name] = train([*common, *shlex.split(overrides)], runs / str(i))
        print_arm(name, report["arms"][name])
        data = {"DATA": Path(args.data).resolve().parent} if args.data else {}
        save(report, out, echo=False, folders={"RUNS": runs, **data})
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
