"""The explorer of trained BEGAN generators: a Gradio app over `began_core.explore.latent` and `began_core.explore.inversion`.

`app/explorer_server.py` serves it: alone (`python app.py`, as a Hugging Face Space runs
it), or in the dashboard's process as its Explore tab. Checkpoints come from
`pretrained/` (BEGAN_PRETRAINED_DIR), the latest checkpoint of every run under `runs/`
(BEGAN_RUNS_DIR), or a Hub repo id typed in. This file only lays out the page and wires it to
`app/explorer_model.py`; sampling, interpolation, directions, inversion and the gamma
comparison live in began_core.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from app.explorer_model import DISPLAY, PC_RANGE, PC_SLIDERS, Z_SLIDERS, Explorer
from app.served_images import ServedImages

log = logging.getLogger(__name__)

# Sharp pixels when the browser scales an image, and small inputs shown as large as their box.
CSS = """
.pixelated img { image-rendering: pixelated; }
#mirror-input img { width: 100%; height: 100%; object-fit: contain; }
"""

F = TypeVar("F", bound=Callable[..., Any])


def _handler(served: ServedImages) -> Callable[[F], F]:
    """Wraps a handler: the pictures it returns go out as whole files (`app/served_images.py`
    says why), and errors become gr.Error with the library's message: the page shows it, the
    request ends, and the server goes on serving."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return served.files(fn(*args, **kwargs))
            except gr.Error:
                raise
            except (ValueError, OSError) as e:  # CheckpointError, ConfigError, DatasetError too
                raise gr.Error(str(e), print_exception=False) from e
            except Exception as e:
                log.exception("explorer handler %s failed", fn.__name__)
                raise gr.Error(f"unexpected error ({type(e).__name__}): {e}") from e

        return wrapper  # type: ignore[return-value]

    return wrap


# --------------------------------------------------------------------------- the app


def _upload(payload: Any) -> str | bytes | None:
    """The uploaded file behind an image input's raw payload, not yet decoded.

    The mirror event skips Gradio's preprocessing, which decodes an upload before the handler
    runs and fails with a generic error on a file that is not an image; here
    `images.prepare_image` opens the file and says what is wrong (not an image, too many
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
    heading: bool = True,
) -> gr.Blocks:
    """The explorer as a `gr.Blocks`; launch it, mount it, or serve it in the background.
    `heading=False` leaves out its title and description: inside the dashboard's Explore page,
    which has its own, they were said twice."""
    ex = explorer or Explorer(pretrained_dir, runs_dir, allow_hub=allow_hub)
    choices = ex.choices()
    first = ex.default_choice()
    picture = dict(format="png", elem_classes="pixelated", interactive=False)
    handler = _handler(ServedImages())

    with gr.Blocks(title="BEGAN explorer", analytics_enabled=False) as demo:
        if heading:
            gr.Markdown(
                "## BEGAN explorer\nSample a trained generator G, move through its latent "
                "space z ~ U[-1, 1]^Nz, invert G on a picture, and compare the diversity ratio "
                "gamma."
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

        @handler
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

        @handler
        def on_seed(key: str | None, seed_value: float | None, *amounts: float) -> list[Any]:
            if not key:
                return [gr.skip()] * (n_z + 1)
            z_head = ex.slider_z(key, int(seed_value or 0))
            z_head += [0.0] * (n_z - len(z_head))
            return [*z_head, ex.generate(key, int(seed_value or 0), z_head, list(amounts))]

        @handler
        def render(key: str, seed_value: float, *values: float) -> np.ndarray:
            return ex.generate(key, int(seed_value or 0), list(values[:n_z]), list(values[n_z:]))

        @handler
        def sample_grid(key: str, seed_value: float, n: float) -> np.ndarray:
            return ex.grid(key, int(seed_value or 0), int(n))

        @handler
        def interpolation(key: str, a: float, b: float, steps: float, path: str) -> np.ndarray:
            return ex.interpolation(key, int(a or 0), int(b or 0), int(steps), path)

        @handler
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

        @handler
        def pick(key: str, index: float | None) -> np.ndarray:
            return ex.dataset_image(key, int(index or 0))

        @handler
        def selected(key: str, evt: gr.SelectData) -> tuple[int, np.ndarray]:
            index = int(ex.dataset_indices(key)[evt.index])
            return index, ex.dataset_image(key, index)

        @handler
        def gamma(keys: list[str], seed_value: float, n: float) -> list[tuple[np.ndarray, str]]:
            return ex.gamma(list(keys or []), int(seed_value or 0), int(n))

        @handler
        def load_hub(repo_id: str, keys: list[str] | None) -> tuple[Any, Any]:
            repo_id = (repo_id or "").strip()
            if not repo_id:
                raise ValueError("type a Hub repo id such as 'user/began-faces' first.")
            ex.model(repo_id)  # fails here, with the reason, if it cannot be loaded
            gr.Info(f"loaded {repo_id}")
            choices_ = ex.choices() + ex.hub_choices()
            compared = [k for k in keys or [] if k != repo_id] + [repo_id]  # joins the comparison
            return (
                gr.update(choices=choices_, value=repo_id),
                gr.update(choices=choices_, value=compared),
            )

        @handler
        def on_refresh(key: str | None, keys: list[str] | None) -> tuple[Any, Any]:
            ex.refresh()
            choices_ = ex.choices() + ex.hub_choices()
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
