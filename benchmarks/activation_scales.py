"""What each activation layer outputs on real images, at initialisation and after training:
its std, and the fraction of outputs that pass no gradient, tanh's in saturation
(|a| > 0.9, where tanh' < 0.19) and ReLU's at zero. Figure 1's reading (issue 9) rests on it.

    python benchmarks/activation_scales.py RUN_DIR [RUN_DIR ...] [--images 256] [--out JSON]

A RUN_DIR is a training run's folder (its .hydra/config.yaml and checkpoints/last.ckpt). Each
is measured on the first validation images of its own data config, centred as in training:
once with the network its config initialises (seed 0), once with the weights of last.ckpt.
"""
import argparse
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from timing import machine, save

from alexnet_lit.build import build_datamodule
from alexnet_lit.trained import load_module
from alexnet_lit.trust import NETWORKS, rebuild, run_config
from alexnet_lit.weights import read_file

SATURATED = 0.9


@torch.no_grad()
def scales(net: nn.Module, images: torch.Tensor) -> dict:
    """Per activation layer (act1, act2, ...): std, and the fraction saturated or zero."""
    stats, hooks = {}, []
    for name, layer in net.named_modules():
        if isinstance(layer, (nn.ReLU, nn.Tanh)):
            def record(module, inputs, output, name=name.rsplit(".", 1)[-1]):
                idle = output.abs() > SATURATED if isinstance(module, nn.Tanh) else output == 0
                stats[name] = dict(std=output.std().item(), idle=idle.float().mean().item())
            hooks.append(layer.register_forward_hook(record))
    net.eval()(images)
    for hook in hooks:
        hook.remove()
    return stats


def validation_images(cfg, count: int, source: Path) -> torch.Tensor:
    datamodule = build_datamodule({**OmegaConf.to_container(cfg.data, resolve=True), "num_workers": 0}, source)
    datamodule.setup("validate")
    batches, taken = [], 0
    for images, *_ in datamodule.val_dataloader():  # (images, labels[, streams])
        batches.append(datamodule.views(images, "center"))
        taken += len(images)
        if taken >= count:
            break
    return torch.cat(batches)[:count]


def measure(run: Path, count: int) -> dict:
    source, ckpt = run / ".hydra" / "config.yaml", run / "checkpoints" / "last.ckpt"
    cfg = OmegaConf.create(run_config(source))  # a run folder is data (alexnet_lit.trust)
    images = validation_images(cfg, count, source)
    torch.manual_seed(0)
    initial = rebuild(OmegaConf.to_container(cfg.model, resolve=True), NETWORKS, source, "model")
    contents = read_file(ckpt)
    return dict(run=str(run), activation=cfg.model.activation, lr=float(cfg.optim.lr), images=len(images),
                epochs=contents["epoch"], steps=contents["global_step"], at_init=scales(initial, images),
                trained=scales(load_module(contents, ckpt).net, images))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--out", type=Path, help="JSON (default: benchmarks/results/activation_scales.json)")
    args = parser.parse_args(argv)
    runs = [measure(run, args.images) for run in args.runs]
    for r in runs:
        print(f"{r['run']} ({r['activation']}, lr {r['lr']:g}, {r['images']} images; "
              f"idle = {'|a| > 0.9' if r['activation'] == 'tanh' else 'a = 0'})")
        for when in ("at_init", "trained"):
            label = "init" if when == "at_init" else f"after {r['steps']} steps"
            print(f"  {label:>18}: " + "  ".join(f"{k} std {v['std']:.3g} idle {100 * v['idle']:.1f}%"
                                               for k, v in r[when].items()))
    result = dict(machine=machine(torch.device("cpu")), saturated_above=SATURATED, runs=runs)
    out = args.out or Path(__file__).parent / "results" / "activation_scales.json"
    sweep = Path(os.path.commonpath([run.resolve().parent for run in args.runs]))
    save(result, out, echo=False, folders={"RUNS": sweep})  # the folder the runs share
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
