"""Section 5's update rule and learning-rate schedules."""
import pytest
import torch

from alexnet_lit.optim import PaperSGD, build_optimizer, build_scheduler


def run(optimizer_cls, lrs, **kwargs):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    opt = optimizer_cls([w], lr=lrs[0], momentum=0.9, weight_decay=5e-4, **kwargs)
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        (w ** 3).sum().backward()
        opt.step()
    return w.detach()


def test_paper_rule_by_hand():
    torch.manual_seed(0)
    w0 = torch.randn(5)
    w, v = w0.clone(), torch.zeros(5)
    for lr in (0.01, 0.01, 0.001):
        v = 0.9 * v - 0.0005 * lr * w - lr * 3 * w ** 2
        w = w + v
    assert torch.allclose(run(PaperSGD, [0.01, 0.01, 0.001]), w, atol=1e-7)


def test_paper_rule_equals_torch_sgd_at_constant_lr_but_not_after_a_drop():
    assert torch.allclose(run(PaperSGD, [0.01] * 4), run(torch.optim.SGD, [0.01] * 4), atol=1e-7)
    assert not torch.allclose(run(PaperSGD, [0.01, 0.01, 0.001]),
                              run(torch.optim.SGD, [0.01, 0.01, 0.001]), atol=1e-6)


def test_bad_names_are_named():
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="optim.rule='adam'"):
        build_optimizer(params, "adam", 0.01, 0.9, 0.0)
    opt = build_optimizer(params, "paper", 0.01, 0.9, 0.0)
    with pytest.raises(ValueError, match="optim.scheduler.name='cosine'"):
        build_scheduler(opt, "cosine", 0.1, 1, None, "val/top1_err")
    with pytest.raises(ValueError, match="milestones"):
        build_scheduler(opt, "multistep", 0.1, 1, None, "val/top1_err")


def test_why_conf_optim_is_a_flat_table_not_hydra_partial(tmp_path):
    """The lightning-hydra-template's way, ``optimizer: {_target_: ..., _partial_: true}``
    instantiated with the module, hands the module a partial object that
    ``save_hyperparameters`` writes into every checkpoint, and such a checkpoint no longer
    loads with ``torch.load(weights_only=True)`` (no pickled code runs on load: train.py,
    weights.py). Our flat table loads."""
    from hydra.utils import instantiate
    partial = instantiate({"_target_": "alexnet_lit.optim.PaperSGD", "_partial_": True, "lr": 0.01})
    flat = {"rule": "paper", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005}
    torch.save({"hyper_parameters": {"optim": partial}}, tmp_path / "partial.ckpt")
    torch.save({"hyper_parameters": {"optim": flat}}, tmp_path / "flat.ckpt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "partial.ckpt", weights_only=True)
    assert torch.load(tmp_path / "flat.ckpt", weights_only=True)["hyper_parameters"]["optim"] == flat
