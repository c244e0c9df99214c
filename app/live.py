"""The live view of one run: status, controls, the equilibrium curves beside their explanation,
and the sample grids. It refreshes itself (a fragment) while the run trains."""

from __future__ import annotations

import streamlit as st

from app import charts, widgets
from app.metrics_log import Metrics
from app.settings import Settings
from began_core.runs import launch
from began_core.runs.run_dir import RunDir


def show(run: RunDir, settings: Settings, state: str | None = None) -> None:
    """Render the live view; its live parts rerun every `settings.refresh_s` while the run is
    active. The explanation beside them is static, so it never flickers. `state` is the one
    the rest of the page shows: when the run's state moves on, the whole page reruns."""
    state = state or launch.run_state(run)
    every = settings.refresh_s if state in launch.ACTIVE else None
    main, side = st.columns([0.62, 0.38], gap="medium")
    with main:
        st.fragment(_live, run_every=every)(str(run.path), settings, state)
    with side:
        st.fragment(_samples, run_every=every)(str(run.path))
        info = widgets.run_info(run)
        explain(info)
    if settings.read_only:  # a public page shows no paths, commands or logs of the server
        config = {k: v for k, v in info.config.items() if k in ("model", "train")}
        with st.expander("Configuration"):
            st.json(config, expanded=1)
        return
    with st.expander("Configuration and training log"):
        left, right = st.columns(2)
        left.json(info.config or {}, expanded=1)
        right.code(launch.log_tail(run, 30) or "(no log: this run was not started from here)")


def _live(path: str, settings: Settings, shown_state: str) -> None:
    run = RunDir(path)
    if not run.path.is_dir():
        st.warning(f"The run {widgets.plain(run.name)} no longer exists.")
        return
    info = widgets.run_info(run, curves=True)  # the numbers and the curves: one reading
    if info.state != shown_state:
        st.rerun()  # started, stopped, finished or failed: the whole page follows

    _header(info)
    if not settings.read_only:
        _controls(info)
    _problems(info, settings.read_only)
    _numbers(info)
    now = _now(info)
    if now:
        st.markdown(f"**{'Now' if info.active else 'At the last record'}:** {now}")
    _curves(info)


def _samples(path: str) -> None:
    run = RunDir(path)
    if run.path.is_dir():
        widgets.sample_browser(run, key=f"grid::{run.name}")


def _header(info: widgets.RunInfo) -> None:
    title, state = st.columns([0.8, 0.2], vertical_alignment="center")
    p = info.params()
    about = (
        f"{widgets.plain(p['data'])} at {p['res']}×{p['res']} · n = {p['n']} · γ = {p['γ']} · "
        f"λₖ = {p['λ_k']} · η = {p['η']} · lr = {p['lr']} · batch {p['batch']} · "
        f"seed {p['seed']}"
        if info.config
        else "(no configuration written yet)"
    )
    path = info.meta.get("fast_path", {}).get("summary")
    hardware = info.meta.get("hardware")
    if path:  # which speed options the trainer took, and why (began_core/training/fast_path.py)
        about += f"  \n:material/speed: {widgets.plain(path)}"
        about += f" · {widgets.plain(hardware)}" if hardware else ""
    title.markdown(f"#### {widgets.plain(info.name)}\n{about}")  # names as they are spelled
    with state:
        widgets.badge(info.state)


def _controls(info: widgets.RunInfo) -> None:
    run, name = info.run, info.name
    row = st.container(horizontal=True)
    if info.active:
        if row.button(
            "Stop",
            key=f"stop::{name}",
            icon=":material/stop:",
            disabled=info.state == "stopping",
            help="Finish the current step, write a checkpoint, and stop. Resume it later.",
        ):
            launch.stop_run(run)
            st.rerun(scope="fragment")
        return
    checkpoints = run.checkpoints()
    if checkpoints:
        done = checkpoints[-1][0]
        target = max(info.train.get("steps", 0), done)
        with row.popover("Resume", icon=":material/play_arrow:"):
            steps = st.number_input(
                "Train to step",
                min_value=done + 1,
                value=target if target > done else done + 1000,
                step=100,
                key=f"resume_steps::{name}",
                help=f"Continues exactly from the checkpoint at step {done:,}.",
            )
            if st.button("Resume training", key=f"resume::{name}", type="primary"):
                try:
                    launch.resume_run(run, int(steps))
                except launch.LaunchError as e:
                    st.error(widgets.plain(e))
                else:
                    st.rerun()
    with row.popover("Delete", icon=":material/delete:"):
        st.markdown(f"Delete **{widgets.plain(name)}** and all its checkpoints and samples?")
        if st.button("Delete for good", key=f"delete::{name}", type="primary"):
            try:
                launch.delete_run(run)
            except launch.LaunchError as e:
                st.error(widgets.plain(e))
            else:
                st.session_state.pop("run", None)
                st.rerun()


