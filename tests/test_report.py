"""The reporter on a sweep folder of known results: statistics, the paper's numbers, sign
agreement, runs still going or failed, bad input."""
import csv
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from alexnet_lit import report
from alexnet_lit.results import write_json
from alexnet_lit.build import CONFIG_DIR
from conftest import report_table

# (ablation, seed, status, val top-1, val top-5, train top-1, learning verdict)
JOBS = [("none", 0, "completed", 0.40, 0.18, 0.30, "learns"), ("none", 1, "completed", 0.42, 0.20, 0.32, "learns"),
        ("none", 2, "completed", 0.41, 0.19, 0.31, "learns"),
        ("no_lrn", 0, "completed", 0.45, 0.19, 0.31, "learns"), ("no_lrn", 1, "completed", 0.47, 0.21, 0.33, "learns"),
        ("no_lrn", 2, "completed", 0.46, 0.20, 0.32, "learns"), ("no_lrn", 3, "failed", None, None, None, None),
        ("tanh", 0, "running", 0.60, 0.30, 0.55, "learns"), ("tanh", 1, "completed", 0.38, 0.17, 0.50, "learns"),
        ("no_overlap", 0, "completed", 0.41, 0.19, 0.31, "learns"),
        ("no_overlap", 1, "completed", 0.40, 0.20, 0.30, "learns"),
        ("no_overlap", 2, "interrupted", 0.70, 0.40, 0.60, "learns"),
        ("no_dropout", 0, "completed", 0.35, 0.15, 0.20, "learns"),
        ("no_dropout", 1, "completed", 0.36, 0.16, 0.21, "learns"),
        ("no_dropout", 2, "completed", 0.37, 0.17, 0.22, "learns after a loss spike"),
        ("no_conv3", 0, "completed", 0.90, 0.50, 0.90, "exploded and at chance"),
        ("no_conv3", 1, "completed", 0.50, 0.25, 0.45, "learns")]
