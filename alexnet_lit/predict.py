"""The classes a trained network sees in image files (Section 6, Figure 4's top-5 lists):

    python -m alexnet_lit.predict ckpt=outputs/.../checkpoints/best.ckpt files='photos/*.jpg'

prints the top-k class names and probabilities of every image and writes them to
``predictions.csv`` (file, rank, class index, class name, probability) in the run folder.
Each image is brought to the data's image_size as in training, then scored on its ten crops
(softmax averaged) or its centre crop. A file that does not decode is skipped and named
(``on_error=skip``, the default) or stops the command (``on_error=error``). Class names are the data's (see FolderDataModule).
"""
import csv
import glob
from pathlib import Path

import torch
from omegaconf import DictConfig
from torchvision.datasets.folder import IMG_EXTENSIONS

from alexnet_lit.build import hydra_command
from alexnet_lit.data.decode import DecodeError, check_policy, only_files, prepare_image
from alexnet_lit.trained import class_probabilities, trained_network
from alexnet_lit.writing import replacing


def image_files(pattern: str) -> list[str]:
    """The image files of a file, a folder (recursively) or a glob, sorted."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        found = [str(p) for p in sorted(path.rglob("*")) if p.name.lower().endswith(IMG_EXTENSIONS)]
    else:
        found = sorted(glob.glob(str(path), recursive=True))
    files, others = only_files(found)
    for other in others:
        print(f"skipped {other}: not a file")
    if not files:
        raise FileNotFoundError(f"files={pattern}: no image files there")
    return files


def predict(cfg: DictConfig) -> list[dict]:
    """Top-k rows {file, rank, class_index, class_name, probability}, also in predictions.csv."""
    if cfg.view not in ("center", "tencrop"):
        raise ValueError(f"view={cfg.view!r}: expected 'center' or 'tencrop'")
    module, datamodule = trained_network(cfg, "predict")
    files, size, names = image_files(str(cfg.files)), datamodule.hparams.image_size, datamodule.class_names
    exif = datamodule.hparams.get("exif_orientation", "ignore")  # as the network's data was decoded
    k = min(cfg.topk, len(names))
    rows, skipped = [], []
    for start in range(0, len(files), cfg.batch_size):
        batch, images = [], []
        for file in files[start:start + cfg.batch_size]:
            try:
                images.append(torch.from_numpy(prepare_image(file, size, exif)))
                batch.append(file)
            except DecodeError as err:
                if check_policy(cfg.on_error) == "error":
                    raise
                print(f"skipped {err}")
                skipped.append(file)
        if not batch:
            continue
        images = torch.stack(images)
        top = class_probabilities(module, datamodule.views, images, cfg.view).topk(k, dim=1)
        for file, probs, indices in zip(batch, top.values.tolist(), top.indices.tolist()):
            rows += [dict(file=file, rank=rank, class_index=i, class_name=names[i], probability=p)
                     for rank, (p, i) in enumerate(zip(probs, indices), start=1)]
            print(f"{file}: " + "; ".join(f"{names[i]} {p:.3f}" for p, i in zip(probs, indices)))
    if not rows:
        raise DecodeError(f"files={cfg.files}: none of its {len(files)} files decodes as an image")
    out = Path(cfg.paths.output_dir) / "predictions.csv"
    with replacing(out, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(files) - len(skipped)} images; written to {out}"
          + (f"; {len(skipped)} skipped (on_error=skip): {', '.join(skipped)}" if skipped else ""))
    return rows


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
