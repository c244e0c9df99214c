"""The explorer of trained BEGAN generators: a Gradio app over `began_core.explore`.

`app/explorer_server.py` serves it: alone (`python app.py`, as a Hugging Face Space runs
it), or in the dashboard's process as its Explore tab. Checkpoints come from
`pretrained/` (BEGAN_PRETRAINED_DIR), the latest checkpoint of every run under `runs/`
(BEGAN_RUNS_DIR), or a Hub repo id typed in. This file only wires the UI: sampling,
interpolation, directions, inversion and the gamma comparison live in began_core.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np
import torch
from torch import Tensor

from app import settings
from began_core import explore, metrics
from began_core.config import TrainConfig
from began_core.data import DatasetError, ImageDataset, open_dataset, subset_indices
from began_core.hub import CONFIG, WEIGHTS, CheckpointError, load
from began_core.images import make_grid, to_uint8
from began_core.model import BEGAN
from began_core.runs import list_runs

log = logging.getLogger(__name__)

DISPLAY = 256  # the main image is upscaled (nearest neighbour) to about this many pixels
FRAME = 96  # frames of strips and grids to about this many
Z_SLIDERS = 8  # sliders for the first z dimensions
PC_SLIDERS = 8  # sliders for principal directions
PC_RANGE = 3.0  # a PCA slider moves z this far along its unit direction, either way
GALLERY_IMAGES = 24  # dataset images offered for inversion
MAX_SAMPLES, MAX_FRAMES, MAX_ITERATIONS, MAX_RESTARTS = 64, 16, 1000, 16  # what a request may ask
# Sharp pixels when the browser scales an image, and small inputs shown as large as their box.
CSS = """
.pixelated img { image-rendering: pixelated; }
#mirror-input img { width: 100%; height: 100%; object-fit: contain; }
"""
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint the explorer offers: `key` is what the list shows and the API takes."""

    key: str
    path: Path
    gamma: float | None
    data: str | None  # the dataset it was trained on, when known

    @property
    def label(self) -> str:
        return self.key if self.gamma is None else f"{self.key}  (gamma {self.gamma:g})"


def discover(pretrained_dir: Path, runs_dir: Path) -> list[Checkpoint]:
    """Checkpoint folders under `pretrained_dir` (config.json + model.safetensors; the feature
    nets in pretrained/classifiers are not generators), then the latest checkpoint of each run
    under `runs_dir`, newest run first."""
    found: list[Checkpoint] = []
    if pretrained_dir.is_dir():
        for config in sorted(pretrained_dir.rglob(CONFIG)):
            folder = config.parent
            rel = folder.relative_to(pretrained_dir)
            if "classifiers" in rel.parts or not (folder / WEIGHTS).is_file():
                continue
            key = f"pretrained/{rel.as_posix()}" if rel.parts else "pretrained"
            found.append(Checkpoint(key, folder, *explore.read_origin(folder)))
    for run in list_runs(runs_dir):
        latest = run.latest_checkpoint()
        if latest is None or not (latest / WEIGHTS).is_file():
            continue
        step = int(latest.name.split("_")[-1]) if latest.name.startswith("step_") else 0
        key = f"runs/{run.path.name} @ step {step}"
        found.append(Checkpoint(key, latest, *explore.read_origin(latest)))
    return found


def _user_errors(fn: F) -> F:
    """Handlers raise gr.Error with the library's message: the page shows it, the request
    ends, and the server goes on serving."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError) as e:  # CheckpointError, ConfigError, DatasetError too
            raise gr.Error(str(e), print_exception=False) from e
        except Exception as e:
            log.exception("explorer handler %s failed", fn.__name__)
            raise gr.Error(f"unexpected error ({type(e).__name__}): {e}") from e

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- the model side


def _upscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W) or (H, W, C) uint8 image."""
    return a if factor <= 1 else a.repeat(factor, axis=0).repeat(factor, axis=1)