CONFIG = """
data: {num_classes: 10, normalize: paper, image_size: 76, batch_size: 128, val_views: [center]}
model: {init: paper, input_size: 67, towers: 2}
optim: {lr: 0.01}
trainer: {max_epochs: 30}
"""


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A multirun folder as Hydra and ResultsWriter leave it, plus one job that died before
    training (a .hydra/ folder, no results.json)."""
    for i, (name, seed, status, top1, top5, train1, learning) in enumerate(JOBS):
        job = tmp_path / str(i)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(CONFIG)
        lrn = {} if name == "no_lrn" else {
            "norm1": {"divisor_mean": 2.0, "divisor_p95": 2.5, "k_beta": 1.6},
            "norm2": {"divisor_mean": 1.6, "divisor_p95": 1.6, "k_beta": 1.6}}
        write_json(job / "results.json", dict(
            ablation=[name], seed=seed, status=status, val_top1_err=top1, val_top5_err=top5,
            train_top1_err=train1, train_top5_err=None, wall_time_s=30.0, params=80_000,
            learning={"verdict": learning} if learning else None, lrn=lrn))
    (tmp_path / "99" / ".hydra").mkdir(parents=True)
    (tmp_path / "99" / ".hydra" / "config.yaml").write_text(CONFIG)
    OmegaConf.save({"hydra": {"overrides": {"task": ["experiment=tiny", "+ablation=glob(*)", "seed=0,1"]}}},
                   tmp_path / "multirun.yaml")
    return tmp_path


def test_the_report_puts_our_changes_beside_the_papers(sweep):
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    rows = report_table(text)
    assert list(rows) == ["none", "tanh", "no_lrn", "no_overlap", "no_dropout", "no_conv3"]  # the paper's order
    none, tanh, no_lrn, no_overlap, no_dropout, no_conv3 = rows.values()
    assert none[2:6] == ["3", "41.0 ± 1.0", "—", "40.7"]
    assert none[6] == "19.0 ± 1.0" and none[8] == "18.2"
    # 45, 47, 46 against 40, 42, 41: +5.0, standard error sqrt(1/3 + 1/3), Welch's 4 degrees of
    # freedom, t(0.975, 4) = 2.776 from the tables: +5.0 ± 2.27
    assert no_lrn[2:6] == ["3 (1 failed)", "46.0 ± 1.0", "+5.0 [+2.7, +7.3]", "+1.4"]
    assert no_lrn[11] == "agrees (val top-1)"
    # 40.5 against 41.0 from 2 and 3 runs: an interval around 0
    assert no_overlap[2] == "2 (1 interrupted)"  # a SIGTERM'd run's numbers stay out
    assert no_overlap[4].startswith("-0.5 [-") and no_overlap[11] == "not resolved (val top-1)"
    # no dropout lowers the error beyond the noise: against the paper
    assert no_dropout[4] == "-5.0 [-7.3, -2.7]" and no_dropout[11] == "disagrees (val top-1)"  # a spike that
    assert no_dropout[12] == "2 learns, 1 learns after a loss spike"  # recovered leaves the verdict
    # tanh: one run completed, one still going: no interval; the paper's claim is on training error
    assert tanh[2:5] == ["1 (1 running)", "38.0", "-3.0"] and tanh[5] == "+"
    assert tanh[10] == "+19.0" and tanh[11] == "not resolved (train top-1)"
    # a run that did not learn: the row gets no verdict, and says why
    assert no_conv3[11] == "no verdict: a run did not learn (val top-1)"
    assert no_conv3[12] == "1 exploded and at chance, 1 learns" or no_conv3[12] == "1 learns, 1 exploded and at chance"
    assert none[12] == "3 learns"
    assert none[13] == "norm1 1.25, norm2 1.00" and no_lrn[13] == "off"
    assert "classes 10; init paper; inputs raw RGB minus the mean image" in text
    assert "epochs 30; views center" in text and "80,000 parameters" in text
    assert "`none` overfits by 10.0 percentage points" in text and "10.0 to 10.0 over 3 runs" in text
    assert "`" + str(sweep / "99") + "`" in text  # the job without results.json
    assert "python -m alexnet_lit.train -m experiment=tiny '+ablation=glob(*)' seed=0,1" in text
    assert "no_lrn`: top-1 +1.4%, top-5 +1.2% without it" in text
    assert Image.open(sweep / "report.png").format == "PNG"


def test_welch_interval_on_unequal_spreads():
    """Variances 4 and 1/3 over 3 runs each: Welch-Satterthwaite's degrees of freedom are
    (4/3 + 1/9)^2 / ((4/3)^2/2 + (1/9)^2/2) = 2.33 (worked by hand), so the half-width lies
    between t(0.975, 3) = 3.182 and t(0.975, 2) = 4.303 standard errors (the tables)."""
    a, b = report.Stat.of([0.10, 0.12, 0.14]), report.Stat.of([0.10, 0.10, 0.11])
    delta = a.minus(b)
    se = math.sqrt(4 / 3 + 1 / 9)
    assert delta.value == pytest.approx(12 - 31 / 3)
    assert 3.182 * se < (delta.high - delta.low) / 2 < 4.303 * se
    assert not delta.resolved  # +1.7 points, but the interval holds 0
    one = report.Stat.of([0.10])  # one run: no interval at all
    assert one.minus(b).low is None and not one.minus(b).resolved


def test_the_paper_table_has_one_row_per_ablation_file():
    rows = report.paper_table()
    assert set(rows) == {p.stem for p in (Path(CONFIG_DIR) / "ablation").glob("*.yaml")}
    assert rows["none"]["paper_top1"] == 40.7 and rows["one_tower"]["paper_top5"] == 1.2
    for row in rows.values():  # a direction wherever there is no number
        assert row["ablation"] == "none" or (row["paper_top1"] is None) == bool(row["sign"])


def test_bad_input_names_the_file(sweep, tmp_path):
    (sweep / "0" / "results.json").write_text('{"ablation": ["none"], "seed": 0}')
    with pytest.raises(SystemExit, match=r"0/results.json: no key 'status'"):
        report.main([str(sweep)])
    table = tmp_path / "paper.csv"
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([["ablation", "component", "section", "metric", "paper_top1", "paper_top5",
                                  "sign", "paper_says"], ["none", "x", "§1", "val_top9", "", "", "", ""]])
    with pytest.raises(ValueError, match=r"paper.csv: row 'none' has metric 'val_top9'"):
        report.paper_table(table)
    with pytest.raises(SystemExit):
        report.main([])  # neither a sweep folder nor --wandb
    assert not (sweep / "report.md").exists()
