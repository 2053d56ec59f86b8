"""Training-step throughput: (a) a plain PyTorch loop against (b) this project's
LightningModule under a real Lightning Trainer: same network and initial weights, same
optimiser (PaperSGD), same in-memory batches, same process.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 32] [--steps 10]
        [--variants fp32 channels_last bf16 compile ...] [--threads N] [HYDRA_OVERRIDE ...]

HYDRA_OVERRIDEs (e.g. ``experiment=tiny``) compose conf/train.yaml as a run would. A variant
is a set of conf/speed switches, applied to both loops; speed.reuse_host_memory holds for
the whole process, as in a run (its effect: two runs, the default and
speed.reuse_host_memory=false). (b) is the project's Trainer with its logger and callbacks
groups; validation is off, so the lr drops at fixed epochs (optim=milestones: the plateau
rule needs val/top1_err).

Other processes share the CPU, so the loops take turns step by step: before each of (b)'s
steps, a callback runs one step of (a) on the same batch. (a)'s step is its forward, loss,
backward and optimiser step; (b)'s runs from there to the next batch's start, so it holds
everything Lightning does per step (hooks, logging, callbacks, progress bar). The
overhead ratio is the median of the per-step ratios (b)/(a).

Reports images/s, achieved FLOP/s (torch.utils.flop_counter: convolutions and matmuls of
forward+backward) and its fraction of the measured matmul peak in the variant's compute
dtype. Prints and writes JSON (default ``benchmarks/results/train_throughput_<device>.json``).
"""
import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from timing import machine, median, save, synchronize

from alexnet_lit.build import CONFIG_DIR, build_run, optim_settings
from alexnet_lit.optim import build_optimizer
from alexnet_lit.speed import reuse_host_memory

