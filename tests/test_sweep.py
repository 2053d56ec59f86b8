"""Sweeps for real: the table as a Hydra multirun with W&B offline, the report built from
its folder, a failing job among good ones, the submitit launchers and the table presets."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from PIL import Image
from scipy import stats as scipy_stats

from alexnet_lit import report
from alexnet_lit.analysis.runs import METRICS, run_from_results, run_from_wandb
from alexnet_lit.build import CONFIG_DIR
from conftest import job_of, report_table, wandb_run

pytestmark = pytest.mark.slow


def multirun(cwd: Path, cache_dir: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m alexnet_lit.train -m`` of one-epoch tiny jobs into ``cwd/sweep``."""
    return subprocess.run(
        [sys.executable, "-m", "alexnet_lit.train", "-m", "experiment=tiny", "trainer.max_epochs=1",
         f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={cwd / 'sweep'}", *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def jobs_results(sweep: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))}


def test_the_table_sweep_gives_one_wandb_run_per_job_and_a_report_matching_its_results(
        tmp_path, cache_dir, wandb_offline):
    done = multirun(tmp_path, cache_dir, "+ablation=none,no_lrn", "seed=0,1", "logger=wandb")
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    results = jobs_results(sweep)
    assert {(tuple(r["ablation"]), r["seed"]) for r in results.values()} == {
        (("none",), 0), (("none",), 1), (("no_lrn",), 0), (("no_lrn",), 1)}
    assert all(r["status"] == "completed" for r in results.values())

    run_ids = set()
    for job, r in results.items():
        run = wandb_run(job)  # exactly one W&B run in each job folder
        name = r["ablation"][0]
        assert (run["group"], run["job_type"], run["tags"]) == ("sweep", name, [name])
        assert run["state"] == "finished"
        assert (run["config"]["seed"], run["config"]["params"]) == (r["seed"], r["params"])
        for key in ("val/top1_err", "val/top5_err", "train/top1_err"):
            assert run["summary"][key] == pytest.approx(r[key.replace("/", "_")])
        # the W&B reporter reads what the local one reads
        via_wandb = run_from_wandb(run["config"], run["summary"], run["state"], "w&b")
        local = run_from_results(job / "results.json")
        for field in ("ablation", "seed", "status", *METRICS):
            assert getattr(via_wandb, field) == pytest.approx(getattr(local, field))
        run_ids.add(run["run_id"])
    assert len(run_ids) == 4  # no job logged into another's run

    report.main([str(sweep)])
    rows = report_table((sweep / "report.md").read_text())
    assert list(rows) == ["none", "no_lrn"]
    errors = {name: {m: {r["seed"]: 100 * r[f"{m}_err"] for r in results.values() if r["ablation"] == [name]}
                     for m in ("val_top1", "val_top5")} for name in rows}
    for name, cells in rows.items():
        assert cells[2] == "2"
        for metric, column in (("val_top1", 4), ("val_top5", 7)):
            values = list(errors[name][metric].values())
            assert cells[column] == f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"
    top1 = [[errors[name]["val_top1"][seed] for seed in (0, 1)] for name in ("no_lrn", "none")]
    diff = statistics.fmean(top1[0]) - statistics.fmean(top1[1])
    # paired over seeds 0 and 1 (scipy's ttest_rel), Welch's over the same runs beside it
    expected = {"paired": scipy_stats.ttest_rel(*top1).confidence_interval(0.95),
                "welch": scipy_stats.ttest_ind(*top1, equal_var=False).confidence_interval(0.95)}
    assert rows["no_lrn"][5] == f"{diff:+.1f} [{expected['paired'].low:+.1f}, {expected['paired'].high:+.1f}]"
    widths = {how: interval.high - interval.low for how, interval in expected.items()}
    assert rows["no_lrn"][18] == (f"{diff:+.1f} [{expected['welch'].low:+.1f}, {expected['welch'].high:+.1f}] "
                                  f"(paired {widths['paired'] / widths['welch']:.2f}×)")
    assert rows["no_lrn"][19] == "seeds 0-1"
    assert rows["no_lrn"][6] == "+1.4"  # the paper's, from alexnet_lit/analysis/paper_table.csv
    assert Image.open(sweep / "report.png").size[0] > 0


def test_a_failing_job_is_recorded_as_failed_and_the_others_complete(tmp_path, cache_dir, wandb_offline):
    done = multirun(tmp_path, cache_dir, "model.num_classes=3,10", "logger=wandb")
    assert done.returncode != 0  # Hydra reports the failure once every job has run
    sweep = tmp_path / "sweep"
    bad, good = job_of(sweep, "model.num_classes=3"), job_of(sweep, "model.num_classes=10")
    failed, completed = jobs_results(sweep)[bad], jobs_results(sweep)[good]
    assert failed["status"] == "failed" and "out of bounds" in failed["error"]
    assert completed["status"] == "completed" and completed["val_top1_err"] is not None
    assert (wandb_run(bad)["state"], wandb_run(bad)["exit_code"]) == ("failed", 1)
    assert wandb_run(good)["state"] == "finished"
    report.main([str(sweep)])
    assert report_table((sweep / "report.md").read_text())["none"][2] == "1 (1 failed)"


def test_the_submitit_local_launcher_runs_the_jobs(tmp_path, cache_dir):
    done = multirun(tmp_path, cache_dir, "hydra/launcher=submitit_local", "seed=0,1")
    assert done.returncode == 0, done.stderr[-3000:]
    results = jobs_results(tmp_path / "sweep")
    assert sorted(r["seed"] for r in results.values()) == [0, 1]
    assert all(r["status"] == "completed" for r in results.values())
    submitted = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if list(p.glob("*_result.pkl"))]
    assert len(submitted) == 2  # one submitit job each


@pytest.mark.parametrize("overrides, asked", [
    (["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "data.num_workers=7"],
     dict(gpus_per_node=4, tasks_per_node=4, nodes=2, cpus_per_task=8)),
    (["trainer=ddp", "trainer.accelerator=cpu"], dict(gpus_per_node=None, tasks_per_node=2, nodes=1, cpus_per_task=3)),
    (["experiment=tiny"], dict(gpus_per_node=None, tasks_per_node=1, nodes=1, cpus_per_task=1)),
], ids=["gpu-ddp", "cpu-ddp", "tiny-cpu"])
def test_the_slurm_launcher_asks_for_what_the_trainer_uses(overrides, asked):
    """GPUs only for a run that uses them (a CPU partition has none to give), and a CPU for
    the training process and each loader worker."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    assert {k: launcher.params[k] for k in asked} == asked


@pytest.mark.parametrize("preset, seeds", [("table", 10), ("table_cpu", 10)])
def test_the_table_presets_sweep_every_ablation_file(preset, seeds):
    """Hydra's own sweeper expands the preset's ``+ablation=glob(*)`` into the jobs."""
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_DIR))
    cfg = loader.load_configuration("train", overrides=[f"experiment={preset}"], run_mode=RunMode.MULTIRUN)
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(params)
    (jobs,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    files = {f"+ablation={p.stem}" for p in (Path(CONFIG_DIR) / "ablation").glob("*.yaml")}
    assert len(files) == 14 and len(jobs) == 14 * seeds  # with no_conv2 and no_overlap_covering
    assert {job[0] for job in jobs} == files


def test_a_sweep_kept_in_records_runs_two_at_a_time_and_spans_machines(tmp_path, cache_dir):
    """``hydra/launcher=parallel`` runs the jobs two at a time; ``paths.records`` keeps each
    finished job's record, naming no folder of this machine; the same sweep in another sweep
    folder (another machine's) finds them done and trains nothing; a record of another job
    under a job's name is refused, naming it."""
    records = tmp_path / "records"
    sweep = ("seed=0,1", "+ablation=none,[no_lrn,no_pca]", "hydra/launcher=parallel",
             "hydra.sweep.subdir=seed${seed}/${ablations:}", f"paths.records={records}")
    first = multirun(tmp_path, cache_dir, *sweep)
    assert first.returncode == 0, first.stderr[-3000:]
    kept = sorted(str(p.parent.relative_to(records)) for p in records.glob("*/*/results.json"))
    assert kept == ["seed0/no_lrn+no_pca", "seed0/none", "seed1/no_lrn+no_pca", "seed1/none"]
    for job in kept:
        for name in ("results.json", ".hydra/config.yaml", ".hydra/overrides.yaml"):
            text = (records / job / name).read_text()
            assert str(tmp_path) not in text and str(cache_dir) not in text, (job, name)
        results = json.loads((records / job / "results.json").read_text())
        assert results["status"] == "completed" and results["run_dir"] == f"SWEEP/{job}"
        assert results == {**json.loads((tmp_path / "sweep" / job / "results.json").read_text()),
                           "run_dir": f"SWEEP/{job}"}
    # a run on another machine: another sweep folder, the records brought along
    other = tmp_path / "elsewhere"
    other.mkdir()
    again = multirun(other, cache_dir, *sweep)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("not run again") == 4
    assert not list((other / "sweep").rglob("*.ckpt")) and not list((other / "sweep").rglob("results.json"))
    # a record that is another job's
    overrides = records / "seed1/none/.hydra/overrides.yaml"
    overrides.write_text(overrides.read_text().replace("seed=1", "seed=7"))
    refused = multirun(tmp_path / "elsewhere", cache_dir, "seed=1", "+ablation=none", *sweep[2:])
    assert refused.returncode != 0
    assert f"{records / 'seed1/none'}: a record of another job" in refused.stdout + refused.stderr
