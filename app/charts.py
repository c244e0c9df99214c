"""Plotly figures of a run's metrics.jsonl: the live view and the comparison of runs.

Presentation only: every number plotted was logged by the trainer; smoothing is an
exponential moving average (TensorBoard's, debiased) drawn over the faint raw curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

# The paper's notation, as plotly renders it (HTML subset).
LABELS = {
    "L_x": "L(x)",
    "L_G": "L(G(z))",
    "k_t": "k<sub>t</sub>",
    "M_global": "M<sub>global</sub>",
    "balance": "γ·L(x) − L(G(z))",
    "lr": "learning rate",
    "images_per_s": "images/s",
    "ratio": "L(G(z)) / L(x)",
}
COLORS = {"L_x": "#1f77b4", "L_G": "#d62728", "target": "#7f7f7f", "k_t": "#9467bd"}
COLORS |= {"M_global": "#2ca02c", "balance": "#ff7f0e", "lr": "#17becf", "images_per_s": "#8c564b"}
MAX_POINTS = 1500  # per curve sent to the browser
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Debiased exponential moving average; weight 0 returns the values unchanged."""
    if weight <= 0:
        return list(values)
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def thin(n: int, max_points: int) -> range | list[int]:
    """Indices of at most about `max_points` of n evenly spaced points, the last included,
    so a long run's figure stays light (smoothing is computed on every point first)."""
    if n <= max_points:
        return range(n)
    stride = -(-n // max_points)
    keep = list(range(0, n, stride))
    return keep if keep[-1] == n - 1 else [*keep, n - 1]


def pick(values: Sequence[float], keep: range | list[int]) -> list[float]:
    return [values[i] for i in keep]


def columns(records: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    keys = ("step", "k_t", "L_x", "L_G", "M_global", "balance", "lr", "images_per_s")
    return {k: [r.get(k, float("nan")) for r in records] for k in keys}


def _line(x, y, name, color, *, width=2.0, dash=None, opacity=1.0, legend=True):
    return go.Scatter(
        x=x,
        y=y,
        name=name,
        mode="lines",
        line={"color": color, "width": width, "dash": dash},
        opacity=opacity,
        showlegend=legend,
        legendgroup=name,
        hovertemplate="%{y:.4g}",
    )


def _finish(fig: go.Figure, height: int, *, legend_y: float, uirevision: str) -> go.Figure:
    """The layout both figures share; `uirevision` keeps zoom and hidden traces across
    refreshes."""
    fig.update_xaxes(showticklabels=True)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": legend_y, "x": 0},
        hovermode="x unified",
        uirevision=uirevision,
    )
    return fig


def live_figure(
    records: Sequence[dict[str, Any]],
    gamma: float,
    *,
    smoothing: float = 0.6,
    log_y: bool = False,
    height: int = 760,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Six panels sharing the step axis: the two reconstruction losses with the target
    gamma*L(x), M_global, k_t, the balance term, the learning rate and the throughput."""
    c = columns(records)
    keep = thin(len(records), max_points)
    x = pick(c["step"], keep)
    fig = make_subplots(
        rows=3,
        cols=2,
        shared_xaxes=True,
        vertical_spacing=0.09,
        horizontal_spacing=0.08,
        subplot_titles=(
            "L(x), L(G(z)) and the target γ·L(x)",
            "M<sub>global</sub>, convergence",
            "k<sub>t</sub>, the controller",
            "Balance γ·L(x) − L(G(z))",
            "Learning rate",
            "Throughput",
        ),
    )

    def add(key, row, col, name=None, color=None, legend=False, raw=True, smoothed=True):
        y = c[key]
        color = color or COLORS[key]
        name = name or LABELS[key]
        if raw and smoothing > 0:
            faint = _line(x, pick(y, keep), name, color, width=1, opacity=0.25, legend=False)
            fig.add_trace(faint, row, col)
        y_shown = smooth(y, smoothing) if smoothed else y
        fig.add_trace(_line(x, pick(y_shown, keep), name, color, legend=legend), row, col)

    add("L_x", 1, 1, legend=True)
    add("L_G", 1, 1, legend=True)
    target = pick([gamma * v for v in smooth(c["L_x"], smoothing)], keep)
    fig.add_trace(
        _line(x, target, f"γ·L(x), γ = {gamma:g}", COLORS["target"], dash="dash", width=1.5),
        1,
        1,
    )
    add("M_global", 1, 2)
    add("k_t", 2, 1, raw=False, smoothed=False)  # k_t is the controller's state: not averaged
    add("balance", 2, 2)
    fig.add_hline(y=0, line={"color": "#555", "width": 1, "dash": "dot"}, row=2, col=2)
    add("lr", 3, 1, raw=False, smoothed=False)
    add("images_per_s", 3, 2, raw=False)

    k_max = max((v for v in c["k_t"] if v == v), default=0.0)
    fig.update_yaxes(title_text="loss", row=1, col=1, type="log" if log_y else "linear")
    fig.update_yaxes(
        title_text="M<sub>global</sub>", row=1, col=2, type="log" if log_y else "linear"
    )
    # k_t lives in [0, 1]; zoom in while it is small so its movement stays visible.
    fig.update_yaxes(
        title_text="k<sub>t</sub>", row=2, col=1, range=[0, min(1.0, max(0.02, 1.2 * k_max))]
    )
    fig.update_yaxes(title_text="γ·L(x) − L(G(z))", row=2, col=2, zeroline=True)
    # Linear from 0, so each halving of the learning rate shows as a clear step down.
    levels = sorted({v for v in c["lr"] if v == v})[-6:]  # ticks at the rates actually used
    fig.update_yaxes(
        title_text="lr", row=3, col=1, rangemode="tozero", tickvals=levels, tickformat=".1e"
    )
    fig.update_yaxes(title_text="images/s", row=3, col=2, rangemode="tozero")
    for col in (1, 2):
        fig.update_xaxes(title_text="training step", row=3, col=col)
    return _finish(fig, height, legend_y=1.04, uirevision="live")


COMPARE_PANELS = (
    ("M_global", "Convergence M<sub>global</sub>"),
    ("k_t", "k<sub>t</sub>"),
    ("ratio", "L(G(z)) / L(x), held at γ (dotted)"),
    ("L_x", "L(x), real images"),
    ("L_G", "L(G(z)), generated images"),
    ("balance", "Balance γ·L(x) − L(G(z))"),
)


def compare_figure(
    runs: Sequence[tuple[str, float, Sequence[dict[str, Any]]]],
    *,
    smoothing: float = 0.6,
    log_y: bool = False,
    height: int = 640,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Several runs overlaid, one colour each: `runs` is [(label, gamma, records)]."""
    fig = make_subplots(
        rows=2,
        cols=3,
        shared_xaxes=True,
        vertical_spacing=0.14,
        horizontal_spacing=0.06,
        subplot_titles=[title for _, title in COMPARE_PANELS],
    )
    for i, (label, gamma, records) in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        c = columns(records)
        # The ratio of the smoothed losses, steadier than the smoothed ratio.
        L_G, L_x = smooth(c["L_G"], smoothing), smooth(c["L_x"], smoothing)
        c["ratio"] = [g / x if x else float("nan") for g, x in zip(L_G, L_x, strict=True)]
        keep = thin(len(records), max_points)
        for j, (key, _) in enumerate(COMPARE_PANELS):
            row, col = divmod(j, 3)
            y = c[key] if key == "ratio" else smooth(c[key], smoothing)
            line = _line(pick(c["step"], keep), pick(y, keep), label, color, legend=j == 0)
            fig.add_trace(line, row + 1, col + 1)
        fig.add_hline(y=gamma, line={"color": color, "width": 1, "dash": "dot"}, row=1, col=3)
    for j, (key, _) in enumerate(COMPARE_PANELS):
        row, col = divmod(j, 3)
        kind = "log" if log_y and key in ("M_global", "L_x", "L_G") else "linear"
        fig.update_yaxes(type=kind, row=row + 1, col=col + 1)
        if row == 1:
            fig.update_xaxes(title_text="training step", row=2, col=col + 1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    return _finish(fig, height, legend_y=1.06, uirevision="compare")


def has_small_data_curves(records: Sequence[dict[str, Any]]) -> bool:
    """Whether the run logged the held-out gap or scores (train --heldout / --score-every)."""
    return any("heldout_gap" in r or "score" in r for r in records)


def small_data_figure(
    records: Sequence[dict[str, Any]],
    *,
    smoothing: float = 0.6,
    height: int = 380,
) -> go.Figure:
    """What M_global cannot show, beside it: the held-out gap L(x_held-out) - L(x_train), which
    opens when D memorises its training images (with the augmentation probability p when the
    run sets it), and the score of G on the held-out images with the best step marked."""
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.07,
        specs=[[{}, {"secondary_y": True}, {}]],
        subplot_titles=(
            "M<sub>global</sub>, convergence",
            "Held-out gap, D memorising:<br>L(x<sub>held-out</sub>) − L(x<sub>train</sub>)",
            "Score of G against held-out<br>images (lower is better)",
        ),
    )
    c = columns(records)
    fig.add_trace(
        _line(
            c["step"],
            smooth(c["M_global"], smoothing),
            LABELS["M_global"],
            COLORS["M_global"],
            legend=False,
        ),
        1,
        1,
    )
    gap = [r for r in records if "heldout_gap" in r]
    if gap:
        steps = [r["step"] for r in gap]
        fig.add_trace(
            _line(steps, [r["heldout_gap"] for r in gap], "held-out gap", "#e377c2"), 1, 2
        )
        fig.add_hline(y=0, line={"color": "#555", "width": 1, "dash": "dot"}, row=1, col=2)
        if any("augment_p" in r for r in gap):
            p = _line(
                steps, [r.get("augment_p") for r in gap], "augmentation p", "#7f7f7f", dash="dash"
            )
            fig.add_trace(p, 1, 2, secondary_y=True)
            fig.update_yaxes(title_text="p", range=[0, 1.05], row=1, col=2, secondary_y=True)
    scored = [r for r in records if "score" in r]
    if scored:
        name = scored[-1].get("score_metric", "score").replace("_", " ")
        steps = [r["step"] for r in scored]
        with_ema = any("score_G_ema" in r for r in scored)
        label = f"{name}, G" if with_ema else name
        fig.add_trace(_line(steps, [r["score"] for r in scored], label, "#bcbd22"), 1, 3)
        if with_ema:
            ema_scores = [r.get("score_G_ema") for r in scored]
            fig.add_trace(_line(steps, ema_scores, f"{name}, G_ema", "#17becf"), 1, 3)
        best = scored[-1].get("best_step")
        hit = [r for r in scored if r["step"] == best]
        if hit:
            won = "score_G_ema" if scored[-1].get("best_generator") == "G_ema" else "score"
            fig.add_trace(
                go.Scatter(
                    x=[best],
                    y=[hit[0].get(won, hit[0]["score"])],
                    mode="markers+text",
                    marker={"symbol": "star", "size": 14, "color": "#d62728"},
                    text=[f"best, step {best:,}" + (", G_ema" if won != "score" else "")],
                    textposition="top left",
                    name="best checkpoint",
                    hovertemplate="best: %{y:.4g} at step %{x}",
                ),
                1,
                3,
            )
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="training step", row=1, col=col)
    fig = _finish(fig, height, legend_y=-0.42, uirevision="small-data")
    fig.update_layout(margin={"t": 80})
    return fig
