"""Classroom: a 2-D BEGAN that trains live in this page, one model per browser tab.

The model (began_core.classroom.began2d) is tiny, so it trains in the page's own process; it starts
no process and writes no file, so the page also works on a read-only dashboard. The dataset,
settings and seed live in the URL, so a link opens the same experiment.
"""

from __future__ import annotations

import base64
import threading

import streamlit as st

from app import classroom_charts as charts
from app.live import explain_panel, now_sentence
from began_core.classroom import points
from began_core.classroom.began2d import Classroom, Design, Knobs
from began_core.presets import CLASSROOM

FRAME_S = 0.1  # ask for a frame every 0.1 s while playing: train `speed` steps, then redraw
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3)
LAMBDA_KS = (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0)
DEFAULTS = dict(CLASSROOM.flags)  # began_core/presets.py
VIEWS = {  # what D auto-encodes -> the design
    "blob": ("a blob image per point", Design()),  # 16x16, the default
    "point": ("the raw point, code 2", Design(view="point", code=2)),  # learns the identity
}
# While playing, Streamlit marks every element of the live view stale (and fades it to a third)
# from the start of a frame until that frame draws it again; frames follow each other closely,
# so the plots would be faded most of the time. The live view keeps them opaque. (Opacity
# only: with `transition: none` too, the replaced plots were never removed from the page.)
STEADY = "<style>.st-key-cls_live [data-stale='true'] { opacity: 1 !important; }</style>"
KNOBS = ("gamma", "lambda_k", "lr_D", "lr_G", "eta")
BREAK_IT = {  # name -> (knob changes, k_t to set or None, what the class should see)
    "k_t frozen at 0": (
        {"lambda_k": 0.0},
        0.0,
        "D only learns to reconstruct the real points and never pushes back on G's: the map "
        "deepens where the data are, G rolls into the nearest deep spot and stays, because "
        "nothing in L_D tells D to make G's spot worse.",
    ),
    "k_t frozen at 1": (
        {"lambda_k": 0.0},
        1.0,
        "D weighs G's points as much as the real ones: wherever G sits on the data the two "
        "terms of L_D cancel, so D un-learns the real points there; L(x) climbs and the map "
        "churns as G chases the spots D has not yet spoiled.",
    ),
    "λₖ = 0": (
        {"lambda_k": 0.0},
        None,
        "k_t stops where it is: the controller is off. The balance γ·L(x) − L(G(z)) drifts "
        "away from 0 and nothing brings L(G(z)) back to γ·L(x); watch the dashed target "
        "part from the red curve.",
    ),
    "no clip of k_t": (
        {"clip_k": False},
        None,
        "k_t may leave [0, 1]: when D is ahead it goes negative, and a negative k_t makes D "
        "reconstruct G's points well too (L_D = L(x) + |k_t| L(G(z))), which is why the "
        "paper clips it.",
    ),
}


def _from_url() -> None:
    """Seed the widgets from the URL once per tab (a shared link), then the widgets rule."""
    if st.session_state.get("cls_loaded"):
        return
    q = st.query_params
    for key, default in DEFAULTS.items():
        raw = q.get(key)
        value = default
        if raw is not None:
            try:
                value = type(default)(float(raw)) if not isinstance(default, str) else raw
            except ValueError:
                value = default
        st.session_state[f"cls_{key}"] = value
    if st.session_state["cls_data"] not in points.DATASETS:
        st.session_state["cls_data"] = DEFAULTS["data"]
    if st.session_state["cls_view"] not in VIEWS:
        st.session_state["cls_view"] = DEFAULTS["view"]
    _snap("cls_gamma", 0.1, 1.0)
    for key, options in (
        ("lambda_k", LAMBDA_KS),
        ("lr_D", LEARNING_RATES),
        ("lr_G", LEARNING_RATES),
    ):
        value = st.session_state[f"cls_{key}"]
        st.session_state[f"cls_{key}"] = min(options, key=lambda o, v=value: abs(o - v))
    st.session_state["cls_eta"] = 2 if st.session_state["cls_eta"] == 2 else 1
    st.session_state["cls_speed"] = int(min(200, max(1, st.session_state["cls_speed"])))
    st.session_state["cls_seed"] = int(min(2**31 - 1, max(0, st.session_state["cls_seed"])))
    st.session_state["cls_loaded"] = True


