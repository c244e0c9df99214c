"""The explorer's model side: the checkpoints it offers, the models it has loaded, and one
method per thing the page shows, returning uint8 images. No Gradio here: `app/explorer.py`
lays out the page and wires these methods to it. Sampling, interpolation, directions,
inversion and the gamma comparison themselves live in `began_core.explore.latent`
and `began_core.explore.inversion`; upload checks in `began_core.data.images`.

Every number a request brings (from the page or straight over HTTP) is checked here, by
`_number`, `_bounded` and `_seed`, before any work: NaN and infinities are refused with a message
that names them (a NaN z slider once came back as an all-black picture, as a success), and
seeds take the library's one range (`config.SEED_MAX`).
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app import settings
from began_core.checkpoints import generators
from began_core.checkpoints.hub import (
    HUB_ID,
    WEIGHTS,
    CheckpointError,
    find_checkpoints,
    load,
)
from began_core.config import SEED_MAX, TrainConfig, check_seed
from began_core.data import images
from began_core.data.images import make_grid, to_uint8, upscale
from began_core.data.sources import DatasetError, ImageDataset, open_dataset, subset_indices
from began_core.evaluation import metrics
from began_core.explore import inversion, latent
from began_core.nn.model import BEGAN
from began_core.runs.run_dir import list_runs

DISPLAY = 256  # the main image is upscaled (nearest neighbour) to about this many pixels
FRAME = 96  # frames of strips and grids to about this many
Z_SLIDERS = 8  # sliders for the first z dimensions
PC_SLIDERS = 8  # sliders for principal directions
PC_RANGE = 3.0  # a PCA slider moves z this far along its unit direction, either way
GALLERY_IMAGES = 24  # dataset images offered for inversion
MAX_SAMPLES, MAX_FRAMES, MAX_ITERATIONS, MAX_RESTARTS = 64, 16, 1000, 16  # what a request may ask
_HUB_ID = HUB_ID  # user/repo, or user/repo@revision
# G's largest activation is (batch, n, R, R). A request may make it at most this many values:
# twice what a shipped generator (64x64, n=32) needs for MAX_SAMPLES, i.e. a 64x64 n=64
# model at 64 samples (67 MB in float32); a larger model serves fewer samples per request.
MAX_ACTIVATION = 8 * MAX_SAMPLES * 32 * 32 * 32
GENERATOR = "#"  # key#G or key#G_ema: that generator of a checkpoint holding both (ema.py)


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint the explorer offers: `key` is what the list shows and the API takes."""

    key: str
    path: Path
    gamma: float | None
    data: str | None  # the dataset it was trained on, when known
    generators: tuple[str, ...] = ("G",)  # the one the checkpoint names for use first

    @property
    def label(self) -> str:
        label = self.key if self.gamma is None else f"{self.key}  (gamma {self.gamma:g})"
        return label if len(self.generators) == 1 else f"{label} · {self.generators[0]}"

    def entries(self) -> list[tuple[str, str]]:
        """(label, key) list entries: the checkpoint with the generator it names, then its
        other generator (G or G_ema) as a key of its own."""
        base = self.label.rpartition(" · ")[0]
        rest = [(f"{base} · {g}", self.key + GENERATOR + g) for g in self.generators[1:]]
        return [(self.label, self.key), *rest]


def discover(pretrained_dir: Path, runs_dir: Path) -> list[Checkpoint]:
    """The loadable checkpoints under `pretrained_dir` (hub.find_checkpoints, the Runs page's
    rule too, with their weights present), then the latest checkpoint of each run under
    `runs_dir`, newest run first."""
    found: list[Checkpoint] = []
    for folder in find_checkpoints(pretrained_dir):
        if not (folder / WEIGHTS).is_file():
            continue
        rel = folder.relative_to(pretrained_dir)
        key = f"pretrained/{rel.as_posix()}" if rel.parts else "pretrained"
        found.append(
            Checkpoint(key, folder, *latent.read_origin(folder), generators.offered(folder))
        )
    for run in list_runs(runs_dir):
        latest = run.latest_checkpoint()
        if latest is None or not (latest / WEIGHTS).is_file():
            continue
        step = int(latest.name.split("_")[-1]) if latest.name.startswith("step_") else 0
        key = f"runs/{run.name} @ step {step}"
        found.append(
            Checkpoint(key, latest, *latent.read_origin(latest), generators.offered(latest))
        )
    return found


