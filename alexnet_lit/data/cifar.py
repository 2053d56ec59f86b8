"""CIFAR-10 (Krizhevsky 2009), the data set of the paper's Figure 1 (ReLU against tanh).

``data.root`` is one of: a folder written by ``python -m alexnet_lit.prepare``; an ImageFolder
of the 32x32 images with ``train/`` and ``test/`` (the CIFAR-10 images exported as files); or
the folder torchvision's CIFAR10 downloads into, turned into a prepared folder in place once
(with its own mean image and colour PCA).
"""
from torchvision.datasets import CIFAR10

from alexnet_lit.data.folder import FolderDataModule
from alexnet_lit.data.samples import class_names
from alexnet_lit.data.preparation import write_arrays
from alexnet_lit.data.prepared import is_prepared


class CIFAR10DataModule(FolderDataModule):
    def __init__(self, root: str, download: bool = True, **pipeline):
        super().__init__(root=root, **pipeline)

    def prepare_data(self) -> None:
        train = self.root / "train"
        if is_prepared(self.root) or (train.is_dir() and class_names(train)):
            return
        try:
            sets = {split: CIFAR10(str(self.root), train=split == "train", download=self.hparams.download)
                    for split in ("train", "val")}
        except (OSError, RuntimeError) as err:
            raise RuntimeError(
                f"data.root={str(self.root)!r} is neither a prepared folder nor an ImageFolder of "
                f"CIFAR-10 images (train/, test/), and torchvision's CIFAR10 is not there "
                f"(download={self.hparams.download}: {err}). Offline, fetch cifar-10-python.tar.gz from "
                f"https://www.cs.toronto.edu/~kriz/cifar.html on a machine that is online and extract "
                f"it into data.root (torchvision reads it there), or give an ImageFolder.") from err
        write_arrays(self.root, sets["train"].classes, "torchvision CIFAR10",
                     {split: (data.data, data.targets) for split, data in sets.items()})
