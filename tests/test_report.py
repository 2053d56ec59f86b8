"""The reporter on a sweep folder of known results: paired and Welch statistics, the paper's
numbers, verdicts (with the equivalence bound), collapsed runs, clean gaps, official validation
columns, Figure 3's towers, runs still going or failed, W&B's keys, bad input."""
import csv
import re
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from alexnet_lit import report
from alexnet_lit.analysis.render import COLUMNS, OFFICIAL_COLUMNS
from alexnet_lit.analysis.runs import run_from_wandb, sweep_seeds
from alexnet_lit.analysis.table import paper_table
from alexnet_lit.results import Results, record_failure, write_json, write_results
from alexnet_lit.build import CONFIG_DIR
from conftest import REPO, compose_config, report_table

# (ablation, seed, status, val top-1, val top-5, train top-1, clean train top-1, learning verdict)
JOBS = [("none", 0, "completed", 0.40, 0.18, 0.30, 0.26, "learns"),
        ("none", 1, "completed", 0.42, 0.20, 0.32, 0.27, "learns"),
        ("none", 2, "completed", 0.41, 0.19, 0.31, 0.27, "learns"),
        ("no_lrn", 0, "completed", 0.45, 0.19, 0.31, 0.27, "learns"),
        ("no_lrn", 1, "completed", 0.47, 0.21, 0.33, 0.28, "learns"),
        ("no_lrn", 2, "completed", 0.46, 0.20, 0.32, 0.28, "learns"),
        ("no_lrn", 3, "failed", None, None, None, None, None),
        ("tanh", 0, "running", 0.60, 0.30, 0.55, 0.50, "learns"),
        ("tanh", 1, "completed", 0.38, 0.17, 0.50, 0.42, "learns"),
        ("no_overlap", 0, "completed", 0.41, 0.19, 0.31, 0.26, "learns"),
        ("no_overlap", 1, "completed", 0.40, 0.20, 0.30, 0.25, "collapsed"),
        ("no_overlap", 2, "interrupted", 0.70, 0.40, 0.60, 0.55, "learns"),
        ("no_pca", 0, "completed", 0.405, 0.19, 0.31, 0.26, "learns"),
        ("no_pca", 1, "completed", 0.415, 0.19, 0.31, 0.27, "learns"),
        ("no_pca", 2, "completed", 0.41, 0.19, 0.31, 0.27, "learns"),
        ("no_dropout", 0, "completed", 0.35, 0.15, 0.20, 0.18, "learns"),
        ("no_dropout", 1, "completed", 0.36, 0.16, 0.21, 0.19, "learns"),
        ("no_dropout", 2, "completed", 0.37, 0.17, 0.22, 0.20, "learns after a loss spike"),
        ("no_conv3", 0, "completed", 0.90, 0.50, 0.90, 0.90, "exploded and at chance"),
        ("no_conv3", 1, "completed", 0.50, 0.25, 0.45, 0.40, "learns")]
COLLAPSED = {"collapsed": ["fc7: 95% of its units dead"], "exploded and at chance": []}
# Figure 3: conv1's colour scores of `none`'s two towers, seed by seed
CONV1 = {0: ([0.1, 0.1, 0.12, 0.12, 0.3, 0.3, 0.34, 0.34], [4, 4]),
         1: ([0.3, 0.32, 0.1, 0.1], [2, 2]),
         2: ([0.2, 0.2, 0.2, 0.22], [2, 2])}
CONFIG = """
data: {num_classes: 10, normalize: paper, image_size: 76, batch_size: 128, val_views: [center]}
model: {init: paper, input_size: 67, towers: 2}
optim: {lr: 0.01}
trainer: {max_epochs: 30}
"""


def colour(kernels: list[float] | None, sizes: list[int] | None) -> dict | None:
    """results.json's ``conv1_colour`` of kernels with these scores."""
    if kernels is None:
        return None
    means = [sum(kernels[:sizes[0]]) / sizes[0], sum(kernels[sizes[0]:]) / sizes[1]]
    return dict(kernels=kernels, tower_sizes=sizes, tower_means=means)


@pytest.fixture
def sweep(tmp_path) -> Path:
    return write_sweep(tmp_path)


def write_sweep(tmp_path: Path) -> Path:
    """A multirun folder as Hydra and ResultsWriter leave it, plus one job that died before
    training (a .hydra/ folder, no results.json)."""
    for i, job in enumerate(JOBS):
        write_job(tmp_path / str(i), *job)
    (tmp_path / "99" / ".hydra").mkdir(parents=True)
    (tmp_path / "99" / ".hydra" / "config.yaml").write_text(CONFIG)
    OmegaConf.save({"hydra": {"overrides": {"task": ["experiment=tiny", "+ablation=glob(*)", "seed=0,1"]}}},
                   tmp_path / "multirun.yaml")
    return tmp_path


