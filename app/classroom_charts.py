"""Pictures of the classroom's 2-D BEGAN: the plane (a PNG), the loss histograms and the curves
(plotly).

Presentation only: every number comes from began_core.classroom.began2d; pictures stay small (a 40x40
map, a few hundred points) because a live page re-sends them every frame.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw
from plotly.subplots import make_subplots

from app.charts import COLORS, LABELS, thin
from began_core.classroom.began2d import EXTENT, Classroom

REAL, FAKE = "#1f77b4", "#d62728"
CELLS = 40  # heat map resolution
SHOWN = 300  # points of each kind drawn
ARROWS = 60


def box(model: Classroom) -> tuple[tuple[float, float], tuple[float, float]]:
    """The square D sees, in data coordinates."""
    c, s = model.data.center, model.data.scale * EXTENT
    return (c[0] - s, c[1] - s), (c[0] + s, c[1] + s)


# Viridis at five stops, reversed below so that bright means "reconstructed well".
VIRIDIS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32
)


def _colour(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 along the viridis stops."""
    t = np.clip(values, 0, 1) * (len(VIRIDIS) - 1)
    i = np.minimum(t.astype(int), len(VIRIDIS) - 2)
    f = (t - i)[..., None]
    return ((1 - f) * VIRIDIS[i] + f * VIRIDIS[i + 1]).astype(np.uint8)


# The plane is a palette image: 250 shades of the map, then the marks' inks. A live page sends
# it every frame; with one byte a pixel, not three, it encodes in a quarter of the time (and
# weighs about the same: the encoder does not filter palette images).
LEVELS = 250
INK = {"real": LEVELS, "white": LEVELS + 1, "fake": LEVELS + 2, "black": LEVELS + 3}
PALETTE = np.concatenate(
    [
        _colour(np.linspace(0, 1, LEVELS)),
        np.array([[31, 119, 180], [255, 255, 255], [214, 39, 40], [0, 0, 0]], dtype=np.uint8),
    ]
)


