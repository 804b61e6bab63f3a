"""Training batches of dataset rows (`train.sampler`), laid out per epoch from a numpy Generator seeded by
(seed, epoch) alone, so that a resumed run and every rank of a distributed one compute the same batches.

`identity` (IdentityBatchSampler, the default): every batch holds P identities with K rows each, so CMPM/CMPC
see positives besides each pair itself. An epoch is laid out as follows:

1. each identity's rows are shuffled and cut into chunks of K = images_per_id rows; a short last chunk is
   padded with other rows of the same identity (with replacement only when the identity has fewer than K
   rows), so every row appears at least once per epoch;
2. the identities are shuffled and their chunks concatenated; chunk j goes to batch j mod B, where
   B = max(largest chunk count, ceil(chunks / P)). An identity's chunks are consecutive and at most B, so they
   land in different batches: no batch holds an identity twice;
3. empty slots (B * P - chunks of them) are filled with a fresh chunk of an identity not yet in that batch;
4. the batch order is shuffled.

B depends only on the label counts, so every epoch (and every rank) has the same number of batches.

`random` (RandomBatchSampler, the released code's shuffled loader): the rows in a random order, cut into
batches of batch_size; the last, short batch is topped up with rows drawn from the other batches, so every
batch has the same size and every row appears at least once per epoch. A batch may then hold no two rows of
one identity (each pair is still its own positive).

With world_size N every rank builds the same global batches and takes its contiguous 1/N slice of each one
(for the identity sampler, when batch_size / N is a multiple of K, each rank gets whole identities).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from acsa.errors import ConfigError


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's slice of each global batch of the epoch (`global_batches`, in subclasses).

    Call `set_epoch(epoch)` before each epoch. `len()` is the number of batches per epoch, the same for every
    epoch and rank.
    """

    def __init__(self, batch_size: int, seed: int, rank: int, world_size: int, num_batches: int) -> None:
        if world_size < 1 or batch_size % world_size:
            raise ValueError(f"world_size must divide batch_size={batch_size}, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._num_batches = num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batch_size // self.world_size
        lo = self.rank * per_rank
        for batch in self.global_batches():
            yield batch[lo : lo + per_rank]

    def global_batches(self) -> list[list[int]]:
        """The batches of the current epoch before they are split between ranks."""
        raise NotImplementedError


class RandomBatchSampler(GlobalBatchSampler):
    """Yields lists of dataset indices: batch_size rows drawn at random (module docstring)."""

    def __init__(self, num_rows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1 or num_rows < batch_size:
            raise ValueError(f"batch_size must be in [1, {num_rows}] (the rows), got {batch_size}")
        super().__init__(batch_size, seed, rank, world_size, math.ceil(num_rows / batch_size))
        self.num_rows = num_rows

    def global_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_rows)
        short = -self.num_rows % self.batch_size
        if short:  # top the last batch up with rows of the other batches, none twice
            others = order[: len(order) - (self.batch_size - short)]
            order = np.concatenate([order, rng.choice(others, size=short, replace=False)])
        return order.reshape(-1, self.batch_size).tolist()


class IdentityBatchSampler(GlobalBatchSampler):
    """Yields lists of dataset indices: batch_size // images_per_id identities x images_per_id rows each."""

    def __init__(
        self,
        labels: list[int],
        batch_size: int,
        images_per_id: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images_per_id < 1:
            raise ValueError(f"images_per_id must be >= 1, got {images_per_id}")
        if batch_size < images_per_id or batch_size % images_per_id:
            raise ValueError(
                f"batch_size must be a positive multiple of images_per_id={images_per_id}, got {batch_size}"
            )
        rows_by_id: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            rows_by_id[int(label)].append(index)
        self.ids_per_batch = batch_size // images_per_id
        if len(rows_by_id) < self.ids_per_batch:
            raise ValueError(
                f"labels: {len(rows_by_id)} identities cannot fill batches of "
                f"{self.ids_per_batch} identities (batch_size={batch_size}, images_per_id={images_per_id})"
            )
        # sorted by label so the layout does not depend on the order the dict was filled in
        self._rows = [np.asarray(rows_by_id[label], dtype=np.int64) for label in sorted(rows_by_id)]
        chunk_counts = [max(1, math.ceil(len(rows) / images_per_id)) for rows in self._rows]
        num_batches = max(max(chunk_counts), math.ceil(sum(chunk_counts) / self.ids_per_batch))
        super().__init__(batch_size, seed, rank, world_size, num_batches)
        self.images_per_id = images_per_id

    def global_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        k, num_batches = self.images_per_id, self._num_batches
        chunks: list[tuple[int, np.ndarray]] = []  # (identity, K rows), identities in shuffled order
        for identity in rng.permutation(len(self._rows)):
            rows = rng.permutation(self._rows[identity])
            short = -len(rows) % k
            if short:
                # pad from rows outside the last chunk, so a chunk repeats a row only when it has to
                pool = rows[: len(rows) - (k - short)] if len(rows) >= k else rows
                rows = np.concatenate([rows, rng.choice(pool, size=short, replace=len(pool) < short)])
            chunks.extend((int(identity), chunk) for chunk in rows.reshape(-1, k))

        batch_ids: list[list[int]] = [[] for _ in range(num_batches)]
        batch_rows: list[list[np.ndarray]] = [[] for _ in range(num_batches)]
        for j, (identity, chunk) in enumerate(chunks):
            batch_ids[j % num_batches].append(identity)
            batch_rows[j % num_batches].append(chunk)
        for ids, rows in zip(batch_ids, batch_rows, strict=True):
            while len(ids) < self.ids_per_batch:
                identity = int(rng.integers(len(self._rows)))
                if identity in ids:
                    continue
                pool = self._rows[identity]
                ids.append(identity)
                rows.append(rng.choice(pool, size=k, replace=len(pool) < k))
        return [np.concatenate(batch_rows[b]).tolist() for b in rng.permutation(num_batches)]


def make_batch_sampler(
    kind: str, labels: list[int], batch_size: int, images_per_id: int, seed: int, rank: int, world_size: int
) -> GlobalBatchSampler:
    """The sampler of `train.sampler` (`identity` or `random`) over rows with identity `labels`; arguments
    that cannot make batches are a one-line ConfigError."""
    try:
        if kind == "random":
            return RandomBatchSampler(len(labels), batch_size, seed, rank, world_size)
        return IdentityBatchSampler(labels, batch_size, images_per_id, seed, rank, world_size)
    except ValueError as err:
        raise ConfigError(f"train.sampler ({kind}): {err}") from None