def write_job(job: Path, name: str, seed: int, status: str, top1, top5, train1, clean1, learning,
              config: str = CONFIG, **extra) -> None:
    """One job folder: ``.hydra/config.yaml`` and ``results.json`` (``name``: ablations joined
    by '+'; ``extra``: more keys of results.json)."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(config)
    lrn = {} if name == "no_lrn" else {
        "norm1": {"divisor_mean": 2.0, "divisor_p95": 2.5, "k_beta": 1.6},
        "norm2": {"divisor_mean": 1.6, "divisor_p95": 1.6, "k_beta": 1.6}}
    kernels, sizes = CONV1.get(seed, (None, None)) if name == "none" else (None, None)
    write_json(job / "results.json", dict(
        ablation=name.split("+"), seed=seed, status=status, val_top1_err=top1, val_top5_err=top5,
        train_top1_err=train1, train_top5_err=None, train_eval_top1_err=clean1, train_eval_top5_err=None,
        val_official_top1_err=None, val_official_top5_err=None, wall_time_s=30.0, params=80_000,
        learning=dict(verdict=learning, collapsed=learning in COLLAPSED,
                      collapse_reasons=COLLAPSED.get(learning, [])) if learning else None, lrn=lrn,
        conv1_colour=colour(kernels, sizes), **extra))


def write_figure1_sweep(sweep: Path) -> Path:
    """A Figure 1 sweep's folders as its runs leave them: each rate's training-error curve."""
    curves = {("relu", 0.001): [0.8, 0.7, 0.6], ("relu", 0.01): [0.6, 0.4, 0.2], ("relu", 0.1): [0.7, 0.5, 0.4],
              ("tanh", 0.001): [0.9, 0.85, 0.8], ("tanh", 0.01): [0.8, 0.6, 0.45], ("tanh", 0.1): [0.9, 0.8, 0.7]}
    for (activation, lr), errors in curves.items():
        job = sweep / f"{activation}_lr{lr}"
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(dict(model=dict(activation=activation, init="cuda_convnet", rnorm=None),
                            optim=dict(lr=lr, momentum=0.9, weight_decay=0.0),
                            data=dict(normalize="paper", batch_size=128, augment=False, pca_noise=False, root=None)),
                       job / ".hydra" / "config.yaml")
        write_results(job / "results.json", Results("completed", ["none"], 0, wall_time_s=10.0))
        write_json(job / "train_error.json", dict(target=0.5, train_error=errors))
    return sweep


def test_the_report_puts_our_changes_beside_the_papers(sweep):
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    rows = report_table(text)
    # the paper's order
    assert list(rows) == ["none", "tanh", "no_lrn", "no_overlap", "no_pca", "no_dropout", "no_conv3"]
    none, tanh, no_lrn, no_overlap, no_pca, no_dropout, no_conv3 = rows.values()
    assert len(none) == len(COLUMNS)  # no official-validation columns: no run measured them
    assert none[2:10] == ["3", "0 of 3", "41.0 ± 1.0", "—", "40.7", "19.0 ± 1.0", "—", "18.2"]
    assert none[10:20] == ["31.0 ± 1.0", "—", "26.7 ± 0.6", "—", "14.3 ± 0.6", "—", "", "", "—", "—"]
    # 45, 47, 46 against 40, 42, 41 of the same seeds: +5.0 each, a zero-width paired interval;
    # Welch's: standard error sqrt(1/3 + 1/3), 4 degrees of freedom, t(0.975, 4) = 2.776 from
    # the tables: +5.0 ± 2.27
    assert no_lrn[2:7] == ["3 (1 failed)", "0 of 3", "46.0 ± 1.0", "+5.0 [+5.0, +5.0]", "+1.4"]
    assert no_lrn[16:20] == ["agrees (val top-1)", "agrees (val top-1)", "+5.0 [+2.7, +7.3] (paired 0.00×)", "seeds 0-2"]
    # seed 1 collapsed: out of the pairs, named, its run kept in the mean; seed 0 against
    # `none`'s: +1.0, one pair, no interval; `none`'s seed 2 has no partner (interrupted)
    assert no_overlap[2:6] == ["2 (1 interrupted)", "1 of 2", "40.5 ± 0.7", "+1.0"]
    assert no_overlap[16:20] == ["not resolved (val top-1)", "", "+1.0", "seeds 0; 1 left out; collapsed: 1"]
    assert no_overlap[20] == "1 collapsed, 1 learns"
    # +0.5, -0.5, 0: sd 0.5, 4.303 x 0.5 / sqrt(3) = 1.24 inside ±2 (Welch's 2.08 is not)
    assert no_pca[4:7] == ["41.0 ± 0.5", "+0.0 [-1.2, +1.2]", "+1.0"]
    assert no_pca[16:19] == ["no effect beyond ±2 (val top-1)", "no effect beyond ±2 (val top-1)",
                          "+0.0 [-2.1, +2.1] (paired 0.60×)"]
    # no dropout lowers the error beyond the noise: against the paper; -5, -6, -4: sd 1, 4.303 /
    # sqrt(3) = 2.48, here wider than Welch's 2.27 (the arms' spreads happen to move together)
    assert no_dropout[4:6] == ["36.0 ± 1.0", "-5.0 [-7.5, -2.5]"]
    assert no_dropout[16:19] == ["disagrees (val top-1)", "disagrees (val top-1)", "-5.0 [-7.3, -2.7] (paired 1.10×)"]
    assert no_dropout[20] == "2 learns, 1 learns after a loss spike"  # a spike that recovered leaves the verdict
    assert no_dropout[14] == "17.0 ± 0.0"  # its clean gap: 35 - 18, 36 - 19, 37 - 20
    # tanh: one run completed (seed 1), one still going: no interval; the paper's claim is on
    # training error, judged on the clean one: 42 against `none`'s 27 of seed 1
    assert tanh[2:7] == ["1 (1 running)", "0 of 1", "38.0", "-4.0", "+"]
    assert tanh[10:14] == ["50.0", "+18.0", "42.0", "+15.0"]
    assert tanh[16:20] == ["not resolved (clean train top-1)", "", "+15.0", "seeds 1; 2 left out"]
    # a run that did not learn: the row gets no verdict, and says why
    assert no_conv3[3] == "1 of 2" and no_conv3[16] == "no verdict: a run did not learn (val top-1)"
    assert no_conv3[20] == "1 exploded and at chance, 1 learns"
    assert none[20] == "3 learns"
    assert none[21] == "norm1 1.25, norm2 1.00" and no_lrn[21] == "off"
    assert "classes 10; init paper; inputs raw RGB minus the mean image" in text
    assert "epochs 30; views center" in text and "80,000 parameters" in text
    assert ("The design: the seeds, `0,1` (the sweep's), runs found for seeds 0-3; the equivalence "
            "bound B = ±2 points; the collapse rule: a run collapsed where a ReLU layer has more than "
            "90% of its units silent on every image its last validation scored, or where its training "
            "loss stayed above 0.95 ln(classes) for more than 50% of the steps of its second half") in text
    assert "`none` overfits by 14.3 percentage points (validation minus clean training top-1 error" in text
    assert "14.0 to 15.0 over 3 runs). This gap is the condition for the regularisers' rows" in text
    assert "a seed where the run of the row or of its partner collapsed is left out of the pairs" in text
    assert "When each was fixed is not stated here (`--provenance FILE` states it)." in text
    assert "runs each: not recorded 20. None ran with uncommitted changes." in text
    assert "- `no_overlap` (val top-1, seeds 0; 1 left out; collapsed: 1): 0: +1.0" in text
    assert "- `no_conv3` (val top-1, seeds 1; 1 left out; collapsed: 0): 1: +8.0" in text
    assert "- `tanh` (clean train top-1, seeds 1; 2 left out): 1: +15.0" in text
    assert "without results.json (failed or stopped before training began): `99`" in text  # named in the sweep
    assert f"Source: `SWEEP/{sweep.name}` (" in text and str(sweep.parent) not in text  # no machine path
    assert "python -m alexnet_lit.train -m experiment=tiny '+ablation=glob(*)' seed=0,1" in text
    assert "no_lrn`: top-1 +1.4%, top-5 +1.2% without it" in text
    assert Image.open(sweep / "report.png").format == "PNG"


def test_figure3_compares_each_runs_more_and_less_colour_specific_tower(sweep):
    """Seed 0's towers are 0.32 and 0.11 (4 kernels each, all of one tower above the other's:
    2 of C(8, 4) = 70 splits as far apart, the only ones with p < 0.05: what the test could
    detect is that gap, 0.21), seed 1's the other way round, seed 2's alike; with 2 kernels a
    tower the farthest split is one of C(4, 2) = 6, 2 as far apart: p = 1/3 at best."""
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    assert ("`none`, 3 two-tower runs: the more colour-specific tower 0.280 ± 0.061, the less "
            "0.137 ± 0.055, difference 0.143 ± 0.115; further apart than random splits (p < 0.05) in "
            "1 of 3 runs; the gap needed for p < 0.05 0.210 (0.210 to 0.210), in 2 runs no split of "
            "their kernels reaches p < 0.05.") in text
    assert "- seed 0: 0.320 against 0.110 (tower 2 the more colour-specific), p = 0.029, needs 0.210" in text
    assert "- seed 1: 0.310 against 0.100 (tower 1 the more colour-specific), p = 0.332, no split reaches" in text
    assert "- seed 2: 0.210 against 0.200 (tower 2 the more colour-specific), p = 1.000, no split reaches" in text


def test_the_bound_decides_the_equivalence_verdict(sweep):
    """no_pca's paired interval is ±1.24: inside ±2, not inside ±1."""
    report.main([str(sweep), "--bound", "1"])
    text = (sweep / "report.md").read_text()
    assert report_table(text)["no_pca"][16] == "not resolved (val top-1)"
    assert "the equivalence bound B = ±1 points" in text
    with pytest.raises(SystemExit):
        report.main([str(sweep), "--bound", "-1"])