def _snap(key: str, lo: float, hi: float) -> None:
    st.session_state[key] = round(min(hi, max(lo, float(st.session_state[key]))) * 20) / 20


def _to_url() -> None:
    for key in DEFAULTS:
        st.session_state.setdefault(f"cls_{key}", DEFAULTS[key])
        st.query_params[key] = str(st.session_state[f"cls_{key}"])


def _knobs() -> Knobs:
    values = {k: st.session_state[f"cls_{k}"] for k in KNOBS}
    return Knobs(**values, clip_k=not st.session_state.get("cls_noclip", False))


def _model(table) -> Classroom | None:
    """The tab's model, rebuilt when the data or the seed change, or on Reset."""
    data, seed = st.session_state["cls_data"], int(st.session_state["cls_seed"])
    view = st.session_state["cls_view"]
    wanted = (data, seed, view, None if table is None else hash(table.numpy().tobytes()))
    model = st.session_state.get("cls_model")
    if model is None or st.session_state.get("cls_built") != wanted:
        try:
            dataset = points.make(data, table)
        except ValueError as e:
            st.info(str(e), icon=":material/upload_file:")
            return None
        model = Classroom(dataset, VIEWS[view][1], knobs=_knobs(), seed=seed)
        st.session_state["cls_model"], st.session_state["cls_built"] = model, wanted
        # The live fragment may run in a worker thread beside a full run of the page (a click):
        # one of them touches the model at a time.
        st.session_state["cls_lock"] = threading.RLock()
    model.knobs = _knobs()
    return model


def _break(name: str) -> None:
    changes, k_t, _ = BREAK_IT[name]
    for key, value in changes.items():
        if key == "clip_k":
            st.session_state["cls_noclip"] = not value
        else:
            st.session_state[f"cls_{key}"] = value
    model = st.session_state.get("cls_model")
    if model is not None and k_t is not None:
        model.k_t = k_t
    st.session_state["cls_broken"] = name


def _repair() -> None:
    st.session_state["cls_noclip"] = False
    st.session_state["cls_lambda_k"] = DEFAULTS["lambda_k"]
    st.session_state.pop("cls_broken", None)
    model = st.session_state.get("cls_model")
    if model is not None:
        model.k_t = min(1.0, max(0.0, model.k_t))


