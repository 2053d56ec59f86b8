"""What results.json says of a run's health (issue 12): LRN's divisor against a direct
computation, dead units, and the learning verdict (at chance, learns, with or without a loss spike)."""
import json
import math
from collections import OrderedDict
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet_lit.inspect.learning import AT_CHANCE_STEPS, DEAD_LAYER, learning_verdict
from alexnet_lit.inspect.probes import DeadUnits, LayerActivity, LossWatch, relu_units
from alexnet_lit.lrn import LRN

REPO = Path(__file__).resolve().parent.parent


def direct_divisor(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """(k + alpha * sum over each channel's window of a^2) ** beta, term by term (Section 3.3)."""
    out = torch.empty_like(a)
    for i in range(a.shape[1]):
        lo, hi = max(0, i - n // 2), min(a.shape[1] - 1, i + n // 2)
        out[:, i] = (k + alpha * (a[:, lo:hi + 1] ** 2).sum(1)) ** beta
    return out


def test_lrn_divisor_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("act1", nn.ReLU())
    net.add_module("norm1", LRN())
    x = torch.randn(4, 12, 9, 9, dtype=torch.float64) * 60  # the scale of raw-pixel conv1 outputs
    with LayerActivity(net) as activity:
        net(x)
    expected = direct_divisor(torch.relu(x), 5, 1e-4, 0.75, 2.0)
    assert activity.stats["lrn/norm1_divisor_mean"] == pytest.approx(expected.mean().item(), rel=1e-6)
    assert activity.stats["lrn/norm1_divisor_p95"] == pytest.approx(
        torch.quantile(expected.flatten(), 0.95, interpolation="lower").item(), rel=1e-3)
    assert expected.mean() > 1.2 * 2.0 ** 0.75  # at this scale LRN really divides
    with LayerActivity(net) as activity:
        net(x / 60)  # unit-scale activations: a constant rescale by k ** -beta
    assert activity.stats["lrn/norm1_divisor_p95"] == pytest.approx(2.0 ** 0.75, rel=1e-3)


def test_dead_units_are_those_silent_for_every_image_scored():
    net = nn.Sequential()
    net.add_module("act6", nn.ReLU())
    x = torch.randn(8, 10)
    x[:, :3] = -1.0  # three units dead on every image
    x[0, 3] = 5.0  # alive on one image only: not dead
    x[1:, 3] = -1.0
    x[:, 4] = -1.0  # silent on this batch, alive on the next: not dead either
    dead = DeadUnits(10)
    with LayerActivity(net, lrn=False) as activity:
        net(x)
    assert activity.stats == {}  # no LRN statistics asked for
    dead.update(activity.active["act6"])
    assert dead.compute() == pytest.approx(0.4)
    y = x.clone()
    y[:, 4] = 1.0
    with LayerActivity(net) as activity:
        net(y)
    dead.update(activity.active["act6"])
    assert dead.compute() == pytest.approx(0.3)
    assert not net[0]._forward_hooks  # the hooks are removed on exit


def test_relu_units_counts_each_relu_layers_units():
    net = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 5, 3), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
                                    flat=nn.Flatten(), fc6=nn.Linear(5, 7), act6=nn.ReLU(), fc8=nn.Linear(7, 2)))
    assert relu_units(net) == {"act1": 5, "act6": 7}


@pytest.mark.parametrize("watch, val_err, verdict", [
    ({"first": 2.3, "largest": 2.4, "step": 3}, 0.5, "learns"),
    ({"first": 3.2, "largest": 23.7, "step": 2}, 0.9, "exploded and at chance"),
    ({"first": 3.2, "largest": 23.7, "step": 2}, 0.4, "learns after a loss spike"),
    ({"first": 3.2, "largest": 23.7, "step": 2}, None, "exploded"),  # no validation yet
    ({"first": 2.3, "largest": 2.35, "step": 0}, 0.88, "at chance"),  # 12% of 1000: within 3 sd of 10%
    ({"first": 2.3, "largest": 2.35, "step": 0}, 0.85, "learns"),  # 15%: 5 sd above chance
])
def test_learning_verdict(watch, val_err, verdict):
    result = learning_verdict(10, watch, val_err, val_images=1000, dead_units={"act6": 0.5})
    assert result.verdict == verdict
    assert result.chance_loss == pytest.approx(math.log(10), abs=1e-4)
    assert result.collapsed == verdict.endswith("at chance")


