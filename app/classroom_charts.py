"""Plotly figures of the classroom's 2-D BEGAN: the plane, the two loss histograms, the curves.

Presentation only: every number comes from began_core.classroom; figures stay small (a 40x40
map, a few hundred points) because a live page re-sends them every frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from app.charts import COLORS, LABELS, thin
from began_core.classroom import EXTENT, Classroom

REAL, FAKE, PUSH = "#1f77b4", "#d62728", "#111111"
CELLS = 40  # heat map resolution
SHOWN = 300  # points of each kind drawn
ARROWS = 60


def box(model: Classroom) -> tuple[tuple[float, float], tuple[float, float]]:
    """The square D sees, in data coordinates."""
    c, s = model.data.center, model.data.scale * EXTENT
    return (c[0] - s, c[1] - s), (c[0] + s, c[1] + s)


def _segments(start: torch.Tensor, end: torch.Tensor) -> tuple[list, list]:
    """Line segments as one trace: x0, x1, None, ..."""
    xs, ys = [], []
    for (a, b), (c, d) in zip(start.tolist(), end.tolist(), strict=True):
        xs += [a, c, None]
        ys += [b, d, None]
    return xs, ys


def plane_figure(model: Classroom, *, height: int = 520) -> go.Figure:
    """Real and generated points over log10 L(v), G's push -dL_G/dG(z) as arrows, and v -> D(v)
    where D reconstructs points directly."""
    lo, hi = box(model)
    L, xs, ys = model.loss_map(lo, hi, CELLS)
    fig = go.Figure()
    fig.add_trace(
        go.Heatmap(
            x=xs.tolist(),
            y=ys.tolist(),
            z=np.log10(L.clamp_min(1e-6).numpy()).round(3).tolist(),
            colorscale="Viridis",
            reversescale=True,  # bright where D reconstructs well: where G wants its points
            colorbar={"title": {"text": "log₁₀ L(v)", "side": "right"}, "thickness": 12},
            hovertemplate="v = (%{x:.2f}, %{y:.2f})<br>log₁₀ L(v) = %{z:.2f}<extra></extra>",
            name="L(v)",
        )
    )
    g = torch.Generator().manual_seed(7)
    real = model.data.sample(SHOWN, g)
    fake = model.generate(SHOWN, seed=11)  # the same z every frame: points move, not flicker
    p, push = model.pushes(ARROWS, seed=11)
    length = push.norm(dim=1, keepdim=True)
    # Arrow length: direction exact, size relative to the largest push now (log-compressed).
    scale = 0.12 * (hi[0] - lo[0]) / max(float(length.max()), 1e-12)
    head = p + push * scale
    rec = model.reconstructions(real[:ARROWS])
    if rec is not None:
        rx, ry = _segments(real[:ARROWS], rec)
        fig.add_trace(
            go.Scatter(x=rx, y=ry, mode="lines", line={"color": REAL, "width": 1}, name="v → D(v)")
        )
    for name, pts, color, symbol in (
        ("real x", real, REAL, "circle"),
        ("generated G(z)", fake, FAKE, "x"),
    ):
        fig.add_trace(
            go.Scatter(
                x=pts[:, 0].tolist(),
                y=pts[:, 1].tolist(),
                mode="markers",
                marker={"color": color, "size": 5, "symbol": symbol, "opacity": 0.8},
                name=name,
                hoverinfo="skip",
            )
        )
    ax, ay = _segments(p, head)
    fig.add_trace(
        go.Scatter(
            x=ax,
            y=ay,
            mode="lines",
            line={"color": PUSH, "width": 1.5},
            name="−∇L_G: where G is pushed",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=head[:, 0].tolist(),
            y=head[:, 1].tolist(),
            mode="markers",
            marker={"color": PUSH, "size": 4},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.update_xaxes(range=[lo[0], hi[0]], constrain="domain")
    fig.update_yaxes(range=[lo[1], hi[1]], scaleanchor="x", scaleratio=1)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        uirevision="plane",
    )
    return fig


def histogram_figure(model: Classroom, *, height: int = 260) -> go.Figure:
    """Histograms of L(x) and L(G(z)) on a log axis, with gamma * mean L(x): where the
    controller wants the mean of L(G(z))."""
    L_x, L_G = (v.clamp_min(1e-6).log10().numpy() for v in model.losses())
    lo, hi = float(min(L_x.min(), L_G.min())), float(max(L_x.max(), L_G.max()))
    edges = np.linspace(lo, hi + 1e-6, 41)
    centers = ((edges[:-1] + edges[1:]) / 2).round(3)
    fig = go.Figure()
    for name, values, color in (("L(x)", L_x, REAL), ("L(G(z))", L_G, FAKE)):
        counts, _ = np.histogram(values, edges)
        fig.add_trace(
            go.Bar(
                x=(10**centers).tolist(),
                y=counts.tolist(),
                name=name,
                marker_color=color,
                opacity=0.6,
            )
        )
    gamma = model.knobs.gamma
    target = gamma * float((10**L_x).mean())
    fig.add_vline(
        x=target,
        line={"color": COLORS["target"], "dash": "dash", "width": 2},
        annotation_text=f"γ·mean L(x), γ = {gamma:g}",
        annotation_position="top right",
    )
    fig.update_xaxes(type="log", title_text="L(v), log scale")
    fig.update_yaxes(title_text="points")
    fig.update_layout(
        barmode="overlay",
        bargap=0,
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        uirevision="hist",
    )
    return fig


def curves_figure(
    history: Sequence[dict[str, float]], gamma: float, *, height: int = 430, max_points: int = 600
) -> go.Figure:
    """L(x), L(G(z)) and gamma * L(x); k_t; M_global: three panels on one step axis."""
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
    keep = thin(len(history), max_points)
    rows = [history[i] for i in keep]
    x = [r["step"] for r in rows]

    def line(key, row, name=None, color=None, dash=None, y=None):
        values = y if y is not None else [r[key] for r in rows]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[v if math.isfinite(v) else None for v in values],
                mode="lines",
                name=name or LABELS[key],
                line={"color": color or COLORS[key], "width": 2, "dash": dash},
                showlegend=row == 1,
            ),
            row,
            1,
        )

    line("L_x", 1)
    line("L_G", 1)
    target = [gamma * r["L_x"] for r in rows]
    line("L_x", 1, name=f"γ·L(x), γ = {gamma:g}", color=COLORS["target"], dash="dash", y=target)
    line("k_t", 2)
    line("M_global", 3)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0},
        hovermode="x unified",
        uirevision="curves",
    )
    return fig
