"""python -m alexnet_lit.figures: colour specificity, fc7 neighbours found batch by batch, and
the figures of a real short CPU run."""
import json

import pytest
import torch
from PIL import Image

from alexnet_lit.build import build_datamodule
from alexnet_lit.trained import data_config, load_member
from alexnet_lit.figures import fc7_and_logits, figures, nearest
from alexnet_lit.inspect.pictures import colour_specificity


def test_colour_specificity_is_zero_for_grey_kernels_and_high_for_one_channel():
    torch.manual_seed(0)
    pattern = torch.randn(4, 1, 11, 11)
    grey = pattern.expand(4, 3, 11, 11)
    red = torch.cat([pattern, torch.zeros(4, 2, 11, 11)], dim=1)
    opponent = torch.cat([pattern, -pattern, torch.zeros(4, 1, 11, 11)], dim=1)
    assert torch.allclose(colour_specificity(grey), torch.zeros(4), atol=1e-6)
    assert torch.allclose(colour_specificity(red), torch.full((4,), 2 / 3))
    assert torch.allclose(colour_specificity(opponent), torch.ones(4))


def test_nearest_neighbours_batch_by_batch_are_the_known_ones():
    """Training rows at known distances from each query, in shuffled order and cut into
    batches: each query's 3 nearest are the rows placed 1, 2 and 3 away from it."""
    torch.manual_seed(0)
    queries = torch.randn(4, 16) * 100
    direction = torch.nn.functional.normalize(torch.randn(16), dim=0)
    rows = torch.stack([queries[q] + d * direction for d in (3.0, 1.0, 2.0, 10.0) for q in range(4)])
    order = torch.randperm(len(rows))
    batches = [(rows[order[i:i + 5]], order[i:i + 5]) for i in range(0, len(rows), 5)]
    distances, indices = nearest(queries, batches, k=3)
    # row index d_slot * 4 + q holds query q's point at the slot's distance
    assert indices.tolist() == [[4 + q, 8 + q, q] for q in range(4)]
    assert torch.allclose(distances, torch.tensor([1.0, 2.0, 3.0]).expand(4, 3), atol=1e-3)
    assert nearest(queries, batches[:1], k=10)[1].shape == (4, 5)  # fewer rows than k


@pytest.mark.slow
def test_the_figures_of_a_real_run(compose_cfg, trained_run, tmp_path):
    ckpt = str(trained_run / "checkpoints" / "best.ckpt")
    cfg = compose_cfg(f"ckpt={ckpt}", "queries=3", "neighbours=4", command="figures")
    written = figures(cfg)
    out = tmp_path / "run"
    towers = written["figure3"]["towers"]
    assert [t["kernels"] for t in towers] == [[0, 7], [8, 15]]  # experiment=tiny: 16 conv1 kernels
    assert all(0 <= t["mean_colour_specificity"] <= 1 for t in towers)
    assert json.loads((out / "figure3.json").read_text()) == written["figure3"]
    images = written["figure4"]["images"]
    assert len(images) == 3 and all(len(i["neighbours"]) == 4 for i in images)
    assert all(i["distances"] == sorted(i["distances"]) for i in images)
    assert all(i["topk"][0][1] >= i["topk"][-1][1] for i in images)
    # the distance given is that between the two images' fc7 vectors
    module, datamodule = load_member(ckpt, cfg).eval(), build_datamodule(*data_config(cfg, ckpt))
    datamodule.setup("validate")
    first = images[-1]
    pair = torch.stack([datamodule.val_set[first["val_index"]][0], datamodule.train_set[first["neighbours"][0]][0]])
    fc7, _ = fc7_and_logits(module, datamodule.views(pair, "center"))
    assert (fc7[0] - fc7[1]).norm().item() == pytest.approx(first["distances"][0], rel=1e-3)
    for name in ("figure3.png", "figure4.png", "curves.png"):
        assert Image.open(out / name).size[0] > 100
