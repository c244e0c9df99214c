"""The learning-rate rule: halve when M_global stalls.

Every `window` steps the mean M_global of that window is compared with the best mean of all
earlier windows. Unless it is lower by more than `tolerance` (relative), the learning rate is
halved, never below `lr_min`. The first window only sets the reference. State is a handful of
numbers, saved with every checkpoint so a resumed run halves at the same steps.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor


class PlateauHalving:
    def __init__(self, window: int, tolerance: float = 0.0, lr_min: float = 1e-6) -> None:
        self.window, self.tolerance, self.lr_min = window, tolerance, lr_min
        self.best = math.inf
        self.total: float | Tensor = 0.0
        self.count = 0

    def observe(self, M_global: float | Tensor, lr: float) -> float:
        """Feed one step's M_global; returns the learning rate for the next step.

        A tensor is accumulated on its device and read once per window, not once per step.
        """
        self.total = self.total + (M_global.detach() if isinstance(M_global, Tensor) else M_global)
        self.count += 1
        if self.count < self.window:
            return lr
        mean = float(self.total) / self.count
        self.total, self.count = 0.0, 0
        if mean < self.best * (1.0 - self.tolerance):
            self.best = mean
            return lr
        self.best = min(self.best, mean)
        return max(lr * 0.5, self.lr_min)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "total": float(self.total), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.total, self.count = (
            float(state["best"]),
            float(state["total"]),
            int(state["count"]),
        )
