"""Pieces the pages share: what a run is (state, config, metrics), its badge, its sample grids."""

from __future__ import annotations

import html
import io
import math
import os
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from app.metrics_log import Metrics, MetricsCache
from began_core.data.images import upscale
from began_core.runs import launch
from began_core.runs.run_dir import RunDir

BADGES = {  # state -> (colour, icon)
    "starting": ("gray", ":material/hourglass_top:"),
    "running": ("blue", ":material/directions_run:"),
    "stopping": ("orange", ":material/pause_circle:"),
    "finished": ("green", ":material/check_circle:"),
    "stopped": ("violet", ":material/stop_circle:"),
    "failed": ("red", ":material/error:"),
    "unknown": ("gray", ":material/help:"),
}
MARKS = {  # state -> a mark for plain-text labels; text glyphs, not emoji, so any font has them
    "starting": "…",
    "running": "▶",
    "stopping": "■",
    "finished": "✓",
    "stopped": "■",
    "failed": "✗",
    "unknown": "?",
}
GRID_WIDTH = 560  # sample grids are upscaled (nearest neighbour) to about this many pixels
# What Markdown, its HTML, and Streamlit's :icons:, :color[text] and $math$ could take for
# formatting: any ASCII punctuation may be backslash-escaped in CommonMark.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'/,;?@^%])")