def test_seeds_fixed_for_a_sweep_run_as_several_commands_are_stated(sweep):
    report.main([str(sweep), "--seeds", "0-9"])
    assert "the seeds, `0-9` (the sweep's), runs found for seeds 0-3;" in (sweep / "report.md").read_text()


def rewrite(sweep: Path, ablation: str, **values) -> None:
    """Set keys of every results.json of ``ablation`` in the sweep."""
    for path in sweep.glob("*/results.json"):
        results = json.loads(path.read_text())
        if results["ablation"] == [ablation]:
            write_json(path, {**results, **values})


def test_official_validation_columns_appear_where_measured_and_training_claims_fall_back(sweep):
    """Validation holding held-out training images: the official images' error beside it. A
    run without the clean training error: tanh is judged on the augmented one, and says so."""
    for path in sweep.glob("*/results.json"):
        results = json.loads(path.read_text())
        if results["ablation"] in (["none"], ["no_lrn"]):
            official = {"none": 0.44, "no_lrn": 0.48}[results["ablation"][0]] + results["seed"] / 100
            write_json(path, {**results, "val_official_top1_err": official})
    rewrite(sweep, "tanh", train_eval_top1_err=None)
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    assert "| " + " | ".join(COLUMNS + OFFICIAL_COLUMNS) + " |" in text
    rows = report_table(text)
    assert rows["none"][24:] == ["45.0 ± 1.0", "—", "—", "—"]
    assert rows["no_lrn"][24:] == ["49.0 ± 1.0", "+4.0 [+4.0, +4.0]", "—", "—"]
    assert rows["tanh"][24:] == ["—", "—", "—", "—"]
    assert rows["tanh"][12:14] == ["—", "—"]
    assert rows["tanh"][16:20] == ["not resolved (train top-1)", "", "+18.0", "seeds 1; 2 left out"]
    assert "*official val*: the error on the data set's own validation images" in text


