"""The memorisation signal: real images that D never trains on.

M_global falls whenever D reconstructs the training images better, also when it does so by
memorising them, so it cannot tell learning from memorising. Images held out of training can:
D's reconstruction loss on them, L(x_held-out), against the same measure on as many training
images, L(x_train), opens a gap when D starts to recall its training set rather than to model
faces. The split is a pure function of the seed, so a resumed run holds out the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..config import ConfigError
from ..data.dataset import ImageDataset
from ..equilibrium import ae_loss
from ..nn.model import BEGAN

MIN_HELDOUT = 64  # fewer images make the signal too noisy to act on
PROBE = 256  # images of each set in one measurement of the gap, at most


def heldout_count(n: int, share: float) -> int:
    """How many of n images a share holds out: at least MIN_HELDOUT, 0 for a share of 0."""
    return 0 if share <= 0 else max(MIN_HELDOUT, round(share * n))


def split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) of range(n), each sorted; a pure function of
    (n, share, seed)."""
    k = heldout_count(n, share)
    if k and n - k < max(k, 16):
        raise ConfigError(
            f"holding out {k} of {n} images leaves too few to train on; lower --heldout "
            f"(now {share}) or use a larger dataset (at least {2 * k} images)."
        )
    order = np.random.default_rng([int(seed), 0x4E1D]).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def split_dataset(
    dataset: ImageDataset, share: float, seed: int
) -> tuple[ImageDataset | Subset, Subset | None]:
    """(what D trains on, the held-out images or None) of a dataset, as a run splits it."""
    if share <= 0:
        return dataset, None
    train_idx, held_idx = split(len(dataset), share, seed)
    return Subset(dataset, train_idx, "training images"), Subset(
        dataset, held_idx, "held-out images"
    )


class Subset:
    """The images at `indices` of a dataset, with the dataset's interface (len, batch, uint8,
    resolution, channels, labels), so that Batches draws only from them."""

    def __init__(self, dataset, indices: Sequence[int] | np.ndarray, what: str) -> None:
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)
        self.resolution, self.channels = dataset.resolution, dataset.channels
        self.skipped = getattr(dataset, "skipped", 0)
        self.description = f"{what} of {getattr(dataset, 'description', 'a dataset')}"
        labels = getattr(dataset, "labels", None)
        self.labels = None if labels is None else labels[self.indices]
        self.class_names = getattr(dataset, "class_names", None)

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, indices: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        if isinstance(indices, Tensor):
            indices = indices.detach().cpu().numpy()
        return self.dataset.batch(self.indices[np.asarray(indices, dtype=np.int64)])

    def uint8(self) -> np.ndarray:
        return np.asarray(self.dataset.uint8()[self.indices])


class Memorisation:
    """Measures L(x_held-out) and L(x_train) on fixed image sets of equal size, clean (no
    augmentation), with D in its training precision; the gap between them is the signal."""

    def __init__(self, train, heldout, device: torch.device, eta: int) -> None:
        n = min(len(heldout), PROBE)

        def spread(size: int) -> np.ndarray:  # n fixed indices spread over the set
            return np.linspace(0, size - 1, n).round().astype(np.int64)

        self.x_heldout = heldout.batch(spread(len(heldout))).to(device)
        self.x_train = train.batch(spread(len(train))).to(device)
        self.eta = eta

    @torch.no_grad()
    def __call__(self, model: BEGAN, amp: bool = False) -> dict[str, float]:
        device = self.x_heldout.device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
        with autocast:
            L = [ae_loss(x, model.D(x), self.eta).mean() for x in (self.x_heldout, self.x_train)]
        L_heldout, L_train = torch.stack(L).tolist()
        return {"L_heldout": L_heldout, "L_train": L_train, "heldout_gap": L_heldout - L_train}
