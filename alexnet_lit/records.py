"""A sweep kept job by job where it can be committed (``paths.records``), so that it spans
machines: each finished job's ``results.json`` and ``.hydra/{config,overrides}.yaml`` are copied
to ``RECORDS/<the job's folder name>/``, this machine's folders written as ``DATA`` (the data
root), ``SWEEP`` (the sweep or run folder's parent), ``RECORDS`` and ``CACHE``; a job whose record is there is done and
is not run again, on this machine or another. Reports read the records folder as a sweep."""
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet_lit.checkpointing.run_folder import job_folder
from alexnet_lit.results import portable, read_results
from alexnet_lit.writing import replace_text

log = logging.getLogger(__name__)
KEPT = ("results.json", ".hydra/config.yaml", ".hydra/overrides.yaml")


def record_folder(cfg: DictConfig) -> Path | None:
    """Where this job's record lies: ``paths.records`` / the job's folder name (a sweep's
    ``hydra.sweep.subdir``, a single run's folder name); None without ``paths.records``."""
    records = cfg.paths.get("records")
    if not records:
        return None
    hydra_cfg = HydraConfig.get()
    name = hydra_cfg.sweep.subdir if hydra_cfg.mode == RunMode.MULTIRUN else Path(cfg.paths.output_dir).name
    return Path(records) / str(name)


def _folders(cfg: DictConfig) -> dict[str, str]:
    hydra_cfg = HydraConfig.get()
    sweep = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else Path(cfg.paths.output_dir).parent
    folders = {"DATA": cfg.data.get("root"), "SWEEP": sweep, "RECORDS": cfg.paths.records,
               "CACHE": cfg.paths.cache_dir}
    return {name: str(folder) for name, folder in folders.items() if folder}


def _overrides(cfg: DictConfig) -> list[str]:
    """This job's overrides as its record shows them."""
    return portable(list(HydraConfig.get().overrides.task), _folders(cfg))


def recorded(cfg: DictConfig) -> dict | None:
    """A finished job's final val errors from its record, or None where it has none (or an
    unfinished one). A record of other overrides under this job's name is refused, naming both."""
    folder = record_folder(cfg)
    if folder is None or not (folder / "results.json").is_file():
        return None
    results = read_results(folder / "results.json")
    if results.status != "completed":
        return None
    kept = OmegaConf.to_container(OmegaConf.load(folder / ".hydra/overrides.yaml"))
    if job_folder(kept) != job_folder(_overrides(cfg)):  # paths, logging and the like may differ
        raise ValueError(f"{folder}: a record of another job ({', '.join(kept)}) where this job "
                         f"({', '.join(_overrides(cfg))}) keeps its own; use another paths.records")
    log.info(f"done: {folder} holds this job's finished record; not run again")
    return {"val/top1_err": results.val_top1_err, "val/top5_err": results.val_top5_err}


def keep(cfg: DictConfig, out: Path) -> None:
    """Copy the finished run of ``out`` to its record, this machine's folders replaced; each
    file written whole (write, then rename) or not at all."""
    folder = record_folder(cfg)
    if folder is None:
        return
    folders = _folders(cfg)
    for name in KEPT:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        replace_text(folder / name, portable((out / name).read_text(), folders))
    log.info(f"kept: {folder}")