@functools.cache
def _mark(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels one mark sets, as offsets from its centre (dy, dx) and palette indices:
    drawn once by PIL, then stamped at every point at once."""
    c = 8
    canvas = Image.new("P", (2 * c + 1, 2 * c + 1), 255)
    draw = ImageDraw.Draw(canvas)
    if kind == "real":  # a blue dot, white rim
        draw.ellipse([c - 2.5, c - 2.5, c + 2.5, c + 2.5], fill=INK["real"], outline=INK["white"])
    else:  # a red cross
        draw.line([(c - 3, c - 3), (c + 3, c + 3)], fill=INK["fake"], width=2)
        draw.line([(c - 3, c + 3), (c + 3, c - 3)], fill=INK["fake"], width=2)
    pixels = np.asarray(canvas)
    dy, dx = np.nonzero(pixels != 255)
    return dy - c, dx - c, pixels[dy, dx]


def _stamp(pixels: np.ndarray, uv: np.ndarray, kind: str) -> None:
    """Draw a mark at each (u, v) into the palette indices `pixels`, later marks on top."""
    dy, dx, ink = _mark(kind)
    u = np.rint(uv[:, :1]).astype(np.int64) + dx  # (N, pixels of a mark)
    v = np.rint(uv[:, 1:]).astype(np.int64) + dy
    inside = (u >= 0) & (u < pixels.shape[1]) & (v >= 0) & (v < pixels.shape[0])
    pixels[v[inside], u[inside]] = np.broadcast_to(ink, u.shape)[inside]


def plane_image(
    model: Classroom, *, size: int = 520, cells: int = CELLS
) -> tuple[bytes, float, float]:
    """The plane as a PNG, drawn on the server (a live page can redraw it many times a second,
    which a plotly heat map with a few hundred markers cannot): log10 L(v) as colour, bright
    where D reconstructs well; real points blue, generated red (the same z every frame); black
    strokes -grad L_G from G's points (where G is pushed); blue strokes v -> D(v) where D
    reconstructs points directly. Returns the PNG and the range of L(v) shown."""
    lo, hi = box(model)
    L, _, _ = model.loss_map(lo, hi, cells)
    log = np.log10(L.clamp_min(1e-6).numpy())
    a, b = float(log.min()), float(log.max())
    bright = (1 - (log - a) / max(b - a, 1e-9)).astype(np.float32)[::-1]  # rows from the top
    bright = Image.fromarray(np.ascontiguousarray(bright), "F")
    bright = np.asarray(bright.resize((size, size), Image.Resampling.BILINEAR))
    pixels = (np.clip(bright, 0, 1) * (LEVELS - 1) + 0.5).astype(np.uint8)

    def px(p: torch.Tensor) -> np.ndarray:
        p = p.numpy()
        u = (p[:, 0] - lo[0]) / (hi[0] - lo[0]) * size
        v = (1 - (p[:, 1] - lo[1]) / (hi[1] - lo[1])) * size
        return np.stack([u, v], 1)

    g = torch.Generator().manual_seed(7)
    real = model.data.sample(SHOWN, g)
    rec = model.reconstructions(real[:ARROWS])
    if rec is not None:  # strokes v -> D(v), under the dots they start from
        im = Image.fromarray(pixels, "P")
        draw = ImageDraw.Draw(im)
        for (x0, y0), (x1, y1) in zip(px(real[:ARROWS]), px(rec), strict=True):
            draw.line([(x0, y0), (x1, y1)], fill=INK["real"], width=1)
        pixels = np.array(im)
    _stamp(pixels, px(real), "real")
    _stamp(pixels, px(model.generate(SHOWN, seed=11)), "fake")
    im = Image.fromarray(pixels, "P")
    im.putpalette(PALETTE.tobytes())
    draw = ImageDraw.Draw(im)
    p, push = model.pushes(ARROWS, seed=11)
    length = float(push.norm(dim=1).max())
    if length > 0:
        head = p + push * (0.08 * (hi[0] - lo[0]) / length)
        for (x0, y0), (x1, y1) in zip(px(p), px(head), strict=True):
            draw.line([(x0, y0), (x1, y1)], fill=INK["black"], width=2)
            draw.ellipse([x1 - 2, y1 - 2, x1 + 2, y1 + 2], fill=INK["black"])
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), 10**a, 10**b


# A live page builds two plotly figures every frame. Built through plotly's checked API, each
# took 10 to 25 ms, several times the drawing of the plane; so each figure's structure (axes,
# styles, labels: all but the numbers) is built through that API once, checked by plotly,
# and kept as a plain dict, and a frame only puts its numbers into a copy of it.


def _unchecked(data: list[dict], layout: dict) -> go.Figure:
    """A figure from a skeleton plotly checked before, with this frame's numbers."""
    return go.Figure({"data": data, "layout": layout}, _validate=False)


@functools.lru_cache(maxsize=32)
def _histogram_skeleton(gamma: float, height: int) -> dict:
    fig = go.Figure()
    for name, color in (("L(x)", REAL), ("L(G(z))", FAKE)):
        fig.add_trace(go.Bar(x=[], y=[], name=name, marker_color=color, opacity=0.6))
    fig.add_vline(
        x=1.0,  # replaced by gamma * mean L(x) every frame
        line={"color": COLORS["target"], "dash": "dash", "width": 2},
        annotation_text=f"γ·mean L(x), γ = {gamma:g}",
        annotation_position="top right",
    )
    fig.update_xaxes(type="log", dtick=1, title_text="L(v), log scale")  # one label a decade
    fig.update_yaxes(title_text="points")
    fig.update_layout(
        barmode="overlay",
        bargap=0,
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        uirevision="hist",
    )
    return fig.to_dict()


def histogram_figure(model: Classroom, *, height: int = 260) -> go.Figure:
    """Histograms of L(x) and L(G(z)) on a log axis, with gamma * mean L(x): where the
    controller wants the mean of L(G(z))."""
    L_x, L_G = (v.clamp_min(1e-6).log10().numpy() for v in model.losses())
    lo, hi = float(min(L_x.min(), L_G.min())), float(max(L_x.max(), L_G.max()))
    edges = np.linspace(lo, hi + 1e-6, 41)
    centers = ((edges[:-1] + edges[1:]) / 2).round(3)
    x = (10**centers).tolist()
    gamma = model.knobs.gamma
    target = gamma * float((10**L_x).mean())
    skeleton = _histogram_skeleton(gamma, height)
    data = [
        {**trace, "x": x, "y": np.histogram(values, edges)[0].tolist()}
        for trace, values in zip(skeleton["data"], (L_x, L_G), strict=True)
    ]
    layout = dict(skeleton["layout"])
    layout["shapes"] = [{**layout["shapes"][0], "x0": target, "x1": target}]
    layout["annotations"] = [{**layout["annotations"][0], "x": target}]
    return _unchecked(data, layout)


CURVES = (  # trace key, panel (row), name and style; in the figure's order
    ("L_x", 1, None, None),
    ("L_G", 1, None, None),
    ("target", 1, "γ·L(x), γ = {gamma:g}", "dash"),
    ("k_t", 2, None, None),
    ("M_global", 3, None, None),
)


@functools.lru_cache(maxsize=32)
def _curves_skeleton(gamma: float, height: int) -> dict:
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "L(x), L(G(z)) and the target γ·L(x)",
            "k<sub>t</sub>",
            "M<sub>global</sub>",
        ),
    )
    for key, row, name, dash in CURVES:
        fig.add_trace(
            go.Scatter(
                x=[],
                y=[],
                mode="lines",
                name=name.format(gamma=gamma) if name else LABELS[key],
                line={"color": COLORS[key], "width": 2, "dash": dash},
                showlegend=row == 1,
            ),
            row,
            1,
        )
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # one label a decade, not crowded
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0},
        hovermode="x unified",
        uirevision="curves",
    )
    return fig.to_dict()


def curves_figure(
    history: Sequence[dict[str, float]], gamma: float, *, height: int = 430, max_points: int = 600
) -> go.Figure:
    """L(x), L(G(z)) and gamma * L(x); k_t; M_global: three panels on one step axis."""
    rows = [history[i] for i in thin(len(history), max_points)]
    x = [r["step"] for r in rows]
    columns = {key: [r[key] for r in rows] for key in ("L_x", "L_G", "k_t", "M_global")}
    columns["target"] = [gamma * v for v in columns["L_x"]]
    skeleton = _curves_skeleton(gamma, height)
    data = [
        {**trace, "x": x, "y": [v if math.isfinite(v) else None for v in columns[key]]}
        for trace, (key, *_) in zip(skeleton["data"], CURVES, strict=True)
    ]
    return _unchecked(data, skeleton["layout"])
