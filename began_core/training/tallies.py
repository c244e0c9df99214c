"""What a run adds up between two metric records: the step's values summed on the device and
read once per logging interval (`Sums`), and, for distributed runs, each rank's own losses
(`RankLog`, a diagnostic beside the run directory)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..nn.model import BEGAN
from .distributed import Dist


class RankLog:
    """Diagnostics for distributed runs: with BEGAN_RANK_LOG_DIR set, every rank appends its own
    (not averaged) losses per logging interval to rank{r}.jsonl there, then its final k_t, lr
    and a digest of its weights. The run directory itself stays rank 0's alone."""

    def __init__(self, d: Dist) -> None:
        folder = os.environ.get("BEGAN_RANK_LOG_DIR")
        self.path = Path(folder) / f"rank{d.rank}.jsonl" if folder else None
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, local: torch.Tensor) -> None:
        if self.path:
            self.total, self.count = self.total + local.detach().double(), self.count + 1

    def write(self, step: int, k_t: float, lr: float) -> None:
        if self.path and self.count:
            L_x, L_G, L_D = torch.as_tensor(self.total / self.count).tolist()
            self._append({"step": step, "L_x": L_x, "L_G": L_G, "L_D": L_D, "k_t": k_t, "lr": lr})
            self.total, self.count = 0.0, 0

    def final(self, model: BEGAN, k_t: float, lr: float) -> None:
        if self.path:
            digest = hashlib.sha256()
            for name, p in sorted(model.state_dict().items()):
                digest.update(name.encode() + p.detach().cpu().numpy().tobytes())
            self._append({"final": True, "k_t": k_t, "lr": lr, "weights": digest.hexdigest()})

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class Sums:
    """Per-step values summed on the device; read (one host sync) once per logging interval."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.count = device, 0
        self.totals: dict[str, torch.Tensor | float] = {}

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        self.count += 1

    def pop(self) -> dict[str, float]:
        keys = list(self.totals)
        stacked = torch.stack([torch.as_tensor(self.totals[k], device=self.device) for k in keys])
        means = (stacked.double() / max(self.count, 1)).tolist()
        self.totals, self.count = {}, 0
        return dict(zip(keys, means, strict=True))