def plain(text: object) -> str:
    """`text` shown as itself where the page writes Markdown (a header, a message, a caption):
    a run or folder named `**x** [y](#z) <b>` shows its stars, brackets and tags, not bold, a
    link and HTML. Every punctuation character is backslash-escaped and line breaks become
    spaces. Where a name stands alone, a text element (st.text, a table, an option) needs none."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).splitlines()))


def plain_label(text: object) -> str:
    """`text` as a plotly trace name shows it: plotly reads <b>, <br>, <a> and entities there."""
    return html.escape(str(text), quote=False)


@dataclass
class RunInfo:
    """A run as the page shows it: read once per refresh. Its metrics are read when first
    asked for (a table of runs needs only each one's newest record)."""

    run: RunDir
    state: str
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    config_error: str | None = None  # why config.json is not a valid run configuration

    @cached_property
    def metrics(self) -> Metrics:
        """Every logged record, as columns."""
        return metrics(self.run)

    @cached_property
    def _newest(self) -> dict[str, Any]:
        return last_record(self.run)

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def train(self) -> dict[str, Any]:
        return self.config.get("train", {})

    @property
    def model(self) -> dict[str, Any]:
        return self.config.get("model", {})

    @property
    def meta(self) -> dict[str, Any]:
        """What the trainer recorded about the run: command, versions, hardware, fast path."""
        return self.config.get("meta", {})

    @property
    def data(self) -> str:
        return str(self.config.get("data", {}).get("source", "?"))

    @property
    def gamma(self) -> float:
        try:
            return float(self.train.get("gamma", float("nan")))
        except (TypeError, ValueError):  # a config.json edited by hand
            return float("nan")

    @property
    def last(self) -> dict[str, Any]:
        """The newest record ({} before the first)."""
        return self.metrics.last if "metrics" in self.__dict__ else self._newest

    @property
    def step(self) -> int:
        return int(self.last.get("step", self.status.get("step") or 0))

    @property
    def steps(self) -> int:
        return int(self.status.get("steps") or self.train.get("steps") or 0)

    @property
    def heartbeat(self) -> float | None:
        """When the trainer last wrote a metrics record (or its status)."""
        try:
            return self.run.metrics_path.stat().st_mtime
        except OSError:
            return self.status.get("updated")

    @property
    def active(self) -> bool:
        return self.state in launch.ACTIVE

    def config_problem(self, read_only: bool) -> str | None:
        """What is wrong with config.json, as the library says it; a public page names the
        run instead of its folder on the server."""
        if self.config_error is None or not read_only:
            return self.config_error
        return self.config_error.replace(str(self.run.path), self.name)

    def params(self) -> dict[str, str]:
        """The settings a user picks when launching, as short labels."""
        t, m = self.train, self.model
        return {
            "γ": _fmt(t.get("gamma")),
            "λ_k": _fmt(t.get("lambda_k")),
            "η": _fmt(t.get("eta", 1)),
            "n": _fmt(m.get("n")),
            "res": _fmt(m.get("resolution")),
            "lr": _fmt(t.get("lr")),
            "batch": _fmt(t.get("batch_size")),
            "seed": _fmt(t.get("seed")),
            "data": Path(self.data).name if self.data else "?",
        }


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


SECTIONS = ("model", "train", "data")


def run_info(run: RunDir, *, curves: bool = False) -> RunInfo:
    """The run as the page shows it; with `curves`, its metrics read now (else when first
    asked for), so that its newest record and its curves come from one reading."""
    config, error = {}, None
    try:
        config = run.read_config_dict()
        run.read_config()  # the checks a resume makes, for their message
    except FileNotFoundError:  # not written yet
        pass
    except ValueError as e:  # not JSON, not an object, or not a valid configuration
        error = str(e)
    # A config.json edited by hand: a section that is not an object reads as empty.
    config = {k: v for k, v in config.items() if isinstance(v, dict) or k not in SECTIONS}
    info = RunInfo(
        run=run,
        state=launch.run_state(run),
        config=config,
        status=run.read_status(),
        config_error=error,
    )
    if curves:
        info.metrics = metrics(run)
    return info


@st.cache_resource(show_spinner=False)
def _logs() -> MetricsCache:
    """The server's one cache of parsed metrics, shared by every session: each run's file is
    parsed once, then only what was appended (app/metrics_log.py)."""
    return MetricsCache()


def metrics(run: RunDir) -> Metrics:
    """metrics.jsonl as columns, reading only the lines appended since the last call."""
    return _logs().read(run.metrics_path)


def last_record(run: RunDir) -> dict[str, Any]:
    """The run's newest record ({} if none), without parsing the whole file."""
    return _logs().last(run.metrics_path)


def badge(state: str) -> None:
    color, icon = BADGES.get(state, BADGES["unknown"])
    st.badge(state, icon=icon, color=color)


def mark(state: str) -> str:
    return f"{MARKS.get(state, MARKS['unknown'])} {state}"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def ago(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


@st.cache_data(max_entries=256, show_spinner=False)
def _upscaled_png(path: bytes, mtime_ns: int, width: int) -> bytes:
    with Image.open(path) as im:
        a = np.asarray(im if im.mode in ("RGB", "L") else im.convert("RGB"))
    big = Image.fromarray(upscale(a, max(1, round(width / a.shape[1]))))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    return buf.getvalue()


def grid_image(path: Path, width: int = GRID_WIDTH) -> bytes | None:
    """A sample grid, upscaled by whole pixels so 32x32 images stay sharp; None if unreadable."""
    try:
        return _upscaled_png(os.fsencode(path), path.stat().st_mtime_ns, width)
    except OSError:
        return None


def sample_browser(run: RunDir, key: str) -> None:
    """The newest sample grid, and a step slider through the saved ones. The slider follows
    new grids as they arrive unless it was moved back to an older one."""
    generators = run.sample_generators()
    generator = "G"
    if len(generators) > 1:
        generator = st.radio(
            "Generator",
            generators,
            key=f"{key}::generator",
            horizontal=True,
            help="G, or G_ema: the moving average of G's weights the run keeps (train "
            "--ema-kimg), drawn from the same fixed z.",
        )
    samples = run.samples(generator)
    if not samples:
        st.caption("No sample grid yet.")
        return
    steps = [s for s, _ in samples]
    latest_key = f"{key}::latest"
    if (
        key not in st.session_state
        or st.session_state[key] not in steps
        or st.session_state[key] == st.session_state.get(latest_key)
    ):
        st.session_state[key] = steps[-1]
    st.session_state[latest_key] = steps[-1]
    if len(steps) > 1:
        step = st.select_slider(
            "Sample grid at step",
            options=steps,
            key=key,
            format_func=lambda s: f"{s:,}",
            help="The same 64 fixed z at every step, so the grids show how G(z) evolves.",
        )
    else:
        step = steps[0]
    png = grid_image(dict(samples)[step])
    if png is None:
        st.caption("This grid could not be read.")
        return
    newest = " (newest)" if step == steps[-1] else ""
    caption = f"{generator}(z) at step {step:,}{newest}"
    st.image(png, caption=caption, width="stretch", output_format="PNG")
