"""The learning-rate rule: halve when M_global stalls.

Every `window` steps the mean M_global of that window is compared with the best mean of all
earlier windows. Unless it is lower by more than `tolerance` (relative), the learning rate is
halved, never below `lr_min`. The first window only sets the reference. State is a handful of
numbers, saved with every checkpoint so a resumed run halves at the same steps.

Given tensors (the trainer's M_global and learning rate live on the training device), the rule
never reads a value back to the host: the window's sum accumulates on the device, and the
decision at the end of a window is taken there too (`torch.where`), so that a GPU step needs no
host synchronisation, not even once per window. The tensor decision is the float one, operation
for operation, in float64 (`tests/test_sync_free.py` holds it to the float rule bit for bit); the
host reads the rule's numbers only to save them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


class PlateauHalving:
    def __init__(self, window: int, tolerance: float = 0.0, lr_min: float = 1e-6) -> None:
        self.window, self.tolerance, self.lr_min = window, tolerance, lr_min
        self.best: float | Tensor = math.inf
        self.total: float | Tensor = 0.0
        self.count = 0

    def observe(self, M_global: float | Tensor, lr: float | Tensor) -> float | Tensor:
        """Feed one step's M_global; returns the learning rate for the next step, a tensor on
        the device where `lr` or `M_global` is one (float64), a float otherwise."""
        self.total = self.total + (M_global.detach() if isinstance(M_global, Tensor) else M_global)
        self.count += 1
        if self.count < self.window:
            return lr
        total, count = self.total, self.count
        self.total, self.count = 0.0, 0
        if not isinstance(total, Tensor) and not isinstance(lr, Tensor):
            mean = total / count
            if mean < self.best * (1.0 - self.tolerance):
                self.best = mean
                return lr
            self.best = min(self.best, mean)
            return max(lr * 0.5, self.lr_min)
        device = (total if isinstance(total, Tensor) else lr).device  # type: ignore[union-attr]

        def f64(v: float | Tensor) -> Tensor:  # (a float by a fill, not a host-to-device copy)
            if isinstance(v, Tensor):
                return v.to(torch.float64)
            return torch.full((), v, dtype=torch.float64, device=device)

        # As the float rule, in float64 on the device: Python's min(best, mean) keeps best
        # unless mean < best, and max(half, lr_min) keeps half unless lr_min > half.
        mean_t, best, lr_t = f64(total) / count, f64(self.best), f64(lr)
        better = mean_t < best * (1.0 - self.tolerance)
        self.best = torch.where(better | (mean_t < best), mean_t, best)
        half = lr_t * 0.5
        halved = torch.where(half < self.lr_min, torch.full_like(half, self.lr_min), half)
        return torch.where(better, lr_t, halved)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers (read from the device here, at a checkpoint, not per step)."""
        return {"best": float(self.best), "total": float(self.total), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.total, self.count = (
            float(state["best"]),
            float(state["total"]),
            int(state["count"]),
        )
