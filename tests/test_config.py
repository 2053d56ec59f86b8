"""The real conf/ composes into what README promises."""
import os
import subprocess

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alexnet_lit.build import train_config
from alexnet_lit.checks import ConfigError, check_ablation_overrides, check_config
from conftest import REPO, command, write_image


def test_default_config_is_the_papers_recipe_but_for_the_init(compose_cfg):
    """Everything the paper's, with bvlc_alexnet's init (docs/recipe.md, "The default recipe": the
    paper's literal one blew up and collapsed on real images); model.init=paper restores it."""
    cfg = compose_cfg()
    assert cfg.seed == 0 and cfg.ckpt_path == "last"
    assert OmegaConf.to_container(cfg.optim) == {
        "rule": "paper", "lr": 0.01, "lr_scaling": "none", "momentum": 0.9, "weight_decay": 0.0005,
        "scheduler": {"name": "plateau", "monitor": "val/top1_err", "factor": 0.1,
                      "patience": 2, "milestones": None}}
    assert cfg.data.batch_size == 128 and cfg.data.image_size == 256 and cfg.data.crop_size == 227
    assert cfg.data.normalize == "paper" and cfg.data.augment and cfg.data.pca_noise
    assert cfg.model.init == "caffe" and cfg.model.dropout == 0.5 and cfg.model.towers == 2
    assert cfg.model.lrn == {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0, "alpha_over_n": False}
    assert cfg.trainer.max_epochs == 90


@pytest.mark.parametrize("preset,expected", [
    ("cpu", {"accelerator": "cpu", "devices": 1}),
    ("gpu", {"accelerator": "gpu", "devices": 1}),
    ("ddp", {"accelerator": "auto", "strategy": "ddp", "devices": 2, "num_nodes": 1}),
])
def test_trainer_presets(compose_cfg, preset, expected):
    trainer = compose_cfg(f"trainer={preset}").trainer
    assert {k: trainer[k] for k in expected} == expected
    assert trainer._target_ == "lightning.pytorch.Trainer"
    assert ("ddp" in str(trainer.get("strategy")).lower()) is (preset == "ddp")


def test_the_ddp_preset_builds_a_two_process_ddp_trainer_whose_data_shards_itself(compose_cfg):
    """Built (not launched) on the CPU: Lightning's DDP strategy over two processes, and
    Lightning's own distributed sampler off (alexnet_lit.data.sampling shards the images)."""
    from lightning.pytorch.strategies import DDPStrategy

    cfg = compose_cfg("trainer=ddp", "trainer.accelerator=cpu")
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy.root_device.type == "cpu"
    assert (trainer.num_devices, trainer.num_nodes, trainer.world_size) == (2, 1, 2)
    assert cfg.trainer.use_distributed_sampler is False


def test_cpu_trainer_builds_with_the_run_folder(compose_cfg, tmp_path):
    cfg = compose_cfg("trainer=cpu")
    trainer = instantiate(cfg.trainer)
    assert trainer.default_root_dir == str(tmp_path / "run") and trainer.max_epochs == 90


BAD_VALUES = [("data.batch_size=0", "data.batch_size=0: expected an integer >= 1"),
              ("data.batch_size=-4", "data.batch_size=-4: expected an integer >= 1"),
              ("data.batch_size=2.5", "data.batch_size=2.5: expected an integer >= 1"),
              ("optim.lr=-1", "optim.lr=-1: expected a number >= 0"),
              ("optim.lr=abc", "optim.lr='abc': expected a number >= 0"),
              ("optim.lr=nan", "optim.lr=nan: expected a number >= 0"),
              ("optim.momentum=1.5", "optim.momentum=1.5: expected a number in [0, 1)"),
              ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1: expected a number >= 0"),
              ("model.dropout=1", "model.dropout=1: expected a number in [0, 1)"),
              ("data.num_workers=-1", "data.num_workers=-1: expected an integer >= 0"),
              ("data.image_size=0", "data.image_size=0: expected an integer >= 1"),
              ("model.input_size=80", "data.crop_size=80 is larger than data.image_size=76"),
              ("callbacks.last_checkpoint.every_n_steps=0",
               "callbacks.last_checkpoint.every_n_steps=0: expected an integer >= 1"),
              # issue 33: each of these ended in numpy, an IndexError, a RuntimeError, a non-finite
              # loss or a run that "completed" without training, none naming its key
              ("seed=-1", "seed=-1: expected an integer in [0, 4294967295], or null (unseeded)"),
              ("seed=4294967296", "seed=4294967296: expected an integer in [0, 4294967295]"),
              ("model.classifier.fc6=0", "model.classifier.fc6=0: expected an integer >= 1"),
              ("model.classifier.fc7=-3", "model.classifier.fc7=-3: expected an integer >= 1"),
              ("model.features.conv2.out=0", "model.features.conv2.out=0: expected an integer >= 1"),
              ("model.features.conv3.out=-5", "model.features.conv3.out=-5: expected an integer >= 1"),
              ("model.features.conv1.kernel=0", "model.features.conv1.kernel=0: expected an integer >= 1"),
              ("model.features.conv1.stride=0", "model.features.conv1.stride=0: expected an integer >= 1"),
              ("model.pool.kernel=0", "model.pool.kernel=0: expected an integer >= 1"),
              ("model.pool.stride=0", "model.pool.stride=0: expected an integer >= 1"),
              ("model.lrn.beta=nan", "model.lrn.beta=nan: expected a number >= 0"),
              ("model.lrn.alpha=inf", "model.lrn.alpha=inf: expected a number >= 0"),
              ("model.lrn.k=0", "model.lrn.k=0: expected a number > 0"),
              ("model.lrn.size=4", "model.lrn.size=4: expected an odd integer >= 1"),
              ("model.positive_bias=nan", "model.positive_bias=nan: expected a finite number, or null (the init's own)"),
              ("optim.scheduler.factor=1", "optim.scheduler.factor=1: expected a number in (0, 1)"),
              ("trainer.max_epochs=0", "trainer.max_epochs=0: expected an integer >= 1"),
              ("trainer.max_epochs=-1", "trainer.max_epochs=-1: expected an integer >= 1"),
              ("trainer.max_steps=0", "trainer.max_steps=0: expected an integer >= 1, or -1 (no limit)")]