def sidebar() -> object:
    """Dataset, seed, the mid-run sliders and the break-it presets; returns an uploaded table."""
    table = None
    with st.sidebar:
        st.header("Experiment")
        st.selectbox(
            "Data",
            list(points.DATASETS),
            key="cls_data",
            format_func=lambda d: "CSV you upload" if d == "csv" else d,
        )
        st.caption(points.DATASETS[st.session_state["cls_data"]])
        if st.session_state["cls_data"] == "csv":
            upload = st.file_uploader("Points (x, y)", type=["csv", "txt"], key="cls_csv")
            if upload is not None:
                try:
                    table = points.read_csv(upload.getvalue())
                except ValueError as e:
                    st.error(str(e))
            st.caption("Uploaded points stay in this tab's memory; a link cannot carry them.")
        st.selectbox(
            "D auto-encodes",
            list(VIEWS),
            key="cls_view",
            format_func=lambda v: VIEWS[v][0],
            help="By default D auto-encodes a 16×16 image of a blob drawn at each point. The raw "
            "point is the obvious design, and it fails: with a 2-D code D learns to copy every "
            "point, so L(v) is flat and G gets no signal (docs/classroom.md, the design search).",
        )
        st.number_input("Seed", 0, 2**31 - 1, key="cls_seed")
        st.subheader("Change mid-run")
        st.slider(
            "γ (gamma)",
            0.1,
            1.0,
            step=0.05,
            key="cls_gamma",
            help="The controller holds mean L(G(z)) at γ × mean L(x).",
        )
        st.select_slider(
            "λₖ (lambda_k)",
            LAMBDA_KS,
            key="cls_lambda_k",
            help="How far k_t moves per step for a given imbalance γ·L(x) − L(G(z)).",
        )
        st.select_slider("D's learning rate", LEARNING_RATES, key="cls_lr_D", format_func=_sci)
        st.select_slider("G's learning rate", LEARNING_RATES, key="cls_lr_G", format_func=_sci)
        st.radio("η (eta)", (1, 2), key="cls_eta", horizontal=True, help="L(v) = mean |v − D(v)|^η")
        st.subheader("Break it")
        for name in BREAK_IT:
            st.button(name, key=f"cls_break_{name}", on_click=_break, args=(name,), width="stretch")
        broken = st.session_state.get("cls_broken")
        if broken:
            st.warning(f"**{broken}.** {BREAK_IT[broken][2]}", icon=":material/build:")
            st.button("Repair", key="cls_repair", on_click=_repair, icon=":material/healing:")
    return table


def _sci(v: float) -> str:
    return f"{v:.0e}"


def controls(model: Classroom) -> None:
    row = st.container(horizontal=True, vertical_alignment="bottom")
    playing = st.session_state.get("cls_playing", False)
    if row.button(
        "Pause" if playing else "Play",
        key="cls_play",
        type="primary",
        icon=":material/pause:" if playing else ":material/play_arrow:",
    ):
        st.session_state["cls_playing"] = not playing
        st.rerun()
    if row.button("Reset", key="cls_reset", icon=":material/restart_alt:"):
        st.session_state.pop("cls_model", None)
        st.session_state["cls_playing"] = False
        st.rerun()
    single = {
        "Update D": model.update_D,
        "Update G": model.update_G,
        "Update k_t": model.update_k,
        "One full step": lambda: model.step(1),
    }
    for label, action in single.items():
        if row.button(label, key=f"cls_{label}", disabled=playing):
            with st.session_state["cls_lock"]:
                action()
                if label != "One full step":
                    model.record()
    row.slider("Steps per frame", 1, 200, key="cls_speed", width=220)


def live() -> None:
    """One frame: train `speed` steps if playing, then redraw everything that moves."""
    model = st.session_state.get("cls_model")
    if model is None:
        return
    with st.session_state["cls_lock"]:
        if st.session_state.get("cls_playing"):
            model.step(int(st.session_state["cls_speed"]))
        cov = model.coverage()
        png, L_min, L_max = charts.plane_image(model)
        histograms = charts.histogram_figure(model)
        curves = charts.curves_figure(model.history, model.knobs.gamma) if model.history else None
    gamma = model.knobs.gamma
    cols = st.columns(5)
    cols[0].metric("step", f"{model.t:,}")
    cols[1].metric("k_t", f"{model.k_t:.4f}")
    cols[2].metric("L(G(z)) / L(x)", f"{model.L_G / model.L_x:.2f}" if model.history else "—")
    if cov is None:
        cols[3].metric("modes covered", "—", help="These data have no modes to count.")
        cols[4].metric("high-quality share", "—")
    else:
        cols[3].metric(
            "modes covered",
            f"{cov.modes_covered} of {cov.modes}",
            help="Modes with at least one of 2,500 generated points within 3σ of their centre "
            "(the PacGAN / VEEGAN protocol).",
        )
        cols[4].metric(
            "high-quality share",
            f"{cov.high_quality:.0%}",
            help="Generated points within 3σ of their nearest mode.",
        )
    now = now_sentence(model.history, gamma)
    if now:
        st.markdown(f"**Now:** {now}")
    left, right = st.columns([0.55, 0.45], gap="medium")
    with left:
        # Inline, not a media file: a frame's file can be dropped before the browser fetches
        # it while frames arrive quickly (seen as a broken image after Pause).
        st.image(f"data:image/png;base64,{base64.b64encode(png).decode()}", width="stretch")
        lo, hi = charts.box(model)
        st.caption(
            f"The plane from ({lo[0]:g}, {lo[1]:g}) to ({hi[0]:g}, {hi[1]:g}). Colour: D's "
            f"reconstruction error L(v) at every point v, log scale from {L_min:.2g} (bright: "
            f"reconstructed well, where G wants its points) to {L_max:.2g} (dark). Blue dots: "
            "real points. Red crosses: G's points, the same z in every frame. Black strokes: "
            "−∇L_G, where G's next update moves each point (lengths relative to the longest)."
        )
    with right:
        st.plotly_chart(histograms, key="cls_hist", config={"displaylogo": False})
        if curves is not None:
            st.plotly_chart(curves, key="cls_curves", config={"displaylogo": False})
        else:
            st.caption("The curves start with the first step.")