def test_without_a_clean_training_error_the_gap_is_the_augmented_one(sweep):
    rewrite(sweep, "none", train_eval_top1_err=None)
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    assert ("`none` overfits by 10.0 percentage points (validation minus training top-1 error of the last "
            "epoch's augmented batches with dropout on") in text
    assert "10.0 to 10.0 over 3 runs)" in text
    assert report_table(text)["tanh"][16] == "not resolved (train top-1)"  # `none` has no clean one


def test_two_runs_of_one_seed_and_ablation_are_an_error(sweep):
    rewrite(sweep, "no_pca", seed=0)
    with pytest.raises(SystemExit, match=r"two completed `no_pca` runs of seed 0"):
        report.main([str(sweep)])


def test_the_wandb_reader_reads_the_clean_and_official_errors():
    summary = {"val/top1_err": 0.4, "val/top5_err": 0.2, "train/top1_err": 0.3, "train_eval/top1_err": 0.25,
               "val_official/top1_err": 0.41, "val_official/top5_err": 0.21, "_runtime": 60.0}
    run = run_from_wandb({"ablation": ["none"], "seed": 3}, summary, "finished", "w&b")
    assert (run.ablation, run.seed, run.status, run.wall_time_s) == ("none", 3, "completed", 60.0)
    assert (run.val_top1, run.train_top1, run.train_eval_top1, run.train_eval_top5) == (0.4, 0.3, 0.25, None)
    assert (run.val_official_top1, run.val_official_top5) == (0.41, 0.21)
    assert (run.collapsed, run.conv1_colour) == (None, None)  # not in a W&B summary


