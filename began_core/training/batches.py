"""Which images make batch t: a pure function of (seed, t), so that resume and any number of
processes see the same data with no sampler state to save."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import ConfigError
from ..data.dataset import ImageDataset
from .distributed import Dist

if TYPE_CHECKING:
    from .heldout import Subset


class Batches:
    """Batch number t -> this rank's images, a pure function of (seed, t).

    Each epoch is a fresh permutation seeded by (seed, epoch); the global batch t is the same
    images whatever the number of processes, and rank r takes its r-th slice. With `hflip`,
    which images of the global batch are mirrored is drawn from (seed, t) as well. So a
    resumed run, even with another number of processes, sees the same data, with no sampler
    state to save.
    """

    # A dataset up to this size is copied to the GPU once: no host-to-device copy per step.
    DEVICE_BYTES = 2 << 30

    def __init__(
        self,
        dataset: ImageDataset | Subset,
        batch_size: int,
        seed: int,
        d: Dist | None = None,
        device: torch.device | None = None,
        hflip: bool = False,
    ) -> None:
        d = d or Dist()
        self.hflip = hflip
        if len(dataset) < batch_size:
            raise ConfigError(
                f"the dataset has {len(dataset)} images, fewer than the batch size {batch_size}; "
                "add images or lower --batch-size."
            )
        if batch_size % d.world:
            raise ConfigError(
                f"the batch size {batch_size} (global, over all processes) does not split evenly "
                f"over {d.world} processes; use a multiple of {d.world}."
            )
        self.dataset, self.B, self.seed = dataset, batch_size, seed
        self.local = batch_size // d.world
        self.offset = d.rank * self.local
        self.per_epoch = len(dataset) // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)
        self.on_device = None
        uint8 = getattr(dataset, "uint8", None)
        if device is not None and device.type == "cuda" and uint8 is not None:
            array = uint8()
            if array.nbytes <= self.DEVICE_BYTES:
                self.on_device = torch.from_numpy(array.copy()).to(device)

    def __call__(self, t: int) -> torch.Tensor:
        epoch, i = divmod(t, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.dataset), generator=g)
            if self.on_device is not None:
                self._perm = self._perm.to(self.on_device.device)
        index = self._perm[i * self.B + self.offset :][: self.local]
        if self.on_device is not None:  # same images, same [-1, 1] scaling as dataset.batch
            x = self.on_device[index].float().div_(127.5).sub_(1.0)
        else:
            x = self.dataset.batch(index)
        if self.hflip:
            # Its own stream, keyed by (seed, t): torch's CPU generator keeps only 32 bits of a
            # seed, so an offset seed could meet the permutations' seeds.
            draw = np.random.default_rng([self.seed, t, 0x6F1F]).random(self.B) < 0.5
            mirror = torch.from_numpy(draw[self.offset :][: self.local]).to(x.device)
            x[mirror] = x[mirror].flip(-1)
        return x
