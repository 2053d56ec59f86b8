"""Figure 1 of the paper (Section 3.1): a four-layer convolutional network reaches 25% training
error on CIFAR-10 six times faster with ReLUs than with tanh units, each at the learning rate
that trains it fastest, with no regularisation of any kind.

The runs are ordinary training runs (``experiment=figure1``, a multirun over activation x
learning rate); alexnet_lit.callbacks.TrainErrorTarget stops each once its training error
reaches the target and records the curve. ``python -m alexnet_lit.report --figure1 SWEEP`` (or
``alexnet-figure1 SWEEP``) turns the sweep folder into the figure and the speed-up.
"""
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from alexnet_lit.results import Results, read_results, shown, write_json
from alexnet_lit.trust import run_config
from alexnet_lit.writing import replace_text, save_figure

CURVE = "train_error.json"  # in each run folder: the target, the training-error curve, where it was reached


@dataclass
class Trial:
    """One run of a Figure 1 sweep: an activation at a learning rate."""
    activation: str
    lr: float
    status: str  # completed | running | failed | interrupted | diverged | not started
    train_error: list[float]  # after each epoch
    epochs_to_target: float | None  # interpolated between epochs; None if not reached
    folder: Path
    wall_time_s: float | None


def epochs_to(errors: list[float], target: float) -> float | None:
    """When the training errors of epochs 1, 2, ... (``errors``) first fall below ``target``,
    interpolated linearly between the two epochs around the crossing; 1 where the first epoch
    is already below it (no error is measured before it); None if they never do."""
    for epoch, error in enumerate(errors, start=1):
        if error < target:
            if epoch == 1:
                return 1.0
            before = errors[epoch - 2]
            return epoch - 1 + (before - target) / (before - error)
    return None


def read_trials(sweep: Path, target: float | None = None) -> tuple[list[Trial], float]:
    """Every job folder below ``sweep`` (one with ``.hydra/config.yaml``), with its epochs to
    ``target`` (default: the training error the runs stopped at; not below it, where the
    curves end), and that target."""
    trials, targets = [], set()
    for config_path in sorted(sweep.rglob(".hydra/config.yaml")):
        job, config = config_path.parent.parent, OmegaConf.create(run_config(config_path))
        try:
            activation, lr = config.model.activation, float(config.optim.lr)
        except ConfigAttributeError as error:
            raise ValueError(f"{config_path}: not a training run's config ({error})") from None
        results = read_results(job / "results.json") if (job / "results.json").is_file() else None
        curve = json.loads((job / CURVE).read_text()) if (job / CURVE).is_file() else {}
        if "target" in curve:
            targets.add(curve["target"])
        errors = curve.get("train_error", [])
        trials.append(Trial(activation, lr, trial_status(results), errors, None, job,
                            None if results is None else results.wall_time_s))
    if not trials:
        raise ValueError(f"{sweep}: no job folders (.hydra/config.yaml) below it")
    if len(targets) > 1:
        raise ValueError(f"{sweep}: its runs stopped at different targets {sorted(targets)}")
    if not targets:
        raise ValueError(f"{sweep}: no run has written {CURVE}; were they run with experiment=figure1?")
    stop = targets.pop()
    if target is not None and target < stop:
        raise ValueError(f"--target {target}: below {stop}, where the runs of {sweep} stopped")
    target = stop if target is None else target
    for trial in trials:
        trial.epochs_to_target = epochs_to(trial.train_error, target)
    return trials, target


def trial_status(results: Results | None) -> str:
    """A run's status as the figure counts it: ``diverged`` where a non-finite training loss
    stopped it (alexnet_lit.checkpointing.faults.NonFiniteLossError), ``not started`` where it
    has no results.json."""
    if results is None:
        return "not started"
    return "diverged" if results.error_type == "NonFiniteLossError" else results.status