def test_the_paper_table_has_one_row_per_ablation_file_and_combinations_of_them():
    """Every ablation file has a row; a row of several (``no_augment+no_dropout``) names only
    ablation files; every row is paired with a row of the table (`none` by default)."""
    rows = paper_table()
    files = {p.stem for p in (Path(CONFIG_DIR) / "ablation").glob("*.yaml")}
    assert files <= set(rows)
    assert all(set(name.split("+")) <= files for name in rows)
    assert {row["against"] for row in rows.values()} == {None, "none", "no_augment"}
    assert rows["no_augment+no_dropout"]["against"] == "no_augment" and rows["no_lrn"]["against"] == "none"
    assert rows["no_augment+no_dropout"]["gap_sign"] == "+"
    assert rows["none"]["paper_top1"] == 40.7 and rows["one_tower"]["paper_top5"] == 1.2
    for row in rows.values():  # a direction wherever there is no number
        assert row["ablation"] == "none" or (row["paper_top1"] is None) == bool(row["sign"])


def test_bad_input_names_the_file(sweep, tmp_path):
    (sweep / "0" / "results.json").write_text('{"ablation": ["none"], "seed": 0}')
    with pytest.raises(SystemExit, match=r"0/results.json: no key 'status'"):
        report.main([str(sweep)])  # non-zero, after reporting every readable job
    text = (sweep / "report.md").read_text()
    assert "- `0/results.json`: no key 'status'" in text  # named in the sweep
    assert report_table(text)["none"][2] == "2"  # the other two runs of `none`
    (sweep / "report.md").unlink()
    table = tmp_path / "paper.csv"
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([["ablation", "component", "section", "metric", "paper_top1", "paper_top5",
                                  "sign", "paper_says"], ["none", "x", "§1", "val_top9", "", "", "", ""]])
    with pytest.raises(ValueError, match=r"paper.csv: row 'none' has metric 'val_top9'"):
        paper_table(table)
    with pytest.raises(SystemExit):
        report.main([])  # neither a sweep folder nor --wandb
    assert not (sweep / "report.md").exists()


def test_the_sweeps_seeds_are_the_command_lines_else_the_presets(tmp_path):
    hydra = {"sweeper": {"params": {"+ablation": "glob(*)", "seed": "range(0,10)"}},
             "overrides": {"task": ["experiment=table_cpu"]}}
    OmegaConf.save({"hydra": hydra}, tmp_path / "multirun.yaml")
    assert sweep_seeds(tmp_path) == "range(0,10)"
    hydra["overrides"]["task"].append("seed=0,1")
    OmegaConf.save({"hydra": hydra}, tmp_path / "multirun.yaml")
    assert sweep_seeds(tmp_path) == "0,1"
    assert sweep_seeds(tmp_path / "elsewhere") is None


def test_a_second_look_gives_its_verdicts_at_its_level_beside_the_first_ones(sweep):
    """Seeds added after a first look (stage 2): every verdict taken again on all seeds at the
    level fixed for it, the first look's verdicts (seeds 0-1 at 95%) beside them. no_dropout's
    differences -5, -6 (seeds 0-1) resolve nothing at 95% with one degree of freedom; -5, -6, -4
    exclude 0 even at 97.5%."""
    report.main([str(sweep), "--confidence", "0.975", "--earlier-look", "0-1:0.95"])
    text = (sweep / "report.md").read_text()
    assert "the intervals' level, 97.5%;" in text and "paired 97.5% t-interval in brackets" in text
    assert "Verdicts at the earlier look (seeds 0-1, 95% intervals) beside these:" in text
    assert "| no_dropout | not resolved (val top-1) | disagrees (val top-1) |" in text
    assert "| no_lrn | agrees (val top-1) | agrees (val top-1) |" in text
    assert "Changed: `no_pca`, `no_dropout`." in text
    assert report_table(text)["no_dropout"][16] == "disagrees (val top-1)"


@pytest.mark.parametrize("bad", [["--confidence", "1.5"], ["--confidence", "0"], ["--earlier-look", "0-9"],
                                 ["--earlier-look", "0-9:2"], ["--earlier-look", "a-b:0.95"]])
def test_a_level_outside_0_to_1_or_an_earlier_look_without_one_is_refused(sweep, bad, capsys):
    with pytest.raises(SystemExit):
        report.main([str(sweep), *bad])
    assert bad[0] in capsys.readouterr().err
    assert not (sweep / "report.md").exists()