@pytest.mark.parametrize("override, said", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_bad_value_is_named_with_what_is_allowed(compose_cfg, override, said):
    with pytest.raises(ConfigError) as error:
        check_config(compose_cfg("experiment=tiny", override))
    assert said in str(error.value)


def test_values_at_the_ends_of_their_ranges_pass(compose_cfg):
    check_config(compose_cfg("experiment=tiny", "seed=4294967295", "model.features.conv1.pad=0", "model.lrn.alpha=0",
                             "model.lrn.size=1", "model.dropout=0", "trainer.max_epochs=1", "trainer.max_steps=-1"))
    check_config(compose_cfg("experiment=tiny", "seed=null", "model.positive_bias=-1", "data.train_eval_images=null"))


@pytest.mark.slow
def test_a_train_command_refuses_the_network_and_schedule_values_before_any_work(tmp_path, cache_dir):
    done = subprocess.run(command("train", tmp_path / "run", cache_dir, "experiment=tiny", "seed=-1", "model.classifier.fc6=0",
                                  "model.pool.kernel=0", "model.lrn.beta=nan", "trainer.max_epochs=0"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "bad config values: seed=-1: expected an integer in [0, 4294967295], or null (unseeded); "
        "model.pool.kernel=0: expected an integer >= 1; model.lrn.beta=nan: expected a number >= 0; "
        "model.classifier.fc6=0: expected an integer >= 1; trainer.max_epochs=0: expected an integer >= 1")
    assert not (tmp_path / "run").exists()  # stopped before Hydra makes the run folder


@pytest.mark.slow  # every command started as a process
def test_every_command_checks_its_config_before_writing_a_file(tmp_path, cache_dir, trained_run):
    ckpt = f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}"
    started = {name: subprocess.Popen(command(name, tmp_path / name, cache_dir, *extra, "data.batch_size=-4", "optim.lr=abc"),
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, extra in (("train", ["experiment=tiny"]), ("evaluate", [ckpt]),
                                   ("predict", [ckpt, f"files={tmp_path}"]), ("figures", [ckpt]), ("summary", []))}
    for name, proc in started.items():  # all at once: each spends its seconds importing
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode != 0
        assert stderr.strip() == ("bad config values: data.batch_size=-4: expected an integer >= 1; "
                                  "optim.lr='abc': expected a number >= 0"), (name, stderr[-2000:])  # one line
        assert not (tmp_path / name).exists(), name  # stopped before Hydra makes the run folder


@pytest.mark.slow
def test_a_config_error_gives_its_traceback_with_hydra_full_error(tmp_path, cache_dir):
    done = subprocess.run(command("train", tmp_path / "run", cache_dir, "experiment=tiny", "optim.lr=-1"), cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert done.returncode != 0 and "Traceback (most recent call last)" in done.stderr
    assert "alexnet_lit.checks.ConfigError: bad config value: optim.lr=-1: expected a number >= 0" in done.stderr


def test_the_class_count_comes_from_the_class_folders_and_a_wrong_one_is_refused(compose_cfg, tmp_path):
    for name in ("ant", "bee", "cat"):
        write_image(tmp_path / "data" / "train" / name / "0.jpg")
    cfg = compose_cfg("data=folder", f"data.root={tmp_path / 'data'}")
    check_config(cfg)
    assert cfg.data.num_classes == cfg.model.num_classes == 3
    with pytest.raises(ConfigError, match=rf"^data.num_classes=10 but data.root={tmp_path / 'data'} holds 3 classes "
                                          r"\(the folders of its train/\)"):
        check_config(compose_cfg("data=folder", f"data.root={tmp_path / 'data'}", "data.num_classes=10"))


@pytest.mark.parametrize("root, said", [(None, "data.root is not given"), ("nowhere", "data.root=nowhere: no such folder"),
                                        (".", "data.root=.: no train/ folder of classes and no prepared.json")])
def test_a_data_root_that_is_not_there_is_named(compose_cfg, root, said):
    with pytest.raises(ConfigError, match=f"^{said}"):
        check_config(compose_cfg("data=folder", *([f"data.root={root}"] if root else [])))


@pytest.mark.parametrize("overrides", [["+ablation=no_lnr"], ["+ablation=[no_lrn,no_lnr]"], ["-m", "+ablation=no_lrn,no_lnr"],
                                       ["-m", "+ablation=[tanh,no_lnr],[no_lrn]", "seed=0,1"]])
def test_an_unknown_ablation_anywhere_names_the_valid_ones(overrides):
    with pytest.raises(ConfigError, match="^unknown ablation 'no_lnr': expected one of no_augment, .*, tanh$"):
        check_ablation_overrides(overrides)
    check_ablation_overrides(["-m", "+ablation=glob(*)", "seed=0,1", "--cfg", "job"])  # Hydra's flags, a glob


def test_the_python_api_checks_the_config_too():
    with pytest.raises(ConfigError, match="model.dropout=2"):
        train_config(["model.dropout=2"])
