"""A cheap score of G during training, against the held-out real images, so that a long run can
keep its best checkpoint apart from its latest.

For a dataset with a shipped classifier (`classifier.find_classifier`) the score is the
classifier Frechet distance, as `evaluate` reports it; for any other data it is the sliced
Wasserstein distance (x1e3, mean of levels), which needs no trained network. Lower is better for
both. With few held-out images (64 by default) the figure is biased upwards against `evaluate`'s
562-image one; it is meant to compare the steps of one run, always from the same z.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..evaluation import metrics
from ..evaluation.classifier import (
    Classifier,
    ClassifierError,
    find_classifier,
    load_classifier,
)
from ..nn.model import BEGAN

N_FAKE = 256  # images generated per score (for SWD: as many as there are real ones)
SCORE_REAL = 1024  # held-out images G's score compares with, at most


class HeldoutScore:
    """`score(model)` -> the run's score of G (lower is better); `name` says which one."""

    def __init__(self, real: Tensor, source: str, seed: int, nz: int) -> None:
        res, channels = real.shape[-1], real.shape[1]
        self.real = real.float().cpu()
        self.classifier: Classifier | None
        try:
            self.classifier = load_classifier(find_classifier(source, res, channels))
        except ClassifierError:
            self.classifier = None
        self.name = "classifier_fd" if self.classifier is not None else "swd"
        n_fake = N_FAKE if self.classifier is not None else len(real)
        g = torch.Generator().manual_seed(seed + 7)
        self.z = torch.rand(n_fake, nz, generator=g) * 2 - 1
        self.seed = seed
        self.f_real = self.classifier.embed(self.real)[0] if self.classifier is not None else None

    @classmethod
    def of_heldout(cls, heldout_set, source: str, seed: int, nz: int) -> HeldoutScore:
        """The score a run keeps: against up to SCORE_REAL of its held-out images, spread."""
        n_real = min(len(heldout_set), SCORE_REAL)
        real = heldout_set.batch(np.linspace(0, len(heldout_set) - 1, n_real).round().astype(int))
        return cls(real, source, seed, nz)

    @torch.no_grad()
    def __call__(self, model: BEGAN) -> float:
        device = next(model.G.parameters()).device
        fake = torch.cat([model.generate(z.to(device)).float().cpu() for z in self.z.split(256)])
        if not torch.isfinite(fake).all():
            return float("inf")
        if self.classifier is not None:
            return metrics.frechet_distance(self.f_real, self.classifier.embed(fake)[0])
        return float(metrics.sliced_wasserstein(self.real, fake, seed=self.seed)["mean"])
