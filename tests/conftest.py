"""Shared fixtures: real Hydra composition of conf/, real generated JPEGs, ../shared data."""
import json
import os
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from alexnet_lit.build import CONFIG_DIR
from alexnet_lit.testing import command, read_metrics, sigterm_in_validation, train_command  # noqa: F401 (re-exported)
from helpers.resume import STEPS_PER_EPOCH, last, output, start
from slurm_cluster import SlurmCluster, missing_programs

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ALEXNET_LIT_SHARED_DATA", REPO.parent / "shared" / "data"))

NO_CUDA = "no CUDA device here: this variant checks the CUDA path against the CPU (python -m pytest -m gpu)"
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]
# A device-dependent test runs on the CPU, and on CUDA where there is one:
# @pytest.mark.parametrize("device", DEVICES)
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=needs_cuda)]


def pytest_configure(config):
    """One share of the cores for each test worker (pytest-xdist, addopts) and for the processes
    its tests start: two workers of two threads on two cores, with their subprocesses as many
    again, spend much of the suite waiting on one another (test_resume.py and
    test_run_folder.py: 154 s instead of 246 s). A value of OMP_NUM_THREADS set outside is kept."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items):
    """The end-to-end tests (``slow``) first, in file order, the quick ones after: the two test
    workers then end together instead of one running a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def on_cuda(test):
    """Mark a test that compares the CUDA path against the CPU: ``gpu``, skipped without CUDA."""
    for mark in reversed(needs_cuda):
        test = mark(test)
    return test


@contextmanager
def float32_on_cuda():
    """CUDA's float32 convolutions and matmuls in float32, for comparison with the CPU: cuDNN
    otherwise takes TF32 (a 10-bit mantissa) by default."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache folder for generated data sets across the whole test session."""
    return tmp_path_factory.mktemp("cache")


def compose_config(overrides: list[str], output_dir: Path | None = None, cache: Path | None = None,
                   config_name: str = "train"):
    """Compose conf/train.yaml (or another command's ``config_name``) as ``python -m
    alexnet_lit.train`` would, with HydraConfig set so that ${hydra:...}, the ablation choices
    and the command line's overrides resolve."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        extra = [f"paths.cache_dir={cache}"] if cache else []
        cfg = compose(config_name, overrides=[*overrides, *extra], return_hydra_config=True)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # as in a real run: the job sees its config, Hydra's own via HydraConfig
    return cfg


@pytest.fixture
def compose_cfg(tmp_path, cache_dir):
    def _compose(*overrides: str, run: str = "run", command: str = "train"):
        return compose_config(list(overrides), output_dir=tmp_path / run, cache=cache_dir,
                              config_name=command)
    return _compose


def extracted(archive: str, cache: Path) -> Path:
    """Extract one of ../shared/data's archives into ``cache`` (once); skip without it."""
    source = SHARED_DATA / archive
    if not source.is_file():
        pytest.skip(f"{source} is absent: real-data tests need ../shared/data beside the repo")
    done = cache / f"{archive}.extracted"
    if not done.exists():
        with tarfile.open(source) as tar:
            tar.extractall(cache, filter="data")
        done.touch()
    return cache


def finished_run(run_dir: Path, cache: Path, *overrides: str) -> Path:
    """A real short CPU training run of experiment=tiny in ``run_dir``; fails with its output."""
    done = subprocess.run(train_command(run_dir, cache, "trainer.enable_model_summary=false", *overrides),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


FINISHED_RUN = ("data.num_classes=4",)  # 400 training and 80 validation images


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cache_dir) -> Path:
    """One real short CPU run (experiment=tiny on 4 of the synthetic classes, which it learns in
    4 epochs), shared by the tests of every command that uses a finished run: its folder
    holds .hydra/, checkpoints/, csv/metrics.csv."""
    return finished_run(tmp_path_factory.mktemp("trained") / "run", cache_dir, *FINISHED_RUN,
                        "trainer.max_epochs=4")


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, cache_dir) -> dict:
    """The resume suite's run never stopped (helpers.resume), shared by every test that ends a
    stopped run and compares: its last.ckpt and metrics.csv."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = start(run_dir, cache_dir)
    assert proc.wait(timeout=300) == 0, output(run_dir)
    logged = read_metrics(run_dir)
    assert len(logged) == 2 * (STEPS_PER_EPOCH + 2)  # a row a step, val and train-epoch rows
    return dict(state=last(run_dir), rows=logged, dir=run_dir)


@pytest.fixture(scope="session")
def ablation_run(tmp_path_factory, cache_dir) -> Path:
    """A real short CPU run of +ablation=[no_lrn,one_tower] (1 epoch) on trained_run's data."""
    return finished_run(tmp_path_factory.mktemp("ablation") / "run", cache_dir, *FINISHED_RUN,
                        "+ablation=[no_lrn,one_tower]", "trainer.max_epochs=1")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return Path(os.environ.get("ALEXNET_LIT_TEST_DATA") or tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> SlurmCluster:
    """A one-node SLURM cluster on this machine (tests/slurm_cluster.py), up for the whole
    session; its jobs import this checkout's alexnet_lit, whatever their folder."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"SLURM tests need Debian's slurmctld, slurmd and munge packages "
                    f"(.ci/run installs them): {', '.join(missing)} not found")
    if os.geteuid() != 0:
        pytest.skip("SLURM tests run slurmd, which starts jobs, as root: run them as root")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch) -> Path:
    """Real W&B in offline mode: no API key, its settings and caches under tmp_path."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_ENTITY",
                "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_TAGS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    home = tmp_path / "wandb-home"
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        (home / var).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / var))
    monkeypatch.setenv("NETRC", str(home / "netrc"))  # absent: no stored key
    return home


