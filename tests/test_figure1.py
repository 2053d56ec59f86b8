"""Figure 1 (ReLU against tanh on CIFAR-10): the 25% crossing and a tiny real run."""
import json

import pytest
from PIL import Image

from alexnet_lit import figure1
from conftest import extracted


def test_epochs_to_target_interpolates_the_crossing():
    assert figure1.epochs_to([0.5, 0.2], 0.25) == pytest.approx(1 + 0.25 / 0.3)
    assert figure1.epochs_to([0.2, 0.1], 0.25) == pytest.approx(0.75 / 0.8)  # from 1.0 at epoch 0
    assert figure1.epochs_to([0.5, 0.3], 0.25) is None


def test_the_network_is_the_papers_four_layer_cifar_net():
    net = figure1.cifar_net("tanh")
    learned = [m for m in net if hasattr(m, "weight")]
    assert [tuple(m.weight.shape) for m in learned] == [
        (32, 3, 5, 5), (32, 32, 5, 5), (64, 32, 5, 5), (10, 64 * 4 * 4)]
    assert sum(type(m).__name__ == "Tanh" for m in net) == 3


@pytest.mark.slow
def test_a_tiny_run_writes_the_plot_and_its_numbers(shared_cache, tmp_path):
    data = extracted("cifar10_jpg.tar.gz", shared_cache) / "cifar10_jpg"
    result = figure1.main(["--data", str(data), "--out", str(tmp_path), "--train-images", "200", "--lrs",
                           "0.01", "0.05", "--pilot-epochs", "1", "--max-epochs", "3", "--target", "0.8"])
    assert json.loads((tmp_path / "figure1.json").read_text()) == json.loads(json.dumps(result))
    assert result["train_images"] == 200 and "--train-images 200" in result["command"]
    for run in result["activations"].values():
        assert run["lr"] in (0.01, 0.05) and set(run["pilot"]) == {"0.01", "0.05"}
        assert run["pilot"][str(run["lr"])] == min(run["pilot"].values())
        assert 1 <= len(run["train_error"]) <= 3 and all(0 <= e <= 1 for e in run["train_error"])
        assert run["epochs_to_target"] == figure1.epochs_to(run["train_error"], 0.8)
        # it stops once the target is reached
        assert len(run["train_error"]) == 3 or min(run["train_error"]) <= 0.8
    relu, tanh = (result["activations"][a]["epochs_to_target"] for a in ("relu", "tanh"))
    assert result["speedup"] == (tanh / relu if relu and tanh else None)
    assert Image.open(tmp_path / "figure1.png").format == "PNG"


def test_a_folder_without_train_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        figure1.main(["--data", str(tmp_path)])
