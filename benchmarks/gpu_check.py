"""The GPU check: every GPU path of the project run, checked and measured in one command, in
under 8 minutes on one H100; the same script, small, on a CPU (CI's smoke test).

    python benchmarks/gpu_check.py --device cuda --out DIR [--parts 1,2,...] [--imagenette PATH]
        [size flags: see --help; defaults per device in SIZES]

Parts; each writes DIR/part<N>_<name>.json as soon as it ends, and DIR/summary.md (the device,
driver and torch version, then every part's status and figures) is rewritten after each. A
part that fails is recorded as failed, with its error, and the next one runs.

1. tests: ``pytest -m gpu``, the CUDA variants of the device-dependent tests;
2. step: the training step, plain loop against the Lightning module
   (benchmarks/train_throughput.py) for each variant and batch size: images/s, fraction of the
   measured matmul peak, Lightning's overhead;
3. end_to_end: the real DataModule from a prepared folder through the real Trainer, for each
   ``data.num_workers``, against the step alone (in-memory batches) and the data side alone
   (the loader; the loader plus transfer and the batch stage on the device);
4. ddp_resume: a 1-process ``trainer=ddp`` run (NCCL on CUDA), and a run stopped by SIGTERM
   then resumed, against the uninterrupted run: the same weights and metrics.csv;
5. lrn: the LRN layer against nn.LocalResponseNorm (benchmarks/lrn.py), float32 and bfloat16;
6. formats: raw against compact JPEG prepared data: decode images/s on the device, and end to
   end (benchmarks/prepared_formats.py); beside them the GPU paths of the libraries people pick
   instead, FFCV's and DALI's mixed decoder (benchmarks/data_peers.py), each failure recorded;
7. recipe: the full network trained for a fixed time on prepared Imagenette under each set
   of overrides (``--recipe``; default: the composed defaults (init caffe), the paper's literal
   init (model.init=paper), and a modern one on standardised inputs): validation error per
   epoch and training loss every N steps against chance.

Imagenette (``--imagenette``: the tar or its extracted folder; default: imagenette2_224.tar in
the folder of the real-data archives the tests read, docs/development.md) is
prepared on the spot; without it parts 3 and 6 use a generated set (alexnet_lit.data.synthetic)
and part 7 is skipped, saying so. Scratch files go to ``--work`` (a temporary folder, removed at
the end): DIR receives only the eight result files.
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]  # this checkout's alexnet_lit

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import lrn as lrn_benchmark  # noqa: E402
import train_throughput  # noqa: E402
from timing import machine, synchronize  # noqa: E402

from alexnet_lit.build import build_datamodule, build_run, optim_settings  # noqa: E402
from alexnet_lit.data.preparation import prepare  # noqa: E402
from alexnet_lit.data.synthetic import synthesize  # noqa: E402
from alexnet_lit.results import read_results  # noqa: E402
from alexnet_lit.testing import read_metrics, sigterm_in_validation, train_command  # noqa: E402
from alexnet_lit.train import train  # noqa: E402

PARTS = {1: "tests", 2: "step", 3: "end_to_end", 4: "ddp_resume", 5: "lrn", 6: "formats", 7: "recipe"}
CLASSES = 10  # Imagenette's, and the generated stand-in's
# Per device: sizes that keep the whole run under 8 minutes on one H100 (estimates until a GPU
# has run it), and a minute or two on a CPU. Every one is a flag.
SIZES = {
    "cuda": dict(step_overrides=[], step_batches=[128, 512], step_steps=20, step_warmup=3,
                 step_variants=["fp32", "bf16", "bf16+channels_last+compile"],
                 base=["data=folder", "trainer=gpu"], image_size=256,
                 train_per_class=None, val_per_class=None, synthetic_per_class=(400, 100),
                 e2e_speed=["speed.precision=bf16-mixed", "speed.channels_last=true"],
                 e2e_steps=50, e2e_warmup=10, e2e_workers=[4, 8, 15], profile_steps=5,
                 ddp_train_per_class=50, lrn_shape=[64, 96, 55, 55], lrn_repeats=15,
                 lrn_dtypes=["float32", "bfloat16"], decode_images=4096, decode_batch=256,
                 recipe_seconds=30, recipe_log_every=10),
    "cpu": dict(step_overrides=["experiment=tiny"], step_batches=[8], step_steps=2, step_warmup=1,
                step_variants=["fp32"], base=["experiment=table_cpu", "trainer=cpu", "data.batch_size=16"], image_size=76,
                train_per_class=13, val_per_class=4, synthetic_per_class=(13, 4),
                e2e_speed=[], e2e_steps=3, e2e_warmup=1, e2e_workers=[0, 1], profile_steps=2,
                ddp_train_per_class=20, lrn_shape=[4, 96, 27, 27], lrn_repeats=2, lrn_dtypes=["float32"],
                decode_images=64, decode_batch=32, recipe_seconds=5, recipe_log_every=1),
}
DEFAULT_RECIPES = ["", "model.init=paper", "model.init=kaiming data.normalize=standard"]


def without_checkpoints(folder: Path) -> list[str]:
    """Overrides that leave out the checkpoint files (460 MB each for the full network, written
    at every epoch's end), keeping the other callbacks of a run."""
    return ["+trainer.enable_checkpointing=false", "~callbacks.model_checkpoint", "~callbacks.last_checkpoint",
            f"callbacks.nonfinite_loss.path={folder}/nonfinite.ckpt", f"callbacks.preemption.path={folder}/preempted.ckpt"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON files and summary.md")
    parser.add_argument("--parts", default=",".join(map(str, PARTS)), help="e.g. 2,3 (default: all)")
    shared = Path(os.environ.get("ALEXNET_LIT_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--imagenette", type=Path, default=shared / "imagenette2_224.tar",
                        help="Imagenette: the tar or its extracted folder (train/, val/)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--recipe", action="append", metavar="OVERRIDES",
                        help="part 7: one set of space-separated Hydra overrides; repeat for more "
                             f"(default: {DEFAULT_RECIPES})")
    parser.add_argument("--recipe-common", nargs="*", default=[], help="part 7: overrides for every set")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    lists = {"step_batches": int, "step_variants": str, "e2e_workers": int, "e2e_speed": str,
             "lrn_shape": int, "lrn_dtypes": str, "step_overrides": str}
    for name in SIZES["cuda"]:
        if name in ("base", "synthetic_per_class"):
            continue
        flag, default = "--" + name.replace("_", "-"), f"default: {SIZES['cuda'][name]} (cuda), {SIZES['cpu'][name]} (cpu)"
        if name in lists:
            parser.add_argument(flag, nargs="*", type=lists[name], help=default)
        else:
            parser.add_argument(flag, type=int, help=default)
    args = parser.parse_args(argv)
    for name, value in SIZES[args.device].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.parts = [int(p) for p in args.parts.split(",")]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: no part {unknown}; the parts are {PARTS}")
    args.recipe = [r.split() for r in (args.recipe or DEFAULT_RECIPES)]
    return args


# ---------------------------------------------------------------------------------- data


def imagenette_folder(args) -> Path | None:
    """Imagenette's extracted folder (train/, val/), or None where it is not there."""
    path = args.imagenette
    if path.is_file() and tarfile.is_tarfile(path):
        target = args.work / "imagenette"
        if not (target / "done").exists():
            with tarfile.open(path) as tar:
                tar.extractall(target, filter="data")
            (target / "done").touch()
        path = target
    found = [p for p in (path, *path.glob("*")) if (p / "train").is_dir() and (p / "val").is_dir()]
    return found[0] if found else None


def first_per_class(source: Path, out: Path, per_class: dict[str, int | None]) -> Path:
    """The first ``per_class[split]`` images of every class folder, linked into ``out``."""
    for split, count in per_class.items():
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            (out / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:count]:
                link = out / split / class_dir.name / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return out


class Data:
    """The images the parts share, made once: (source folder, real?) and prepared folders."""

    def __init__(self, args):
        self.args, self._source, self._prepared = args, None, {}

    def source(self) -> tuple[Path, bool]:
        if self._source is None:
            args, found = self.args, imagenette_folder(self.args)
            if found is not None:
                per_class = {"train": args.train_per_class, "val": args.val_per_class}
                self._source = first_per_class(found, args.work / "imagenette_subset", per_class), True
            else:
                train, val = SIZES[args.device]["synthetic_per_class"]
                self._source = synthesize(args.work / "synthetic", CLASSES, train, val, args.image_size), False
        return self._source

    def prepared(self, storage: str = "raw") -> Path:
        if storage not in self._prepared:
            out = self.args.work / f"prepared_{storage}"
            prepare(self.source()[0], out, image_size=self.args.image_size, workers=os.cpu_count(),
                    progress=False, storage=storage)
            self._prepared[storage] = out
        return self._prepared[storage]

    def overrides(self, storage: str = "raw") -> list[str]:
        """The composed run on the prepared folder at this device's size."""
        return [*SIZES[self.args.device]["base"], f"data.root={self.prepared(storage)}",
                f"data.num_classes={CLASSES}", f"data.image_size={self.args.image_size}"]


# ---------------------------------------------------------------------------------- parts


def part_tests(args, data) -> dict:
    """``pytest -m gpu`` over the test files that use the device helpers (others may import
    packages a GPU machine lacks); real-data tests read ``--imagenette`` if it is the tar."""
    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests").glob("test_*.py")
                   if re.search(r"\b(DEVICES|on_cuda|needs_cuda)\b", f.read_text()))
    env = dict(os.environ)
    if args.imagenette.name == "imagenette2_224.tar":
        env["ALEXNET_LIT_SHARED_DATA"] = str(args.imagenette.resolve().parent)
    # in one process, without the suite's addopts (its two workers need pytest-xdist, which a
    # GPU machine may lack, and would share the one device)
    done = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files],
                          cwd=REPO, capture_output=True, text=True, env=env)
    lines = done.stdout.splitlines()
    return dict(passed=done.returncode == 0, returncode=done.returncode, files=files,
                outcome=lines[-1] if lines else "", failed=[l for l in lines if l.startswith(("FAILED", "ERROR"))],
                output_tail=None if done.returncode == 0 else (done.stdout + done.stderr)[-6000:])


