"""results.json's schema (alexnet_lit.results): every committed record reads, a record written
reads back as it was, a file that does not fit is one ResultsFileError naming the file and the
key, and a failure keeps what the record held."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from alexnet_lit.results import (VERSION, Learning, LrDrop, Results, ResultsFileError, read_results, record_failure,
                                 write_results)

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted((REPO / "ablations" / "table" / "runs").rglob("results.json"))


def test_every_committed_record_reads_as_version_1():
    assert len(COMMITTED) >= 280
    for path in COMMITTED:
        results = read_results(path)
        assert (results.version, results.status, results.error_type) == (1, "completed", None), path
        assert results.learning.verdict == "learns" and 0 < results.val_top1_err < 1, path


def test_what_benchmarks_kept_of_older_records_reads(tmp_path):
    """benchmarks/results/learns_*.json keep each run's ``learning``, ``lrn`` and ``dead_units``
    as results.json held them before the collapse rule (no ``collapsed``)."""
    arms = [arm for path in sorted((REPO / "benchmarks" / "results").glob("learns_*.json"))
            for arm in json.loads(path.read_text())["arms"].values()]
    assert len(arms) >= 20
    for arm in arms:
        record = {key: arm[key] for key in ("status", "learning", "lrn", "dead_units", "error")}
        (tmp_path / "results.json").write_text(json.dumps(dict(record, ablation=["none"], seed=0)))
        assert read_results(tmp_path / "results.json").learning.verdict == arm["learning"]["verdict"]


def test_a_record_reads_back_as_written(tmp_path):
    written = Results("completed", ["no_lrn", "no_pca"], 3, val_top1_err=0.4, wall_time_s=12.5,
                      learning=Learning("learns", collapsed=False, chance_loss=2.3026), lr_drops=[LrDrop(20, 0.001)])
    write_results(tmp_path / "results.json", written)
    assert read_results(tmp_path / "results.json") == written
    assert json.loads((tmp_path / "results.json").read_text())["version"] == VERSION == 2


@pytest.mark.parametrize("text, why", [
    ("[]", "the file is [], expected a JSON object"),
    ('{"status": "completed", "ablation": ["none"], "seed": 0, "val_top1_err": NaN}',
     "val_top1_err is NaN, expected a number from 0 to 1"),
    ('{"status": "completed", "ablation": ["none"], "seed": 0, "learning": {"collapsed": false}}',
     "no key 'learning.verdict'"),
    ('{"status": "completed", "ablation": ["none"], "seed": true}', "seed is true, expected an integer")])
def test_a_file_that_does_not_fit_is_one_error_naming_it_and_the_key(tmp_path, text, why):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ResultsFileError) as raised:
        read_results(path)
    assert isinstance(raised.value, ValueError)
    assert (str(raised.value), raised.value.why) == (f"{path}: {why}", why)


def test_a_failure_keeps_what_the_record_held_and_names_the_errors_class(tmp_path):
    path, meta = tmp_path / "results.json", dict(ablation=["none"], seed=0, init="paper")
    record_failure(path, ValueError("bad config"), meta)  # nothing held: the run's setting alone
    assert read_results(path) == Results("failed", ["none"], 0, init="paper", error="ValueError: bad config",
                                         error_type="ValueError")
    write_results(path, Results("interrupted", ["none"], 0, val_top1_err=0.4, epochs=3))
    record_failure(path, RuntimeError("disk full"), meta)
    assert read_results(path) == Results("failed", ["none"], 0, val_top1_err=0.4, epochs=3,
                                         error="RuntimeError: disk full", error_type="RuntimeError")
    path.write_text("{")  # a damaged record is started afresh
    record_failure(path, OSError("gone"), meta)
    assert read_results(path).error_type == "OSError"


def test_a_version_1_failure_gets_its_errors_class(tmp_path):
    """Version 1 recorded a failure as ``error`` alone, "<its class>: <its message>"."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(dict(status="failed", ablation=["tanh"], seed=1,
                                    error="NonFiniteLossError: non-finite training loss at step 7")))
    assert replace(read_results(path), error=None) == Results("failed", ["tanh"], 1, version=1,
                                                              error_type="NonFiniteLossError")
