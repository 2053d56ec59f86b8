"""Look inside a trained network (Section 6.1):

    python -m alexnet_lit.figures ckpt=outputs/.../checkpoints/best.ckpt

writes into its run folder
- ``figure3.png`` / ``.json``: conv1's kernels, one block per tower, and each kernel's colour
  specificity (alexnet_lit.inspect.pictures) with its mean per tower, to check the paper's claim that
  one tower learns colour-agnostic kernels and the other colour-specific ones;
- ``figure4.png`` / ``.json``: validation images with their top-k predictions and the training
  images nearest to them in fc7 space (Euclidean, the last hidden layer), found one training
  batch at a time so that the training set's features never need to fit in memory;
- ``curves.png``: training and validation top-1 error and the learning rate per epoch, from the
  run's ``csv/metrics.csv``.
"""
import csv
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from alexnet_lit.build import hydra_command
from alexnet_lit.inspect.pictures import colour_specificity, conv1_towers, image_grid
from alexnet_lit.module import AlexNetModule
from alexnet_lit.tracking import command_tracker
from alexnet_lit.trained import run_folder_of, trained_network
from alexnet_lit.writing import replace_text, save_figure


def figure3(module: AlexNetModule, out: Path, dpi: int) -> dict:
    """conv1's kernels per tower and their colour specificity."""
    towers = conv1_towers(module.net, module.hparams.model["towers"])
    scores = [colour_specificity(t) for t in towers]
    pictures = [image_grid(t, nrow=8, zoom=4) for t in towers]
    height, width = pictures[0].shape[:2]  # drawn one pixel for one pixel
    fig = Figure(figsize=(len(towers) * (width + 20) / dpi, (height + 30) / dpi))
    for i, (picture, score) in enumerate(zip(pictures, scores)):
        ax = fig.add_subplot(1, len(towers), i + 1)
        ax.imshow(picture)
        ax.set_title(f"tower {i + 1}: colour specificity {score.mean():.2f}", fontsize=8)
        ax.axis("off")
    save_figure(fig, out / "figure3.png", dpi=dpi, bbox_inches="tight")
    first = [i * len(towers[0]) for i in range(len(towers))]
    return {"towers": [dict(kernels=[f, f + len(k) - 1], mean_colour_specificity=float(s.mean()),
                            colour_specificity=[round(x, 4) for x in s.tolist()])
                       for f, k, s in zip(first, towers, scores)]}


def fc7_and_logits(module: AlexNetModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden layer's activations (fc8's input) and the logits of a batch."""
    captured = []
    hook = module.net.classifier.fc8.register_forward_pre_hook(lambda layer, args: captured.append(args[0]))
    try:
        with torch.inference_mode():
            logits = module(x)
    finally:
        hook.remove()
    return captured[0], logits


def nearest(queries: torch.Tensor, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows nearest each query (Q, D) in Euclidean distance among ``batches`` of
    (features (B, D), their indices (B,)), read one batch at a time: (distances, indices),
    each (Q, k), nearest first."""
    distances = torch.empty(len(queries), 0)
    indices = torch.empty(len(queries), 0, dtype=torch.long)
    for features, index in batches:
        distances = torch.cat([distances, torch.cdist(queries.float(), features.float())], dim=1)
        indices = torch.cat([indices, index.expand(len(queries), -1)], dim=1)
        distances, order = distances.topk(min(k, distances.shape[1]), dim=1, largest=False)
        indices = indices.gather(1, order)
    return distances, indices


def training_features(module: AlexNetModule, datamodule, batch_size: int):
    """(fc7 of the centre crops, dataset indices) of the training set, batch by batch in order;
    files skipped as unreadable (label -1) left out."""
    loader = DataLoader(datamodule.train_set, batch_size=batch_size, num_workers=datamodule.hparams.num_workers)
    start = 0
    for images, labels in loader:
        features, _ = fc7_and_logits(module, datamodule.views(images, "center"))
        keep = labels >= 0
        yield features[keep], torch.arange(start, start + len(labels))[keep]
        start += len(labels)


