"""Which images each process sees, and when (Section 5: SGD on mini-batches of 128).

``data.batch_size`` is the GLOBAL batch. Training: every epoch is a fresh permutation drawn
from (seed, epoch) alone, cut into global batches, each split evenly over the processes, so
the global batches are the same whatever the number of processes, and the loader's state
(epoch, batches taken, seed) is all a resumed run needs to see the rest of the epoch in the
same order. Evaluation: every image exactly once across processes (no padding duplicates).
"""
from collections.abc import Callable

import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Sampler


def derived_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (run seed, epoch, rank, step...)."""
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0] >> np.uint64(1))


def local_batch_size(batch_size: int, world_size: int) -> int:
    """The per-process share of the global batch ``data.batch_size``."""
    if batch_size % world_size:
        raise ValueError(
            f"data.batch_size={batch_size} is the global batch and must split evenly over the "
            f"{world_size} processes (trainer.devices x trainer.num_nodes); choose a multiple of "
            f"{world_size}")
    return batch_size // world_size


class TrainSampler(Sampler[int]):
    """Process ``rank`` of ``world_size``'s slice of each global batch of ``batch_size``
    images; an incomplete last global batch is left out. ``taken`` counts the batches of
    ``epoch`` the training loop has received (counted by :class:`TrainLoader`, as workers
    read the sampler ahead); an epoch's pass starts after them."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.local_batch = local_batch_size(batch_size, world_size)
        self.batches = size // batch_size
        if self.batches == 0:
            raise ValueError(f"data.batch_size={batch_size} is larger than the training set "
                             f"({size} images)")
        self.size, self.batch_size, self.rank, self.seed = size, batch_size, rank, seed
        self.epoch = self.taken = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every epoch; a new epoch starts from its first batch."""
        if epoch != self.epoch:
            self.epoch, self.taken = epoch, 0

    def __len__(self) -> int:
        return self.batches * self.local_batch

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(
            derived_seed(self.seed, self.epoch)))
        for b in range(self.taken, self.batches):
            first = b * self.batch_size + self.rank * self.local_batch
            yield from order[first:first + self.local_batch].tolist()

    def state_dict(self) -> dict:
        return dict(epoch=self.epoch, taken=self.taken, seed=self.seed, batch_size=self.batch_size)

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size"):
            if state[key] != getattr(self, key):
                name = "seed" if key == "seed" else "data.batch_size"
                raise ValueError(f"cannot resume: the checkpoint's data order was drawn with "
                                 f"{name}={state[key]}, this run has {name}={getattr(self, key)}")
        self.epoch, self.taken = state["epoch"], state["taken"]
        if self.taken >= self.batches:  # saved at the end of an epoch: resume with the next one
            self.epoch, self.taken = self.epoch + 1, 0


class CheckedLoader(DataLoader):
    """A DataLoader that calls ``check`` (are the data's files whole?) as each pass over it
    starts, and again when a read fails: the check names what went wrong in one line, where a
    loader worker's error carries its traceback."""

    def __init__(self, *args, check: Callable[[], None] = lambda: None, **kwargs):
        super().__init__(*args, **kwargs)
        self.check = check

    def __iter__(self):
        self.check()
        try:
            yield from super().__iter__()
        except OSError:
            self.check()
            raise


class TrainLoader(CheckedLoader):
    """A CheckedLoader over a :class:`TrainSampler` that Lightning checkpoints: its fit loop
    saves ``state_dict()`` and restores it with ``load_state_dict()`` on resume. (Lightning's
    ``overfit_batches`` swaps in a SequentialSampler, which keeps no position: conf/debug's
    overfit run saves no checkpoints.)"""

    def __iter__(self):
        keeps_position = isinstance(self.sampler, TrainSampler)
        for batch in super().__iter__():
            if keeps_position:
                self.sampler.taken += 1
            yield batch

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def eval_sampler(dataset, rank: int = 0, world_size: int = 1) -> UnrepeatedDistributedSampler:
    """Process ``rank`` takes images rank, rank + world_size, ... (Lightning's
    UnrepeatedDistributedSampler): every image once across processes, so error counts summed
    over processes are those of a single process."""
    if len(dataset) < world_size:
        raise ValueError(f"{len(dataset)} validation images cannot be shared by {world_size} processes")
    return UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