def _problems(info: widgets.RunInfo, read_only: bool) -> None:
    config_problem = info.config_problem(read_only)
    if config_problem:
        problem = widgets.plain(config_problem)  # it names the run's folder
        st.warning(f"**Its configuration is invalid.** {problem}", icon=":material/warning:")
    if info.state == "failed":
        error = launch.run_error(info.run) or "the run failed"
        first, _, rest = error.partition("\n")
        st.error(f"**This run failed.** {widgets.plain(first)}", icon=":material/error:")
        tail = "" if read_only else launch.log_tail(info.run, 25)
        if tail or (rest and not read_only):
            st.code(tail or rest, language=None)
    elif info.state == "starting":
        # The trainer's newest start-up line (listing, decoding, compiling, ...); a public
        # dashboard shows no logs, so it says what starting means in general.
        now = "" if read_only else launch.log_tail(info.run, 1)
        st.info(
            f"Starting: {widgets.plain(now) if now else 'loading the data and building the networks…'}",
            icon=":material/hourglass_top:",
        )
    elif info.state == "stopping":
        st.info("Stopping: finishing the step and writing a checkpoint…", icon=":material/pause:")


def _numbers(info: widgets.RunInfo) -> None:
    last, steps = info.last, info.steps
    cols = st.columns(4)
    cols[0].metric("k_t", f"{last['k_t']:.4f}" if last else "—")
    cols[1].metric(
        "M_global",
        f"{last['M_global']:.4f}" if last else "—",
        delta=_trend(info.metrics),
        delta_color="inverse",
        help="L(x) + |γ·L(x) − L(G(z))|: lower is better. The change compares the mean of the "
        "last tenth of the curve with the tenth before.",
    )
    cols[2].metric("Images/s", f"{last['images_per_s']:.0f}" if last else "—")
    eta = last.get("eta_s") if info.state == "running" else None
    cols[3].metric("ETA", widgets.duration(eta) if eta is not None else "—")
    elapsed = widgets.duration(last.get("wall_time")) if last else "0:00"
    text = f"Step {info.step:,} of {steps:,} · {elapsed} elapsed"
    if info.active and info.last:
        text += f" · last record {widgets.ago(info.heartbeat)}"
    st.progress(min(1.0, info.step / steps) if steps else 0.0, text=text)


def _trend(metrics: Metrics) -> str | None:
    M_global = metrics.column("M_global")
    k = len(M_global) // 10
    if k < 1:
        return None
    return f"{M_global[-k:].mean() - M_global[-2 * k : -k].mean():+.4f}"


def _curves(info: widgets.RunInfo) -> None:
    left, right, _ = st.columns([0.45, 0.25, 0.3], vertical_alignment="bottom")
    smoothing = left.slider(
        "Smoothing",
        min_value=0.0,
        max_value=0.99,
        value=0.6,
        step=0.01,
        key="smoothing",
        help="Exponential moving average, as in TensorBoard; the raw curve stays faint behind.",
    )
    log_y = right.toggle("Log scale", key="log_y", help="Log scale for the losses and M_global.")
    metrics = info.metrics
    if not metrics:
        st.caption("The curves appear with the first logged step.")
        return
    fig = charts.live_figure(metrics, info.gamma, smoothing=smoothing, log_y=log_y)
    st.plotly_chart(fig, key=f"curves::{info.name}", config={"displaylogo": False})
    st.caption(
        f"{len(metrics):,} points, one every {info.train.get('log_every', '?')} steps "
        f"(the mean over those steps); last at step {info.step:,}."
    )
    if charts.has_small_data_curves(metrics):
        small = charts.small_data_figure(metrics, smoothing=smoothing)
        st.plotly_chart(small, key=f"small-data::{info.name}", config={"displaylogo": False})
        st.caption(
            "$M_\\text{global}$ falls whenever $D$ reconstructs real images better, also when it "
            "does so by memorising them. The held-out gap cannot be fooled: "
            "$L(x_\\text{held-out}) - L(x_\\text{train})$, on images $D$ never trains on "
            "against as many it does, both without augmentation. Near 0, $D$ models the data; "
            "rising, it recalls its training set, and $G$ drifts towards collapse. The score "
            "compares $G$'s images with the held-out ones; the star is the checkpoint kept as "
            "best, which `export` takes."
        )