def figure4(module: AlexNetModule, datamodule, cfg: DictConfig, out: Path) -> dict:
    """Validation images, their top-k predictions, their nearest training images in fc7 space."""
    val, train, names = datamodule.val_set, datamodule.train_set, datamodule.class_names
    picked = torch.linspace(0, len(val) - 1, min(cfg.queries, len(val))).round().long().tolist()
    images, labels = zip(*(val[i] for i in picked))
    queries, logits = fc7_and_logits(module, datamodule.views(torch.stack(images), "center"))
    top = logits.softmax(1).topk(min(cfg.topk, logits.shape[1]), dim=1)
    distances, neighbours = nearest(queries, training_features(module, datamodule, datamodule.hparams.batch_size),
                                    cfg.neighbours)
    fig = Figure(figsize=(1.2 * (3 + cfg.neighbours), 1.3 * len(picked)))
    grid = fig.add_gridspec(len(picked), 3 + cfg.neighbours)
    for row, (image, label) in enumerate(zip(images, labels)):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(image.numpy())
        ax.set_title(names[label], fontsize=7)
        ax.axis("off")
        bars = fig.add_subplot(grid[row, 1:3])  # the paper's bars, the true class in red
        probs, classes = top.values[row].tolist(), top.indices[row].tolist()
        bars.barh(range(len(probs)), probs, color=["tab:red" if c == label else "lightsteelblue" for c in classes])
        for y, (p, c) in enumerate(zip(probs, classes)):
            bars.text(0.02, y, f"{names[c]} {p:.2f}", va="center", fontsize=6)
        bars.set(xlim=(0, 1), yticks=[], xticks=[])
        bars.invert_yaxis()
        for col, index in enumerate(neighbours[row].tolist()):
            ax = fig.add_subplot(grid[row, 3 + col])
            ax.imshow(train[index][0].numpy())
            ax.axis("off")
    save_figure(fig, out / "figure4.png", dpi=cfg.dpi, bbox_inches="tight")
    return {"images": [dict(val_index=i, label=names[label],
                            topk=[[names[c], round(p, 4)] for p, c in zip(top.values[r].tolist(), top.indices[r].tolist())],
                            neighbours=neighbours[r].tolist(), distances=[round(d, 4) for d in distances[r].tolist()])
                       for r, (i, label) in enumerate(zip(picked, labels))]}


def curves(metrics_csv: Path, out: Path, dpi: int) -> None:
    """Top-1 error (train, val) and the learning rate per epoch of a run's csv/metrics.csv."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
        return [e + 1 for e, _ in points], [v for _, v in points]

    fig = Figure(figsize=(7, 2.8))
    errors, lr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, label in (("train/top1_err", "train"), ("val/top1_err", "val (centre)")):
        errors.plot(*series(key), marker="o", label=label)
    errors.set(xlabel="epoch", ylabel="top-1 error", ylim=(0, 1))
    errors.legend()
    lr.plot(*series("lr"), marker="o")
    lr.set(xlabel="epoch", ylabel="learning rate", yscale="log")
    fig.tight_layout()
    save_figure(fig, out / "curves.png", dpi=dpi)


def figures(cfg: DictConfig) -> dict:
    """Every figure of ``cfg.ckpt``; returns {figure3, figure4} as written to their JSON files."""
    out = Path(cfg.paths.output_dir)
    module, datamodule = trained_network(cfg, "validate")
    written = dict(figure3=figure3(module, out, cfg.dpi), figure4=figure4(module, datamodule, cfg, out))
    for name, data in written.items():
        replace_text(out / f"{name}.json", json.dumps(data, indent=1) + "\n")
    run = run_folder_of(str(cfg.ckpt))
    if run is not None and (run / "csv" / "metrics.csv").is_file():
        curves(run / "csv" / "metrics.csv", out, cfg.dpi)
    else:
        print(f"no training curves: {cfg.ckpt} has no run folder with csv/metrics.csv")
    means = [t["mean_colour_specificity"] for t in written["figure3"]["towers"]]
    print(f"conv1 colour specificity per tower (mean): {', '.join(f'{m:.3f}' for m in means)}\n"
          f"figures written to {out}")
    with command_tracker(cfg, "figures") as tracker:
        if tracker is not None:
            for picture in sorted(out.glob("*.png")):
                tracker.log_image(picture.stem, [str(picture)])
            tracker.log_metrics({f"conv1/colour_specificity/tower{i + 1}": m for i, m in enumerate(means)})
    return written


@hydra_command("figures")
def main(cfg: DictConfig) -> None:
    figures(cfg)


if __name__ == "__main__":
    main()