LESSON = """
**A ten-minute lesson** (the 5×5 grid, the default settings)

1. *(1 min)* Before any step the map is D's untrained guess. Click **Update D** five times:
   the bright spots gather on the blue points, as D learns to reconstruct the real data.
   **Ask:** why are the red points not bright yet?
2. *(1 min)* Click **Update G** a few times and follow the black strokes: G moves its points
   towards what D reconstructs well. That is L_G = L(G(z)).
3. *(1 min)* Click **Update k_t**: k_t moves by λₖ(γ·L(x) − L(G(z))).
   **Ask:** which way, and why? (Compare the red histogram with the dashed line.)
4. *(2 min)* **Play** at 20 steps per frame. k_t leaves 0 and settles; L(G(z)) settles on the
   dashed γ·L(x). The controller holds the *losses* in balance, as on images.
5. *(2 min)* Now look at **modes covered**: 1 of 25. G sits on one mode and k_t still holds.
   The controller balances how well D reconstructs G's points against the real ones; it
   does not count modes. **Ask:** if D spoiled G's spot, what would it lose? (The real points
   there: one 25th of the data. k_t settles near 1/25 = 0.04, where that loss and the gain
   against G weigh the same.)
6. *(1 min)* Move γ to 0.3, then 0.7: the ratio L(G(z))/L(x) follows γ, and G stays on one
   mode. On the ring of 8, k_t falls to 0 below γ ≈ 0.9: a 2-D G can be as easy to
   reconstruct as the points it copies, not easier, unlike the smooth images a G draws.
7. *(2 min)* **Break it**: try each preset and read its note. Then **Repair**.

docs/classroom.md has the measurements behind each step.
"""


# Torch's thread count is the server's to choose, once, at start-up (one thread unless
# BEGAN_EXPLORER_THREADS says otherwise: app/explorer_server.use_threads, which the
# dashboard's server calls when it mounts the explorer), never a page's: it is global to the
# process, so a page setting it would change it for every other page and session. One
# thread is also what this page wants: its matrices are tiny, and on a busy 2-core machine a
# frame took seconds with two threads (bench/classroom_fps.py --threads 2).
st.title("Classroom: BEGAN on 2-D points")
_from_url()
uploaded = sidebar()
_to_url()
model = _model(uploaded)
if model is not None:
    controls(model)
    main, side = st.columns([0.72, 0.28], gap="medium")
    with main, st.container(key="cls_live"):
        st.html(STEADY)
        every = FRAME_S if st.session_state.get("cls_playing") else None
        st.fragment(live, run_every=every)()
    with side:
        with st.expander("Lesson", expanded=True):
            st.markdown(LESSON)
        explain_panel(model.knobs.gamma, model.knobs.lambda_k)
