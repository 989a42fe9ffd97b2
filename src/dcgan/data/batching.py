"""Batching: uint8 batches on the training device, in an order that is a pure function of (seed, epoch).

Resuming, or changing the number of distributed ranks, replays exactly the same order. In-memory
images are batched by index (no per-sample work); other datasets stream through a DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .datasets import InMemoryImages


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of one epoch: a pure function of (seed, epoch).

    Drawn on the CPU so that the order is the same on every device and after
    resuming on another one; one randperm per epoch costs nothing.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_images, generator=generator)


class Batches:
    """Yields uint8 batches [B, C, S, S] on ``device`` for one epoch, from any position.

    Under distributed training each rank takes a disjoint, strided shard of the
    epoch's order; ``batch_size`` is per rank. Incomplete batches are dropped so
    that every rank runs the same number of steps and batch norm never sees a
    batch of one. With ``labels`` each batch is (images, labels [B]).
    """

    def __init__(
        self,
        data: InMemoryImages | Dataset,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 2,
        labels: bool = False,
    ) -> None:
        per_rank = len(data) // world_size
        if batch_size > per_rank:
            raise UserError(
                f"batch size {batch_size} is larger than the dataset "
                f"({len(data)} images{f' over {world_size} ranks' if world_size > 1 else ''})"
            )
        self.data, self.batch_size, self.seed, self.device = data, batch_size, seed, device
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.steps_per_epoch = per_rank // batch_size
        self.labels = labels
        if isinstance(data, InMemoryImages):
            if labels and data.labels is None:
                raise UserError("these images have no class labels")
            if data.images.device != device:
                self.data = data.to(device)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        order = epoch_order(len(self.data), self.seed, epoch)
        order = order[self.rank :: self.world_size][: self.steps_per_epoch * self.batch_size]
        order = order[start_step * self.batch_size :]
        if len(order) == 0:  # resumed at the end of the epoch; split() would yield one empty batch
            return
        if isinstance(self.data, InMemoryImages):
            order = order.to(self.device, non_blocking=True)
            for batch_indices in order.split(self.batch_size):
                images = self.data.images.index_select(0, batch_indices)
                yield (images, self.data.labels.index_select(0, batch_indices)) if self.labels else images
            return
        loader = DataLoader(
            self.data,
            batch_size=self.batch_size,
            sampler=order.tolist(),
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for batch in loader:
            if self.labels:
                yield batch[0].to(self.device, non_blocking=True), batch[1].to(self.device, non_blocking=True)
            else:
                yield batch.to(self.device, non_blocking=True)
