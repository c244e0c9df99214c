"""A small CNN classifier the project trains itself: the feature space of the offline metrics.

Inception weights cannot be downloaded here, so `evaluate` measures generated images in the
feature space of a classifier trained on the labelled built-in dataset at the model's
resolution (`scripts/train_classifier.py` trains one; the package ships them in `assets/classifiers/`, so an installed wheel evaluates too).
Its pooled penultimate activations give the Frechet distance and the diversity; its
predictions give class coverage and the KL divergence of the class histogram.

Architecture: per stage two conv3x3 + BatchNorm + ReLU, then 2x2 max-pooling; widths w, 2w,
4w (then 4w again) down to 4x4; global average pooling to 4w features; dropout; a linear
layer to the classes. Saved as `config.json` + `model.safetensors`, never pickles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from ..checkpoints.weights_file import save_weights
from ..data.sources import ImageDataset

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CLASSIFIERS_ENV = "BEGAN_CLASSIFIERS"  # folder of <dataset>-<resolution>/ classifiers
SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "classifiers"
FASHION_MNIST_TRAIN = 60_000  # open_dataset("fashion-mnist") holds train then test
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
# Zero-width joiner, variation selector and gender signs; man / woman / person are one concept.
GENDER_PARTS = {"200d", "fe0f", "2640", "2642"}
PERSON_PARTS = {"1f468", "1f469", "1f9d1"}


class ClassifierError(ValueError):
    """No usable classifier; the message says which one is missing and how to train it."""


@dataclass(frozen=True)
class ClassifierConfig:
    dataset: str  # the built-in dataset it was trained on
    resolution: int
    channels: int
    class_names: tuple[str, ...]
    width: int = 32  # w: filters of the first stage
    dropout: float = 0.3
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # accuracy, split, training

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_stages(self) -> int:
        """Stages of two convolutions and a 2x2 pooling, down to 4x4: 32 -> 3, 64 -> 4."""
        return max(1, int(math.log2(self.resolution // 4)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["class_names"] = tuple(values.get("class_names", ()))
        return cls(**values)


class Classifier(nn.Module):
    """Images (N, C, R, R) in [-1, 1] -> logits (N, K); `features` gives (N, 4w)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w, layers, c_in = config.width, [], config.channels
        for i in range(config.num_stages):
            c_out = w * min(2**i, 4)
            for j in range(2):
                layers += [
                    nn.Conv2d(c_in if j == 0 else c_out, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
            layers.append(nn.MaxPool2d(2))  # (N, c_out, R / 2^(i+1), ...)
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.num_features = c_in  # torchmetrics' feature-extractor convention
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(c_in, config.num_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))  # (N, 4w), global average pooling

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def check_input(self, x: Tensor) -> None:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.channels, c.resolution, c.resolution):
            raise ClassifierError(
                f"the {c.dataset} classifier takes ({c.channels}, {c.resolution}, {c.resolution}) "
                f"images, got {tuple(x.shape[1:])}"
            )

    @torch.inference_mode()
    def embed(self, x: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """(features (N, 4w), logits (N, K)) in eval mode, in batches, on CPU."""
        self.check_input(x)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        feats, logits = [], []
        for chunk in x.split(batch_size):
            f = self.features(chunk.to(device, torch.float32))
            feats.append(f.cpu())
            logits.append(self.head(f).cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(logits)


# --------------------------------------------------------------------------- save / load


def save_classifier(
    model: Classifier, directory: str | os.PathLike, dtype: torch.dtype = torch.float16
) -> Path:
    """config.json + model.safetensors; floating tensors stored as `dtype` (float16 halves the
    file and changes no prediction that matters; loading computes in float32)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_weights(state, directory / WEIGHTS)
    text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    (directory / CONFIG).write_text(text, encoding="utf-8")
    return directory


def load_classifier(directory: str | os.PathLike, device: str = "cpu") -> Classifier:
    directory = Path(directory)
    try:
        config = ClassifierConfig.from_dict(
            json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        )
        state = load_file(str(directory / WEIGHTS))
    except FileNotFoundError as e:
        raise ClassifierError(
            f"{directory} is not a classifier folder ({CONFIG} and {WEIGHTS})"
        ) from e
    except (ValueError, TypeError, OSError) as e:
        raise ClassifierError(f"cannot read the classifier in {directory}: {e}") from e
    model = Classifier(config)
    model.load_state_dict(state)
    return model.to(device).eval()


def classifier_dirs() -> list[Path]:
    """Where classifiers are looked for: $BEGAN_CLASSIFIERS, then the ones the package ships."""
    env = os.environ.get(CLASSIFIERS_ENV)
    return [Path(env).expanduser(), SHIPPED] if env else [SHIPPED]


def classifier_name(dataset: str, resolution: int) -> str:
    return f"{dataset}-{resolution}"


def find_classifier(dataset: str, resolution: int, channels: int) -> Path:
    """The classifier folder for a built-in dataset at a resolution, or a ClassifierError
    that lists the available ones and the command that trains the missing one."""
    name = classifier_name(str(dataset).lower(), resolution)
    for root in classifier_dirs():
        path = root / name
        if (path / CONFIG).is_file():
            stored = json.loads((path / CONFIG).read_text(encoding="utf-8"))
            if stored.get("channels") != channels:
                raise ClassifierError(
                    f"the classifier {path} takes {stored.get('channels')}-channel images, but "
                    f"the model makes {channels}-channel ones"
                )
            return path
    available = sorted(
        p.name for root in classifier_dirs() if root.is_dir() for p in root.iterdir()
    )
    raise ClassifierError(
        f"no classifier for dataset {dataset!r} at {resolution}x{resolution} (looked for "
        f"{name}/ in {', '.join(str(r) for r in classifier_dirs())}; available: "
        f"{', '.join(available) or 'none'}). Train one with `python scripts/train_classifier.py "
        f"--data {dataset} --resolution {resolution}`, or set {CLASSIFIERS_ENV} to a folder "
        f"holding {name}/."
    )


# --------------------------------------------------------------------------- data splits


def fluent_concept(code: str) -> str:
    """An emoji code without skin tone and gender: '1f469-1f3fd-200d-1f373' -> 'P-1f373'.
    The five skin tones and the man / woman / person forms of one emoji are one drawing
    recoloured or restyled, so they must fall on the same side of a held-out split."""
    parts = [p for p in code.lower().split("-") if p not in SKIN_TONES | GENDER_PARTS]
    return "-".join("P" if p in PERSON_PARTS else p for p in parts)


def split_indices(
    dataset: str, ds: ImageDataset, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, test indices, description) of the held-out split a classifier uses.

    - fashion-mnist: the official 60,000 / 10,000 split.
    - fluent-faces: whole emoji concepts are held out (all skin tones and genders of one
      emoji together), about `test_fraction` of each class's concepts, at least one kept for
      training; so test accuracy measures new drawings, not recoloured training images.
    - anything else labelled: a stratified random split.
    """
    if ds.labels is None:
        raise ClassifierError(f"{dataset} has no labels, so no classifier can be trained on it")
    labels = ds.labels
    n = len(labels)
    if dataset == "fashion-mnist" and n == FASHION_MNIST_TRAIN + 10_000:
        idx = np.arange(n)
        return idx[:FASHION_MNIST_TRAIN], idx[FASHION_MNIST_TRAIN:], "official train / test split"
    rng = np.random.default_rng(seed)
    groups = np.arange(n)
    how = "stratified random split"
    if dataset == "fluent-faces":
        from ..data.builtin_data import fluent_index

        codes = fluent_index()["faces"]
        if len(codes) != n:
            raise ClassifierError("open fluent-faces without max_images to split it by concept")
        names = sorted({fluent_concept(c) for c in codes})
        lookup = {c: i for i, c in enumerate(names)}
        groups = np.array([lookup[fluent_concept(c)] for c in codes])
        how = "held-out emoji concepts (skin tones and genders of one emoji kept together)"
    test = np.zeros(n, dtype=bool)
    for c in np.unique(labels):
        g = np.unique(groups[labels == c])
        k = min(len(g) - 1, round(test_fraction * len(g)))
        test[np.isin(groups, rng.permutation(g)[:k]) & (labels == c)] = True
    idx = np.arange(n)
    return idx[~test], idx[test], f"{how}, {100 * test_fraction:.0f}% of each class, seed {seed}"


# --------------------------------------------------------------------------- training


def augment(x: Tensor, generator: torch.Generator, strength: float) -> Tensor:
    """Random horizontal flips, shifts up to 1/8 of the side, +-10% zoom (border pixels
    repeated, which is the background of both datasets) and, at strength > 0.5,
    brightness / contrast jitter."""
    n = len(x)
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    scale = 1 + strength * 0.2 * (torch.rand(n, generator=generator) - 0.5)
    shift = strength * 0.5 * (torch.rand(n, 2, generator=generator) - 0.5)  # 1/8 of the side
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if strength > 0.5:
        contrast = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
        bright = 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean + bright).clamp(-1, 1)
    return x


def _labels(ds: ImageDataset) -> np.ndarray:
    if ds.labels is None:
        raise ClassifierError(
            f"{ds.source!r} has no class labels: a classifier trains on a labelled dataset "
            "(a built-in one, or a folder with one sub-folder per class)."
        )
    return ds.labels


@torch.inference_mode()
def accuracy_report(model: Classifier, ds: ImageDataset, idx: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean recall over the classes present) on `idx`."""
    labels = _labels(ds)
    _, logits = model.embed(ds.batch(idx))
    pred, true = logits.argmax(1).numpy(), labels[idx]
    recalls = [float((pred[true == c] == c).mean()) for c in np.unique(true)]
    return {"accuracy": float((pred == true).mean()), "balanced_accuracy": float(np.mean(recalls))}


def train_classifier(
    ds: ImageDataset,
    dataset: str,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    epochs: int,
    width: int = 32,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    augment_strength: float = 1.0,
    balance: float = 0.5,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Classifier:
    """Train on `train_idx`: AdamW, one-cycle learning rate, label smoothing, augmentation,
    and class weights n_c^-balance (0: none, 1: inverse frequency) against imbalance. Seeded;
    on one machine with one thread count the result is the same every time."""
    y = _labels(ds)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = ClassifierConfig(
        dataset=dataset,
        resolution=ds.resolution,
        channels=ds.channels,
        class_names=tuple(ds.class_names or [str(i) for i in range(int(y.max()) + 1)]),
        width=width,
    )
    model = Classifier(config)
    counts = np.bincount(y[train_idx], minlength=config.num_classes).astype(np.float64)
    weights = torch.tensor(np.where(counts > 0, np.maximum(counts, 1) ** -balance, 0.0))
    weights = (weights / (weights * torch.tensor(counts)).sum() * counts.sum()).float()
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    labels = torch.from_numpy(y)
    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        total = 0.0
        for batch in order.split(batch_size):
            x = augment(ds.batch(batch), generator, augment_strength)
            loss = F.cross_entropy(
                model(x), labels[batch], weight=weights, label_smoothing=label_smoothing
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
        line = f"epoch {epoch}/{epochs} loss {total / len(train_idx):.4f}"
        if epoch == epochs or epoch % max(1, epochs // 5) == 0:
            acc = accuracy_report(model, ds, test_idx)
            line += f" test accuracy {acc['accuracy']:.3f} balanced {acc['balanced_accuracy']:.3f}"
        log(f"{line} ({time.time() - start:.0f} s)")
    return model.eval()
