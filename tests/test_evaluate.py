"""python -m alexnet_lit.evaluate on checkpoints of real short CPU runs: ten-crop, ensembles,
checkpoints of ablations, the run's own data or another, and DDP against one process."""
import json
import subprocess

import pytest
import torch
from torch.nn import functional as F

from alexnet_lit.build import build_datamodule
from alexnet_lit.evaluate import evaluate
from alexnet_lit.trained import data_config, load_member
from conftest import REPO, command

QUIET = ("trainer.enable_progress_bar=false",)


def best(run) -> str:
    return str(run / "checkpoints" / "best.ckpt")


@pytest.mark.slow
def test_tencrop_is_the_mean_softmax_of_the_ten_views_cut_by_hand(compose_cfg, trained_run):
    cfg = compose_cfg(f"ckpt={best(trained_run)}", *QUIET, command="evaluate")
    report = evaluate(cfg)
    net = load_member(best(trained_run), cfg).net.eval()
    datamodule = build_datamodule(*data_config(cfg, best(trained_run)))
    datamodule.prepare_data()
    datamodule.setup("validate")
    mean, scale = datamodule.views.mean, datamodule.views.scale
    c, losses, errors = net.input_size, [], 0
    for image, label in datamodule.val_set:
        x = ((image.float() - mean) * (1 if scale is None else scale)).permute(2, 0, 1)  # (3, S, S)
        far, middle = x.shape[1] - c, (x.shape[1] - c) // 2
        five = [x[:, top:top + c, left:left + c]
                for top, left in ((0, 0), (0, far), (far, 0), (far, far), (middle, middle))]
        with torch.no_grad():
            p = F.softmax(net(torch.stack(five + [v.flip(2) for v in five])), dim=1).mean(0)
        losses.append(-p[label].log().item())
        errors += int(p.argmax() != label)
    tencrop = report["results"][best(trained_run)]["tencrop"]
    assert report["images"] == len(losses) == 80
    assert tencrop["top1_err"] == pytest.approx(errors / len(losses), abs=1e-6)
    assert tencrop["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    results = json.loads((trained_run / "results.json").read_text())
    assert report["results"][best(trained_run)]["center"]["top1_err"] == pytest.approx(
        results["best_val_top1_err"], abs=1e-6)  # what training measured on its validation set


@pytest.mark.slow
def test_an_ensemble_of_one_is_that_checkpoint_and_of_two_beats_their_mean_loss(
        compose_cfg, trained_run, ablation_run, tmp_path):
    one = evaluate(compose_cfg(f"ckpt=[{best(trained_run)}]", *QUIET, command="evaluate"))["results"]
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["results"] == one
    for view in ("center", "tencrop"):
        alone, ensemble = one[best(trained_run)][view], one["ensemble"][view]
        assert ensemble["top1_err"] == alone["top1_err"] and ensemble["top4_err"] == alone["top4_err"]
        assert ensemble["loss"] == pytest.approx(alone["loss"], rel=1e-6)

    members = [best(trained_run), best(ablation_run)]  # two networks, one of the ablation
    two = evaluate(compose_cfg(f"ckpt=[{','.join(members)}]", *QUIET, command="evaluate"))["results"]
    for view in ("center", "tencrop"):
        losses = [two[m][view]["loss"] for m in members]
        assert losses[0] != losses[1]
        # -log of a mean probability is at most the mean of the -logs (convexity)
        assert two["ensemble"][view]["loss"] < sum(losses) / 2
        assert all(two["ensemble"][view]["loss"] != loss for loss in losses)


@pytest.mark.slow
def test_a_checkpoint_of_an_ablation_evaluates_with_no_overrides(tmp_path, cache_dir, ablation_run):
    done = subprocess.run(command("evaluate", tmp_path / "eval", cache_dir, f"ckpt={best(ablation_run)}"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    trained = json.loads((ablation_run / "results.json").read_text())
    assert report["data"]["crop_size"] == 67 and report["data"]["val_views"] == ["center", "tencrop"]
    assert report["results"][best(ablation_run)]["center"]["top1_err"] == pytest.approx(
        trained["val_top1_err"], abs=1e-6)
    assert "tencrop" in done.stdout and "top-1 err" in done.stdout


@pytest.mark.slow
def test_data_overrides_replace_the_runs_data(compose_cfg, trained_run):
    report = evaluate(compose_cfg(f"ckpt={best(trained_run)}", "data.val_per_class=3",
                                  "data.val_views=[center]", *QUIET, command="evaluate"))
    assert report["images"] == 12 and list(report["results"][best(trained_run)]) == ["center"]
    assert report["data"]["image_size"] == 76  # the rest is the run's (experiment=tiny)


@pytest.mark.slow
def test_two_processes_evaluate_like_one(tmp_path, cache_dir, trained_run, ablation_run):
    """80 images of 32 a batch over 2 processes; counts and losses summed exactly."""
    ckpts = f"ckpt=[{best(trained_run)},{best(ablation_run)}]"
    reports = {}
    for name, extra in (("one", ()), ("ddp", ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"))):
        done = subprocess.run(command("evaluate", tmp_path / name, cache_dir, ckpts, *QUIET, *extra),
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        reports[name] = json.loads((tmp_path / name / "eval.json").read_text())["results"]
    for network, views in reports["one"].items():
        for view, one in views.items():
            ddp = reports["ddp"][network][view]
            assert ddp["top1_err"] == one["top1_err"] and ddp["top4_err"] == one["top4_err"]
            assert ddp["loss"] == pytest.approx(one["loss"], rel=1e-6)


def test_a_file_that_is_not_a_checkpoint_is_named(compose_cfg, tmp_path):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.ckpt: not a PyTorch checkpoint"):
        evaluate(compose_cfg(f"ckpt={bad}", command="evaluate"))
    with pytest.raises(FileNotFoundError, match="missing.ckpt: no such"):
        evaluate(compose_cfg(f"ckpt={tmp_path / 'missing.ckpt'}", command="evaluate"))


@pytest.mark.slow
def test_a_checkpoint_and_data_of_other_class_counts_are_refused(compose_cfg, trained_run):
    with pytest.raises(ValueError, match=f"{best(trained_run)} has 4 classes, the data .* has data.num_classes=3"):
        evaluate(compose_cfg(f"ckpt={best(trained_run)}", "data.num_classes=3", *QUIET, command="evaluate"))
