"""python -m alexnet_lit.summary against the network itself and Section 3's counts."""
import logging
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from lightning.pytorch.utilities.model_summary import ModelSummary

from alexnet_lit.build import build_module
from alexnet_lit.summary import CONV1_NEURONS, PAPER_NEURONS, layer_table, paper_note
from alexnet_lit.train import train
from conftest import REPO
from test_model import ABLATIONS


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_totals_are_the_networks_own_parameter_count(compose_cfg, ablation):
    net = instantiate(compose_cfg("data.num_classes=1000", f"+ablation={ablation}").model)
    rows = layer_table(net)
    assert sum(r.params for r in rows) == sum(p.numel() for p in net.parameters())
    assert [r.name for r in rows if r.params] == [n for n, _ in net.learned_layers()]


def test_the_default_net_has_the_papers_neurons_and_the_conv1_erratum(compose_cfg):
    rows = layer_table(instantiate(compose_cfg("data.num_classes=1000").model))
    neurons = {r.name: r.neurons for r in rows if r.neurons}
    assert neurons == {**PAPER_NEURONS, "conv1": CONV1_NEURONS}
    assert sum(r.params for r in rows) == 60_965_224
    assert {r.name: r.shape for r in rows}["pool5"] == (256, 6, 6)
    # conv2 sees 48 of conv1's 96 maps (two towers): 27*27*256 outputs of 5*5*48 each
    assert {r.name: r.mult_adds for r in rows}["conv2"] == 27 * 27 * 256 * 5 * 5 * 48
    assert "erratum" in paper_note(rows)
    tiny = layer_table(instantiate(compose_cfg("experiment=tiny").model))
    assert paper_note(tiny) is None


def test_the_lightning_summary_counts_two_flops_per_multiply_add(compose_cfg):
    module = build_module(compose_cfg("experiment=tiny", "+ablation=one_tower"))
    flops = ModelSummary(module).total_flops
    assert flops == 2 * sum(r.mult_adds for r in layer_table(module.net)) > 0


def test_the_command_prints_the_table_for_an_ablation(compose_cfg):
    done = subprocess.run([sys.executable, "-m", "alexnet_lit.summary", "data.num_classes=1000",
                           "+ablation=no_conv3"], cwd=REPO, capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert not any(line.startswith("conv3") for line in lines)
    total = next(line for line in lines if line.startswith("total")).split()
    net = instantiate(compose_cfg("data.num_classes=1000", "+ablation=no_conv3").model)
    assert int(total[2].replace(",", "")) == sum(p.numel() for p in net.parameters())


@pytest.mark.slow
def test_a_run_starts_with_a_model_summary_of_shapes_and_flops(compose_cfg, caplog):
    cfg = compose_cfg("experiment=tiny", "data.num_classes=4", "trainer.enable_model_summary=true",
                      "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        train(cfg)
    (summary,) = [r.getMessage() for r in caplog.records if "Total Flops" in r.getMessage()]
    flops = 2 * sum(r.mult_adds for r in layer_table(instantiate(cfg.model)))
    assert f"{flops / 1e6:.1f} M" in summary and "Total Flops" in summary
    assert "[1, 3, 67, 67]" in summary  # conv1's input: the crop
