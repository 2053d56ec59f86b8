"""conf/speed: every switch reaches the Trainer or the module, and none changes what is
learnt beyond rounding (figures: benchmarks/, README "Speed")."""
import pytest
import torch
from hydra.utils import instantiate

from alexnet_lit.train import train
from conftest import compose_config


def test_precision_and_cudnn_benchmark_reach_the_trainer(compose_cfg):
    before = torch.backends.cudnn.benchmark
    try:
        trainer = instantiate(compose_cfg("trainer=cpu").trainer)
        assert trainer.precision == "32-true" and torch.backends.cudnn.benchmark is True
        trainer = instantiate(compose_cfg("trainer=cpu", "speed.precision=bf16-mixed",
                                          "speed.cudnn_benchmark=false").trainer)
        assert trainer.precision == "bf16-mixed" and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


def two_steps(run_dir, cache, *speed: str) -> tuple[dict, float]:
    """Two training steps of the tiny network: its weights and the last step's loss. Without
    dropout: compiled code draws its random numbers from another generator."""
    cfg = compose_config(["experiment=tiny", "model.dropout=0", "optim=milestones", "trainer.max_epochs=1",
                          "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=0", *speed],
                         output_dir=run_dir, cache=cache)
    metrics = train(cfg)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.")}, metrics["train/loss"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, cache_dir):
    return two_steps(tmp_path_factory.mktemp("default"), cache_dir)


@pytest.mark.parametrize("speed", [
    ["speed.channels_last=true"],
    pytest.param(["speed.compile=true", "speed.channels_last=true"], marks=pytest.mark.slow),
], ids=["channels_last", "compile+channels_last"])
def test_layout_and_compile_learn_what_the_default_learns(default_run, speed, tmp_path, cache_dir):
    reference, _ = default_run
    weights, _ = two_steps(tmp_path, cache_dir, *speed)
    assert weights.keys() == reference.keys()  # compiled in place: plain names in checkpoints
    assert weights["net.features.conv1.weight"].is_contiguous(memory_format=torch.channels_last)
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_mixed_precision_trains_on_cpu(default_run, tmp_path, cache_dir):
    reference, reference_loss = default_run
    weights, loss = two_steps(tmp_path, cache_dir, "speed.precision=bf16-mixed")
    assert all(torch.isfinite(w).all() and w.dtype == torch.float32 for w in weights.values())
    assert loss == pytest.approx(reference_loss, rel=2e-2)  # after one bf16 update, in bf16
    assert loss != reference_loss
