"""Plotly figures of a run's metrics.jsonl: the live view and the comparison of runs.

Presentation only: every number plotted was logged by the trainer; smoothing is an
exponential moving average (TensorBoard's, debiased) drawn over the faint raw curve. A curve
of more points than its panel has pixels is decimated (each stretch's lowest and highest
point, and the last), so a 45,000-record run sends what a short one does and spikes stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.metrics_log import Metrics

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
MAX_POINTS = 1000  # per curve sent to the browser: about 2 per pixel of a panel
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def smooth(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's exponential moving average, debiased; weight 0 returns the values.
    A value that is not finite (a diverged loss, a record without it) is shown as it is and
    leaves the average alone."""
    y = np.array(values, dtype=np.float64)
    if weight <= 0 or not len(y):
        return y
    finite = np.isfinite(y)
    x = y[finite]
    y[finite] = _ema(x, weight) / -np.expm1(np.arange(1, len(x) + 1) * np.log(weight))
    return y


def _ema(x: np.ndarray, w: float) -> np.ndarray:
    """a_i = w a_(i-1) + (1 - w) x_i from a_0 = 0, as a scan: after the step of offset d, a_i
    sums the 2d newest terms, so log2(n) whole-array steps do it. No matrix product: BLAS
    threads spin on a busy machine, which cost more than the rest of a refresh."""
    a = (1 - w) * x
    d, decay = 1, w
    while d < len(a) and decay > 0.0:
        a[d:] = a[d:] + decay * a[:-d]
        d, decay = 2 * d, decay * decay
    return a