def test_loss_at_chance_is_counted_over_the_second_half_only():
    """A run at chance for its first 36 of 62 steps that then learns (the quick start) is not
    collapsed: only steps from the second half on are counted."""
    watch = LossWatch(chance=0.95 * math.log(10), from_step=31)
    for step in range(62):
        watch.update(torch.tensor(2.31 if step < 36 else 1.0), step)
    state = watch.state_dict()
    assert (state["steps"], state["at_chance"], state["first"]) == (31, 5, pytest.approx(2.31))
    assert learning_verdict(10, state, 0.45, val_images=200, dead_units={}).verdict == "learns"


@pytest.mark.parametrize("dead, at_chance, reasons", [
    ({"act6": 0.5, "act7": DEAD_LAYER}, 0, []),  # at the bound: not beyond it
    ({"act6": 0.5, "act7": 0.97}, 0, ["act7: 97% of its units dead"]),
    ({"act7": 0.2}, 301, ["training loss at chance for 50% of its second half's steps"]),  # 301 of 600: more than half
    ({"act7": 0.2}, 300, []),
])
def test_the_collapse_rule_catches_runs_that_learn_a_little(dead, at_chance, reasons):
    """A run above chance (17% accuracy: far beyond 3 binomial sd of 10% on 8,000 images) whose
    last hidden layer died, or whose loss sat at chance most of the time, is collapsed, not learning."""
    watch = {"first": 2.3, "largest": 2.4, "step": 0, "steps": 600, "at_chance": at_chance}
    result = learning_verdict(10, watch, 0.826, val_images=8000, dead_units=dead)
    assert result.collapse_reasons == reasons
    assert result.verdict == ("collapsed" if reasons else "learns")
    assert result.collapsed == bool(reasons)
    assert AT_CHANCE_STEPS == 0.5


@pytest.mark.slow
def test_the_learning_benchmark_reports_each_arm(tmp_path, cache_dir):
    """benchmarks/learns.py end to end: two arms of the tiny preset, one that learns and one
    that cannot (lr 0), told apart in its JSON."""
    out = tmp_path / "learns.json"
    done = subprocess.run([sys.executable, "benchmarks/learns.py", "--base",
                           f"experiment=tiny paths.cache_dir={cache_dir}", "--epochs", "2",
                           "--arm", "learns", "", "--arm", "frozen", "optim.lr=0", "--runs", str(tmp_path / "runs"),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    arms = json.loads(out.read_text())["arms"]
    assert arms["learns"]["learning"]["verdict"] == "learns"
    assert arms["frozen"]["learning"]["verdict"] == "at chance"
    assert [e["epoch"] for e in arms["learns"]["epochs"]] == [0, 1]
    assert arms["learns"]["train_loss"]
    for arm in arms.values():  # results.json's LRN and dead-unit figures, as the run left them
        assert set(arm["lrn"]) == {"norm1", "norm2"}
        for stats in arm["lrn"].values():
            assert stats["divisor_p95"] >= stats["divisor_mean"] >= stats["k_beta"] - 1e-6
        assert set(arm["dead_units"]) == {f"act{i}" for i in range(1, 8)}
    assert "learns: completed, learns" in done.stdout
    assert arms["learns"]["command"].startswith("python -m alexnet_lit.train ")  # no machine path:
    assert "hydra.run.dir=RUNS/0" in arms["learns"]["command"] and str(tmp_path / "runs") not in out.read_text()


@pytest.mark.slow
def test_the_first_steps_benchmark_records_every_layer(tmp_path, cache_dir):
    out = tmp_path / "first_steps.json"
    done = subprocess.run([sys.executable, "benchmarks/first_steps.py", "--steps", "2", "--out", str(out),
                           "experiment=tiny", f"paths.cache_dir={cache_dir}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = json.loads(out.read_text())["steps"]
    assert [s["step"] for s in steps] == [0, 1]
    assert list(steps[0]["relative_update"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert list(steps[0]["pre_activation"]) == [f"act{i}" for i in range(1, 8)]
    assert all(0 < v < 1 for v in steps[0]["relative_update"].values())
