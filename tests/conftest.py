"""Shared fixtures: real Hydra composition of conf/, real generated JPEGs, ../shared data."""
import os
import tarfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from alexnet_lit.train import CONFIG_DIR

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache folder for generated data sets across the whole test session."""
    return tmp_path_factory.mktemp("cache")


def compose_config(overrides: list[str], output_dir: Path | None = None, cache: Path | None = None):
    """Compose conf/train.yaml as ``python -m alexnet_lit.train`` would, with HydraConfig
    set so that ${hydra:...} and the ablation choices resolve."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        extra = [f"paths.cache_dir={cache}"] if cache else []
        cfg = compose("train", overrides=[*overrides, *extra], return_hydra_config=True)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # as in a real run: the job sees its config, Hydra's own via HydraConfig
    return cfg


@pytest.fixture
def compose_cfg(tmp_path, cache_dir):
    def _compose(*overrides: str):
        return compose_config(list(overrides), output_dir=tmp_path / "run", cache=cache_dir)
    return _compose


def extracted(archive: str, cache: Path) -> Path:
    """Extract one of ../shared/data's archives into ``cache`` (once); skip without it."""
    source = SHARED_DATA / archive
    if not source.is_file():
        pytest.skip(f"{source} is absent: real-data tests need ../shared/data beside the repo")
    done = cache / f"{archive}.extracted"
    if not done.exists():
        with tarfile.open(source) as tar:
            tar.extractall(cache, filter="data")
        done.touch()
    return cache


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return Path(os.environ.get("ALEXNET_LIT_TEST_DATA") or tmp_path_factory.mktemp("shared"))
