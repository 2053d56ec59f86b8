"""alexnet_lit from Python (docs/python.md): alexnet() is the network the train command builds,
load() gives a trained run's network as evaluate scores it, torch.hub.load builds it from a
clone, and bad input is named."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

import alexnet_lit
from alexnet_lit.build import CONFIG_DIR, build_datamodule
from alexnet_lit.predict import predict
from alexnet_lit.callbacks import CheckpointRun
from conftest import REPO, command, finished_run, write_image


SAVE_INITIAL = """
import torch
from lightning.pytorch.callbacks import Callback

class SaveInitialNetwork(Callback):
    '''The network the train command built, before any step, and its outputs in eval mode.'''
    def __init__(self, path):
        self.path = path

    def setup(self, trainer, pl_module, stage):
        net = pl_module.net
        x = torch.randn(2, 3, net.input_size, net.input_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = net.eval()(x)
        net.train()
        torch.save(dict(weights=net.state_dict(), input=x, output=out), self.path)
        trainer.fit_loop.max_epochs = 0  # no training: the network as built is all this test reads
"""
ABLATIONS = {"none": [], "no_lrn": ["no_lrn"], "one_tower": ["one_tower"], "no_conv3": ["no_conv3"]}


@pytest.mark.slow
def test_alexnet_is_the_network_the_train_command_builds(tmp_path, cache_dir):
    (tmp_path / "save_initial.py").write_text(SAVE_INITIAL)
    done = subprocess.run(
        [sys.executable, "-m", "alexnet_lit.train", "-m", f"+ablation={','.join(ABLATIONS)}", "seed=3",
         "+trainer.num_sanity_val_steps=0", "trainer.enable_model_summary=false",
         "data.train_per_class=1", "data.val_per_class=1", "data.batch_size=8", "data.num_workers=0",
         "+callbacks.initial._target_=save_initial.SaveInitialNetwork",
         "+callbacks.initial.path=${paths.output_dir}/initial.pt",
         f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path])))
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.parent.parent for p in (tmp_path / "sweep").glob("*/.hydra/overrides.yaml"))
    assert len(jobs) == len(ABLATIONS)
    for job in jobs:
        (ablation,) = [o.split("=")[1] for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
                       if o.startswith("+ablation=")]
        trained_by_command = torch.load(job / "initial.pt", weights_only=True)
        net = alexnet_lit.alexnet(ABLATIONS[ablation], num_classes=10, seed=3)
        weights = net.state_dict()
        assert list(weights) == list(trained_by_command["weights"]), ablation
        for key, value in weights.items():
            assert torch.equal(value, trained_by_command["weights"][key]), (ablation, key)
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(trained_by_command["input"]), trained_by_command["output"])
    conv1 = alexnet_lit.alexnet(num_classes=10, seed=4).features.conv1.weight
    assert not torch.equal(conv1, weights["features.conv1.weight"])  # another seed, other weights


@pytest.mark.slow
def test_load_gives_the_network_evaluate_scores_with_its_config_and_class_names(tmp_path, cache_dir):
    run = finished_run(tmp_path / "run", cache_dir, "data.num_classes=4", "trainer.max_epochs=2")
    ckpt = run / "checkpoints" / "best.ckpt"
    done = subprocess.run(command("evaluate", tmp_path / "eval", cache_dir, f"ckpt={ckpt}", "data.val_views=[center]"),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = json.loads((tmp_path / "eval" / "eval.json").read_text())["results"][str(ckpt)]["center"]

    trained = alexnet_lit.load(run)
    assert not trained.net.training
    assert trained.class_names == ["class000", "class001", "class002", "class003"]
    assert (trained.config.seed, trained.config.data.num_classes) == (0, 4)
    datamodule = build_datamodule({**OmegaConf.to_container(trained.config.data), "val_views": ["center"],
                                   "train_eval_images": 0})  # the validation images alone, as evaluate scores
    datamodule.setup("validate")
    wrong = total = 0
    with torch.no_grad():
        for images, labels in datamodule.val_dataloader():
            wrong += int((trained.net(datamodule.views(images, "center")).argmax(1) != labels).sum())
            total += len(labels)
    assert wrong / total == pytest.approx(scored["top1_err"], abs=1e-6)

    # A checkpoint from before class names were stored: its run folder's data names them ...
    contents = torch.load(ckpt, weights_only=True)
    del contents[CheckpointRun.KEY]
    torch.save(contents, run / "checkpoints" / "older.ckpt")
    older = alexnet_lit.load(run / "checkpoints" / "older.ckpt")
    assert older.class_names == trained.class_names and older.config.data.num_classes == 4
    # ... and away from it, the class indices do, saying so
    (tmp_path / "elsewhere").mkdir()
    torch.save(contents, tmp_path / "elsewhere" / "older.ckpt")
    with pytest.warns(UserWarning, match="class_names are the class indices"):
        alone = alexnet_lit.load(tmp_path / "elsewhere" / "older.ckpt")
    assert alone.class_names == ["0", "1", "2", "3"] and alone.config.model.init == "kaiming"
    for key, value in alone.net.state_dict().items():
        assert torch.equal(value, trained.net.state_dict()[key])


def test_torch_hub_builds_both_layouts_from_a_clone(tmp_path):
    hub = torch.hub.load(str(REPO), "alexnet", source="local", ablations=["no_lrn"], num_classes=10, seed=0)
    direct = alexnet_lit.alexnet(["no_lrn"], num_classes=10, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(hub.state_dict().values(), direct.state_dict().values()))

    reference = torchvision.models.alexnet().eval()  # randomly initialised: nothing downloaded
    torch.save(reference.state_dict(), tmp_path / "alexnet-owt.pth")
    net = torch.hub.load(str(REPO), "alexnet_torchvision", source="local", weights=tmp_path / "alexnet-owt.pth")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), reference(x))


def test_keywords_set_model_keys_also_inside_a_hydra_app():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        net = alexnet_lit.alexnet(num_classes=10, seed=0, overrides=["experiment=tiny"], init="paper",
                                  features={"conv3": None})
        assert GlobalHydra.instance().is_initialized()  # the app's Hydra, put back
    assert net.init == "paper"
    assert [name for name, _ in net.learned_layers()] == ["conv1", "conv2", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert net.features.conv1.out_channels == 16  # experiment=tiny's table


@pytest.mark.parametrize("call, error, message", [
    (lambda: alexnet_lit.alexnet(["no_lnr"]), ValueError, "unknown ablation 'no_lnr': expected one of"),
    (lambda: alexnet_lit.alexnet(["no_lrn", "no_augment"]), ValueError,
     "ablation 'no_augment' changes training, not the network"),
    (lambda: alexnet_lit.alexnet(tower=1), TypeError, "'tower' is not a key of conf/model"),
    (lambda: alexnet_lit.load(Path(CONFIG_DIR) / "nowhere.ckpt"), FileNotFoundError, "nowhere.ckpt"),
], ids=["unknown ablation", "training ablation", "unknown model key", "no such file"])
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_dir_lists_the_api_before_its_first_use():
    done = subprocess.run([sys.executable, "-c", "import alexnet_lit; print(dir(alexnet_lit))"], capture_output=True,
                          text=True, check=True)  # a fresh process: nothing of the API imported yet
    assert {"alexnet", "alexnet_torchvision", "load", "Trained"} <= set(eval(done.stdout))


def test_a_runs_preprocessing_and_predict_give_what_the_predict_command_writes(trained_run, compose_cfg, tmp_path):
    files = [write_image(tmp_path / "photos" / f"{i}.jpg", size=(90, 70), seed=i) for i in range(3)]
    rows = predict(compose_cfg(f"ckpt={trained_run}", f"files={tmp_path / 'photos'}", "topk=2", command="predict"))
    trained = alexnet_lit.load(trained_run)
    pictures = [Image.open(f) for f in files]
    predicted = trained.predict(pictures, topk=2)
    assert [[name for name, _ in top] for top in predicted] == [[r["class_name"] for r in rows[2 * i:2 * i + 2]]
                                                               for i in range(3)]
    assert [p for top in predicted for _, p in top] == pytest.approx([r["probability"] for r in rows], abs=1e-6)
    transform = trained.transforms()  # one image at a time, as torchvision's weights.transforms()
    tensors = [torchvision.io.decode_image(str(f)) for f in files]  # uint8 (3, H, W)
    for picture, tensor in zip(pictures, tensors):
        assert transform(picture).shape == (3, 67, 67) and torch.equal(transform(picture), transform(tensor))
    with torch.no_grad():
        centre = trained.net(torch.stack([transform(p) for p in pictures])).softmax(1)
    assert centre.max(1).values.tolist() == pytest.approx([top[0][1] for top in trained.predict(pictures, 1, "center")])
