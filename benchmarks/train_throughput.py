"""Training-step throughput: a plain PyTorch loop against this project's LightningModule
under a real Lightning Trainer, same model, optimiser (PaperSGD) and in-memory batches.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 32] [--steps 8]
        [--rounds 2] [--variants fp32 channels_last bf16 compile] [HYDRA_OVERRIDE ...]

HYDRA_OVERRIDEs (e.g. ``experiment=tiny``) compose conf/train.yaml as a run would. A variant
is a set of conf/speed switches; each is measured for both loops. The Trainer is the
project's (trainer, logger and callbacks groups, progress bar and all); validation is off,
so the lr drops at fixed epochs (optim=milestones: the plateau rule needs val/top1_err).
A step is the time from one batch's start to the next one's: data fetch, forward,
backward, optimiser step, and in (b) Lightning's hooks, logging and progress bar. Per-step
times are pooled over rounds that alternate the order of the loops; figures are medians.

Reports images/s, achieved FLOP/s (torch.utils.flop_counter, forward+backward) and its
fraction of the measured matmul peak in the variant's compute dtype, and the overhead
ratio (b)/(a). Prints and writes JSON (default ``benchmarks/results/train_throughput_<device>.json``).
"""
import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from timing import machine, median, save, synchronize

from alexnet_lit.module import AlexNetModule
from alexnet_lit.optim import build_optimizer
from alexnet_lit.train import CONFIG_DIR, optim_settings

VARIANTS = {  # name: conf/speed overrides
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16-mixed"},
    "compile": {"compile": True},
    "bf16+channels_last+compile": {"precision": "bf16-mixed", "channels_last": True, "compile": True},
}
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


def plain_loop(net, optim_cfg: dict, batches: list, speed: dict, device: torch.device) -> list[float]:
    """(a): the textbook loop. Returns the time at each batch's start."""
    net = copy.deepcopy(net).to(device)
    if speed["channels_last"]:
        net.to(memory_format=torch.channels_last)
    if speed["compile"]:
        net.compile()
    rule = {k: optim_cfg[k] for k in ("rule", "lr", "momentum", "weight_decay")}
    optimizer = build_optimizer(net.parameters(), **rule)
    dtype = AUTOCAST[speed["precision"]]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    torch.backends.cudnn.benchmark = speed["cudnn_benchmark"]  # as the Trainer sets it
    net.train()
    starts = []
    for images, labels in batches:
        synchronize(device)
        starts.append(time.perf_counter())
        if speed["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    synchronize(device)
    starts.append(time.perf_counter())
    return starts


class BatchStarts(Callback):
    """Records the time at each training batch's start, and when training ends."""

    def __init__(self, device: torch.device):
        self.device, self.starts = device, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        synchronize(self.device)
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= trainer.max_steps:
            synchronize(self.device)
            self.starts.append(time.perf_counter())


def lightning_loop(cfg, net, batches: list, speed: dict, device: torch.device) -> list[float]:
    """(b): AlexNetModule under the project's Trainer, with the project's logger and callbacks."""
    module = AlexNetModule(model=OmegaConf.to_container(cfg.model, resolve=True),
                           optim=optim_settings(cfg), channels_last=speed["channels_last"],
                           compile=speed["compile"])
    module.net.load_state_dict(net.state_dict())
    timer = BatchStarts(device)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()] + [timer]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     max_steps=len(batches), limit_val_batches=0,
                                     num_sanity_val_steps=0)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.starts


def step_flops(net, batch, device: torch.device) -> int:
    """Multiply-adds x 2 of one forward+backward, as torch.utils.flop_counter counts them."""
    net = copy.deepcopy(net).to(device)
    images, labels = batch
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(net(images), labels).backward()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of the best of a few square matmuls: the reference for 'fraction of peak'."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per loop and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["fp32"], choices=list(VARIANTS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=tiny")
    args = parser.parse_args()
    device = torch.device(args.device)
    out = args.out or Path(__file__).parent / "results" / f"train_throughput_{device.type}.json"
    fixed = ["trainer=gpu" if device.type == "cuda" else "trainer=cpu", "optim=milestones"]
    scratch = Path(tempfile.mkdtemp(prefix="alexnet_lit_throughput_"))

    base = compose_run([*fixed, *args.overrides], str(scratch))
    torch.manual_seed(0)
    net = instantiate(base.model)
    batches = in_memory_batches(base, args.batch_size, args.warmup + args.steps, device)
    flops = step_flops(net, batches[0], device)
    peaks = {}
    results = {}
    for name in args.variants:
        overrides = [f"speed.{k}={v}" for k, v in VARIANTS[name].items()]
        cfg = compose_run([*fixed, *args.overrides, *overrides], str(scratch))
        speed = OmegaConf.to_container(cfg.speed)
        dtype = AUTOCAST[speed["precision"]] or torch.float32
        if dtype not in peaks:
            peaks[dtype] = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
        steps = {"plain": [], "lightning": []}
        for r in range(args.rounds):
            order = ["plain", "lightning"] if r % 2 == 0 else ["lightning", "plain"]
            for loop in order:
                if loop == "plain":
                    starts = plain_loop(net, optim_settings(cfg), batches, speed, device)
                else:
                    starts = lightning_loop(cfg, net, batches, speed, device)
                    shutil.rmtree(scratch / "checkpoints", ignore_errors=True)
                steps[loop] += [b - a for a, b in zip(starts[args.warmup:], starts[args.warmup + 1:])]
        step = {loop: median(times) for loop, times in steps.items()}
        row = {loop: dict(step_ms=1e3 * step[loop], images_per_s=args.batch_size / step[loop],
                          flop_per_s=flops / step[loop], fraction_of_matmul_peak=flops / step[loop] / peaks[dtype],
                          all_step_ms=[round(1e3 * t, 2) for t in steps[loop]])
               for loop in steps}
        row["overhead_ratio"] = step["lightning"] / step["plain"]
        row["speed"] = speed
        results[name] = row
        print(f"{name}: plain {row['plain']['images_per_s']:.1f} img/s, lightning "
              f"{row['lightning']['images_per_s']:.1f} img/s, overhead {row['overhead_ratio']:.3f}")
    shutil.rmtree(scratch, ignore_errors=True)
    save(dict(benchmark="train_throughput", command=" ".join(["python", *sys.argv]),
              overrides=args.overrides, batch_size=args.batch_size, steps=args.steps,
              warmup=args.warmup, rounds=args.rounds, flop_per_step=flops,
              matmul_peak_flop_per_s={str(k): v for k, v in peaks.items()},
              results=results, machine=machine(device)), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