def _picture(x: Tensor, size: int = DISPLAY) -> np.ndarray:
    """One image (C, R, R) in [-1, 1] -> uint8 (H, W[, 3]) upscaled to about `size` pixels."""
    a = to_uint8(x[None])[0]
    a = a[..., 0] if a.shape[-1] == 1 else a
    return _upscale(a, max(1, size // x.shape[-1]))


def _strip(x: Tensor, nrow: int | None = None, size: int = FRAME) -> np.ndarray:
    """A grid of images (B, C, R, R) as uint8, each frame upscaled to about `size` pixels."""
    a = np.asarray(make_grid(x, nrow=nrow))
    return _upscale(a, max(1, size // x.shape[-1]))


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
        self._models: OrderedDict[tuple, BEGAN] = OrderedDict()
        self._datasets: dict[tuple, ImageDataset] = {}
        self._lock = threading.RLock()
        self._checkpoints: dict[str, Checkpoint] = {}
        self.refresh()

    # Checkpoints.
    def refresh(self) -> list[Checkpoint]:
        found = discover(self.pretrained_dir, self.runs_dir)
        with self._lock:
            self._checkpoints = {c.key: c for c in found}
        return found

    def choices(self) -> list[tuple[str, str]]:
        return [(c.label, c.key) for c in self._checkpoints.values()]

    def default_choice(self) -> str | None:
        """The checkpoint shown first: one trained at the paper's default gamma (0.5) if
        there is one, else the first in the list."""
        keys = [c.key for c in self._checkpoints.values()]
        at_default = [c.key for c in self._checkpoints.values() if c.gamma == TrainConfig.gamma]
        return (at_default or keys or [None])[0]

    def model(self, key: str | None) -> BEGAN:
        """The model behind a list key or a Hub repo id, loaded once."""
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
        with self._lock:
            if cache_key in self._models:
                self._models.move_to_end(cache_key)
                return self._models[cache_key]
            try:
                # Never as inference tensors, even when a handler under inference_mode asks
                # first: inversion differentiates through G, and PCA reads weight versions.
                with torch.inference_mode(False):
                    model = load(source, device=self.device)
            except CheckpointError as e:  # name the folder as the list does, not by its path
                message = str(e).replace(str(source), key) if ckpt else str(e)
                raise CheckpointError(message) from None
            self._models[cache_key] = model
            while len(self._models) > self.cache_size:
                self._models.popitem(last=False)
            return model

    def describe(self, key: str) -> str:
        model = self.model(key)
        c, ckpt = model.config, self._checkpoints.get(key)
        parts = [
            f"**{key}**: {c.resolution}x{c.resolution} {'RGB' if c.channels == 3 else 'greyscale'}",
            f"n={c.n}, Nz={c.Nz}",
        ]
        if ckpt and ckpt.gamma is not None:
            parts.append(f"gamma {ckpt.gamma:g}")
        if ckpt and ckpt.data:
            parts.append(f"trained on `{ckpt.data}`")
        if not getattr(model, "has_discriminator", True):
            parts.append("generator only")
        return ", ".join(parts)

    # Latent sliders.
    def slider_z(self, key: str, seed: int) -> list[float]:
        """The first z dimensions of a seed's z, rounded as the sliders hold them."""
        z = explore.z_from_seeds(self.model(key), int(seed))[0]
        return [round(float(v), 2) for v in z[:Z_SLIDERS]]

    def directions(self, key: str) -> explore.Directions:
        return explore.pca_directions(self.model(key), k=min(PC_SLIDERS, self.model(key).config.Nz))

    def latent(self, key: str, seed: int, z_head: list[float], amounts: list[float]) -> Tensor:
        model = self.model(key)
        z = explore.z_from_seeds(model, int(seed))[0]
        head = torch.as_tensor(z_head[: model.config.Nz], dtype=z.dtype)
        z[: len(head)] = head.clamp(-1, 1)
        return explore.move(z, self.directions(key), amounts[: len(self.directions(key))])

    @torch.inference_mode()
    def generate(
        self, key: str, seed: int, z_head: list[float], amounts: list[float]
    ) -> np.ndarray:
        """The slider image: the seed's z with its first dimensions and PCA moves applied."""
        model = self.model(key)
        return _picture(explore.sample(model, self.latent(key, seed, z_head, amounts))[0])

    @torch.inference_mode()
    def grid(self, key: str, seed: int, n: int) -> np.ndarray:
        """n samples, seeds seed .. seed + n - 1."""
        n = _bounded(n, 1, MAX_SAMPLES, "samples")
        x = explore.sample(self.model(key), list(range(int(seed), int(seed) + n)))
        return _strip(x)

    # Interpolation.
    @torch.inference_mode()
    def interpolation(
        self, key: str, seed_a: int, seed_b: int, steps: int, mode: str
    ) -> np.ndarray:
        model, steps = self.model(key), _bounded(steps, 2, MAX_FRAMES, "frames")
        z = explore.z_from_seeds(model, [int(seed_a), int(seed_b)])
        frames = explore.interpolate(model, z[0], z[1], steps=steps, mode=_mode(mode))
        return _strip(frames, nrow=steps)

    # Mirror interpolation (paper Figure 4d).
    def dataset(self, key: str) -> ImageDataset:
        """Images like the training data, to invert: Fashion-MNIST or shapes when the run used
        them, else the shipped Fluent faces (no download). At the model's size where the
        data has it; else at 64x64, and the inversion resizes them (with a note)."""
        model, ckpt = self.model(key), self._checkpoints.get(key)
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
        data = self.dataset(key)
        if not 0 <= int(index) < len(data):
            raise ValueError(f"image number {index} is outside the dataset (0 .. {len(data) - 1})")
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
        model = self.model(key)
        c = model.config
        x, notes = explore.prepare_image(image, c.resolution, c.channels)
        m = explore.mirror_interpolation(
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
        models = [self.model(k) for k in keys]
        z = explore.z_from_seeds(models[0], list(range(int(seed), int(seed) + n)))
        out = []
        for key, x in zip(keys, explore.gamma_grid(models, z), strict=True):
            ckpt, figure = self._checkpoints.get(key), f"diversity {metrics.diversity(x):.2f}"
            if ckpt and ckpt.gamma is not None:
                caption = f"gamma {ckpt.gamma:g}: {figure} ({key})"
            else:
                caption = f"{key}: {figure}"
            out.append((_strip(x, size=64), caption))
        return out


def _bounded(value: float, lo: int, hi: int, name: str) -> int:
    """An integer setting from the page or the API, refused when outside [lo, hi]."""
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def _same_run(a: str, b: str) -> bool:
    """'runs/x @ step 2000' and 'runs/x @ step 4000' name the same run."""
    return a.startswith("runs/") and a.split(" @ ")[0] == b.split(" @ ")[0]


def _mode(label: str) -> explore.Mode:
    return "linear" if str(label).lower().startswith("lin") else "spherical"


# --------------------------------------------------------------------------- the app


def _upload(payload: Any) -> str | bytes | None:
    """The uploaded file behind an image input's raw payload, not yet decoded.

    The mirror event skips Gradio's preprocessing, which decodes an upload before the handler
    runs and fails with a generic error on a file that is not an image; here
    `explore.prepare_image` opens the file and says what is wrong (not an image, too many
    pixels or bytes, corrupt). Gradio has already checked that the path is one of its uploads."""
    if payload is None:
        return None
    if isinstance(payload, dict):
        if payload.get("path"):
            return str(payload["path"])
        url = payload.get("url") or ""
        if url.startswith("data:"):
            import base64

            return base64.b64decode(url.split(",", 1)[-1])
    raise ValueError("the upload arrived without a file; try again.")


def build_explorer(
    pretrained_dir: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
    *,
    allow_hub: bool = True,
    explorer: Explorer | None = None,
) -> gr.Blocks:
    """The explorer as a `gr.Blocks`; launch it, mount it, or serve it in the background."""
    ex = explorer or Explorer(pretrained_dir, runs_dir, allow_hub=allow_hub)
    choices = ex.choices()
    first = ex.default_choice()
    picture = dict(format="png", elem_classes="pixelated", interactive=False)

    with gr.Blocks(title="BEGAN explorer", analytics_enabled=False) as demo:
        gr.Markdown(
            "## BEGAN explorer\nSample a trained generator G, move through its latent space "
            "z ~ U[-1, 1]^Nz, invert G on a picture, and compare the diversity ratio gamma."
        )
        with gr.Row():
            ckpt = gr.Dropdown(choices, value=first, label="Checkpoint", scale=3)
            with gr.Column(scale=2, visible=allow_hub):
                hub_id = gr.Textbox(
                    label="or a Hugging Face Hub repo id", placeholder="user/began-faces"
                )
                with gr.Row():
                    hub_load = gr.Button("Load from the Hub", size="sm")
                    refresh = gr.Button("Refresh the list", size="sm")
        info = gr.Markdown(
            "No checkpoints found yet: train one from the dashboard, put one under pretrained/, "
            "or load a Hub repo id."
            if not choices
            else ""
        )

        with gr.Tab("Sample"):
            with gr.Row():
                with gr.Column(scale=2, min_width=DISPLAY):
                    with gr.Row():
                        seed = gr.Number(0, label="Seed", precision=0, minimum=0, scale=2)
                        random_seed = gr.Button("Random seed", size="sm", scale=1)
                    image = gr.Image(
                        label="G(z)", height=DISPLAY + 40, elem_id="sample-image", **picture
                    )
                with gr.Column(scale=2):
                    gr.Markdown("**z**, first dimensions (the rest come from the seed)")
                    z_sliders = [
                        gr.Slider(-1, 1, 0, step=0.01, label=f"z[{i}]", elem_id=f"z-{i}")
                        for i in range(Z_SLIDERS)
                    ]
                with gr.Column(scale=2):
                    gr.Markdown(
                        "**Principal directions** of G's first layer over random z, as GANSpace "
                        "finds them; strongest first"
                    )
                    pc_sliders = [
                        gr.Slider(
                            -PC_RANGE, PC_RANGE, 0, step=0.05, label=f"PC{i + 1}", elem_id=f"pc-{i}"
                        )
                        for i in range(PC_SLIDERS)
                    ]
            with gr.Row(equal_height=True):
                n_grid = gr.Slider(4, 64, 16, step=1, label="Samples", scale=3)
                grid_button = gr.Button("Sample a grid from the seed on", scale=1)
            grid = gr.Image(label="Samples", **picture)

        with gr.Tab("Interpolate"):
            with gr.Row(equal_height=True):
                seed_a = gr.Number(0, label="From seed", precision=0, minimum=0)
                seed_b = gr.Number(1, label="To seed", precision=0, minimum=0)
                frames = gr.Slider(2, 16, 8, step=1, label="Frames")
                mode = gr.Radio(["spherical", "linear"], value="spherical", label="Path")
                interpolate_button = gr.Button("Interpolate", variant="primary")
            strip = gr.Image(label="G along the path, both ends included", **picture)

        with gr.Tab("Mirror interpolation"):
            gr.Markdown(
                "Paper Figure 4d: G is inverted on a picture and on its mirror image (Adam on z, "
                "z kept in [-1, 1], the best of several starts), then G is shown along the path "
                "between the two latents."
            )
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.Image(
                        label="Picture: upload or paste one, or click a dataset image below",
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        format="png",
                        elem_classes="pixelated",
                        elem_id="mirror-input",
                        height=DISPLAY,
                    )
                    with gr.Row(equal_height=True):
                        mirror_frames = gr.Slider(2, 16, 8, step=1, label="Frames")
                        iterations = gr.Slider(0, 1000, 300, step=10, label="Adam steps")
                        restarts = gr.Slider(1, 16, 4, step=1, label="Starts")
                    mirror_button = gr.Button("Invert and interpolate", variant="primary")
                with gr.Column(scale=1):
                    pair = gr.Image(
                        label="picture | reconstruction G(z); mirror image | G(z')",
                        height=DISPLAY + 40,
                        **picture,
                    )
                    summary = gr.Markdown()
            mirror_strip = gr.Image(label="from G(z) to G(z')", **picture)
            gallery = gr.Gallery(
                label="Dataset images: click one to use it",
                columns=12,
                height=250,
                allow_preview=False,
                format="png",
                elem_classes="pixelated",
            )
            with gr.Row():
                dataset_index = gr.Number(
                    0, label="Dataset image number", precision=0, minimum=0, scale=3
                )
                dataset_button = gr.Button("Use this dataset image", size="sm", scale=1)

        with gr.Tab("Gamma comparison"):
            gr.Markdown(
                "Paper Figure 3: the same z through generators trained at different gamma. "
                "A lower gamma gives sharper images and less diversity; the figure under each "
                "grid is the mean pairwise distance between its samples (16x16 pixels, values in "
                "[-1, 1]; 0 when they are all the same), the label-free figure of `evaluate`."
            )
            with gr.Row(equal_height=True):
                compare = gr.Dropdown(
                    choices,
                    value=ex.gamma_defaults(),
                    multiselect=True,
                    label="Checkpoints",
                    scale=4,
                )
                seed_g = gr.Number(0, label="Seed", precision=0, minimum=0, scale=1)
                n_g = gr.Slider(4, 64, 16, step=1, label="Samples", scale=2)
                gamma_button = gr.Button("Compare", variant="primary", scale=1)
            gamma_gallery = gr.Gallery(
                label="Same z, one grid per checkpoint",
                columns=3,
                height="auto",
                object_fit="contain",
                preview=False,
                format="png",
                elem_classes="pixelated",
            )

        # Handlers: each is a thin call into the Explorer; errors become gr.Error messages.
        n_z, n_pc = len(z_sliders), len(pc_sliders)

        @_user_errors
        def on_model(key: str | None, seed_value: float | None) -> list[Any]:
            """A checkpoint chosen: its description, sliders for it, an image, dataset images.
            One that cannot be loaded is reported in the description (and a warning)."""
            if not key:
                return [gr.skip()] * (1 + n_z + n_pc + 2)
            try:
                ex.model(key)
            except (ValueError, OSError) as e:
                gr.Warning(str(e))
                return [f"**Cannot use {key}**: {e}", *[gr.skip()] * (n_z + n_pc + 2)]
            dirs = ex.directions(key)
            z_head = ex.slider_z(key, int(seed_value or 0))
            z_updates = [
                gr.update(value=z_head[i], visible=True)
                if i < len(z_head)
                else gr.update(visible=False)
                for i in range(n_z)
            ]
            pc_updates = [
                gr.update(
                    value=0,
                    visible=True,
                    label=f"PC{i + 1}: {100 * float(dirs.explained_variance[i]):.1f}% of the variance",
                )
                if i < len(dirs)
                else gr.update(visible=False)
                for i in range(n_pc)
            ]
            picture_ = ex.generate(key, int(seed_value or 0), z_head, [0.0] * len(dirs))
            try:
                images = ex.gallery(key)
            except ValueError as e:  # no dataset here (e.g. Fashion-MNIST not installed)
                gr.Warning(f"no dataset images to pick from: {e}")
                images = []
            return [ex.describe(key), *z_updates, *pc_updates, picture_, images]

        @_user_errors
        def on_seed(key: str | None, seed_value: float | None, *amounts: float) -> list[Any]:
            if not key:
                return [gr.skip()] * (n_z + 1)
            z_head = ex.slider_z(key, int(seed_value or 0))
            z_head += [0.0] * (n_z - len(z_head))
            return [*z_head, ex.generate(key, int(seed_value or 0), z_head, list(amounts))]

        @_user_errors
        def render(key: str, seed_value: float, *values: float) -> np.ndarray:
            return ex.generate(key, int(seed_value or 0), list(values[:n_z]), list(values[n_z:]))

        @_user_errors
        def sample_grid(key: str, seed_value: float, n: float) -> np.ndarray:
            return ex.grid(key, int(seed_value or 0), int(n))

        @_user_errors
        def interpolation(key: str, a: float, b: float, steps: float, path: str) -> np.ndarray:
            return ex.interpolation(key, int(a or 0), int(b or 0), int(steps), path)

        @_user_errors
        def mirror(
            key: str,
            picture_: Any,
            steps: float,
            iters: float,
            starts: float,
            progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for it)
        ) -> tuple[np.ndarray, np.ndarray, str]:
            def report(step: int, total: int) -> None:
                if step % 10 == 0 or step == total:
                    progress(step / max(total, 1), desc="inverting G")

            # Raw inputs (preprocess=False): the upload is a payload, numbers may be None.
            both, path, text, notes = ex.mirror(
                key, _upload(picture_), int(steps or 0), int(iters or 0), int(starts or 0), report
            )
            if notes:
                gr.Info("; ".join(notes))
            return both, path, text

        @_user_errors
        def pick(key: str, index: float | None) -> np.ndarray:
            return ex.dataset_image(key, int(index or 0))

        @_user_errors
        def selected(key: str, evt: gr.SelectData) -> tuple[int, np.ndarray]:
            index = int(ex.dataset_indices(key)[evt.index])
            return index, ex.dataset_image(key, index)

        @_user_errors
        def gamma(keys: list[str], seed_value: float, n: float) -> list[tuple[np.ndarray, str]]:
            return ex.gamma(list(keys or []), int(seed_value or 0), int(n))

        @_user_errors
        def load_hub(repo_id: str, keys: list[str] | None) -> tuple[Any, Any]:
            repo_id = (repo_id or "").strip()
            if not repo_id:
                raise ValueError("type a Hub repo id such as 'user/began-faces' first.")
            ex.model(repo_id)  # fails here, with the reason, if it cannot be loaded
            gr.Info(f"loaded {repo_id}")
            extra = [(repo_id, repo_id)]
            return (
                gr.update(choices=ex.choices() + extra, value=repo_id),
                gr.update(choices=ex.choices() + extra, value=keys),
            )

        @_user_errors
        def on_refresh(key: str | None, keys: list[str] | None) -> tuple[Any, Any]:
            ex.refresh()
            choices_ = ex.choices()
            known = {v for _, v in choices_}
            value = key if key in known else (choices_[0][1] if choices_ else None)
            return (
                gr.update(choices=choices_, value=value),
                gr.update(choices=choices_, value=[k for k in keys or [] if k in known]),
            )

        model_outputs = [info, *z_sliders, *pc_sliders, image, gallery]
        gr.on(
            [demo.load, ckpt.change],
            on_model,
            [ckpt, seed],
            model_outputs,
            api_name="select_checkpoint",
        )
        seed.change(on_seed, [ckpt, seed, *pc_sliders], [*z_sliders, image], api_name="seed")
        random_seed.click(
            lambda: int(np.random.default_rng().integers(0, 2**31 - 1)),
            None,
            seed,
            api_visibility="private",
        )
        gr.on(
            [s.input for s in (*z_sliders, *pc_sliders)],
            render,
            [ckpt, seed, *z_sliders, *pc_sliders],
            image,
            api_name="render",
            trigger_mode="always_last",
            show_progress="hidden",
            concurrency_limit=2,
            concurrency_id="render",
        )
        grid_button.click(sample_grid, [ckpt, seed, n_grid], grid, api_name="sample_grid")
        interpolate_button.click(
            interpolation, [ckpt, seed_a, seed_b, frames, mode], strip, api_name="interpolate"
        )
        mirror_button.click(
            mirror,
            [ckpt, upload, mirror_frames, iterations, restarts],
            [pair, mirror_strip, summary],
            api_name="mirror",
            preprocess=False,  # see _upload: the messages for bad files are ours
        )
        gallery.select(selected, ckpt, [dataset_index, upload], api_visibility="private")
        dataset_button.click(pick, [ckpt, dataset_index], upload, api_name="dataset_image")
        gamma_button.click(gamma, [compare, seed_g, n_g], gamma_gallery, api_name="gamma")
        hub_load.click(load_hub, [hub_id, compare], [ckpt, compare], api_name="load_hub")
        refresh.click(on_refresh, [ckpt, compare], [ckpt, compare], api_name="refresh")
    return demo
