"""The reporter on a sweep folder of known results: statistics, the paper's numbers, sign
agreement, runs still going or failed, bad input."""
import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from alexnet_lit import report
from alexnet_lit.results import write_json
from alexnet_lit.train import CONFIG_DIR
from conftest import report_table

# (ablation, seed, status, val top-1, val top-5, train top-1)
JOBS = [("none", 0, "completed", 0.40, 0.18, 0.30), ("none", 1, "completed", 0.42, 0.20, 0.32),
        ("no_lrn", 0, "completed", 0.45, 0.19, 0.31), ("no_lrn", 1, "completed", 0.47, 0.21, 0.33),
        ("no_lrn", 2, "failed", None, None, None),
        ("tanh", 0, "running", 0.60, 0.30, 0.55), ("tanh", 1, "completed", 0.38, 0.17, 0.50),
        ("no_overlap", 0, "completed", 0.41, 0.19, 0.31), ("no_overlap", 1, "completed", 0.40, 0.20, 0.30),
        ("no_overlap", 2, "interrupted", 0.70, 0.40, 0.60)]


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A multirun folder as Hydra and ResultsWriter leave it, plus one job that died before
    training (a .hydra/ folder, no results.json)."""
    for i, (name, seed, status, top1, top5, train1) in enumerate(JOBS):
        job = tmp_path / str(i)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text("seed: 0\n")
        write_json(job / "results.json", dict(
            ablation=[name], seed=seed, status=status, val_top1_err=top1, val_top5_err=top5,
            train_top1_err=train1, train_top5_err=None, wall_time_s=30.0))
    (tmp_path / "99" / ".hydra").mkdir(parents=True)
    (tmp_path / "99" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    OmegaConf.save({"hydra": {"overrides": {"task": ["experiment=tiny", "+ablation=glob(*)", "seed=0,1"]}}},
                   tmp_path / "multirun.yaml")
    return tmp_path


def test_the_report_puts_our_changes_beside_the_papers(sweep):
    report.main([str(sweep)])
    text = (sweep / "report.md").read_text()
    rows = report_table(text)
    assert list(rows) == ["none", "tanh", "no_lrn", "no_overlap"]  # the paper's order
    none, tanh, no_lrn, no_overlap = rows.values()
    assert none[2:6] == ["2", "41.0 ± 1.4", "—", "40.7"]
    assert none[6] == "19.0 ± 1.4" and none[8] == "18.2"
    # 45, 47 against 40, 42: +5.0, standard error sqrt(2/2 + 2/2) = 1.4; the paper: +1.4
    assert no_lrn[2:6] == ["2 (1 failed)", "46.0 ± 1.4", "+5.0 ± 1.4", "+1.4"]
    assert no_lrn[11] == "yes (val top-1)"
    # 40.5 against 41.0: the paper's sign, but within twice the standard error
    assert no_overlap[2] == "2 (1 interrupted)"  # a SIGTERM'd run's numbers stay out
    assert no_overlap[4] == "-0.5 ± 1.1" and no_overlap[11] == "no, within noise (val top-1)"
    # tanh: one run completed, one still going; the paper's claim is on training error
    assert tanh[2:5] == ["1 (1 running)", "38.0", "-3.0"] and tanh[5] == "+"
    assert tanh[10] == "+19.0" and tanh[11] == "yes (train top-1)"
    assert "`" + str(sweep / "99") + "`" in text  # the job without results.json
    assert "python -m alexnet_lit.train -m experiment=tiny '+ablation=glob(*)' seed=0,1" in text
    assert "no_lrn`: top-1 +1.4%, top-5 +1.2% without it" in text
    assert Image.open(sweep / "report.png").format == "PNG"


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
