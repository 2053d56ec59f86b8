"""Per-layer scales over a run's first steps: why a recipe blows up or stalls (issue 12).

    python benchmarks/first_steps.py --steps 12 [--out JSON] [HYDRA_OVERRIDE ...]
    python benchmarks/first_steps.py data=folder data.root=IMAGENETTE256 data.num_classes=10 model.init=paper

Composes conf/train.yaml as a run would and trains the module's network with its own
optimiser on the data module's training batches (random crops, flips, PCA noise, centring),
printing at every step the loss, and per layer the std and mean of the pre-activations
entering each ReLU and the relative size of the step, lr |grad| / |w|. Writes JSON.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from timing import machine, save
from train_throughput import compose_run

from alexnet_lit.build import build_datamodule, build_module


def pre_activation_recorder(net: nn.Module, stats: dict):
    """Forward hooks on every ReLU/Tanh: the std and mean of what enters it."""
    for name, layer in net.named_modules():
        if isinstance(layer, (nn.ReLU, nn.Tanh)):
            def record(module, inputs, output, name=name.rsplit(".", 1)[-1]):
                x = inputs[0].detach()
                stats[name] = dict(std=x.std().item(), mean=x.mean().item())
            layer.register_forward_hook(record)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, help="JSON (default: benchmarks/results/first_steps.json)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = compose_run([*args.overrides, "data.num_workers=0"], tempfile.mkdtemp(prefix="first-steps-"))
    torch.manual_seed(cfg.seed or 0)
    os.environ.setdefault("PL_GLOBAL_SEED", str(cfg.seed or 0))  # the training order's seed
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()  # the embedded data set is generated on first use
    datamodule.setup("fit")
    module = build_module(cfg)
    optimizer = module.configure_optimizers()["optimizer"]
    net, stats, steps = module.net.train(), {}, []
    pre_activation_recorder(net, stats)
    lr = optimizer.param_groups[0]["lr"]
    batches = iter(datamodule.train_dataloader())
    for step in range(args.steps):
        began = time.perf_counter()
        images, labels = next(batches)
        logits = net(datamodule.views(images, "random" if cfg.data.augment else "center"))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        relative = {name: lr * (layer.weight.grad.norm() / layer.weight.norm()).item()
                    for name, layer in net.learned_layers()}
        optimizer.step()
        steps.append(dict(step=step, loss=loss.item(), pre_activation=dict(stats), relative_update=relative,
                          seconds=time.perf_counter() - began))
        print(f"step {step:3d}  loss {loss.item():7.3f}  pre-activation std/mean "
              + " ".join(f"{k} {v['std']:.3g}/{v['mean']:.3g}" for k, v in stats.items())
              + "\n          lr|g|/|w| " + " ".join(f"{k} {v:.2g}" for k, v in relative.items()), flush=True)
    result = dict(machine=machine(torch.device("cpu")), overrides=args.overrides,
                  init=cfg.model.init, lr=lr, batch_size=cfg.data.batch_size, steps=steps)
    out = args.out or Path(__file__).parent / "results" / "first_steps.json"
    root = OmegaConf.select(cfg, "data.root")  # none for the embedded synthetic set
    save(result, out, echo=False, folders={"DATA": Path(root).resolve().parent} if root else None)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
