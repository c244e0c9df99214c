"""Runs: every run with its status, several runs' curves overlaid, and the shipped checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import streamlit as st

from app import charts, settings, widgets
from began_core.checkpoints.hub import find_checkpoints
from began_core.runs import launch
from began_core.runs.run_dir import list_runs, text

MAX_COMPARED = 8


def runs_table(infos: list[widgets.RunInfo], read_only: bool) -> None:
    rows = []
    for info in infos:
        p, last = info.params(), info.last
        rows.append(
            {
                "run": info.name,
                "status": widgets.mark(info.state),
                "data": p["data"],
                "res": p["res"],
                "n": p["n"],
                "γ": p["γ"],
                "λ_k": p["λ_k"],
                "η": p["η"],
                "lr": p["lr"],
                "batch": p["batch"],
                "progress": info.step / info.steps if info.steps else 0.0,
                "step": info.step,
                "M_global": last.get("M_global"),
                "k_t": last.get("k_t"),
                "images/s": last.get("images_per_s"),
                "last record": widgets.ago(info.heartbeat),
            }
        )
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "M_global": st.column_config.NumberColumn(format="%.4f"),
            "k_t": st.column_config.NumberColumn(format="%.4f"),
            "images/s": st.column_config.NumberColumn(format="%.0f"),
        },
    )
    for info in infos:
        problem = info.config_problem(read_only)
        if problem:
            said = f"**{widgets.plain(info.name)}**: {widgets.plain(problem)}"
            st.warning(said, icon=":material/warning:")
    watch, go = st.columns([0.7, 0.3], vertical_alignment="bottom")
    name = watch.selectbox("Watch a run live", [i.name for i in infos], key="watch")
    if go.button("Open in Train", icon=":material/monitoring:", width="stretch"):
        st.switch_page("views/train.py", query_params={"run": name})


def labels(infos: list[widgets.RunInfo]) -> dict[str, str]:
    """Each run's name with the settings that tell the compared runs apart (γ always)."""
    params = {i.name: i.params() for i in infos}
    differ = [k for k in next(iter(params.values())) if len({p[k] for p in params.values()}) > 1]
    keys = ["γ", *[k for k in differ if k != "γ"]]
    return {n: f"{n} ({', '.join(f'{k}={p[k]}' for k in keys)})" for n, p in params.items()}


def compare(infos: list[widgets.RunInfo]) -> None:
    st.header("Compare runs")
    st.caption(
        "Overlay runs that differ in one setting, for example γ = 0.3, 0.5 and 0.7 as in the "
        "paper's Figure 3: each run's L(G(z)) / L(x) settles at its own γ, and lower γ gives "
        "sharper, less varied samples."
    )
    with_metrics = [i for i in infos if i.last]  # each one's newest record, not its curves
    if not with_metrics:
        st.caption("No run has logged a step yet.")
        return
    by_name = {i.name: i for i in with_metrics}
    chosen = st.multiselect(
        "Runs",
        list(by_name),
        default=list(by_name)[:3],
        max_selections=MAX_COMPARED,
        key="compare",
        format_func=lambda n: f"{n}  ·  γ={by_name[n].params()['γ']}",
    )
    if not chosen:
        st.caption("Choose runs to compare.")
        return
    left, right, _ = st.columns([0.4, 0.2, 0.4], vertical_alignment="bottom")
    smoothing = left.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="compare_smoothing")
    log_y = right.toggle("Log scale", key="compare_log_y")
    picked = [by_name[n] for n in chosen]
    label = labels(picked)
    fig = charts.compare_figure(
        [(widgets.plain_label(label[i.name]), i.gamma, i.metrics) for i in picked],
        smoothing=smoothing,
        log_y=log_y,
    )
    st.plotly_chart(fig, key="compare_curves", config={"displaylogo": False})

    st.subheader("Newest sample grids")
    cols = st.columns(max(3, min(len(picked), 4)))  # never wider than a third
    for j, info in enumerate(picked):
        samples = info.run.samples()
        with cols[j % len(cols)]:
            png = widgets.grid_image(samples[-1][1]) if samples else None
            if png is None:
                st.caption(f"{widgets.plain(label[info.name])}: no grid yet")
            else:
                caption = f"{widgets.plain(label[info.name])}, step {samples[-1][0]:,}"
                st.image(png, caption=caption, width="stretch", output_format="PNG")


def pretrained(root: Path, read_only: bool) -> None:
    st.header("Shipped checkpoints")
    found = find_checkpoints(root)
    if not found:
        st.caption(f"No shipped checkpoints in {widgets.plain(root.name + '/')} yet.")
        return
    for path in found:
        with st.expander(widgets.plain(text(path.name)), icon=":material/deployed_code:"):
            left, right = st.columns([0.4, 0.6])
            try:
                config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                config = {}
            with left:
                try:
                    png = checkpoint_samples(str(path), _mtime(path / "model.safetensors"))
                except Exception as e:  # a broken checkpoint must not break the page
                    why = "it could not be loaded" if read_only else str(e)  # no server paths
                    st.caption(f"No samples: {widgets.plain(why)}")
                else:
                    caption = "64 samples G(z), z from seed 0"
                    st.image(png, caption=caption, width="stretch", output_format="PNG")
                st.json(config, expanded=1)
            card = path / "README.md"
            if card.is_file():
                right.markdown(_card_body(card.read_text(encoding="utf-8")))


@st.cache_data(max_entries=32, show_spinner="Sampling from the checkpoint…")
def checkpoint_samples(path: str, mtime_ns: int) -> bytes:
    """A grid of 64 samples of a checkpoint, upscaled like the training grids."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from began_core.checkpoints.hub import load
    from began_core.data.images import make_grid, upscale

    model = load(path)
    with torch.inference_mode():
        z = model.sample_z(64, generator=torch.Generator().manual_seed(0))
        grid = make_grid(model.generate(z), nrow=8)
    factor = max(1, round(widgets.GRID_WIDTH / grid.width))
    grid = Image.fromarray(upscale(np.asarray(grid), factor))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _card_body(text: str) -> str:
    """The model card without its YAML front matter and its relative image links (the
    samples are drawn beside it; a relative link would show as a broken image here)."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)
    return re.sub(r"^!\[[^\]]*\]\((?!https?:)[^)]*\)[ \t]*$", "", text, flags=re.MULTILINE)


def runs_and_compare(root: str, read_only: bool, was_active: bool) -> None:
    """The table and the overlay; refreshed while any run trains."""
    runs = list_runs(root, starting=True)
    if not runs:
        st.info("No runs yet." + ("" if read_only else " Start one on **Train**."))
        return
    infos = [widgets.run_info(r) for r in runs]
    if any(i.active for i in infos) != was_active:
        st.rerun()  # switch the refresh on or off
    runs_table(infos, read_only)
    compare(infos)


s = settings.load()
st.title("Runs")
active = any(launch.run_state(r) in launch.ACTIVE for r in list_runs(s.runs_dir, starting=True))
every = 2 * s.refresh_s if active else None
st.fragment(runs_and_compare, run_every=every)(str(s.runs_dir), s.read_only, active)
pretrained(s.pretrained_dir, s.read_only)