VARIANTS = {  # name: conf/speed overrides
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16-mixed"},
    "compile": {"compile": True},
    "bf16+channels_last+compile": {"precision": "bf16-mixed", "channels_last": True, "compile": True},
}
DEFAULT_VARIANTS = {"cpu": ["fp32"], "cuda": ["fp32", "bf16+channels_last+compile"]}
AUTOCAST = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def compose_run(overrides: list[str], output_dir: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def in_memory_batches(cfg, batch_size: int, count: int, device: torch.device) -> list:
    """Normalised images and labels, already on ``device``, as the data module delivers them."""
    generator = torch.Generator().manual_seed(0)
    size = cfg.model.input_size
    return [(torch.randn(batch_size, 3, size, size, generator=generator).to(device),
             torch.randint(0, cfg.model.num_classes, (batch_size,), generator=generator).to(device))
            for _ in range(count)]


class PlainStep:
    """(a): the textbook training step, with the variant's switches applied by hand."""

    def __init__(self, net, optim: dict, speed: dict, device: torch.device):
        self.net = copy.deepcopy(net).to(device).train()
        self.channels_last = speed["channels_last"]
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if speed["compile"]:
            self.net.compile()
        rule = {k: optim[k] for k in ("rule", "lr", "momentum", "weight_decay")}
        self.optimizer = build_optimizer(self.net.parameters(), **rule)
        self.device, self.dtype = device, AUTOCAST[speed["precision"]]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None)
        with torch.enable_grad(), autocast:
            loss = F.cross_entropy(self.net(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


class TakeTurns(Callback):
    """Runs (a) on each batch just before (b)'s step and times both."""

    def __init__(self, plain: PlainStep, device: torch.device):
        self.plain, self.device = plain, device
        self.plain_s, self.lightning_s = [], []
        self.plain_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        synchronize(self.device)
        start = time.perf_counter()
        if self.plain_end is not None:  # (b)'s previous step ended here
            self.lightning_s.append(start - self.plain_end)
        self.plain(*batch)
        synchronize(self.device)
        self.plain_end = time.perf_counter()
        self.plain_s.append(self.plain_end - start)


def take_turns(cfg, net, batches: list, device: torch.device) -> tuple[list[float], list[float]]:
    """Seconds per step of (a) and of (b), paired: the i-th of each ran back to back."""
    turns = TakeTurns(PlainStep(net, optim_settings(cfg), OmegaConf.to_container(cfg.speed), device), device)
    run = build_run(cfg, callbacks=[turns], max_steps=len(batches), limit_val_batches=0, num_sanity_val_steps=0)
    run.module.net.load_state_dict(net.state_dict())
    run.trainer.fit(run.module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return turns.plain_s[:len(turns.lightning_s)], turns.lightning_s


def step_flops(net, batch, device: torch.device) -> int:
    """FLOPs of one forward+backward as torch.utils.flop_counter counts them (conv, matmul)."""
    net = copy.deepcopy(net).to(device)
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(net(batch[0]), batch[1]).backward()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of the fastest of ten square matmuls: the reference for 'fraction of peak'."""
    size = 8192 if device.type == "cuda" else 4096
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(10):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def measure(device: torch.device, overrides: list[str], batch_size: int, steps: int, warmup: int,
            variants: list[str]) -> dict:
    """Both loops for each variant on the same batches; figures as the module docstring says."""
    fixed = ["trainer=gpu" if device.type == "cuda" else "trainer=cpu", "optim=milestones"]
    torch._dynamo.reset()  # compiled variants compile for this batch size, not dynamic shapes
    with tempfile.TemporaryDirectory(prefix="alexnet_lit_throughput_") as scratch:
        base = compose_run([*fixed, *overrides], scratch)
        reused = base.speed.reuse_host_memory and reuse_host_memory()
        torch.manual_seed(0)
        net = instantiate(base.model)
        batches = in_memory_batches(base, batch_size, warmup + steps + 1, device)
        flops = step_flops(net, batches[0], device)
        results = {}
        for name in variants:
            cfg = compose_run([*fixed, *overrides,
                               *(f"speed.{k}={v}" for k, v in VARIANTS[name].items())], scratch)
            plain_s, lightning_s = (s[warmup:] for s in take_turns(cfg, net, batches, device))
            row = {"speed": OmegaConf.to_container(cfg.speed),
                   "overhead_ratio": median([b / a for a, b in zip(plain_s, lightning_s)])}
            for loop, seconds in [("plain", plain_s), ("lightning", lightning_s)]:
                step = median(seconds)
                row[loop] = dict(step_ms=1e3 * step, images_per_s=batch_size / step,
                                 flop_per_s=flops / step,
                                 all_step_ms=[round(1e3 * s, 2) for s in seconds])
            results[name] = row
            print(f"{name}, batch {batch_size}: plain {row['plain']['images_per_s']:.1f} img/s, "
                  f"Lightning {row['lightning']['images_per_s']:.1f} img/s, "
                  f"overhead {row['overhead_ratio']:.3f}")
    compute_dtype = {name: AUTOCAST[row["speed"]["precision"]] or torch.float32
                     for name, row in results.items()}
    peaks = {str(dtype): matmul_peak(device, dtype) for dtype in set(compute_dtype.values())}
    for name, row in results.items():
        for loop in ("plain", "lightning"):
            row[loop]["fraction_of_matmul_peak"] = (row[loop]["flop_per_s"]
                                                    / peaks[str(compute_dtype[name])])
    return dict(overrides=overrides, batch_size=batch_size, steps=steps, warmup=warmup,
                reuse_host_memory=reused, flop_per_step=flops, matmul_peak_flop_per_s=peaks,
                results=results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each loop")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help="default: fp32 on CPU; fp32 and bf16+channels_last+compile on CUDA")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=tiny")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path(__file__).parent / "results" / f"train_throughput_{device.type}.json"
    result = measure(device, args.overrides, args.batch_size, args.steps, args.warmup,
                     args.variants or DEFAULT_VARIANTS[device.type])
    save(dict(benchmark="train_throughput", command=" ".join(["python", *sys.argv]), **result,
              machine=machine(device)), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
