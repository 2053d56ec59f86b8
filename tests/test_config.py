"""The real conf/ composes into what README promises."""
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf


def test_default_config_is_the_papers_recipe_but_for_the_init(compose_cfg):
    """Everything the paper's, with bvlc_alexnet's init (README "The default recipe": the
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
    ("ddp", {"num_nodes": 1}),
])
def test_trainer_presets(compose_cfg, preset, expected):
    trainer = compose_cfg(f"trainer={preset}").trainer
    assert {k: trainer[k] for k in expected} == expected
    assert trainer._target_ == "lightning.pytorch.Trainer"
    assert ("ddp" in str(trainer.get("strategy")).lower()) is (preset == "ddp")


def test_cpu_trainer_builds_with_the_run_folder(compose_cfg, tmp_path):
    cfg = compose_cfg("trainer=cpu")
    trainer = instantiate(cfg.trainer)
    assert trainer.default_root_dir == str(tmp_path / "run") and trainer.max_epochs == 90
