"""conf/speed: every switch reaches the Trainer or the module, and none changes what is
learnt beyond rounding (figures: benchmarks/, docs/speed.md)."""
import json
import platform
import statistics
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from alexnet_lit.build import build_module
from alexnet_lit.train import train
from conftest import DEVICES, REPO, compose_config, extracted, float32_on_cuda, needs_cuda


def test_precision_and_cudnn_benchmark_reach_the_trainer(compose_cfg):
    before = torch.backends.cudnn.benchmark
    try:
        trainer = instantiate(compose_cfg("trainer=cpu").trainer)
        assert trainer.precision == "32-true" and torch.backends.cudnn.benchmark is True
        trainer = instantiate(compose_cfg("trainer=cpu", "speed.precision=bf16-mixed",
                                          "speed.cudnn_benchmark=false").trainer)
        assert trainer.precision == "bf16-mixed" and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


def two_steps(run_dir, cache, *speed: str, device: str = "cpu") -> tuple[dict, float]:
    """Two training steps of the tiny network on ``device``: its weights and the last step's
    loss. Without dropout: compiled code, and CUDA, draw its random numbers from another
    generator (crops, mirrors and colour noise are drawn on the host, the same everywhere)."""
    cfg = compose_config(["experiment=tiny", "model.dropout=0", "optim=milestones",
                          "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                          "trainer.limit_val_batches=0", f"trainer.accelerator={device}",
                          *speed], output_dir=run_dir, cache=cache)
    with float32_on_cuda():
        metrics = train(cfg)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True,
                       map_location="cpu")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.")}, metrics["train/loss"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, cache_dir):
    return two_steps(tmp_path_factory.mktemp("default"), cache_dir)


# CUDA against the CPU: other convolution algorithms, another order of summation
TOLERANCE = {"cpu": dict(rtol=1e-5, atol=1e-6), "cuda": dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("device, channels_last", [
    ("cpu", True), pytest.param("cuda", False, marks=needs_cuda), pytest.param("cuda", True, marks=needs_cuda)])
def test_channels_last_and_cuda_learn_what_the_cpu_default_learns(default_run, tmp_path, cache_dir,
                                                                  device, channels_last):
    reference, _ = default_run
    weights, _ = two_steps(tmp_path, cache_dir, f"speed.channels_last={channels_last}", device=device)
    conv1 = weights["net.features.conv1.weight"]
    assert conv1.is_contiguous(memory_format=torch.channels_last) == channels_last
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, **TOLERANCE[device], msg=name)


@pytest.mark.slow  # compiles a forward and a backward: half a minute on two cores
@pytest.mark.parametrize("device", DEVICES)  # CUDA: Triton kernels against cuDNN's
def test_compiled_network_gives_the_default_outputs_and_gradients(compose_cfg, device):
    tiny = ("experiment=tiny", "model.dropout=0")  # compiled dropout draws otherwise
    cfg = compose_cfg(*tiny)
    eager = build_module(cfg).to(device)
    compiled = build_module(compose_cfg(*tiny, "speed.compile=true", "speed.channels_last=true")).to(device)
    compiled.load_state_dict(eager.state_dict())
    compiled.configure_model()
    traced = []
    compiled.net.features.conv1.register_forward_pre_hook(
        lambda *_: traced.append(torch.compiler.is_compiling()))
    images = torch.randn(8, 3, cfg.model.input_size, cfg.model.input_size).to(device)
    outputs = []
    for module in (eager, compiled):
        with float32_on_cuda():
            logits = module(images)
            logits.square().sum().backward()
        outputs.append((logits, [p.grad for p in module.net.parameters()]))
    assert traced == [True]  # the network ran as compiled code
    torch.testing.assert_close(outputs[1][0], outputs[0][0], rtol=1e-5, atol=1e-5)
    for compiled_grad, eager_grad in zip(outputs[1][1], outputs[0][1]):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-5)
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints interchange


