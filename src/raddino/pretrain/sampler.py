"""The order in which pre-training sees images: one infinite stream, split across ranks, resumable.

The stream is a sequence of passes over the dataset, each a permutation drawn from ``(seed, pass)``
(DINOv2's ``ShardedInfiniteSampler`` idea). Iteration ``t`` consumes the ``global batch`` stream positions
``[t·G, (t+1)·G)`` with ``G = batch_size_per_gpu × world_size × grad_accumulation_steps``; accumulation step
``a`` of rank ``r`` takes ``B`` consecutive positions starting at ``t·G + a·B·world + r·B``. So which image
sits at which stream position, and therefore its augmentation and mask (drawn from the position, see
:mod:`raddino.pretrain.dataset`), do not depend on how many processes share the batch, and resuming at
iteration ``t`` needs only ``t``: the sampler's position saved in checkpoints is the next iteration.

Order rules (``train.shard_order`` for tar shards): ``global`` permutes the whole dataset each pass, the
same order a folder of the same images gets; ``shard`` (``blocks``: the images per shard) permutes the
shards each pass and then the images within each shard, so a pass reads one shard after another, as
WebDataset's streaming readers do (each image still once per pass, and still fixed by the seed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

SampleKey = tuple[int, int]  # (stream position, dataset index)


class StreamSampler(Sampler[list[SampleKey]]):
    """Yields this rank's micro-batches as lists of ``(stream position, dataset index)``.

    Args:
        dataset_size: Images in the dataset.
        batch_size: Images per rank per micro-batch (``train.batch_size_per_gpu``).
        world_size: Processes sharing each batch.
        rank: This process.
        accumulation_steps: Micro-batches per optimiser step.
        seed: Seeds the permutation of every pass.
        start_iteration: First iteration to yield (a resumed run's checkpoint iteration).
        end_iteration: Stop before this iteration; ``None`` yields for ever.
        blocks: Images per shard, in dataset order, for the shard-order rule; ``None``: one global
            permutation per pass.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        accumulation_steps: int = 1,
        seed: int = 0,
        start_iteration: int = 0,
        end_iteration: int | None = None,
        blocks: Sequence[int] | None = None,
    ) -> None:
        if dataset_size < 1:
            raise ValueError("the dataset is empty: nothing to pre-train on")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.accumulation_steps = accumulation_steps
        self.seed = seed
        self.start_iteration = start_iteration
        self.end_iteration = end_iteration
        self._permutations: dict[int, np.ndarray] = {}
        self.blocks = None if blocks is None else np.asarray(blocks, dtype=np.int64)  # (S,)
        if self.blocks is not None and int(self.blocks.sum()) != dataset_size:
            raise ValueError(f"the blocks hold {int(self.blocks.sum())} images, the dataset {dataset_size}")

    @property
    def micro_batch_images(self) -> int:
        """Images in one micro-batch over all ranks (``B × world``)."""
        return self.batch_size * self.world_size

    @property
    def global_batch_images(self) -> int:
        """Images per optimiser step over all ranks and micro-batches."""
        return self.micro_batch_images * self.accumulation_steps

    def _permutation(self, data_pass: int) -> np.ndarray:
        if data_pass not in self._permutations:
            if len(self._permutations) >= 2:  # a batch straddles at most two passes
                self._permutations.pop(min(self._permutations))
            rng = np.random.default_rng([self.seed, data_pass])
            if self.blocks is None:
                self._permutations[data_pass] = rng.permutation(self.dataset_size)
            else:
                self._permutations[data_pass] = self._blockwise(rng, self.blocks)
        return self._permutations[data_pass]

    @staticmethod
    def _blockwise(rng: np.random.Generator, blocks: np.ndarray) -> np.ndarray:
        """The shard-order rule: the blocks in a random order, each block's indices permuted."""
        starts = np.concatenate([[0], np.cumsum(blocks)[:-1]])  # (S,)
        order = rng.permutation(len(blocks))
        return np.concatenate([starts[b] + rng.permutation(blocks[b]) for b in order]).astype(np.int64)

    def index_at(self, position: int) -> int:
        """The dataset index at a stream position."""
        data_pass, offset = divmod(position, self.dataset_size)
        return int(self._permutation(data_pass)[offset])

    def positions(self, iteration: int, micro_step: int = 0) -> list[int]:
        """This rank's stream positions for one micro-batch of one iteration."""
        start = (
            iteration * self.global_batch_images
            + micro_step * self.micro_batch_images
            + self.rank * self.batch_size
        )
        return list(range(start, start + self.batch_size))

    def batch(self, iteration: int, micro_step: int = 0) -> list[SampleKey]:
        """This rank's ``(position, index)`` keys for one micro-batch."""
        return [(position, self.index_at(position)) for position in self.positions(iteration, micro_step)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        iteration = self.start_iteration
        while self.end_iteration is None or iteration < self.end_iteration:
            for micro_step in range(self.accumulation_steps):
                yield self.batch(iteration, micro_step)
            iteration += 1

    def __len__(self) -> int:
        if self.end_iteration is None:
            raise TypeError("an endless stream has no length")
        return max(0, self.end_iteration - self.start_iteration) * self.accumulation_steps

    def state_dict(self, next_iteration: int) -> dict[str, int | str]:
        """What a checkpoint needs to continue the stream where it stopped (``position``: the stream
        position the next iteration starts at; ``order``: the order rule)."""
        return {
            "next_iteration": next_iteration,
            "position": next_iteration * self.global_batch_images,
            "order": "global" if self.blocks is None else "shard",
            "seed": self.seed,
            "dataset_size": self.dataset_size,
            "global_batch_images": self.global_batch_images,
        }
