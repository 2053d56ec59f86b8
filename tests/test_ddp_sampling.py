"""The samplers behind DDP and resume (alexnet_lit.data.sampling), with real DataLoaders."""
import pytest
import torch
from torch.utils.data import TensorDataset

from alexnet_lit.data.sampling import TrainLoader, TrainSampler, eval_sampler, local_batch_size


def epoch_batches(world_size: int, epoch: int, size: int = 1000, batch_size: int = 32) -> list[list[int]]:
    """The global batches of one epoch: each process's slice, concatenated in rank order."""
    shards = []
    for rank in range(world_size):
        sampler = TrainSampler(size, batch_size, rank, world_size, seed=7)
        sampler.set_epoch(epoch)
        order = list(sampler)
        step = batch_size // world_size
        shards.append([order[i:i + step] for i in range(0, len(order), step)])
    return [sum(slices, []) for slices in zip(*shards)]


def test_global_batches_are_the_same_for_any_number_of_processes():
    one = epoch_batches(1, epoch=3)
    assert len(one) == 1000 // 32  # the short last global batch is left out
    seen = sum(one, [])
    assert len(set(seen)) == len(seen) == 31 * 32  # no image twice in an epoch
    for world in (2, 4, 8):
        assert epoch_batches(world, epoch=3) == one
    assert epoch_batches(1, epoch=4) != one  # a fresh permutation every epoch


@pytest.mark.parametrize("size", [21, 100])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_evaluation_sees_every_image_exactly_once(size, world):
    shards = [list(eval_sampler(range(size), rank, world)) for rank in range(world)]
    assert sorted(sum(shards, [])) == list(range(size))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match="2 validation images cannot be shared by 3 processes"):
        eval_sampler(range(2), 0, 3)


def test_a_global_batch_that_does_not_split_is_refused():
    assert local_batch_size(128, 4) == 32
    with pytest.raises(ValueError, match=r"data.batch_size=128 .* 3 processes"):
        local_batch_size(128, 3)
    with pytest.raises(ValueError, match="data.batch_size=128 is larger than the training set"):
        TrainSampler(100, 128)


def loader(workers: int) -> TrainLoader:
    data = TensorDataset(torch.arange(100))
    return TrainLoader(data, sampler=TrainSampler(100, 10, seed=3), batch_size=10, num_workers=workers)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_resumes_the_epoch_where_it_stopped(workers):
    """Workers read the sampler ahead; the state counts only the batches handed over."""
    first = loader(workers)
    first.sampler.set_epoch(2)
    batches = iter(first)
    seen = [next(batches)[0].tolist() for _ in range(4)]
    state = first.state_dict()
    assert state == dict(epoch=2, taken=4, seed=3, batch_size=10)
    rest = [b[0].tolist() for b in batches]

    resumed = loader(workers)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)  # as Lightning does before the epoch: same epoch, same place
    assert [b[0].tolist() for b in resumed] == rest
    assert len(resumed) == 10  # the epoch's length, not what is left of it
    assert sorted(sum(seen + rest, [])) == list(range(100))

    at_end = loader(workers)
    at_end.load_state_dict(resumed.state_dict())  # saved after the epoch's last batch
    assert (at_end.sampler.epoch, at_end.sampler.taken) == (3, 0)


def test_resuming_with_another_seed_or_batch_is_refused():
    state = loader(0).state_dict()
    with pytest.raises(ValueError, match="seed=3, this run has seed=4"):
        TrainLoader(TensorDataset(torch.arange(100)), sampler=TrainSampler(100, 10, seed=4),
                    batch_size=10).load_state_dict(state)
    with pytest.raises(ValueError, match="data.batch_size=10, this run has data.batch_size=20"):
        TrainSampler(100, 20, seed=3).load_state_dict(state)