@pytest.mark.parametrize("device", DEVICES)  # on CUDA, against the CPU's float32 run
def test_bf16_mixed_precision_trains(default_run, tmp_path, cache_dir, device):
    reference, reference_loss = default_run
    weights, loss = two_steps(tmp_path, cache_dir, "speed.precision=bf16-mixed", device=device)
    assert all(torch.isfinite(w).all() and w.dtype == torch.float32 for w in weights.values())
    assert loss == pytest.approx(reference_loss, rel=2e-2)  # after one bf16 update, in bf16
    assert loss != reference_loss


PAGE_FAULTS = """
import json, resource, sys, torch
from alexnet_lit.speed import reuse_host_memory
if sys.argv[1] == "reuse":
    assert reuse_host_memory()
for _ in range(10):  # the heap grows until a freed block fits the next one
    torch.ones(2**24)  # 64 MiB, as conv1's output at batch 32
faults = []
for _ in range(15):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(2**24)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="speed.reuse_host_memory is glibc's")
def test_reuse_host_memory_stops_faulting_in_every_new_tensor():
    """Page faults per new 64 MiB tensor, the median of 15: glibc may still move its heap once
    (when ``brk`` runs into another mapping), which faults one tensor's pages in anew."""
    faults = {mode: statistics.median(json.loads(subprocess.run(
                  [sys.executable, "-c", PAGE_FAULTS, mode], check=True, capture_output=True,
                  text=True).stdout))
              for mode in ("default", "reuse")}  # fresh processes: the setting is for good
    pages = 2**26 // 4096
    assert faults["default"] > pages / 2  # every allocation mapped and faulted in anew
    assert faults["reuse"] < pages / 50


@pytest.mark.slow
def test_the_throughput_benchmark_runs_both_loops(tmp_path):
    """benchmarks/train_throughput.py end to end on the tiny network, with the project's
    callbacks under its Trainer (its figures are measurements for docs/speed.md, not checked here)."""
    out = tmp_path / "throughput.json"
    done = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--steps", "2", "--warmup", "1",
                           "--out", str(out), "experiment=tiny"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    fp32 = record["results"]["fp32"]
    assert fp32["speed"]["precision"] == "32-true" and record["batch_size"] == 32
    peak = record["matmul_peak_flop_per_s"]["torch.float32"]
    for loop in ("plain", "lightning"):  # each figure follows from the measured step times
        times = fp32[loop]["all_step_ms"]
        assert len(times) == 2 and all(t > 0 for t in times)
        step_s = fp32[loop]["step_ms"] / 1000
        assert fp32[loop]["step_ms"] == pytest.approx(statistics.median(times), rel=1e-2)  # times kept rounded
        assert fp32[loop]["images_per_s"] == pytest.approx(32 / step_s)
        assert fp32[loop]["flop_per_s"] == pytest.approx(record["flop_per_step"] / step_s)
        assert fp32[loop]["fraction_of_matmul_peak"] == pytest.approx(fp32[loop]["flop_per_s"] / peak)
    assert record["flop_per_step"] > 0 and fp32["overhead_ratio"] > 0


@pytest.mark.slow
@pytest.mark.gpu_rehearsal
def test_the_gpu_check_runs_every_part_small_on_cpu(tmp_path, shared_cache):
    """benchmarks/gpu_check.py --device cpu: the script a GPU session runs, at a tiny size;
    every part's JSON and the summary are written, none fails (its figures are not checked)."""
    imagenette = extracted("imagenette2_224.tar", shared_cache) / "imagenette2_224"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--out", str(out),
                           "--imagenette", str(imagenette), "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    parts = {json.loads(f.read_text())["name"]: json.loads(f.read_text()) for f in sorted(out.glob("part*.json"))}
    assert list(parts) == ["tests", "step", "end_to_end", "ddp_resume", "lrn", "formats", "recipe"]
    assert {p["status"] for p in parts.values()} == {"passed"}
    assert parts["ddp_resume"]["backend"] == "gloo" and parts["ddp_resume"]["resumed_weights_equal"]
    inits = [run["init"] for run in parts["recipe"]["runs"]]  # the defaults' (as composed here), then the others
    assert len(inits) == 3 and inits[1:] == ["paper", "kaiming"]
    assert all(run["val_top1_err"] and run["train_loss"] for run in parts["recipe"]["runs"])
    summary = (out / "summary.md").read_text()
    assert "Device: **" in summary and summary.count("## ") == 7
