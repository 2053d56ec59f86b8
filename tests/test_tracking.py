"""logger=wandb for real, offline: what a run writes, the offline fallback, rank 0 only."""
import json
import logging
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import wandb
from types import SimpleNamespace

from hydra.utils import instantiate
from PIL import Image

from alexnet_lit.analysis.runs import last_attempts, run_from_wandb
from alexnet_lit.evaluate import evaluate
from alexnet_lit.figures import figures
from alexnet_lit.train import train
from conftest import REPO, wandb_run, wandb_runs


def test_logger_wandb_keeps_the_csv_log_and_combines_with_others(compose_cfg):
    assert list(compose_cfg("logger=wandb").logger) == ["csv", "wandb"]
    assert list(compose_cfg("logger=[wandb,tensorboard]").logger) == ["csv", "wandb", "tensorboard"]


@pytest.mark.slow
def test_a_run_logs_its_ablations_config_metrics_samples_and_conv1_kernels(
        compose_cfg, wandb_offline, tmp_path):
    cfg = compose_cfg("experiment=tiny", "logger=wandb", "+ablation=[no_lrn,no_pca]",
                      "trainer.max_epochs=1", "logger.wandb.tags=[cpu]")
    train(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    run = wandb_run(tmp_path / "run")

    assert run["job_type"] == "no_lrn+no_pca" and run["tags"] == ["no_lrn", "no_pca", "cpu"]
    assert run["group"] is None  # a single run: no sweep
    assert (run["state"], run["exit_code"]) == ("finished", 0)
    config = run["config"]
    assert config["ablation"] == ["no_lrn", "no_pca"] and config["seed"] == 0
    assert config["params"] == results["params"] and config["model"]["lrn"] is None
    assert config["data"]["pca_noise"] is False  # the resolved config, ablations applied
    for key in ("val/top1_err", "val/top5_err", "train/top1_err"):
        assert run["summary"][key] == pytest.approx(results[key.replace("/", "_")])

    samples = [h for h in run["history"] if "samples/train._type" in h]
    kernels = [h for h in run["history"] if "conv1/kernels._type" in h]
    assert [h["trainer/global_step"] for h in samples] == [0]
    assert [h["trainer/global_step"] for h in kernels] == [results["steps"]]
    assert kernels[0]["conv1/kernels.count"] == 2  # one picture per tower
    media = run["folder"] / "files"
    (grid,) = [Image.open(media / f) for f in samples[0]["samples/train.filenames"]]
    assert grid.size == (8 * (67 + 1) + 1, 4 * (67 + 1) + 1)  # 32 crops of 67x67, 8 per row
    towers = [Image.open(media / f) for f in kernels[0]["conv1/kernels.filenames"]]
    assert [t.size for t in towers] == [(4 * (8 * 12 + 1), 4 * 13)] * 2  # 8 of 16 kernels, 11x11, x4


@pytest.mark.slow
def test_the_w_and_b_report_counts_the_last_attempt_of_a_resumed_job(compose_cfg, wandb_offline, tmp_path):
    """A job resumed in its folder continues its own W&B run (the same run id: online, W&B
    appends to it; offline, a second folder of the same run); both attempts name the job's
    folder, and the W&B reporter keeps the later one."""
    train(compose_cfg("experiment=tiny", "logger=wandb", "trainer.max_epochs=1"))
    train(compose_cfg("experiment=tiny", "logger=wandb", "trainer.max_epochs=2"))  # resumes
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    attempts = wandb_runs(tmp_path / "run")
    assert len(attempts) == 2
    assert {a["config"]["run_dir"] for a in attempts} == {str(tmp_path / "run")}
    assert len({a["id"] for a in attempts}) == 1  # one run id
    api_like = [SimpleNamespace(id=a["id"], created_at=created, config=a["config"],
                                summary_metrics=a["summary"], state=a["state"])
                for a, created in zip(attempts, ("2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"))]
    (kept,) = last_attempts(api_like[::-1])
    assert kept is api_like[1]
    run = run_from_wandb(kept.config, kept.summary_metrics, kept.state, kept.id)
    assert (run.status, run.val_top1, run.train_top1) == (
        "completed", pytest.approx(results["val_top1_err"]), pytest.approx(results["train_top1_err"]))


def start_run(compose_cfg):
    tracker = instantiate(compose_cfg("logger=wandb", "logger.wandb.init_timeout_s=3").logger.wandb)
    tracker.describe(["none"])
    return tracker, tracker.experiment


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RefusingServer(BaseHTTPRequestHandler):
    """A W&B server that rejects every API key."""

    def do_POST(self):
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "invalid API key"}]}')

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("case", ["no key", "unreachable", "key refused"])
def test_without_key_or_server_the_run_goes_offline_with_one_notice(
        case, compose_cfg, wandb_offline, monkeypatch, caplog, request):
    monkeypatch.delenv("WANDB_MODE")
    if case != "no key":
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        url = (request.getfixturevalue("refusing_server") if case == "key refused"
               else f"http://127.0.0.1:{closed_port()}")
        monkeypatch.setenv("WANDB_BASE_URL", url)
    with caplog.at_level(logging.WARNING, logger="alexnet_lit.tracking"):
        tracker, run = start_run(compose_cfg)
    try:
        assert run.settings.mode == "offline"
        (notice,) = [r.getMessage() for r in caplog.records if r.name == "alexnet_lit.tracking"]
        reason = {"no key": "no API key", "unreachable": "unreachable", "key refused": "wandb.init failed"}[case]
        assert reason in notice and "\n" not in notice
        sync_dir = notice.rsplit("`wandb sync ", 1)[1].rstrip("`")
        assert sync_dir.startswith(str(run.dir).rsplit("/files", 1)[0])
    finally:
        tracker.finish(exit_code=0)
        wandb.teardown()  # wandb caches its server settings per process: start each case afresh