def test_runs_of_seeds_outside_those_fixed_are_left_out_and_counted(sweep):
    """--seeds 0-1 on a sweep that also holds seeds 2 and 3: the table is over seeds 0-1 alone
    (none: 2 runs), and the source line counts the 6 runs left out."""
    report.main([str(sweep), "--seeds", "0-1"])
    text = (sweep / "report.md").read_text()
    assert "runs; 6 of seeds 2-3 left out: not among --seeds)" in text
    assert "the seeds, `0-1` (the sweep's), runs found for seeds 0-1;" in text
    assert report_table(text)["none"][2] == "2"
    with pytest.raises(SystemExit):
        report.main([str(sweep), "--seeds", "ten"])


def add_jobs(sweep: Path, jobs: list[tuple], **extra) -> None:
    """More job folders in ``sweep``, numbered after those there (``jobs``: as JOBS)."""
    first = len(list(sweep.glob("*/.hydra")))
    for i, job in enumerate(jobs):
        write_job(sweep / f"x{first + i}", *job, **extra)


def test_a_row_is_paired_against_the_arm_the_paper_table_names_and_judged_on_the_clean_gap(sweep):
    """no_augment+no_dropout against no_augment of the same seed: val top-1 +2, +1, +3 (sd 1,
    t(0.975, 2) = 4.303: ±2.48, not resolved); clean gap 31 - 24, 31 - 24, 32 - 24 = +7, +7, +8
    (sd 0.577: ±1.43, above 0: dropout reduces overfitting, the paper's direction). Welch's
    on val top-1: sds 1 and 1, standard error sqrt(2/3), 4 degrees of freedom, 2.776 x 0.816 = ±2.27."""
    add_jobs(sweep, [("no_augment", s, "completed", top1, 0.2, 0.2, clean, "learns")
                     for s, top1, clean in ((0, 0.44, 0.20), (1, 0.46, 0.22), (2, 0.45, 0.21))]
             + [("no_augment+no_dropout", s, "completed", top1, 0.2, 0.1, clean, "learns")
                for s, top1, clean in ((0, 0.46, 0.15), (1, 0.47, 0.16), (2, 0.48, 0.16))])
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    rows = report_table(text)
    assert list(rows).index("no_augment+no_dropout") == list(rows).index("no_dropout") + 1
    both = rows["no_augment+no_dropout"]
    assert both[4:6] == ["47.0 ± 1.0", "+2.0 [-0.5, +4.5]"]
    assert both[14:20] == ["31.3 ± 0.6", "+7.3 [+5.9, +8.8]", "not resolved (val top-1); agrees (clean gap)",
                           "not resolved (val top-1)", "+2.0 [-0.3, +4.3] (paired 1.10×)",
                           "against `no_augment`; seeds 0-2"]
    assert rows["no_augment"][19] == "seeds 0-2" and rows["no_augment"][5] == "+4.0 [+4.0, +4.0]"
    assert "- `no_augment+no_dropout` (val top-1, against `no_augment`; seeds 0-2): 0: +2.0, 1: +1.0, 2: +3.0" in text
    assert "- `no_augment+no_dropout`: p = 0.074, TOST p = 0.5" in text
    assert "over the 5 rows with a per-row verdict from an interval" in text
    assert "Changed by the correction: no" not in text


def test_holm_names_the_rows_whose_verdict_it_changes(sweep):
    """no_dropout's seed 2 moved from 37 to 38: differences -5, -6, -3, p = 0.034 (scipy's
    ttest_1samp, 2 degrees of freedom), below 0.05 (per row, 95%) but, second smallest of the
    3 p-values under Holm (no_lrn's is 0), above 0.05 / 2: disagrees per row, not resolved
    under Holm. no_pca's TOST p 0.0101 stays below 0.05 / 3; at family-wise 0.1 nothing changes."""
    rewrite_seed(sweep, "no_dropout", 2, val_top1_err=0.38)
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    rows = report_table(text)
    assert rows["no_dropout"][16:18] == ["disagrees (val top-1)", "not resolved (val top-1)"]
    assert rows["no_pca"][16:18] == ["no effect beyond ±2 (val top-1)", "no effect beyond ±2 (val top-1)"]
    assert rows["no_lrn"][16:18] == ["agrees (val top-1)", "agrees (val top-1)"]
    assert "- `no_dropout`: p = 0.034, TOST p = 0.95" in text
    assert "Changed by the correction: `no_dropout` (disagrees → not resolved)." in text
    report.main([str(sweep), "--alpha", "0.1"])
    assert "No verdict changed by the correction." in (sweep / "report.md").read_text()
    with pytest.raises(SystemExit):
        report.main([str(sweep), "--alpha", "1"])


def rewrite_seed(sweep: Path, ablation: str, seed: int, **values) -> None:
    """Set keys of the results.json of ``ablation``'s run of ``seed``."""
    for path in sweep.glob("*/results.json"):
        results = json.loads(path.read_text())
        if results["ablation"] == [ablation] and results["seed"] == seed:
            write_json(path, {**results, **values})