def decimate(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` of `y` for a curve that looks the same drawn: in each of
    max_points / 2 - 1 runs of neighbours, the lowest and the highest (a spike stays visible),
    and the first and last points. All of them when there are no more than `max_points`."""
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    size = -(-n // max(1, max_points // 2 - 1))
    buckets = -(-n // size)
    nan = np.isnan(y)
    low = np.full(buckets * size, np.inf)
    low[:n] = np.where(nan, np.inf, y)
    high = np.full(buckets * size, -np.inf)
    high[:n] = np.where(nan, -np.inf, y)
    base = np.arange(buckets) * size
    lows = base + low.reshape(buckets, size).argmin(axis=1)
    highs = base + high.reshape(buckets, size).argmax(axis=1)
    return np.unique(np.concatenate([lows, highs, [0, n - 1]]))


def thin(n: int, max_points: int) -> range | list[int]:
    """Indices of at most about `max_points` of n evenly spaced points, the last included: for
    a curve that moves smoothly (the classroom's); `decimate` keeps a run's spikes."""
    if n <= max_points:
        return range(n)
    stride = -(-n // max_points)
    keep = list(range(0, n, stride))
    return keep if keep[-1] == n - 1 else [*keep, n - 1]


def _xy(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The points of a curve to draw. As arrays of Python numbers (dtype object): plotly checks
    a list element by element (a third of a refresh's CPU) but takes an array whole, and it
    sends an object array as a plain JSON list, where a float array would go as a base64 spec
    that the page's figure would hold instead of its points."""
    keep = decimate(y, max_points)
    return x[keep].astype(object), y[keep].astype(object)


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
    metrics: Metrics,
    gamma: float,
    *,
    smoothing: float = 0.6,
    log_y: bool = False,
    height: int = 760,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Six panels sharing the step axis: the two reconstruction losses with the target
    gamma*L(x), M_global, k_t, the balance term, the learning rate and the throughput."""
    x = metrics.step
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
        y = metrics.column(key)
        color = color or COLORS[key]
        name = name or LABELS[key]
        if raw and smoothing > 0:
            faint = _line(*_xy(x, y, max_points), name, color, width=1, opacity=0.25, legend=False)
            fig.add_trace(faint, row, col)
        y_shown = smooth(y, smoothing) if smoothed else y
        fig.add_trace(_line(*_xy(x, y_shown, max_points), name, color, legend=legend), row, col)

    add("L_x", 1, 1, legend=True)
    add("L_G", 1, 1, legend=True)
    target = gamma * smooth(metrics.column("L_x"), smoothing)
    fig.add_trace(
        _line(
            *_xy(x, target, max_points),
            f"γ·L(x), γ = {gamma:g}",
            COLORS["target"],
            dash="dash",
            width=1.5,
        ),
        1,
        1,
    )
    add("M_global", 1, 2)
    add("k_t", 2, 1, raw=False, smoothed=False)  # k_t is the controller's state: not averaged
    add("balance", 2, 2)
    fig.add_hline(y=0, line={"color": "#555", "width": 1, "dash": "dot"}, row=2, col=2)
    add("lr", 3, 1, raw=False, smoothed=False)
    add("images_per_s", 3, 2, raw=False)

    k_t, lr = metrics.column("k_t"), metrics.column("lr")
    k_max = float(np.nanmax(k_t)) if np.isfinite(k_t).any() else 0.0
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
    levels = np.unique(lr[~np.isnan(lr)])[-6:].tolist()  # ticks at the rates actually used
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
    runs: Sequence[tuple[str, float, Metrics]],
    *,
    smoothing: float = 0.6,
    log_y: bool = False,
    height: int = 640,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Several runs overlaid, one colour each: `runs` is [(label, gamma, metrics)]."""
    fig = make_subplots(
        rows=2,
        cols=3,
        shared_xaxes=True,
        vertical_spacing=0.14,
        horizontal_spacing=0.06,
        subplot_titles=[title for _, title in COMPARE_PANELS],
    )
    for i, (label, gamma, metrics) in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        keys = ("M_global", "k_t", "L_x", "L_G", "balance")
        c = {key: smooth(metrics.column(key), smoothing) for key in keys}
        # The ratio of the smoothed losses, steadier than the smoothed ratio.
        with np.errstate(divide="ignore", invalid="ignore"):
            c["ratio"] = np.where(c["L_x"] != 0, c["L_G"] / c["L_x"], np.nan)
        for j, (key, _) in enumerate(COMPARE_PANELS):
            row, col = divmod(j, 3)
            line = _line(*_xy(metrics.step, c[key], max_points), label, color, legend=j == 0)
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


def has_small_data_curves(metrics: Metrics) -> bool:
    """Whether the run logged the held-out gap or scores (train --heldout / --score-every)."""
    return "heldout_gap" in metrics or "score" in metrics


def small_data_figure(
    metrics: Metrics,
    *,
    smoothing: float = 0.6,
    height: int = 380,
    max_points: int = MAX_POINTS,
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
    M_global = smooth(metrics.column("M_global"), smoothing)
    fig.add_trace(
        _line(
            *_xy(metrics.step, M_global, max_points),
            LABELS["M_global"],
            COLORS["M_global"],
            legend=False,
        ),
        1,
        1,
    )
    if "heldout_gap" in metrics:
        gap = _line(*_xy(*metrics.series("heldout_gap"), max_points), "held-out gap", "#e377c2")
        fig.add_trace(gap, 1, 2)
        fig.add_hline(y=0, line={"color": "#555", "width": 1, "dash": "dot"}, row=1, col=2)
        if "augment_p" in metrics:
            xy = _xy(*metrics.series("augment_p"), max_points)
            p = _line(*xy, "augmentation p", "#7f7f7f", dash="dash")
            fig.add_trace(p, 1, 2, secondary_y=True)
            fig.update_yaxes(title_text="p", range=[0, 1.05], row=1, col=2, secondary_y=True)
    if "score" in metrics:
        name = str(metrics.texts.get("score_metric", "score")).replace("_", " ")
        steps, scores = metrics.series("score")
        with_ema = "score_G_ema" in metrics
        label = f"{name}, G" if with_ema else name
        fig.add_trace(_line(*_xy(steps, scores, max_points), label, "#bcbd22"), 1, 3)
        if with_ema:
            xy = _xy(*metrics.series("score_G_ema"), max_points)
            fig.add_trace(_line(*xy, f"{name}, G_ema", "#17becf"), 1, 3)
        best = _last(metrics, "best_step")
        won = "score_G_ema" if metrics.texts.get("best_generator") == "G_ema" else "score"
        at_best = _at_step(metrics, won, best) if best is not None else None
        if at_best is None and best is not None:
            at_best = _at_step(metrics, "score", best)
        if at_best is not None:
            fig.add_trace(
                go.Scatter(
                    x=[best],
                    y=[at_best],
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


def _last(metrics: Metrics, key: str) -> int | None:
    """The newest logged value of `key`, as a whole number."""
    values = metrics.series(key)[1]
    return int(values[-1]) if len(values) and np.isfinite(values[-1]) else None


def _at_step(metrics: Metrics, key: str, step: int) -> float | None:
    """`key` as logged at `step` (its first record there), or None."""
    steps, values = metrics.series(key)
    hit = np.flatnonzero(steps == step)
    return float(values[hit[0]]) if len(hit) else None
