import numpy as np
import pytest

from frcnn.data.sampler import GroupedBatchSampler


def ratios(n=103, seed=0):
    return np.exp(np.random.default_rng(seed).uniform(np.log(0.5), np.log(2.0), n))


def test_batches_group_similar_aspect_ratios():
    r = ratios(400)
    sampler = GroupedBatchSampler(r, batch_size=4, jitter=0.05)
    spreads = [np.ptp(np.log(r[[k.index for k in batch]])) for batch in sampler]
    random_spread = np.mean([np.ptp(np.log(r[np.random.default_rng(i).choice(400, 4)])) for i in range(100)])
    assert np.mean(spreads) < 0.1 < random_spread


def test_epochs_differ_and_repeat_with_the_seed():
    r = ratios()
    a = GroupedBatchSampler(r, 4, seed=1)
    first = [tuple(k.index for k in b) for b in a]
    a.set_epoch(1)
    second = [tuple(k.index for k in b) for b in a]
    b = GroupedBatchSampler(r, 4, seed=1)
    assert first == [tuple(k.index for k in batch) for batch in b]
    assert first != second


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_cover_every_image_once(world_size):
    r = ratios(103)
    seen, weights = [], []
    per_rank = [list(GroupedBatchSampler(r, 8, seed=3, rank=k, world_size=world_size)) for k in range(world_size)]
    assert len({len(p) for p in per_rank}) == 1  # every process takes the same number of steps
    for step in zip(*per_rank):
        real = [k for shard in step for k in shard if k.weight > 0]
        seen += [k.index for k in real]
        weights.append(sum(k.weight for k in real) / world_size)
    assert sorted(seen) == list(range(103))
    assert np.allclose(weights, 1.0)  # each step's loss weights average to one batch mean


def test_resume_skips_done_batches():
    r = ratios()
    full = [tuple(k.index for k in b) for b in GroupedBatchSampler(r, 4, seed=2)]
    s = GroupedBatchSampler(r, 4, seed=2)
    s.set_epoch(0, start_batch=5)
    assert [tuple(k.index for k in b) for b in s] == full[5:]
    assert len(s) == len(full) - 5


def test_scales_are_chosen_per_batch():
    s = GroupedBatchSampler(ratios(200), 4, num_scales=3, seed=0)
    scales = [{k.scale for k in b} for b in s]
    assert all(len(x) == 1 for x in scales)
    assert {x.pop() for x in scales} == {0, 1, 2}
