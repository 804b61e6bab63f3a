"""IdentityBatchSampler and RandomBatchSampler (`train.sampler`): batch composition, determinism, coverage,
distributed slices, resume."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from acsa.data.sampler import IdentityBatchSampler, RandomBatchSampler, make_batch_sampler
from acsa.errors import ConfigError


def make_labels(num_ids: int = 40, seed: int = 0) -> list[int]:
    """Uneven identities: 1 to 11 rows each, rows of an identity scattered over the dataset."""
    rng = random.Random(seed)
    labels = [identity for identity in range(num_ids) for _ in range(rng.randint(1, 11))]
    rng.shuffle(labels)
    return labels


def epoch_batches(sampler: IdentityBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("images_per_id", [1, 2, 4])
def test_every_batch_has_p_identities_with_k_rows(images_per_id: int) -> None:
    labels = make_labels()
    sampler = IdentityBatchSampler(labels, batch_size=8, images_per_id=images_per_id, seed=3)
    batches = epoch_batches(sampler, 0)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(batch) == 8
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 8 // images_per_id
        assert set(counts.values()) == {images_per_id}
        # the K rows of an identity are contiguous in the batch
        for start in range(0, 8, images_per_id):
            assert len({labels[i] for i in batch[start : start + images_per_id]}) == 1


def test_rows_repeat_within_an_identity_only_when_it_has_too_few() -> None:
    labels = make_labels()
    rows_per_id = Counter(labels)
    for batch in epoch_batches(IdentityBatchSampler(labels, 8, 4, seed=1), 0):
        for start in range(0, 8, 4):
            chunk = batch[start : start + 4]
            if rows_per_id[labels[chunk[0]]] >= 4:
                assert len(set(chunk)) == 4


def test_every_row_covered_about_once() -> None:
    labels = make_labels()
    sampler = IdentityBatchSampler(labels, batch_size=8, images_per_id=2, seed=0)
    for epoch in range(3):
        seen = Counter(i for batch in epoch_batches(sampler, epoch) for i in batch)
        assert set(seen) == set(range(len(labels)))
        # padding and fillers add at most one chunk per identity and less than one batch
        assert sum(seen.values()) <= len(labels) + 2 * len(set(labels)) + 8


def test_same_seed_and_epoch_give_same_batches() -> None:
    labels = make_labels()
    a = IdentityBatchSampler(labels, 8, 2, seed=5)
    b = IdentityBatchSampler(labels, 8, 2, seed=5)
    assert epoch_batches(a, 2) == epoch_batches(b, 2)
    assert epoch_batches(a, 2) == epoch_batches(a, 2)


def test_epoch_and_seed_change_the_order_but_not_the_length() -> None:
    labels = make_labels()
    sampler = IdentityBatchSampler(labels, 8, 2, seed=5)
    first, second = epoch_batches(sampler, 0), epoch_batches(sampler, 1)
    assert first != second
    assert len(first) == len(second) == len(sampler)
    assert epoch_batches(IdentityBatchSampler(labels, 8, 2, seed=6), 0) != first


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_get_disjoint_slices_of_the_global_batch(world_size: int) -> None:
    labels = make_labels()
    single = epoch_batches(IdentityBatchSampler(labels, 8, 2, seed=7), 4)
    per_rank = [
        epoch_batches(IdentityBatchSampler(labels, 8, 2, seed=7, rank=r, world_size=world_size), 4)
        for r in range(world_size)
    ]
    assert all(len(batches) == len(single) for batches in per_rank)
    for step, global_batch in enumerate(single):
        slices = [batches[step] for batches in per_rank]
        assert all(len(s) == 8 // world_size for s in slices)
        assert [i for s in slices for i in s] == global_batch
        # disjoint positions; with 2 ranks and K=2 each rank holds whole identities
        if world_size == 2:
            assert not {labels[i] for i in slices[0]} & {labels[i] for i in slices[1]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 7, "images_per_id": 2}, "batch_size must be a positive multiple of images_per_id"),
        ({"images_per_id": 0}, "images_per_id must be >= 1"),
        ({"world_size": 3}, "world_size must divide batch_size=8"),
        ({"world_size": 2, "rank": 2}, "rank must be in"),
        ({"batch_size": 200, "images_per_id": 2}, "identities cannot fill batches of 100"),
    ],
)
def test_bad_arguments_raise_one_line_errors(kwargs: dict, message: str) -> None:
    args = {"labels": make_labels(), "batch_size": 8, "images_per_id": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message) as err:
        IdentityBatchSampler(**args)
    assert "\n" not in str(err.value)


def test_works_as_a_dataloader_batch_sampler() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    labels = make_labels()
    dataset = TensorDataset(torch.tensor(labels))
    sampler = IdentityBatchSampler(labels, 8, 2, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == len(sampler)
    (first,) = next(iter(loader))
    assert first.shape == (8,)


# ---- the random sampler (train.sampler: random, the released code's shuffled loader) -----------------------


@pytest.mark.parametrize("rows", [40, 43])
def test_random_batches_cover_every_row_once_and_top_up_the_last(rows: int) -> None:
    sampler = RandomBatchSampler(rows, batch_size=8, seed=3)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler) == -(-rows // 8)
        assert all(len(batch) == 8 and len(set(batch)) == 8 for batch in batches)
        seen = Counter(i for batch in batches for i in batch)
        assert set(seen) == set(range(rows))
        repeated = [i for i, count in seen.items() if count > 1]
        assert len(repeated) == -rows % 8 and set(repeated) <= set(batches[-1])  # the topped-up batch only


def test_random_batches_depend_on_seed_and_epoch_only() -> None:
    first = epoch_batches(RandomBatchSampler(43, 8, seed=5), 2)
    continued = RandomBatchSampler(43, 8, seed=5)
    epoch_batches(continued, 0)  # an earlier epoch leaves no state behind: a resumed run gets the same
    assert epoch_batches(continued, 2) == first
    assert epoch_batches(RandomBatchSampler(43, 8, seed=5), 3) != first
    assert epoch_batches(RandomBatchSampler(43, 8, seed=6), 2) != first
    labels = make_labels()  # not grouped by identity: batches hold many identities with one row each
    batch = epoch_batches(RandomBatchSampler(len(labels), 8, seed=0), 0)[0]
    assert len({labels[i] for i in batch}) > 8 // 2


@pytest.mark.parametrize("world_size", [2, 4])
def test_random_batches_split_between_ranks(world_size: int) -> None:
    single = epoch_batches(RandomBatchSampler(43, 8, seed=7), 1)
    per_rank = [
        epoch_batches(RandomBatchSampler(43, 8, seed=7, rank=r, world_size=world_size), 1)
        for r in range(world_size)
    ]
    for step, global_batch in enumerate(single):
        assert [i for batches in per_rank for i in batches[step]] == global_batch


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 50}, r"batch_size must be in \[1, 43\]"),
        ({"batch_size": 0}, "batch_size must be in"),
        ({"world_size": 3}, "world_size must divide batch_size=8"),
        ({"world_size": 2, "rank": 5}, "rank must be in"),
    ],
)
def test_random_sampler_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RandomBatchSampler(**({"num_rows": 43, "batch_size": 8, "seed": 0} | kwargs))


def test_train_sampler_chooses_the_sampler_and_bad_batches_are_config_errors() -> None:
    labels = make_labels()
    assert isinstance(make_batch_sampler("random", labels, 6, 4, 0, 0, 1), RandomBatchSampler)  # K unused
    assert isinstance(make_batch_sampler("identity", labels, 8, 2, 0, 0, 1), IdentityBatchSampler)
    with pytest.raises(
        ConfigError, match=r"train.sampler \(identity\): batch_size must be a positive multiple"
    ):
        make_batch_sampler("identity", labels, 6, 4, 0, 0, 1)
