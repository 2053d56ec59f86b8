"""Figure 1 (Section 3.1, ReLU against tanh on CIFAR-10) inside the framework: the layer
table's average-pooling and within-map normalisation rows, model=cifar_convnet (cuda-convnet's
layers-18pct.cfg), the stopping rule, and a tiny real experiment=figure1 sweep turned into the
figure and the speed-up by ``report --figure1``."""
import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from torch import nn

from alexnet_lit.analysis import figure1
from alexnet_lit.checkpointing.faults import NonFiniteLossError
from alexnet_lit.lrn import MapNorm
from alexnet_lit.results import record_failure
from conftest import REPO
from test_data_real import cifar_subset
from test_report import write_figure1_sweep

POOLS = ["conv1", "pool1", "rnorm1", "conv2", "pool2", "rnorm2", "conv3", "pool3"]


@pytest.fixture
def convnet(compose_cfg):
    def _build(*overrides: str) -> nn.Module:
        return instantiate(compose_cfg("model=cifar_convnet", "data=cifar10", *overrides).model)
    return _build


def output_shapes(net: nn.Module, names: list[str]) -> dict[str, tuple]:
    shapes = {}
    for name in names:
        getattr(net.features, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    with torch.no_grad():
        shapes["fc8"] = tuple(net(torch.randn(2, 3, 32, 32)).shape[1:])
    return shapes


def test_average_pooling_rows_give_cuda_convnets_shapes(convnet):
    net = convnet()
    assert [type(getattr(net.features, p)) for p in ("pool1", "pool2", "pool3")] == [nn.MaxPool2d, nn.AvgPool2d, nn.AvgPool2d]
    assert output_shapes(net, POOLS) == {
        "conv1": (32, 32, 32), "pool1": (32, 16, 16), "rnorm1": (32, 16, 16),  # rounded up: 32 -> 16
        "conv2": (32, 16, 16), "pool2": (32, 8, 8), "rnorm2": (32, 8, 8),
        "conv3": (64, 8, 8), "pool3": (64, 4, 4), "fc8": (10,)}


def test_an_average_pooling_row_removed_or_rounded_down(convnet):
    net = convnet("model.features.pool2=null")
    assert "pool2" not in dict(net.features.named_children())
    assert output_shapes(net, ["conv3", "pool3"]) == {"conv3": (64, 16, 16), "pool3": (64, 8, 8), "fc8": (10,)}
    assert net.classifier.fc8.in_features == 64 * 8 * 8
    net = convnet("model.pool.ceil_mode=false")  # AlexNet's rounding: 32 -> 15 -> 7 -> 3
    assert output_shapes(net, ["pool3"])["pool3"] == (64, 3, 3) and net.classifier.fc8.in_features == 64 * 9


def test_an_unknown_row_word_names_the_row(convnet):
    with pytest.raises(Exception, match="model.features.pool2='minpool'"):
        convnet("model.features.pool2=minpool")


def test_cifar_convnet_is_the_four_layer_net_with_its_released_init(convnet):
    torch.manual_seed(0)
    net = convnet("model.activation=tanh")
    learned = net.learned_layers()
    assert [(n, tuple(m.weight.shape)) for n, m in learned] == [
        ("conv1", (32, 3, 5, 5)), ("conv2", (32, 32, 5, 5)), ("conv3", (64, 32, 5, 5)), ("fc8", (10, 64 * 4 * 4))]
    assert all(m.padding == (2, 2) and m.stride == (1, 1) for n, m in learned if n.startswith("conv"))
    assert sum(isinstance(m, nn.Tanh) for m in net.modules()) == 3
    assert not any(isinstance(m, (nn.ReLU, nn.Dropout)) for m in net.modules())
    assert [n for n, m in net.features.named_children() if isinstance(m, MapNorm)] == ["rnorm1", "rnorm2"]
    for name, layer in learned:
        std = 1e-4 if name == "conv1" else 1e-2
        assert layer.weight.std().item() == pytest.approx(std, rel=0.05), name
        assert layer.weight.mean().abs().item() < std / 10, name
        assert torch.all(layer.bias == 0), name


def test_map_norm_is_cuda_convnets_within_map_formula():
    torch.manual_seed(0)
    x = 300 * torch.randn(2, 3, 5, 6)  # raw-pixel scale, where the divisor is far from 1
    norm = MapNorm(size=3, scale=5e-5, pow=0.75)
    expected = torch.empty_like(x)
    for i in range(5):
        for j in range(6):  # the 3x3 window clipped at the borders, summed in the same map
            window = x[:, :, max(0, i - 1):i + 2, max(0, j - 1):j + 2]
            expected[:, :, i, j] = x[:, :, i, j] / (1 + 5e-5 / 9 * window.pow(2).sum((2, 3))) ** 0.75
    torch.testing.assert_close(norm(x), expected)
    assert (norm(x) / x).min() < 0.9  # it acts on inputs of this scale


def test_epochs_to_the_target_interpolates_the_crossing():
    assert figure1.epochs_to([0.5, 0.2], 0.25) == pytest.approx(1 + 0.25 / 0.3)
    assert figure1.epochs_to([0.6, 0.3, 0.25, 0.1], 0.25) == pytest.approx(3.0)  # stops below it, not at it
    assert figure1.epochs_to([0.2, 0.1], 0.25) == 1.0
    assert figure1.epochs_to([0.5, 0.3], 0.25) is None


def trial(activation, lr, errors, status="completed"):
    return figure1.Trial(activation, lr, status, errors, figure1.epochs_to(errors, 0.25), REPO, 1.0)


def test_the_speed_up_is_at_each_activations_fastest_rate_or_a_lower_bound():
    relu = [trial("relu", 0.01, [0.5, 0.3, 0.2]), trial("relu", 0.02, [0.4, 0.2])]
    tanh = [trial("tanh", 0.01, [0.6, 0.5, 0.4, 0.2]), trial("tanh", 0.02, [0.6, 0.4, 0.3, 0.24])]
    result = figure1.speedup(relu + tanh)
    assert result["relu_epochs"] == pytest.approx(1.75) and result["tanh_epochs"] == pytest.approx(3.75)
    assert result["ratio"] == pytest.approx(result["tanh_epochs"] / 1.75) and result["at_least"] is None
    assert figure1.grid_edges(relu + tanh) == [
        "WARNING: relu's fastest rate 0.02 is at the edge of its grid 0.01, 0.02: a rate outside it may be faster",
        "WARNING: tanh's fastest rate 0.01 is at the edge of its grid 0.01, 0.02: a rate outside it may be faster"]
    inside = [trial("tanh", lr, [0.6, 0.4, errors]) for lr, errors in ((0.01, 0.3), (0.02, 0.2), (0.04, 0.3))]
    assert figure1.grid_edges(inside) == [] and figure1.fastest(inside).lr == 0.02
    first = [trial("relu", lr, [error]) for lr, error in ((0.01, 0.2), (0.02, 0.1), (0.04, 0.15))]
    assert figure1.fastest(first).lr == 0.02  # all below after epoch 1: the lowest error then
    slow = [trial("tanh", 0.01, [0.6, 0.5, 0.4, 0.3, 0.3]), trial("tanh", 0.02, [0.6, 0.5, 0.45], "interrupted"),
            trial("tanh", 0.04, [0.9], "diverged")]  # diverged: it will never get there
    result = figure1.speedup(relu + slow)
    assert result["ratio"] is None and result["at_least"] == pytest.approx(3 / 1.75)
    assert result["at_least_at_fastest"] == pytest.approx(5 / 1.75)  # 0.01: the lower error after 3 epochs
    # a rate ahead after one epoch but behind where two long runs can be compared is not the fastest
    long = [trial("tanh", 0.01, [0.60, 0.40, 0.30]), trial("tanh", 0.02, [0.55, 0.45, 0.35, 0.33]),
            trial("tanh", 0.04, [0.70])]
    assert figure1.fastest(long).lr == 0.01
    assert figure1.speedup(relu + long)["at_least_at_fastest"] == pytest.approx(3 / 1.75)


def test_a_run_stopped_by_a_non_finite_loss_is_told_by_its_errors_class(tmp_path):
    """A run that diverged (checkpointing.faults.NonFiniteLossError) is ``diverged``, one that
    failed otherwise ``failed``: read from the record's ``error_type``, never its message."""
    sweep = write_figure1_sweep(tmp_path)
    meta = dict(ablation=["none"], seed=0)
    record_failure(sweep / "tanh_lr0.1" / "results.json", NonFiniteLossError("the loss at step 3"), meta)
    record_failure(sweep / "tanh_lr0.01" / "results.json", RuntimeError("non-finite training loss"), meta)
    status = {t.lr: t.status for t in figure1.read_trials(sweep)[0] if t.activation == "tanh"}
    assert status == {0.1: "diverged", 0.01: "failed", 0.001: "completed"}


@pytest.mark.slow
def test_a_tiny_figure1_sweep_gives_the_figure_and_the_speed_up(tmp_path):
    root = cifar_subset(tmp_path / "data", 4)  # 40 training images, 40 test images
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "alexnet_lit.train", "-m", "experiment=figure1", f"data.root={root}",
         f"hydra.sweep.dir={sweep}", "optim.lr=0.01,0.1", "data.batch_size=20", "trainer.max_epochs=2",
         "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.enable_model_summary=false",
         "callbacks.train_error_target.target=0.93", "data.normalize=standard", "model.init=kaiming"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["relu_lr0.01", "relu_lr0.1", "tanh_lr0.01", "tanh_lr0.1"]
    curves = {run: json.loads((sweep / run / "train_error.json").read_text()) for run in runs}
    for run, curve in curves.items():  # one error per epoch trained; it stops once below the target
        assert curve["target"] == 0.93 and 1 <= len(curve["train_error"]) <= 2
        below = [e < 0.93 for e in curve["train_error"]]
        assert below[:-1] == [False] * (len(below) - 1)
        assert curve["reached"] == ({"epoch": len(below), "step": len(below)} if below[-1] else None)

    report = subprocess.run([sys.executable, "-m", "alexnet_lit.report", "--figure1", str(sweep)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    summary = json.loads((sweep / "figure1.json").read_text())
    assert Image.open(sweep / "figure1.png").format == "PNG"
    assert sorted((t["activation"], t["lr"]) for t in summary["trials"]) == [
        ("relu", 0.01), ("relu", 0.1), ("tanh", 0.01), ("tanh", 0.1)]
    fastest = {a: min(figure1.epochs_to(curves[f"{a}_lr{lr}"]["train_error"], 0.93) or 99 for lr in (0.01, 0.1))
               for a in ("relu", "tanh")}
    assert summary["ratio"] == pytest.approx(fastest["tanh"] / fastest["relu"])
    assert f"ReLU {summary['ratio']:.1f}x faster than tanh" in report.stdout
    assert summary["warnings"] and all("edge of its grid" in w for w in summary["warnings"])  # 2 rates: both edges
    table = (sweep / "figure1.md").read_text()
    assert all(f"| {a} | {lr:g}" in table for a in ("relu", "tanh") for lr in (0.01, 0.1))
    assert "experiment=figure1" in table and "train_error_target.target=0.93" in table
    assert f"Source: `SWEEP/{sweep.name}` (4 runs)" in table  # the records name no machine path:
    assert str(sweep.parent) not in table + (sweep / "figure1.json").read_text()
    assert sorted(t["folder"] for t in summary["trials"]) == runs  # each run named in the sweep
    assert summary["setting"]["data.root"].startswith("DATA/")

    out = tmp_path / "scales.json"  # benchmarks/activation_scales.py on two of the runs
    done = subprocess.run([sys.executable, "benchmarks/activation_scales.py", str(sweep / "tanh_lr0.1"),
                           str(sweep / "relu_lr0.1"), "--images", "16", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    tanh, relu = json.loads(out.read_text())["runs"]
    assert (tanh["run"], relu["run"]) == ("RUNS/tanh_lr0.1", "RUNS/relu_lr0.1")  # the runs' folder a placeholder
    assert str(sweep) not in out.read_text()
    assert (tanh["activation"], relu["activation"], tanh["images"]) == ("tanh", "relu", 16)
    assert tanh["epochs"] == len(curves["tanh_lr0.1"]["train_error"])
    for run in (tanh, relu):
        assert list(run["at_init"]) == list(run["trained"]) == ["act1", "act2", "act3"]
        assert run["at_init"] != run["trained"]  # the checkpoint's weights, not a fresh network
        assert all(0 <= s["idle"] <= 1 and s["std"] > 0 for s in [*run["at_init"].values(), *run["trained"].values()])
    assert all(s["std"] <= 1 for s in tanh["trained"].values())


def test_report_figure1_refuses_a_folder_without_figure1_runs(tmp_path):
    with pytest.raises(SystemExit, match="no job folders"):
        from alexnet_lit import report
        report.main(["--figure1", str(tmp_path)])