# --------------------------------------------------------------------------- the model side


def _picture(x: Tensor, size: int = DISPLAY) -> np.ndarray:
    """One image (C, R, R) in [-1, 1] -> uint8 (H, W[, 3]) upscaled to about `size` pixels."""
    a = to_uint8(x[None])[0]
    a = a[..., 0] if a.shape[-1] == 1 else a
    return upscale(a, max(1, size // x.shape[-1]))


def _strip(x: Tensor, nrow: int | None = None, size: int = FRAME) -> np.ndarray:
    """A grid of images (B, C, R, R) as uint8, each frame upscaled to about `size` pixels."""
    a = np.asarray(make_grid(x, nrow=nrow))
    return upscale(a, max(1, size // x.shape[-1]))


class Explorer:
    """Loaded checkpoints and one method per thing the app shows (uint8 images out).

    Models are cached (least recently used go first) and shared by all sessions; torch runs
    under `torch.inference_mode()` except for inversion, which needs gradients on z."""

    def __init__(
        self,
        pretrained_dir: str | os.PathLike | None = None,
        runs_dir: str | os.PathLike | None = None,
        *,
        allow_hub: bool = True,
        device: str = "cpu",
        cache_size: int = 6,
    ) -> None:
        cfg = settings.load()
        self.pretrained_dir = Path(pretrained_dir) if pretrained_dir else cfg.pretrained_dir
        self.runs_dir = Path(runs_dir) if runs_dir else cfg.runs_dir
        self.allow_hub, self.device, self.cache_size = allow_hub, device, cache_size
        self.hub_models = cfg.hub_models if allow_hub else ()
        self._models: OrderedDict[tuple, BEGAN] = OrderedDict()
        self._datasets: dict[tuple, ImageDataset] = {}
        self._lock = threading.RLock()
        self._checkpoints: dict[str, Checkpoint] = {}
        self._hub: dict[str, Checkpoint] = {}  # Hub ids loaded so far, with their origin
        self.refresh()

    # Checkpoints.
    def refresh(self) -> list[Checkpoint]:
        found = discover(self.pretrained_dir, self.runs_dir)
        with self._lock:
            self._checkpoints = {c.key: c for c in found}
        return found

    def choices(self) -> list[tuple[str, str]]:
        """Local checkpoints, then the Hub ids of BEGAN_HUB_MODELS (a Space's `models:`),
        loaded when chosen."""
        local = [entry for c in self._checkpoints.values() for entry in c.entries()]
        return local + [(f"{m} (Hub)", m) for m in self.hub_models if m not in self._hub]

    def hub_choices(self) -> list[tuple[str, str]]:
        """The Hub ids loaded so far, as list entries (they stay in the lists on refresh)."""
        return [(c.label, c.key) for c in self._hub.values() if c.key not in self._checkpoints]

    def default_choice(self) -> str | None:
        """The checkpoint shown first: one trained at the paper's default gamma (0.5) if
        there is one, else the first in the list."""
        keys = [c.key for c in self._checkpoints.values()]
        at_default = [c.key for c in self._checkpoints.values() if c.gamma == TrainConfig.gamma]
        return (at_default or keys or [None])[0]

    def model(self, key: str | None) -> BEGAN:
        """The model behind a list key or a Hub repo id, loaded once, generating with the
        generator the key names (key#G, key#G_ema) or else the one the checkpoint names."""
        key, _, which = (key or "").partition(GENERATOR)
        if not key:
            raise CheckpointError(
                "no checkpoint chosen: pick one from the list, or type a Hub repo id and press "
                f"Load. (Looked in {self.pretrained_dir.name}/ and {self.runs_dir.name}/.)"
            )
        ckpt = self._checkpoints.get(key)
        if ckpt is None:
            self.refresh()  # a run may have written a newer checkpoint
            ckpt = self._checkpoints.get(key) or next(
                (c for c in self._checkpoints.values() if _same_run(c.key, key)), None
            )
        if ckpt is not None:
            source: str | Path = ckpt.path
            try:
                cache_key: tuple = (str(ckpt.path), (ckpt.path / WEIGHTS).stat().st_mtime_ns)
            except OSError:  # a run keeps only its latest checkpoints
                raise CheckpointError(
                    f"{key} is gone (a run keeps only its latest checkpoints): refresh the list."
                ) from None
        elif self.allow_hub and _HUB_ID.fullmatch(key):
            source, cache_key = key, ("hub", key)
        else:
            raise CheckpointError(
                f"unknown checkpoint {key!r}: pick one from the list"
                + (", or type a Hub repo id such as 'user/began-faces'." if self.allow_hub else ".")
            )
        cache_key += (which or "auto",)
        with self._lock:
            if cache_key in self._models:
                self._models.move_to_end(cache_key)
                return self._models[cache_key]
            try:
                # Never as inference tensors, even when a handler under inference_mode asks
                # first: inversion differentiates through G, and PCA reads weight versions.
                with torch.inference_mode(False):
                    # A typed Hub id never reaches a local folder of the same name.
                    model = load(source, device=self.device, allow_local=ckpt is not None)
                    model = generators.select(model, which or "auto")
            except CheckpointError as e:  # name the folder as the list does, not by its path
                message = str(e).replace(str(source), key) if ckpt else str(e)
                raise CheckpointError(message) from None
            self._models[cache_key] = model
            folder = getattr(model, "folder", None)  # the Hub cache's snapshot folder
            if ckpt is None and folder is not None:
                self._hub[key] = Checkpoint(key, folder, *latent.read_origin(folder))
            while len(self._models) > self.cache_size:
                self._models.popitem(last=False)
            return model

    def _info(self, key: str) -> Checkpoint | None:
        """What is known of a checkpoint in the list or a Hub id loaded (gamma, data)."""
        key = key.partition(GENERATOR)[0]
        return self._checkpoints.get(key) or self._hub.get(key)

    def describe(self, key: str) -> str:
        model = self.model(key)
        c, ckpt = model.config, self._info(key)
        parts = [
            f"**{key}**: {c.resolution}x{c.resolution} {'RGB' if c.channels == 3 else 'greyscale'}",
            f"n={c.n}, Nz={c.Nz}",
        ]
        if ckpt and ckpt.gamma is not None:
            parts.append(f"gamma {ckpt.gamma:g}")
        if ckpt and ckpt.data:
            parts.append(f"trained on `{ckpt.data}`")
        if model.G_ema is not None:
            parts.append(f"generating with {model.generator} (it has G and G_ema)")
        if not model.has_discriminator:
            parts.append("generator only")
        return ", ".join(parts)

    # Latent sliders.
    def slider_z(self, key: str, seed: int) -> list[float]:
        """The first z dimensions of a seed's z, rounded as the sliders hold them."""
        z = latent.z_from_seeds(self.model(key), _seed(seed))[0]
        return [round(float(v), 2) for v in z[:Z_SLIDERS]]

    def directions(self, key: str) -> latent.Directions:
        return latent.pca_directions(self.model(key), k=min(PC_SLIDERS, self.model(key).config.Nz))

    def latent(self, key: str, seed: int, z_head: list[float], amounts: list[float]) -> Tensor:
        model = self.model(key)
        z_head = [_number(v, f"z[{i}]") for i, v in enumerate(z_head)]
        amounts = [_number(v, f"PC{i + 1}") for i, v in enumerate(amounts)]
        z = latent.z_from_seeds(model, _seed(seed))[0]
        head = torch.as_tensor(z_head[: model.config.Nz], dtype=z.dtype)
        z[: len(head)] = head.clamp(-1, 1)
        return latent.move(z, self.directions(key), amounts[: len(self.directions(key))])

    @torch.inference_mode()
    def generate(
        self, key: str, seed: int, z_head: list[float], amounts: list[float]
    ) -> np.ndarray:
        """The slider image: the seed's z with its first dimensions and PCA moves applied."""
        model = self.model(key)
        return _picture(latent.sample(model, self.latent(key, seed, z_head, amounts))[0])

    @torch.inference_mode()
    def grid(self, key: str, seed: int, n: int) -> np.ndarray:
        """n samples, seeds seed .. seed + n - 1."""
        n = _bounded(n, 1, MAX_SAMPLES, "samples")
        seed = _seed(seed, last=n - 1)
        model = _fits(self.model(key), n, "samples")
        x = latent.sample(model, list(range(seed, seed + n)))
        return _strip(x)

    # Interpolation.
    @torch.inference_mode()
    def interpolation(
        self, key: str, seed_a: int, seed_b: int, steps: int, mode: str
    ) -> np.ndarray:
        model, steps = self.model(key), _bounded(steps, 2, MAX_FRAMES, "frames")
        _fits(model, steps, "frames")
        z = latent.z_from_seeds(model, [_seed(seed_a, "from seed"), _seed(seed_b, "to seed")])
        frames = latent.interpolate(model, z[0], z[1], steps=steps, mode=_mode(mode))
        return _strip(frames, nrow=steps)

    # Mirror interpolation (paper Figure 4d).
    def dataset(self, key: str) -> ImageDataset:
        """Images like the training data, to invert: Fashion-MNIST or shapes when the run used
        them, else the shipped Fluent faces (no download). At the model's size where the
        data has it; else at 64x64, and the inversion resizes them (with a note)."""
        model, ckpt = self.model(key), self._info(key)
        source = ckpt.data if ckpt and ckpt.data in ("fashion-mnist", "shapes") else "fluent-faces"
        c = model.config
        with self._lock:
            for resolution in dict.fromkeys((c.resolution, min(c.resolution, 64))):
                cache_key = (source, resolution, c.channels)
                if cache_key not in self._datasets:
                    try:
                        self._datasets[cache_key] = open_dataset(source, resolution, c.channels)
                    except DatasetError:
                        if resolution == 64 or c.resolution <= 64:
                            raise
                        continue
                return self._datasets[cache_key]
        raise DatasetError(f"no {source} images at {c.resolution}x{c.resolution}")

    def dataset_indices(self, key: str) -> np.ndarray:
        return subset_indices(len(self.dataset(key)), GALLERY_IMAGES)

    def gallery(self, key: str) -> list[tuple[np.ndarray, str]]:
        data, indices = self.dataset(key), self.dataset_indices(key)
        return [(_picture(data[int(i)], FRAME), f"#{i}") for i in indices]

    def dataset_image(self, key: str, index: int) -> np.ndarray:
        """Dataset image number `index`, at the model's size (uint8, as an upload would be)."""
        data, index = self.dataset(key), _number(index, "image number")
        if not 0 <= index < len(data):
            raise ValueError(
                f"image number {index:g} is outside the dataset (0 .. {len(data) - 1})"
            )
        a = to_uint8(data[int(index)][None])[0]
        return a[..., 0] if a.shape[-1] == 1 else a

    def mirror(
        self,
        key: str,
        image: Any,
        steps: int,
        iterations: int,
        restarts: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
        """(original | G(z) over flip | G(z'), the interpolation strip, a summary, notes)."""
        if image is None:
            raise ValueError("no image: upload one, or pick one from the dataset below.")
        steps = _bounded(steps, 2, MAX_FRAMES, "frames")
        iterations = _bounded(iterations, 0, MAX_ITERATIONS, "Adam steps")
        restarts = _bounded(restarts, 1, MAX_RESTARTS, "starts")
        model = _fits(self.model(key), steps, "frames")
        # Inversion keeps G's activations of both images, at every start, for the gradients.
        _fits(model, 8 * restarts, "8 x starts")
        c = model.config
        x, notes = images.prepare_image(image, c.resolution, c.channels)
        m = inversion.mirror_interpolation(
            model,
            x,
            steps=int(steps),
            invert_steps=int(iterations),
            restarts=int(restarts),
            progress=progress,
        )
        pair = _strip(
            torch.stack([m.image, m.reconstruction, m.flipped, m.reconstruction_flipped]),
            nrow=2,
            size=DISPLAY // 2,
        )
        summary = (
            f"Reconstruction error, mean |x - G(z)| on the [-1, 1] pixel scale: "
            f"**{m.error:.3f}** for the image, **{m.error_flipped:.3f}** for its mirror image "
            f"({iterations} Adam steps from {restarts} starts each)."
        )
        if notes:
            summary += "\n\nInput: " + "; ".join(notes) + "."
        return pair, _strip(m.frames, nrow=int(steps)), summary, notes

    # Gamma comparison (paper Figure 3).
    def gamma_defaults(self) -> list[str]:
        """One checkpoint for each of the paper's gammas 0.3, 0.5 and 0.7, if found."""
        picked: dict[float, str] = {}
        for c in self._checkpoints.values():  # pretrained first, then newest run first
            if c.gamma is not None and round(c.gamma, 3) in (0.3, 0.5, 0.7):
                picked.setdefault(round(c.gamma, 3), c.key)
        return [picked[g] for g in sorted(picked)]

    @torch.inference_mode()
    def gamma(self, keys: list[str], seed: int, n: int) -> list[tuple[np.ndarray, str]]:
        if not keys:
            raise ValueError(
                "choose the checkpoints to compare (e.g. trained at gamma 0.3, 0.5, 0.7)."
            )
        n = _bounded(n, 2, MAX_SAMPLES, "samples")
        seed = _seed(seed, last=n - 1)
        models = [_fits(self.model(k), n, "samples") for k in keys]
        z = latent.z_from_seeds(models[0], list(range(seed, seed + n)))
        out = []
        for key, x in zip(keys, latent.gamma_grid(models, z), strict=True):
            ckpt, figure = self._info(key), f"diversity {metrics.diversity(x):.2f}"
            if ckpt and ckpt.gamma is not None:
                caption = f"gamma {ckpt.gamma:g}: {figure} ({key})"
            else:
                caption = f"{key}: {figure}"
            out.append((_strip(x, size=64), caption))
        return out


def _number(value: Any, name: str) -> float:
    """A number of a request, from the page or the API; NaN, infinities and what is not a
    number are refused, naming the value (Gradio's sliders let NaN through)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def _bounded(value: Any, lo: int, hi: int, name: str) -> int:
    """An integer setting from the page or the API, refused when outside [lo, hi]."""
    number = _number(value, name)
    if not lo <= number <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(number)


def _seed(value: Any, name: str = "seed", last: int = 0) -> int:
    """A seed of a request (config.check_seed), with room for `last` more after it."""
    seed = check_seed(value, name)
    if seed + last > SEED_MAX:
        raise ValueError(
            f"{name} {seed} is too large for {last + 1} samples: their seeds run from it to "
            f"{seed + last}, beyond {SEED_MAX:,}. Give at most {SEED_MAX - last}."
        )
    return seed


def _fits(model: BEGAN, batch: int, name: str) -> BEGAN:
    """Refuse a request whose batch would make G's activations larger than MAX_ACTIVATION."""
    c = model.config
    most = max(1, MAX_ACTIVATION // (c.n * c.resolution * c.resolution))
    if batch > most:
        raise ValueError(
            f"{name} must be at most {most} for this {c.resolution}x{c.resolution}, n={c.n} "
            f"model (a server limit on memory per request), got {batch}"
        )
    return model


def _same_run(a: str, b: str) -> bool:
    """'runs/x @ step 2000' and 'runs/x @ step 4000' name the same run."""
    return a.startswith("runs/") and a.split(" @ ")[0] == b.split(" @ ")[0]


def _mode(label: str) -> latent.Mode:
    return "linear" if str(label).lower().startswith("lin") else "spherical"