def test_each_arm_shows_its_pools_coverage_from_its_runs_config(tmp_path):
    """The runs' .hydra/config.yaml composed at experiment=table_cpu (67-pixel crops), as
    training saves it: no_overlap's 2x2/2 pools read 196 of 225, 36 of 49, 4 of 9 positions,
    the control's ceil-mode pools all of one row and column more, `none`'s 3x3/2 all."""
    for i, name in enumerate(("none", "no_overlap", "no_overlap_covering")):
        config = OmegaConf.to_yaml(compose_config(["experiment=table_cpu", f"+ablation={name}"]))
        for seed in (0, 1):
            write_job(tmp_path / f"{name}{seed}", name, seed, "completed", 0.4 + i / 100 + seed / 100, 0.2, 0.3,
                      0.3, "learns", config=config)
    report.main([str(tmp_path)])
    rows = report_table((tmp_path / "report.md").read_text())
    assert rows["none"][22] == "pool1 225/225, pool2 49/49, pool5 9/9"
    assert rows["no_overlap"][22] == "pool1 196/225, pool2 36/49, pool5 4/9"
    assert rows["no_overlap_covering"][22] == "pool1 225/225, pool2 64/64, pool5 16/16"


def test_lr_drops_are_compared_with_the_partners_where_both_runs_recorded_them(sweep):
    """`none` seeds 0-2 drop at epochs 20 and 40; no_lrn's seed 0 too, seed 1 at 20 and 35,
    seed 2 recorded none (an older run): 1 of 2 the same, 1 not recorded."""
    for seed in (0, 1, 2):
        rewrite_seed(sweep, "none", seed, lr_drops=[dict(epoch=20, lr=0.001), dict(epoch=40, lr=0.0001)])
    rewrite_seed(sweep, "no_lrn", 0, lr_drops=[dict(epoch=20, lr=0.001), dict(epoch=40, lr=0.0001)])
    rewrite_seed(sweep, "no_lrn", 1, lr_drops=[dict(epoch=20, lr=0.001), dict(epoch=35, lr=0.0001)])
    report.main([str(sweep)])
    rows = report_table((sweep / "report.md").read_text())
    assert rows["no_lrn"][23] == "same in 1 of 2, not recorded in 1"
    assert rows["no_pca"][23] == "not recorded"  # no run of it recorded its drops
    assert rows["none"][23] == "—"


def test_the_header_says_when_each_part_was_fixed_and_counts_the_runs_by_commit(sweep, tmp_path):
    provenance = tmp_path / "provenance.md"
    provenance.write_text("Fixed before stage 1: seeds 0-1. Fixed before stage 2, after stage 1: seeds 2-3.\n")
    for path in sorted(sweep.glob("*/results.json"))[:5]:
        write_json(path, {**json.loads(path.read_text()), "git_commit": "a" * 40 + "-dirty"})
    for path in sorted(sweep.glob("*/results.json"))[5:8]:
        write_json(path, {**json.loads(path.read_text()), "git_commit": "b" * 40})
    report.main([str(sweep), "--provenance", str(provenance)])
    text = (sweep / "report.md").read_text()
    assert "When each was fixed: Fixed before stage 1: seeds 0-1. Fixed before stage 2, after stage 1: seeds 2-3.\n" in text
    assert ("runs each: not recorded 12, `aaaaaaa-dirty` 5, `bbbbbbb` 3. With uncommitted changes (`-dirty`): "
            "5 runs at 1 commit (`aaaaaaa`).") in text
    assert "Fixed before the sweep" not in text
    with pytest.raises(SystemExit):
        report.main([str(sweep), "--provenance", str(tmp_path / "missing.md")])