def explain(info: widgets.RunInfo) -> None:
    """The equilibrium in the paper's notation, and what this run is doing now."""
    explain_panel(info.gamma, info.train.get("lambda_k", 0.001))


def explain_panel(gamma: float, lambda_k: float) -> None:
    """The explanation of the curves, for a run or for the classroom's model."""
    with st.container(border=True):
        st.markdown(
            f"""
**Reading the curves** (BEGAN, Berthelot et al. 2017)

The discriminator $D$ is an auto-encoder. It scores an image $v$ by how badly it
reconstructs it: $L(v) = \\text{{mean}}\\,|v - D(v)|^\\eta$.

- **L(x)**, real images (blue): $D$ learns to reconstruct them well.
- **L(G(z))**, generated images (red): $G$ wants it low, $D$ wants it high.
  $\\mathcal{{L}}_D = L(x) - k_t\\,L(G(z_D))$, $\\;\\mathcal{{L}}_G = L(G(z_G))$.
- **$k_t$** is a proportional controller that keeps $L(G(z)) \\approx \\gamma\\,L(x)$
  (grey dashes):
  $k_{{t+1}} = \\text{{clip}}\\big(k_t + \\lambda_k\\,(\\gamma L(x) - L(G(z))),\\,0,\\,1\\big)$.
  A positive **balance** $\\gamma L(x) - L(G(z))$ means $G$ is ahead, so $k_t$ rises and
  $D$ pushes back on generated images; a negative one lowers $k_t$ and lets $D$ work on
  real images.
- **$\\gamma$** $= E[L(G(z))] / E[L(x)]$, the diversity ratio: lower $\\gamma$, sharper
  but less varied samples. Here $\\gamma = {gamma:g}$, $\\lambda_k = {lambda_k:g}$.
- **$M_\\text{{global}}$** $= L(x) + |\\gamma L(x) - L(G(z))|$ falls as the images get
  better: one number for how far training has come.
"""
        )


def _now(info: widgets.RunInfo) -> str | None:
    return now_sentence(info.metrics.records(5), info.gamma)


def now_sentence(records: list[dict], gamma: float) -> str | None:
    """One sentence on the controller's current situation, from the last few records."""
    recent = records[-5:]
    if not recent:
        return None
    L_x = sum(r["L_x"] for r in recent) / len(recent)
    L_G = sum(r["L_G"] for r in recent) / len(recent)
    balance = sum(r["balance"] for r in recent) / len(recent)
    k_t = recent[-1]["k_t"]
    ratio = f"$L(G(z)) / L(x) = {L_G / L_x:.2f}$ against $\\gamma = {gamma:g}$" if L_x else ""
    if abs(balance) < 0.05 * gamma * L_x:
        return f"{ratio}: close to equilibrium, $k_t = {k_t:.4f}$ holds steady."
    if balance > 0:
        return (
            f"{ratio}: $G$ is ahead (its images are reconstructed too well), "
            f"so $k_t$ rises (now ${k_t:.4f}$) and $D$ pushes harder on $G(z)$."
        )
    if k_t <= 0:
        return (
            f"{ratio}: $D$ is ahead, so $k_t$ sits at its floor 0 and $D$ spends its effort "
            "on real images until $G$ catches up."
        )
    return f"{ratio}: $D$ is ahead, so $k_t$ falls (now ${k_t:.4f}$)."
