"""Evaluate trained networks on held-out data (Section 6):

    python -m alexnet_lit.evaluate ckpt=outputs/.../checkpoints/best.ckpt
    python -m alexnet_lit.evaluate ckpt=[run1/checkpoints/best.ckpt,run2/checkpoints/best.ckpt]
    python -m alexnet_lit.evaluate ckpt=alexnet-owt.pth model=torchvision data=imagenet ...

prints top-1 and top-5 error and loss for each view (``data.val_views``: centre crop, ten
crops) of each checkpoint and, for a list of them, of their ensemble (softmax outputs
averaged, the paper's "5 CNNs"), and writes them to ``eval.json`` in the command's run folder.
Runs through a Lightning Trainer's ``validate``: ``trainer=ddp`` shares the images over
processes and sums the counts exactly, giving one process's numbers.
"""
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_lit.build import build_datamodule, hydra_command
from alexnet_lit.console import progress
from alexnet_lit.module import view_prefix
from alexnet_lit.results import write_json
from alexnet_lit.tracking import command_tracker
from alexnet_lit.trained import check_classes, data_config, ensemble_of, load_member


def scores(metrics: dict, views: list[str]) -> dict[str, dict[str, float]]:
    """validate()'s metrics per view (their names: alexnet_lit.module.view_prefix)."""
    out = {}
    for i, view in enumerate(views):
        prefix = view_prefix(i, view)
        out[view] = {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix)}
    return out


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """One line per network and view: top-1 error, top-k error, loss."""
    width = max(len(name) for name in results)
    first = next(iter(next(iter(results.values())).values()))
    topk = next(k for k in first if k.startswith("top") and k != "top1_err")
    lines = [f"{'network':<{width}}  {'view':<8} {'top-1 err':>9} {f'top-{topk[3:-4]} err':>9} {'loss':>7}"]
    for name, views in results.items():
        for view, s in views.items():
            lines.append(f"{name:<{width}}  {view:<8} {s['top1_err']:>9.4f} {s[topk]:>9.4f} {s['loss']:>7.4f}")
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> dict:
    """Score every checkpoint of ``cfg.ckpt`` and, for a list, their ensemble; returns and (on
    process 0) writes to eval.json {checkpoints, images, data, results}."""
    paths = list(cfg.ckpt) if OmegaConf.is_list(cfg.ckpt) else [cfg.ckpt]
    if not paths:
        raise ValueError("ckpt=[]: name at least one checkpoint")
    members = [load_member(str(p), cfg) for p in paths]
    with open_dict(cfg):  # data.crop_size follows the checkpoint's network
        cfg.model = members[0].hparams.model
    data, source = data_config(cfg, str(paths[0]))
    check_classes(members[0], data, str(paths[0]))
    datamodule = build_datamodule(data, source)
    bar, lines = progress(cfg.trainer.get("enable_progress_bar"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=lines, enable_progress_bar=bar,
                                     enable_checkpointing=False)
    networks = dict(zip(map(str, paths), members))
    if OmegaConf.is_list(cfg.ckpt):
        networks["ensemble"] = ensemble_of(members)
    views = list(cfg.data.val_views)
    with command_tracker(cfg, "evaluate") as tracker:
        results = {name: scores(trainer.validate(module, datamodule=datamodule, verbose=False)[0], views)
                   for name, module in networks.items()}
        report = dict(checkpoints=list(map(str, paths)), images=len(datamodule.val_set), data=data,
                      results=results)
        if trainer.is_global_zero:
            write_json(Path(cfg.paths.output_dir) / "eval.json", report)
            print(format_table(results))
            print(f"{report['images']} images; written to {Path(cfg.paths.output_dir) / 'eval.json'}")
            if tracker is not None:
                metrics = list(next(iter(results.values()))[views[0]])  # top1_err, top5_err, loss
                tracker.log_table("eval", columns=["network", "view", *metrics], data=[
                    [name, view, *s.values()] for name, by_view in results.items() for view, s in by_view.items()])
    return report


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