def report_table(markdown: str) -> dict[str, list[str]]:
    """The table of an alexnet_lit.report Markdown file: ablation name -> its cells."""
    rows = [line.strip().strip("|").split("|") for line in markdown.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells] for cells in rows}


def job_of(sweep: Path, override: str) -> Path:
    """The one job folder of a multirun ``sweep`` whose command-line overrides include ``override``."""
    (folder,) = [p.parent.parent for p in sorted(sweep.glob("*/.hydra/overrides.yaml"))
                 if f"- {override}" in p.read_text().splitlines()]
    return folder


def wandb_run(run_folder: Path) -> dict:
    """What W&B wrote for the one offline run of a training run folder (see wandb_runs)."""
    (run,) = wandb_runs(run_folder)
    return run


def wandb_runs(run_folder: Path) -> list[dict]:
    """What W&B wrote for each offline run of a training run folder, oldest first, read back
    with wandb's own reader (``wandb leet inspect``): its summary view (config, summary,
    state, exit_code, tags) plus ``id``, ``group``, ``job_type``, the ``history`` rows and the
    ``artifacts`` logged. The id comes from the run record, not the folder name: an attempt
    started in the same second as the last one gets a ``-1`` suffix on its folder."""
    runs = []
    for offline in sorted((Path(run_folder) / "wandb").glob("offline-run-*")):
        inspect = [sys.executable, "-m", "wandb", "leet", "inspect", "--json"]
        run = json.loads(subprocess.run([*inspect, "--summary", str(offline)], capture_output=True,
                                        text=True, check=True).stdout)
        records = [json.loads(line) for line in subprocess.run(
            [*inspect, str(offline)], capture_output=True, text=True, check=True).stdout.splitlines()]
        (start,) = [r["run"] for r in records if r["type"] == "run"]
        run.update(id=start["run_id"], group=start.get("run_group"), job_type=start.get("job_type"), folder=offline,
                   history=[r["history"]["item"] for r in records if r["type"] == "history"],
                   artifacts=[r["artifact"] for r in records if r["type"] == "artifact"])
        runs.append(run)
    return runs


def state(pid: int) -> str | None:
    """A process's state letter (``Z``: a zombie, ended), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def worker_pids(parent: int) -> list[int]:
    """The running processes whose parent is ``parent``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def survivors(pids: list[int], wait: float = 2) -> list[int]:
    """Those of ``pids`` still running after up to ``wait`` seconds (a killed process dies at
    once; PyTorch's loader workers notice a dead parent by themselves only after 5 s)."""
    deadline = time.monotonic() + wait
    while any(state(pid) not in (None, "Z") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if state(pid) not in (None, "Z")]


def write_image(path: Path, kind: str = "rgb", size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """One generated image file of the kinds real ILSVRC-2012 holds: ``rgb``, ``gray`` and
    ``cmyk`` JPEGs, ``png`` (PNG bytes under the given name, e.g. .JPEG), ``truncated`` (a
    JPEG cut short) and ``garbage`` (not an image); and of those users bring: ``png16`` (a
    16-bit grayscale PNG of the picture's luminance x 257), ``rgba`` (a PNG whose alpha is 0
    in the top-left quarter, 128 in the top-right, 255 below), ``palette`` (a PNG of 8 colours
    whose colour 0 is transparent) and ``exif`` (an RGB JPEG tagged Orientation 6: shown
    turned 90 degrees clockwise)."""
    from PIL import Image
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)  # smooth, like a photo
    if kind == "garbage":
        path.write_bytes(rng.bytes(2000))
    elif kind == "png":
        image.save(path, format="PNG")
    elif kind == "png16":
        Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257).save(path, format="PNG")
    elif kind == "rgba":
        alpha = np.full((h, w), 255, np.uint8)
        alpha[: h // 2, : w // 2], alpha[: h // 2, w // 2:] = 0, 128
        Image.fromarray(np.dstack([np.asarray(image), alpha])).save(path, format="PNG")
    elif kind == "palette":
        image.quantize(8).save(path, format="PNG", transparency=0)
    elif kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
        image.save(path, format="JPEG", quality=90, exif=exif)
    elif kind == "truncated":
        image.save(path, format="JPEG", quality=90)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        mode = {"rgb": "RGB", "gray": "L", "cmyk": "CMYK"}[kind]
        image.convert(mode).save(path, format="JPEG", quality=90)
    return path