def part_step(args, data) -> dict:
    device = torch.device(args.device)
    runs = [train_throughput.measure(device, args.step_overrides, batch, args.step_steps, args.step_warmup,
                                     args.step_variants) for batch in args.step_batches]
    return dict(passed=True, runs=runs)


class StepClock(Callback):
    """The time at the start of every training batch (after the device's work is done)."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        synchronize(self.device)
        self.times.append(time.perf_counter())


SYNCS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


class ProfileSteps(Callback):
    """torch.profiler over training batches ``first`` .. ``first + count - 1``: per step, the
    host-device synchronisations (``.item()`` and the CUDA calls that wait) and the ops that
    take the most device time (CPU time on a CPU)."""

    def __init__(self, device: torch.device, first: int, count: int):
        self.device, self.first, self.count, self.result = device, first, count, None
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.first:
            self.profiler.__enter__()
        elif trainer.global_step == self.first + self.count:
            synchronize(self.device)
            self.profiler.__exit__(None, None, None)
            self.result = self.summary()

    def summary(self) -> dict:
        events = self.profiler.key_averages()
        time_of = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        top = sorted(events, key=lambda e: getattr(e, time_of), reverse=True)[:12]
        return dict(steps=self.count, syncs_per_step={e.key: e.count / self.count for e in events if e.key in SYNCS},
                    top_ops=[dict(op=e.key, ms_per_step=getattr(e, time_of) / 1e3 / self.count,
                                  calls_per_step=e.count / self.count) for e in top])


def rate(times: list[float], warmup: int, batch_size: int) -> float:
    """Images/s over the intervals after ``warmup`` batches."""
    return batch_size * (len(times) - 1 - warmup) / (times[-1] - times[warmup])


def data_side(cfg, device: torch.device, steps: int, stage: bool) -> float:
    """Images/s of the training loader alone (``stage``: plus what the data module does around
    the transfer to ``device``: decoding JPEG bytes there, and the batch stage)."""
    datamodule = build_datamodule(cfg.data)
    datamodule.trainer = L.Trainer(accelerator=device.type, devices=1, logger=False, enable_progress_bar=False)
    datamodule.trainer.training = True  # the training views
    datamodule.setup("fit")
    times = []
    for batch in datamodule.train_dataloader():
        if stage:
            images, labels = datamodule.on_before_batch_transfer(batch, 0)
            batch = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            datamodule.on_after_batch_transfer(batch, 0)
            synchronize(device)
        times.append(time.perf_counter())
        if len(times) == steps:
            break
    return rate(times, 1, cfg.data.batch_size)


def step_alone(cfg, device: torch.device, steps: int, warmup: int) -> float:
    """Images/s of the plain training step on in-memory batches (train_throughput.PlainStep)."""
    torch.manual_seed(0)
    net = instantiate(cfg.model)
    step = train_throughput.PlainStep(net, optim_settings(cfg), OmegaConf.to_container(cfg.speed), device)
    batches = train_throughput.in_memory_batches(cfg, cfg.data.batch_size, 2, device)
    times = []
    for i in range(warmup + steps + 1):
        step(*batches[i % 2])
        synchronize(device)
        times.append(time.perf_counter())
    return rate(times, warmup, cfg.data.batch_size)


def through_trainer(cfg, device: torch.device, steps: int, warmup: int, profile: int = 0) -> tuple[float, dict | None]:
    """Images/s of the real Trainer (the project's callbacks) on the real DataModule, and with
    ``profile``, a profile of that many steps after the timed ones (ProfileSteps)."""
    clock, profiler = StepClock(device), ProfileSteps(device, warmup + steps + 1, profile)
    run = build_run(cfg, callbacks=[clock] + ([profiler] if profile else []), logger=False,
                    max_steps=warmup + steps + 2 + profile, limit_val_batches=0, num_sanity_val_steps=0)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return rate(clock.times[:warmup + steps + 1], warmup, cfg.data.batch_size), profiler.result


def end_to_end(args, overrides: list[str], workers: list[int]) -> dict:
    """For each ``data.num_workers``: Trainer, loader alone, loader + batch stage; step alone."""
    device = torch.device(args.device)
    rows = {}
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        def compose(*extra):
            return train_throughput.compose_run([*overrides, *args.e2e_speed, "optim=milestones",
                                                 *without_checkpoints(Path(scratch)), *extra], scratch)
        step = step_alone(compose(), device, args.e2e_steps, args.e2e_warmup)
        for n, w in enumerate(workers):
            cfg = compose(f"data.num_workers={w}")
            last = n == len(workers) - 1  # the most workers: also profiled
            trainer, profile = through_trainer(cfg, device, args.e2e_steps, args.e2e_warmup,
                                               args.profile_steps if last else 0)
            row = dict(trainer=trainer, loader=data_side(cfg, device, args.e2e_steps, stage=False),
                       loader_and_batch_stage=data_side(cfg, device, args.e2e_steps, stage=True))
            row["trainer_over_step"] = row["trainer"] / step
            if last:  # the non-finite loss guard and the progress bar read the loss on the host every step
                row["trainer_without_host_reads"] = through_trainer(
                    compose(f"data.num_workers={w}", "~callbacks.nonfinite_loss", "trainer.enable_progress_bar=false"),
                    device, args.e2e_steps, args.e2e_warmup)[0]
                row["profile"] = profile
            rows[f"num_workers={w}"] = row
            print(f"end to end, num_workers={w}: {row}", flush=True)
    return dict(batch_size=cfg.data.batch_size, speed=args.e2e_speed, step_alone=step, workers=rows,
                starved=[name for name, row in rows.items() if row["trainer_over_step"] < 0.9])


def part_end_to_end(args, data) -> dict:
    source, real = data.source()
    return dict(passed=True, images="Imagenette" if real else "generated (alexnet_lit.data.synthetic)",
                **end_to_end(args, data.overrides("raw"), args.e2e_workers))


def part_ddp_resume(args, data) -> dict:
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    # deterministic algorithms, warning (not failing) about any op that has none: listed below
    same = ["trainer=ddp", "trainer.devices=1", f"trainer.accelerator={accelerator}", "trainer.deterministic=warn",
            "speed.cudnn_benchmark=false", "callbacks.last_checkpoint.every_n_steps=5",
            f"data.train_per_class={args.ddp_train_per_class}", "data.num_workers=2"]
    cache, env = args.work / "cache", dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")

    def run(name: str, *extra: str, environment=env) -> tuple[Path, str]:
        run_dir = args.work / "ddp" / name
        done = subprocess.run(train_command(run_dir, cache, *same, *extra), cwd=REPO, capture_output=True,
                              text=True, env=environment, timeout=300)
        if done.returncode:
            raise RuntimeError(f"{name} run failed:\n{done.stderr[-4000:]}")
        return run_dir, done.stderr

    whole, log = run("uninterrupted")
    backend = next((line.split("=", 1)[1].strip() for line in log.splitlines()
                    if line.startswith("distributed_backend=")), None)
    stopped, log_stopped = run("resumed", *sigterm_in_validation())
    status_after_sigterm = read_results(stopped / "results.json").status
    _, log_resumed = run("resumed")
    nondeterministic = sorted(set(re.findall(r"(\w+) does not have a deterministic implementation",
                                             log + log_stopped + log_resumed)))
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
            for d in (whole, stopped))
    differences = {name: (w - b["state_dict"][name]).abs().max().item()
                   for name, w in a["state_dict"].items() if not torch.equal(w, b["state_dict"][name])}
    same_metrics = read_metrics(whole) == read_metrics(stopped)
    results = read_results(whole / "results.json")
    expected_backend = "nccl" if args.device == "cuda" else "gloo"
    return dict(passed=(backend == expected_backend and status_after_sigterm == "interrupted" and not differences
                        and same_metrics and results.processes == 1),
                backend=backend, processes=results.processes, steps=a["global_step"],
                status_after_sigterm=status_after_sigterm, resumed_weights_equal=not differences,
                weight_differences=differences, resumed_metrics_csv_equal=same_metrics,
                nondeterministic_ops=nondeterministic)


def part_lrn(args, data) -> dict:
    runs = {dtype: lrn_benchmark.measure(torch.device(args.device), args.lrn_shape, args.lrn_repeats,
                                         lrn_benchmark.DTYPES[dtype]) for dtype in args.lrn_dtypes}
    return dict(passed=all(r["agree"] for r in runs.values()), runs=runs)


def part_formats(args, data) -> dict:
    import data_peers  # noqa: E402  (imported here: they need the compact format)
    import prepared_formats  # noqa: E402

    device = torch.device(args.device)
    decode = prepared_formats.measure({f: data.prepared(f) for f in prepared_formats.FORMATS},
                                      device, args.decode_images, args.decode_batch)
    peers = data_peers.on_device(data.source()[0], args.work / "peers", device, args.decode_images, args.decode_batch)
    e2e = {f: end_to_end(args, data.overrides(f), args.e2e_workers[-1:]) for f in prepared_formats.FORMATS}
    return dict(passed=True, decode=decode, peers=peers, end_to_end=e2e)


def part_recipe(args, data) -> dict:
    source, real = data.source()
    if not real:
        return dict(passed=None, skipped=f"needs real images: no Imagenette at {args.imagenette} "
                                         "(--imagenette: the tar or its extracted folder)")
    val_images = sum(1 for _ in (source / "val").glob("*/*"))
    chance = 1 - 1 / CLASSES
    margin = 3 * math.sqrt(chance * (1 - chance) / val_images)  # three standard errors at chance
    runs = []
    for n, overrides in enumerate(args.recipe):
        run_dir = args.work / "recipe" / f"set{n}"
        minutes, seconds = divmod(args.recipe_seconds, 60)
        cfg = train_throughput.compose_run([
            *data.overrides("raw"), *args.recipe_common, *overrides,
            f"+trainer.max_time=00:00:{minutes:02d}:{seconds:02d}",
            f"trainer.log_every_n_steps={args.recipe_log_every}", *without_checkpoints(run_dir), "logger=csv"],
            str(run_dir))
        began, error = time.perf_counter(), None
        try:
            train(cfg)
        except Exception as err:  # a diverging recipe is a finding, not a failure of the check
            error = f"{type(err).__name__}: {err}"
        rows = read_metrics(run_dir) if (run_dir / "csv" / "metrics.csv").is_file() else []
        val = [float(r["val/top1_err"]) for r in rows if r.get("val/top1_err")]
        runs.append(dict(overrides=overrides, seconds=time.perf_counter() - began, error=error,
                         init=cfg.model.init, lr=cfg.optim.lr, batch_size=cfg.data.batch_size,
                         val_top1_err=val, train_loss=[[int(r["step"]), float(r["train/loss"])]
                                                       for r in rows if r.get("train/loss")],
                         learning=bool(val) and min(val) < chance - margin))
        print(f"recipe {overrides}: val top-1 error by epoch {[round(v, 3) for v in val]}", flush=True)
    return dict(passed=True, images=str(args.imagenette), val_images=val_images,
                chance=dict(top1_err=chance, loss=math.log(CLASSES), learning_below=chance - margin), runs=runs)


RUNS = {1: part_tests, 2: part_step, 3: part_end_to_end, 4: part_ddp_resume, 5: part_lrn, 6: part_formats,
        7: part_recipe}


# ---------------------------------------------------------------------------------- report


def describe(device: str) -> dict:
    info = machine(torch.device(device))
    info["cuda"] = torch.version.cuda
    if device == "cuda" and shutil.which("nvidia-smi"):
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
    return info


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def part_lines(result: dict) -> list[str]:
    """A part's figures in Markdown."""
    name = result["name"]
    if result["status"] != "passed" or name == "tests":
        detail = result.get("error") or result.get("skipped") or result.get("outcome")
        return [f"```\n{detail}\n```"] if detail else []
    if name == "step":
        lines = ["| variant | batch | plain img/s | Lightning img/s | overhead | of matmul peak |", "|---|---|---|---|---|---|"]
        for run in result["runs"]:
            for variant, row in run["results"].items():
                lines.append(f"| {variant} | {run['batch_size']} | {fmt(row['plain']['images_per_s'])} | "
                             f"{fmt(row['lightning']['images_per_s'])} | {row['overhead_ratio']:.3f} | "
                             f"{row['lightning']['fraction_of_matmul_peak']:.2f} |")
        fractions = [row["lightning"]["fraction_of_matmul_peak"] for run in result["runs"] if run["batch_size"] == 128
                     for variant, row in run["results"].items() if variant.startswith("bf16")]
        if fractions:
            lines += ["", f"Goal (issue 10): a bf16 step at batch 128 at 0.40 of the bf16 matmul peak or more: "
                          f"best {max(fractions):.2f}."]
        return lines
    if name in ("end_to_end", "formats"):
        runs = result["end_to_end"] if name == "formats" else {"raw": result}
        lines = ["| data | num_workers | Trainer img/s | step alone | Trainer/step | loader | loader + batch stage |",
                 "|---|---|---|---|---|---|---|"]
        for data, run in runs.items():
            for workers, row in run["workers"].items():
                lines.append(f"| {data} | {workers.split('=')[1]} | {fmt(row['trainer'])} | {fmt(run['step_alone'])} | "
                             f"{row['trainer_over_step']:.2f} | {fmt(row['loader'])} | {fmt(row['loader_and_batch_stage'])} |")
        best = max(row["trainer_over_step"] for run in runs.values() for row in run["workers"].values())
        lines += ["", f"Goal (issue 10): end to end within 10% of the step alone (Trainer/step 0.90 or more): "
                      f"best {best:.2f}."]
        for data, run in runs.items():
            row = list(run["workers"].values())[-1]
            if row.get("profile"):
                syncs = ", ".join(f"{k} {v:g}" for k, v in row["profile"]["syncs_per_step"].items()) or "none"
                ops = ", ".join(f"{o['op']} {o['ms_per_step']:.2f} ms" for o in row["profile"]["top_ops"][:6])
                lines += ["", f"{data}, {list(run['workers'])[-1]}: without the non-finite loss guard and the "
                          f"progress bar (each reads the loss every step) {fmt(row['trainer_without_host_reads'])} "
                          f"img/s. Per step, host-device syncs: "
                          f"{syncs}; most device time: {ops}."]
        if name == "formats":
            lines += ["", "| format | bytes/image | decode on the device, img/s |", "|---|---|---|"]
            lines += [f"| {f} | {fmt(r['bytes_per_image'])} | {fmt(r['images_per_s'])} |"
                      for f, r in result["decode"]["formats"].items()]
            lines += ["", "| peer's GPU path | uint8 227x227 crops on the device, img/s |", "|---|---|"]
            lines += [f"| {name} ({row['library']}) | {fmt(row['images_per_s']) if row['status'] == 'measured' else row['reason']} |"
                      for name, row in result["peers"].items()]
        return lines
    if name == "ddp_resume":
        return [f"backend {result['backend']}, {result['processes']} process, {result['steps']} steps; after SIGTERM "
                f"'{result['status_after_sigterm']}'; resumed = uninterrupted: weights "
                f"{result['resumed_weights_equal']}, metrics.csv {result['resumed_metrics_csv_equal']}; ops without a "
                f"deterministic implementation: {', '.join(result['nondeterministic_ops']) or 'none'}"]
    if name == "lrn":
        lines = ["| dtype | layout | nn.LocalResponseNorm fwd+bwd ms | ours ms | speed-up | agrees |", "|---|---|---|---|---|---|"]
        for dtype, run in result["runs"].items():
            for layout, row in run["results"].items():
                lines.append(f"| {dtype} | {layout} | {row['median_ms']['torch_fwd_bwd']:.2f} | "
                             f"{row['median_ms']['ours_fwd_bwd']:.2f} | {row['speedup_fwd_bwd']:.2f}x | {run['agree']} |")
        return lines
    if name == "recipe":
        chance = result["chance"]
        lines = [f"Chance: top-1 error {chance['top1_err']:.2f}, loss {chance['loss']:.3f}; learning = best val error "
                 f"below {chance['learning_below']:.3f} ({result['val_images']} val images).", "",
                 "| overrides | init, lr, batch | epochs | val top-1 error by epoch | last train loss | learning |",
                 "|---|---|---|---|---|---|"]
        for run in result["runs"]:
            errors = " ".join(f"{v:.2f}" for v in run["val_top1_err"])
            loss = f"{run['train_loss'][-1][1]:.3f}" if run["train_loss"] else "-"
            lines.append(f"| `{' '.join(run['overrides']) or '(defaults)'}` | {run['init']}, {run['lr']}, "
                         f"{run['batch_size']} | {len(run['val_top1_err'])} | {errors} | {loss} | "
                         f"{run['learning']}{' (' + run['error'] + ')' if run['error'] else ''} |")
        return lines
    return []


def write_summary(out: Path, info: dict, command: str, results: list[dict]) -> None:
    lines = ["# GPU check", "", f"`{command}`", "",
             f"Device: **{info.get('gpu', info['cpu'])}**, driver {info.get('driver', '-')}, torch {info['torch']} "
             f"(CUDA {info['cuda']}), {info['cpu_count']} CPU cores ({info['cpu']}).", "",
             f"Total {sum(r['seconds'] for r in results):.0f} s.", ""]
    for r in results:
        lines += [f"## {r['part']}. {r['name']}: {r['status']} ({r['seconds']:.0f} s)", "", *part_lines(r), ""]
    (out / "summary.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    keep_work = args.work is not None
    args.work = (args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))).resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv]) if argv is None else "python benchmarks/gpu_check.py " + " ".join(argv)
    info, data, results = describe(args.device), Data(args), []
    try:
        for part in args.parts:
            began = time.perf_counter()
            try:
                result = RUNS[part](args, data)
                status = {True: "passed", False: "failed", None: "skipped"}[result.pop("passed")]
            except Exception as err:
                result, status = dict(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()), "failed"
            result = dict(part=part, name=PARTS[part], status=status, seconds=time.perf_counter() - began,
                          device=args.device, **result)
            results.append(result)
            (args.out / f"part{part}_{PARTS[part]}.json").write_text(json.dumps(result, indent=1) + "\n")
            write_summary(args.out, info, command, results)
            print(f"part {part} ({PARTS[part]}): {status} in {result['seconds']:.0f} s", flush=True)
    finally:
        if not keep_work:
            shutil.rmtree(args.work, ignore_errors=True)
    print((args.out / "summary.md").read_text())
    return 0 if all(r["status"] != "failed" for r in results) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a timeout still leaves the files written
    sys.exit(main())
