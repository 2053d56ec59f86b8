"""An ImageFolder data set (``root/train/<class>/*``, ``root/val/<class>/*``) fed the
paper's way (Section 4.1, PAPER.md "Data"): each image brought to image_size x image_size
(shorter side, then the central square), then random crop_size crops and horizontal
flips for training, the centre crop for validation. Workers only decode and crop and
hand over uint8 tensors; centring and PCA colour noise run on the batch after it reaches
the device (``on_after_batch_transfer``).
"""
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms as T

from alexnet_lit.data.colour import PCAColourNoise, centre

class FolderDataModule(L.LightningDataModule):
    def __init__(self, root: str, num_classes: int, batch_size: int = 128, num_workers: int = 4,
                 image_size: int = 256, crop_size: int = 227, augment: bool = True,
                 pca_noise: bool = True, normalize: str = "paper", val_views: tuple = ("center",)):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train.py logs the whole resolved config
        self.root = Path(root).expanduser()
        self.colour_noise = PCAColourNoise() if pca_noise and augment else None

    def _dataset(self, split: str, view: str):
        folder = self.root / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"data.root={str(self.root)!r}: expected a folder {split}/ with one sub-folder of "
                f"images per class, but {folder} does not exist")
        h = self.hparams
        steps = [T.Resize(h.image_size), T.CenterCrop(h.image_size)]
        if view == "train" and h.augment:
            steps += [T.RandomCrop(h.crop_size), T.RandomHorizontalFlip(), T.PILToTensor()]
        elif view == "tencrop":
            steps += [T.TenCrop(h.crop_size), lambda crops: torch.stack([T.functional.pil_to_tensor(c) for c in crops])]
        elif view in ("train", "center"):
            steps += [T.CenterCrop(h.crop_size), T.PILToTensor()]
        else:
            raise ValueError(f"data.val_views: unknown view {view!r}; expected 'center' or 'tencrop'")
        data = datasets.ImageFolder(str(folder), T.Compose(steps))
        if len(data.classes) != h.num_classes:
            raise ValueError(f"data.num_classes={h.num_classes} but {folder} holds "
                             f"{len(data.classes)} class folders")
        return data

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._dataset("train", "train")
        self.val_sets = [self._dataset("val", view) for view in self.hparams.val_views]

    def _loader(self, data, shuffle: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(data, batch_size=h.batch_size, shuffle=shuffle, drop_last=shuffle,
                          num_workers=h.num_workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=h.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(data, shuffle=False) for data in self.val_sets]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        images = images.float()
        if images.dim() == 5:  # (B, V, C, H, W) views
            return centre(images.flatten(0, 1), self.hparams.normalize).view_as(images), labels
        if self.trainer is not None and self.trainer.training and self.colour_noise is not None:
            images = self.colour_noise(images)
        return centre(images, self.hparams.normalize), labels