@pytest.mark.slow
def test_under_ddp_only_rank_zero_opens_a_run(tmp_path, wandb_offline, cache_dir):
    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "alexnet_lit.train", "experiment=tiny", "trainer=ddp",
                    "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1", "logger=wandb",
                    f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    run = wandb_run(run_dir)  # exactly one offline run, or it raises
    assert run["state"] == "finished" and "val/top1_err" in run["summary"]


@pytest.mark.slow
def test_log_model_logs_best_and_last_checkpoints_as_artifacts(compose_cfg, wandb_offline, tmp_path):
    train(compose_cfg("experiment=tiny", "data.num_classes=4", "trainer.max_epochs=1", "logger=wandb",
                      "logger.wandb.log_model=true"))
    artifacts = wandb_run(tmp_path / "run")["artifacts"]
    assert [a["type"] for a in artifacts] == ["model", "model"]
    assert "best" in artifacts[0]["aliases"] and "last" in artifacts[1]["aliases"]
    assert json.loads(artifacts[1]["metadata"]) == {"original_filename": "last.ckpt"}


@pytest.mark.slow
def test_evaluate_and_figures_log_their_table_and_pictures(compose_cfg, wandb_offline, tmp_path, trained_run):
    ckpt = f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}"
    report = evaluate(compose_cfg(ckpt, "logger=wandb", "trainer.enable_progress_bar=false",
                                  command="evaluate", run="eval"))
    run = wandb_run(tmp_path / "eval")
    assert run["job_type"] == "evaluate" and run["config"]["ckpt"] == ckpt[len("ckpt="):]
    table = json.loads((run["folder"] / "files" / run["summary"]["eval"]["path"]).read_text())
    assert table["columns"][:2] == ["network", "view"]
    rows = {(r[0], r[1]): dict(zip(table["columns"], r)) for r in table["data"]}
    for (network, view), row in rows.items():
        assert row["top1_err"] == pytest.approx(report["results"][network][view]["top1_err"])
    assert len(rows) == 2  # centre and ten-crop

    written = figures(compose_cfg(ckpt, "logger=wandb", "queries=2", "neighbours=2", command="figures", run="figures"))
    run = wandb_run(tmp_path / "figures")
    assert run["job_type"] == "figures"
    assert {"figure3", "figure4", "curves"} <= {k.split(".")[0] for h in run["history"] for k in h}
    assert run["summary"]["conv1/colour_specificity/tower1"] == pytest.approx(
        written["figure3"]["towers"][0]["mean_colour_specificity"])
