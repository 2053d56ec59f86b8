"""Figure 1 of the paper (Section 3.1): a four-layer convolutional network reaches 25%
training error on CIFAR-10 six times faster with ReLUs than with tanh units.

    python -m alexnet_lit.figure1 --data /tmp/alexnet_data/cifar10_jpg --out ablations/figure1

The network is cuda-convnet's CIFAR-10 net of that time (layers-80sec): three 5x5
convolutions of 32, 32 and 64 kernels, each followed by the activation and 3x3 pooling at
stride 2 (max, then average, average), then one fully connected layer to the 10 classes.
As in the paper there is no regularisation (no weight decay, dropout or augmentation) and
the learning rate of each activation is picked from a grid "to make training as fast as
possible": every rate trains ``--pilot-epochs``, the lowest training error goes on. Both
start from the same weights (PyTorch's default initialisation) and see the same inputs:
the pixels minus the mean image, divided by their standard deviation. (The paper's N(0, 0.01)
weights on raw pixels left this net's ReLU version barely learning in a short trial.)
Training error is counted over each epoch while it trains. Writes figure1.png (error
against epochs, the 25% line) and figure1.json (curves, rates, the speed-up).
"""
import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision import datasets

from alexnet_lit.model import ACTIVATIONS


def cifar_net(activation: str) -> nn.Sequential:
    act = ACTIVATIONS[activation]
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), act(), nn.MaxPool2d(3, 2, ceil_mode=True),   # 32 -> 16
        nn.Conv2d(32, 32, 5, padding=2), act(), nn.AvgPool2d(3, 2, ceil_mode=True),  # 16 -> 8
        nn.Conv2d(32, 64, 5, padding=2), act(), nn.AvgPool2d(3, 2, ceil_mode=True),  # 8 -> 4
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


def load_train_set(root: Path, images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``images / 10`` images of each class of ``root/train`` (ImageFolder layout),
    minus their mean image, divided by their pixel standard deviation."""
    folder = datasets.ImageFolder(str(root / "train"))
    if len(folder.classes) != 10:
        raise ValueError(f"{root / 'train'}: expected the 10 CIFAR-10 class folders, "
                         f"found {len(folder.classes)}")
    per_class = images // 10
    chosen = [[p for p, c in folder.samples if c == k][:per_class] for k in range(10)]
    if min(map(len, chosen)) < per_class:
        raise ValueError(f"{root / 'train'}: --train-images {images} needs {per_class} images per class")
    paths = [(p, k) for k, ps in enumerate(chosen) for p in ps]
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32))) for p, _ in paths])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    x = (x - x.mean(0)) / x.std()
    return x, torch.tensor([k for _, k in paths])


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, generator: torch.Generator) -> float:
    """One pass in a random order; returns the training error counted along the way."""
    wrong = 0
    for idx in torch.randperm(len(x), generator=generator).split(batch_size):
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        wrong += (logits.argmax(1) != y[idx]).sum().item()
    return wrong / len(x)


def epochs_to(errors: list[float], target: float) -> float | None:
    """When the error curve (one value after each epoch, from 1.0 at epoch 0) first reaches
    ``target``, interpolated linearly between epochs; None if it never does."""
    curve = [1.0, *errors]
    for epoch in range(1, len(curve)):
        if curve[epoch] <= target:
            before, after = curve[epoch - 1], curve[epoch]
            return epoch - 1 + (before - target) / (before - after)
    return None


def fit(activation: str, x: torch.Tensor, y: torch.Tensor, lrs: list[float], pilot_epochs: int,
        max_epochs: int, target: float, batch_size: int, seed: int) -> dict:
    """Pick the rate after ``pilot_epochs``, then go on until ``target`` or ``max_epochs``."""
    start = time.time()
    trials = []
    for lr in lrs:
        torch.manual_seed(seed)  # the same initial weights (PyTorch's default) for every rate
        model = cifar_net(activation)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        generator = torch.Generator().manual_seed(seed)
        errors = [train_epoch(model, optimizer, x, y, batch_size, generator)
                  for _ in range(pilot_epochs)]
        trials.append(dict(lr=lr, errors=errors, state=(model, optimizer, generator)))
        print(f"{activation} lr={lr}: training error {errors[-1]:.3f} after {pilot_epochs} epochs",
              flush=True)
    pilot = {str(t["lr"]): t["errors"][-1] for t in trials}
    best = min(trials, key=lambda t: t["errors"][-1])
    (model, optimizer, generator), errors = best["state"], best["errors"]
    while len(errors) < max_epochs and min(errors) > target:
        errors.append(train_epoch(model, optimizer, x, y, batch_size, generator))
        print(f"{activation} lr={best['lr']} epoch {len(errors)}: training error {errors[-1]:.3f}",
              flush=True)
    return dict(lr=best["lr"], pilot=pilot, train_error=errors, epochs_to_target=epochs_to(errors, target),
                wall_time_s=round(time.time() - start, 1))


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, style in (("relu", "-"), ("tanh", "--")):
        run = result["activations"][name]
        epochs = range(len(run["train_error"]) + 1)
        ax.plot(epochs, [1.0, *run["train_error"]], style, color="black",
                label=f"{name} (lr {run['lr']})")
    ax.axhline(result["target"], color="grey", linewidth=0.8)
    ax.set(xlabel="Epochs", ylabel="Training error rate", ylim=(0, 0.8),
           title=f"CIFAR-10, {result['train_images']} training images: {speedup_text(result)}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def speedup_text(result: dict) -> str:
    relu, tanh = (result["activations"][a]["epochs_to_target"] for a in ("relu", "tanh"))
    if relu is None:
        return f"ReLU did not reach {result['target']:.0%}"
    if tanh is None:
        return f"ReLU over {result['speedup_at_least']:.1f}x faster"
    return f"ReLU {result['speedup']:.1f}x faster"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m alexnet_lit.figure1",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="CIFAR-10 as an ImageFolder: DATA/train/<class>/*.jpg")
    parser.add_argument("--out", type=Path, default=Path("figure1"),
                        help="folder for figure1.png and figure1.json")
    parser.add_argument("--train-images", type=int, default=50000,
                        help="a class-balanced subset (CIFAR-10 has 50000)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.02, 0.04, 0.08])
    parser.add_argument("--pilot-epochs", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--target", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir():
        parser.error(f"--data {args.data}: expected a folder train/ with one sub-folder per class")

    start = time.time()
    x, y = load_train_set(args.data, args.train_images)
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    result = dict(command=f"python -m alexnet_lit.figure1 {command}", train_images=len(x),
                  target=args.target, batch_size=args.batch_size, lrs=args.lrs,
                  pilot_epochs=args.pilot_epochs, max_epochs=args.max_epochs,
                  torch_threads=torch.get_num_threads())
    result["activations"] = {a: fit(a, x, y, args.lrs, args.pilot_epochs, args.max_epochs, args.target,
                                    args.batch_size, args.seed) for a in ("relu", "tanh")}
    relu, tanh = (result["activations"][a]["epochs_to_target"] for a in ("relu", "tanh"))
    result["speedup"] = tanh / relu if relu and tanh else None
    if relu and tanh is None:  # tanh never got there: a lower bound
        result["speedup_at_least"] = len(result["activations"]["tanh"]["train_error"]) / relu
    result["wall_time_s"] = round(time.time() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figure1.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "figure1.png")
    print(f"{speedup_text(result)}; wrote {args.out / 'figure1.png'} and {args.out / 'figure1.json'}")
    return result


if __name__ == "__main__":
    main()