def fastest(trials: list[Trial]) -> Trial | None:
    """The trial that reached the target in the fewest epochs (on a tie, as where several are
    below it after the first, the lowest error at that epoch), or, where none did, the one
    ahead at the longest horizon two runs share: of the runs trained at least as many epochs
    as the second-longest, the lowest training error after that many (the longer on a tie);
    None without curves."""
    reached = [t for t in trials if t.epochs_to_target is not None]
    if reached:
        return min(reached, key=lambda t: (t.epochs_to_target, t.train_error[math.ceil(t.epochs_to_target) - 1]))
    curves = [t for t in trials if t.train_error]
    if not curves:
        return None
    horizon = sorted((len(t.train_error) for t in curves), reverse=True)[min(1, len(curves) - 1)]
    compared = [t for t in curves if len(t.train_error) >= horizon]
    return min(compared, key=lambda t: (t.train_error[horizon - 1], -len(t.train_error)))


def speedup(trials: list[Trial]) -> dict:
    """Epochs to the target for tanh over those for ReLU, each at its fastest rate: ``ratio``.
    Where no tanh run reached it, lower bounds: ``at_least_at_fastest``, the epochs tanh's
    fastest rate trained without reaching it over ReLU's; ``at_least``, the same with the
    fewest epochs any tanh run that did not diverge trained (the bound that holds even if a
    rate stopped early would have overtaken it)."""
    best = {a: fastest([t for t in trials if t.activation == a]) for a in ("relu", "tanh")}
    relu, tanh = (best[a].epochs_to_target if best[a] else None for a in ("relu", "tanh"))
    result = dict(relu_epochs=relu, tanh_epochs=tanh, ratio=None, at_least=None, at_least_at_fastest=None)
    if relu is None or best["tanh"] is None:
        return result
    if tanh is not None:
        result["ratio"] = tanh / relu
        return result
    trained = [len(t.train_error) for t in trials if t.activation == "tanh" and t.status != "diverged"]
    result["at_least"] = min(trained) / relu if trained else None
    result["at_least_at_fastest"] = len(best["tanh"].train_error) / relu
    return result


def grid_edges(trials: list[Trial]) -> list[str]:
    """A warning for each activation whose fastest rate is the smallest or largest it tried:
    the fastest may lie outside the grid."""
    warnings = []
    for activation in sorted({t.activation for t in trials}):
        mine = [t for t in trials if t.activation == activation]
        best, rates = fastest(mine), sorted({t.lr for t in mine})
        if best is not None and best.lr in (rates[0], rates[-1]):
            warnings.append(f"WARNING: {activation}'s fastest rate {best.lr:g} is at the edge of its "
                            f"grid {', '.join(f'{r:g}' for r in rates)}: a rate outside it may be faster")
    return warnings


def ratio_text(result: dict) -> str:
    if result["ratio"] is not None:
        return f"ReLU {result['ratio']:.1f}x faster than tanh"
    if result["at_least_at_fastest"] is not None:
        return (f"ReLU at least {result['at_least_at_fastest']:.1f}x faster than tanh at tanh's fastest rate, "
                f"which did not reach the target (at least {result['at_least']:.1f}x over every rate tried)")
    return "no ratio: ReLU did not reach the target" if result["relu_epochs"] is None else "no ratio"


def trial_row(trial: Trial, best: Trial | None) -> str:
    reached = (f"{trial.epochs_to_target:.2f}" if trial.epochs_to_target is not None
               else f"not in {len(trial.train_error)}" if trial.train_error else "—")
    last = f"{100 * trial.train_error[-1]:.1f}" if trial.train_error else "—"
    minutes = f"{trial.wall_time_s / 60:.1f}" if trial.wall_time_s else "—"
    mark = " (fastest)" if trial is best else ""
    return (f"| {trial.activation} | {trial.lr:g}{mark} | {trial.status} | {reached} | "
            f"{len(trial.train_error)} | {last} | {minutes} | `{trial.folder.name}` |")


