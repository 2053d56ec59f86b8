"""Weights from elsewhere: model=torchvision takes torchvision's alexnet state dict through
init_from (and evaluate), our checkpoints load the same way, mismatches are named."""
import pytest
import torch
import torchvision

from alexnet_lit.build import build_datamodule, build_module
from alexnet_lit.evaluate import evaluate
from alexnet_lit.weights import load_weights
from conftest import FINISHED_RUN


@pytest.fixture
def torchvision_weights(tmp_path):
    def _save(num_classes: int = 1000):
        torch.manual_seed(0)
        net = torchvision.models.alexnet(num_classes=num_classes).eval()
        path = tmp_path / f"alexnet-{num_classes}.pth"
        torch.save(net.state_dict(), path)
        return net, path
    return _save


def test_torchvision_weights_give_torchvisions_logits(compose_cfg, torchvision_weights):
    reference, path = torchvision_weights()
    module = build_module(compose_cfg("model=torchvision", "data.num_classes=1000", f"init_from={path}"))
    assert sum(p.numel() for p in module.net.parameters()) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(module.net.eval()(x), reference(x), atol=1e-5, rtol=0)


def test_layers_that_do_not_fit_are_named_and_the_rest_loaded(compose_cfg, torchvision_weights):
    reference, path = torchvision_weights(num_classes=1000)
    module = build_module(compose_cfg("model=torchvision", "data.num_classes=10"))  # fine-tuning
    fresh_fc8 = module.net.classifier.fc8.weight.clone()
    with pytest.warns(UserWarning, match=r"fc8: weight of shape \(1000, 4096\) in the file, \(10, 4096\) here"):
        assert load_weights(module.net, path) == ["fc8"]
    assert torch.equal(module.net.features.conv5.weight, reference.features[10].weight)
    assert torch.equal(module.net.classifier.fc8.weight, fresh_fc8)

    paper = build_module(compose_cfg("data.num_classes=1000")).net  # two towers: only fc6..fc8 fit
    with pytest.warns(UserWarning, match=r"loaded fc6, fc7, fc8; left as initialised: conv1: weight of shape \(64, 3, 11, 11\)"):
        assert load_weights(paper, path) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    tiny = build_module(compose_cfg("experiment=tiny")).net
    with pytest.raises(ValueError, match=r"does not fit this network.*fc6: weight of shape"):
        load_weights(tiny, path)
    with pytest.raises(ValueError, match="fc8"):
        load_weights(module.net, path, strict=True)


@pytest.mark.slow
def test_init_from_one_of_our_checkpoints_loads_its_network(compose_cfg, trained_run):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    module = build_module(compose_cfg("experiment=tiny", *FINISHED_RUN, f"init_from={ckpt}"))
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    for name, value in module.net.state_dict().items():
        assert torch.equal(value, saved[f"net.{name}"]), name


@pytest.mark.slow
def test_evaluate_takes_a_plain_torchvision_state_dict_with_model_torchvision(
        compose_cfg, torchvision_weights):
    reference, path = torchvision_weights(num_classes=10)
    cfg = compose_cfg(f"ckpt={path}", "model=torchvision", "data.image_size=256", "data.val_per_class=3",
                      "data.batch_size=30", "data.normalize=standard", "data.val_views=[center]",
                      "trainer.enable_progress_bar=false", command="evaluate")
    report = evaluate(cfg)
    datamodule = build_datamodule(report["data"])
    datamodule.prepare_data()
    datamodule.setup("validate")
    images, labels = next(iter(datamodule.val_dataloader()))
    assert len(labels) == report["images"] == 30
    with torch.no_grad():
        logits = reference(datamodule.views(images, "center"))
    errors = (logits.argmax(1) != labels).float().mean().item()
    assert report["results"][str(path)]["center"]["top1_err"] == pytest.approx(errors, abs=1e-6)
    assert report["results"][str(path)]["center"]["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