VERDICTS = "learns, learns after a loss spike, at chance, exploded and at chance, collapsed, exploded, unknown"
# Job 0's results.json made odd: (its key, the value set there; "results": the whole file's text;
# "config": .hydra/config.yaml's), and why the report lists it (alexnet_lit.results.ResultsFileError)
ODD = {"not JSON": ("results", "{", "not valid JSON (Expecting property name enclosed in double quotes: "
                                   "line 1 column 2 (char 1))"),
       "null": ("results", "null", "the file is null, expected a JSON object"),
       "a list": ("results", "[1, 2]", "the file is [1, 2], expected a JSON object"),
       "no ablation": ("results", '{"status": "completed", "seed": 0}', "no key 'ablation'"),
       "ablation 5": ("ablation", 5, "ablation is 5, expected a list"),
       "ablation [5]": ("ablation", [5], "ablation[0] is 5, expected a string"),
       "a NaN metric": ("val_top1_err", float("nan"), "val_top1_err is NaN, expected a number from 0 to 1"),
       "a metric of 1e308": ("train_top1_err", 1e308, "train_top1_err is 1e+308, expected a number from 0 to 1"),
       "a dead-unit share of 1.5": ("dead_units", {"act1": 1.5}, "dead_units.act1 is 1.5, expected a number from 0 to 1"),
       "status null": ("status", None, "status is null, expected one of running, completed, failed, interrupted"),
       "status of no kind": ("status", "done", 'status is "done", expected one of running, completed, failed, interrupted'),
       "a renamed key": ("val_top5_error", 0.2, "unknown key 'val_top5_error'"),
       "a newer version": ("version", 3, "version 3: this alexnet_lit reads versions 1 to 2"),
       "lrn of numbers": ("lrn", {"norm1": 2}, "lrn.norm1 is 2, expected a JSON object"),
       "learning a string": ("learning", "learns", 'learning is "learns", expected a JSON object'),
       "seed a string": ("seed", "0", 'seed is "0", expected an integer'),
       "lr_drops of epochs": ("lr_drops", [3, 5], "lr_drops[0] is 3, expected a JSON object"),
       "conv1_colour without kernels": ("conv1_colour", {"tower_sizes": [1, 1], "tower_means": [0.1, 0.2]},
                                        "no key 'conv1_colour.kernels'"),
       "learning's verdict a number": ("learning", {"verdict": 5, "collapsed": False},
                                       f"learning.verdict is 5, expected one of {VERDICTS}"),
       "config not YAML": ("config", "model: [unclosed\n  : {", ".hydra/config.yaml: not a run's config"),
       "config's layer table a number": ("config", "model: {features: 5, input_size: 67}\n",
                                         ".hydra/config.yaml: model: not a network's layer table"),
       "config a list": ("config", "- 1\n- 2\n", ".hydra/config.yaml: not a run's config (a list, not a mapping)")}


@pytest.mark.parametrize("case", list(ODD))
def test_an_odd_job_is_listed_with_why_and_the_others_tabled(sweep, case):
    """Job 0 (`none`, seed 0) made odd: the report names it and why, tables every other job,
    and exits non-zero."""
    key, value, why = ODD[case]
    job = sweep / "0"
    if key == "results":
        (job / "results.json").write_text(value)
    elif key == "config":
        (job / ".hydra" / "config.yaml").write_text(value)
    else:  # written as json writes it: NaN as the bare word NaN
        (job / "results.json").write_text(json.dumps({**json.loads((job / "results.json").read_text()), key: value}))
    with pytest.raises(SystemExit, match=f"0/results.json: {re.escape(why)}"):
        report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    assert f"- `0/results.json`: {why}" in text
    rows = report_table(text)
    assert rows["none"][2] == "2" and rows["no_lrn"][2] == "3 (1 failed)"


def test_a_job_that_failed_before_training_is_counted_failed(sweep):
    """A run that stopped before it measured anything (a damaged checkpoint, a bad config) has
    a record of its setting and error alone: a failed run of its arm, not an unreadable file."""
    (sweep / "0" / "results.json").unlink()
    record_failure(sweep / "0" / "results.json", ValueError("last.ckpt: truncated"), dict(ablation=["none"], seed=0))
    report.main([str(sweep)])  # no unreadable file: exit 0
    assert report_table((sweep / "report.md").read_text())["none"][2] == "2 (1 failed)"


# Runs the report as ``python -m alexnet_lit.report ARGS`` would, then prints which of torch and
# Lightning it imported.
LOADED = """import runpy, sys
try:
    runpy.run_module("alexnet_lit.report", run_name="__main__")
finally:
    print(sorted({"torch", "lightning"} & set(sys.modules)))"""


def test_the_report_reads_its_files_without_torch_or_lightning(sweep, tmp_path_factory):
    """The table, on a sweep holding one of ablations/table/runs' records as it is committed
    (its config's classes checked against conf/), and --figure1: neither imports torch nor
    Lightning."""
    for name in ("results.json", ".hydra/config.yaml"):
        (sweep / "real" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "ablations/table/runs/seed10/none" / name, sweep / "real" / name)
    figure1, out = write_figure1_sweep(tmp_path_factory.mktemp("figure1")), tmp_path_factory.mktemp("out")
    for args in ([sweep, "--out", out], ["--figure1", figure1, "--out", out]):
        done = subprocess.run([sys.executable, "-c", LOADED, *map(str, args)], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines()[-1] == "[]", args