def plot(trials: list[Trial], target: float, result: dict, path: Path) -> None:
    """Training error against epochs: each activation's fastest rate in black (ReLU solid,
    tanh dashed, as the paper's figure), its other rates in grey, the target as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for activation, style in (("relu", "-"), ("tanh", "--")):
        mine = [t for t in trials if t.activation == activation and t.train_error]
        best = fastest(mine)
        for trial in mine:
            chosen = trial is best
            ax.plot(range(1, len(trial.train_error) + 1), trial.train_error, style, marker=".",
                    color="black" if chosen else "0.75", linewidth=1.6 if chosen else 0.8,
                    label=f"{activation}, lr {trial.lr:g}" + (" (fastest)" if chosen else ""), zorder=2 if chosen else 1)
    ax.axhline(target, color="tab:red", linewidth=0.8)
    ax.set(xlabel="Epochs", ylabel="Training error rate", ylim=(0, 1))
    ax.set_title(textwrap.fill(f"CIFAR-10: {ratio_text(result)}", 70), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def report(sweep: Path, out: Path, commands: list[str], target: float | None = None) -> dict:
    """Write figure1.png, figure1.md and figure1.json for the sweep into ``out``, the speed-up
    measured at ``target`` (read_trials); returns the summary (also in figure1.json)."""
    trials, target = read_trials(sweep, target)
    trials.sort(key=lambda t: (t.activation, t.lr))
    result = speedup(trials)
    warnings = grid_edges(trials)
    best = {a: fastest([t for t in trials if t.activation == a]) for a in ("relu", "tanh")}
    config = OmegaConf.create(run_config(trials[0].folder / ".hydra" / "config.yaml"))
    setting = {key: OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
               for key, value in ((key, OmegaConf.select(config, key)) for key in SETTING)}
    setting["data.root"] = shown(setting["data.root"], "DATA") if setting["data.root"] else None
    cpu_s = sum(t.wall_time_s or 0 for t in trials)
    summary = dict(result, target=target, text=ratio_text(result), warnings=warnings, setting=setting,
                   commands=commands, run_time_s_summed=round(cpu_s, 1),
                   fastest_lr={a: t.lr if t else None for a, t in best.items()},
                   trials=[dict(activation=t.activation, lr=t.lr, status=t.status, train_error=t.train_error,
                                epochs_to_target=t.epochs_to_target, folder=str(t.folder.relative_to(sweep)))
                           for t in trials])
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "figure1.json", summary)
    plot(trials, target, result, out / "figure1.png")
    lines = ["# Figure 1: ReLU against tanh on CIFAR-10", "",
             f"**{ratio_text(result)}**: epochs to {target:.0%} training error at each activation's "
             f"fastest rate, ReLU {fmt_epochs(result['relu_epochs'])}, tanh {fmt_epochs(result['tanh_epochs'])} "
             "(the paper: about 6x).", "", *[f"**{w}**" for w in warnings], "",
             f"Source: `{shown(sweep, 'SWEEP')}` ({len(trials)} runs), {cpu_s / 60:.1f} min of training summed over the runs  ",
             *[f"Sweep: `{c}`  " for c in commands],
             "Setting: " + "; ".join(f"{k} {v}" for k, v in setting.items()) + ".", "",
             "Epochs to the target are interpolated between the training errors of the two epochs around "
             "the crossing (1 where the first epoch is below it); each epoch's error is counted over the "
             "updates as they were made.", "",
             "| activation | lr | status | epochs to target | epochs trained | last train error % | "
             "minutes | run |", "|---|---|---|---|---|---|---|---|",
             *[trial_row(t, best[t.activation]) for t in trials]]
    replace_text(out / "figure1.md", "\n".join(lines) + "\n")
    return summary


def fmt_epochs(epochs: float | None) -> str:
    return f"{epochs:.2f}" if epochs is not None else "not reached"


# What the figure's runs were: the keys of their config the comparison with the paper turns on.
SETTING = ("model.init", "data.normalize", "model.rnorm", "data.batch_size", "optim.momentum",
           "optim.weight_decay", "data.augment", "data.pca_noise", "data.root")
