"""2-D data for the classroom: the mixtures the mode-collapse literature uses, two curves, and
points from a CSV; and mode coverage as PacGAN and VEEGAN count it.

Coordinates are the data's own (the ring has radius 2). The model works in a normalised
frame, `(p - center) / scale`, so every dataset fills the same square.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import torch
from torch import Tensor

DATASETS = {  # name -> one line for the page
    "ring": "A ring of 8 Gaussians, radius 2, σ = 0.02 (the mode-collapse benchmark).",
    "grid": "A 5×5 grid of 25 Gaussians, 2 apart, σ = 0.05 (the harder benchmark).",
    "moons": "Two interleaved half circles, noise 0.05: a curve, not modes.",
    "spiral": "One arm of a spiral, noise 0.05: a long thin curve.",
    "csv": "Your points: a CSV with two numeric columns (x, y), up to 100,000 rows.",
}
COVERAGE_SAMPLES = 2500  # PacGAN / VEEGAN
MAX_CSV_ROWS = 100_000


@dataclass(frozen=True)
class Points:
    """A 2-D distribution: draws samples; `modes` and `sigma` when it is a mixture."""

    name: str
    center: tuple[float, float]
    scale: float
    modes: Tensor | None = None  # (M, 2), data coordinates
    sigma: float = 0.0
    table: Tensor | None = None  # (N, 2) rows of a CSV, drawn with replacement
    noise: float = 0.0

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n points in data coordinates, (n, 2)."""
        if self.table is not None:
            return self.table[torch.randint(len(self.table), (n,), generator=generator)]
        if self.modes is not None:
            which = torch.randint(len(self.modes), (n,), generator=generator)
            return self.modes[which] + self.sigma * torch.randn(n, 2, generator=generator)
        t = torch.rand(n, generator=generator)
        if self.name == "moons":  # scikit-learn's make_moons
            upper = torch.rand(n, generator=generator) < 0.5
            angle = math.pi * t
            x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
            y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
            p = torch.stack([x, y], 1)
        else:  # spiral: r grows with the angle, 1.75 turns
            angle = 3.5 * math.pi * t.sqrt()
            r = angle / (3.5 * math.pi) * 2
            p = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
        return p + self.noise * torch.randn(n, 2, generator=generator)

    def normalise(self, p: Tensor) -> Tensor:
        return (p - torch.tensor(self.center)) / self.scale

    def denormalise(self, p: Tensor) -> Tensor:
        return p * self.scale + torch.tensor(self.center)


def make(name: str, table: Tensor | None = None) -> Points:
    """One of DATASETS; "csv" needs `table` (see read_csv)."""
    if name == "ring":
        angle = torch.arange(8) * (2 * math.pi / 8)
        modes = 2 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
        return Points(name, (0.0, 0.0), 2.5, modes=modes, sigma=0.02)
    if name == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        modes = torch.cartesian_prod(axis, axis)
        return Points(name, (0.0, 0.0), 5.0, modes=modes, sigma=0.05)
    if name == "moons":
        return Points(name, (0.5, 0.25), 1.7, noise=0.05)
    if name == "spiral":
        return Points(name, (0.0, 0.0), 2.5, noise=0.05)
    if name == "csv":
        if table is None or len(table) < 2:
            raise ValueError("the csv dataset needs at least 2 points")
        center = table.mean(0)
        scale = 1.25 * float((table - center).abs().max().clamp_min(1e-6))
        return Points(name, (float(center[0]), float(center[1])), scale, table=table)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def read_csv(data: bytes | str) -> Tensor:
    """The first two numeric columns of a CSV (a header row is skipped), as (N, 2) float32."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    rows = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 2:
            continue
        try:
            x, y = float(row[0]), float(row[1])
        except ValueError:
            continue  # a header, or a comment
        if math.isfinite(x) and math.isfinite(y):
            rows.append((x, y))
        if len(rows) >= MAX_CSV_ROWS:
            break
    if len(rows) < 2:
        raise ValueError("the CSV needs at least 2 rows of two numbers (x, y)")
    return torch.tensor(rows, dtype=torch.float32)


@dataclass(frozen=True)
class Coverage:
    """Modes with at least one high-quality sample, and the share of high-quality samples:
    a sample is high quality if it lies within 3 sigma of its nearest mode."""

    modes_covered: int
    modes: int
    high_quality: float
    per_mode: tuple[int, ...]  # high-quality samples per mode


def coverage(samples: Tensor, points: Points) -> Coverage | None:
    """Mode coverage of generated samples (data coordinates); None for data without modes."""
    if points.modes is None:
        return None
    distance = torch.cdist(samples.float(), points.modes)  # (N, M)
    nearest, which = distance.min(1)
    good = nearest <= 3 * points.sigma
    per_mode = torch.bincount(which[good], minlength=len(points.modes))
    return Coverage(
        modes_covered=int((per_mode > 0).sum()),
        modes=len(points.modes),
        high_quality=float(good.float().mean()) if len(samples) else 0.0,
        per_mode=tuple(int(c) for c in per_mode),
    )
