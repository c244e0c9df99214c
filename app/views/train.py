"""Train: launch a run from the sidebar, and watch one run live."""

from __future__ import annotations

import re
import time
from pathlib import Path

import streamlit as st

from app import live, settings, widgets
from began_core.config import AUGMENT_POLICIES, parse_policy
from began_core.data.sources import BUILTIN_DATASETS
from began_core.flags import OPTIONS, train_flags
from began_core.presets import preset_flags
from began_core.runs import launch
from began_core.runs.run_dir import list_runs

FOLDER = "Folder or .zip on disk…"
PRECISION = {  # the form's choice -> launch setting "amp"
    "auto: bf16 on a GPU or a CPU with native bf16, else float32": None,
    "bf16 (fast path)": True,
    "float32": False,
}
PRESET = "faces-32"  # the form starts from the measured recipe (began_core/presets.py) ...
DEMO = {  # ... made small enough to train visibly on a 2-core CPU in a minute or two
    "filters": 16,
    "steps": 1500,
    "log_every": 10,
    "sample_every": 100,
    "checkpoint_every": 500,
    "score_every": 250,
}
DEFAULTS = {name: OPTIONS[name].default for name in launch.LAUNCH_FLAGS}
DEFAULTS |= preset_flags(PRESET) | DEMO
DEFAULTS["augment"] = parse_policy(DEFAULTS["augment"])  # the form's multiselect: a tuple
AUGMENT_HELP = (
    "Differentiable augmentation of everything D sees (not in the paper): D reconstructs "
    "T(v) for real and generated images alike, so it cannot memorise the training images "
    "as easily. On the built-in faces D memorises them and the runs drift into mode "
    "collapse; translation + cutout at p = 0.5 held that off (measured in docs/results.md, "
    "Small data: measured)."
)
EMA_HELP = (
    "Half-life, in thousands of images, of G_ema: a moving average of G's weights that "
    "training keeps beside G and never feeds back (0: none). Sample grids, the explorer, "
    "evaluate and export can then use either; whether it beats G here, and at which "
    "half-life, is measured in docs/results.md, G_ema."
)
HELDOUT_HELP = (
    "Share of the images D never trains on (at least 64). Their reconstruction loss against "
    "as many training images is the held-out gap, plotted beside M_global: it opens when D "
    "memorises, which M_global cannot show. Needed by scoring."
)
ETA_HELP = (
    "Norm of the reconstruction loss |v - D(v)|^η; the paper allows 1 and 2 and the command "
    "line defaults to 1. On the built-in white-background images, η = 1 lets G settle on a "
    "grey texture that D reconstructs easily: at γ ≤ 0.5 k_t then falls back to 0 after a few "
    "hundred steps and G draws no faces. With η = 2 k_t climbs and holds, and G draws faces."
)
LAMBDA_K_HELP = (
    "Gain of the k_t controller: how far k_t moves per step for a given imbalance "
    "γ L(x) − L(G(z)). The paper uses 0.001 with η = 1. Squared errors (η = 2) are 3 to 5 "
    "times smaller, and so is every step of k_t: with 0.001, k_t reacts too slowly and at "
    "γ = 0.3 G collapses onto one image; with 0.01 it draws varied faces."
)


def launch_form(s: settings.Settings) -> None:
    """The new-run panel: checks every value before anything is created or started."""
    st.header("New run")
    data = st.selectbox(
        "Data",
        [*BUILTIN_DATASETS, FOLDER],
        index=list(BUILTIN_DATASETS).index(DEFAULTS["data"]),
        key="data",
    )
    if data == FOLDER:
        source = st.text_input(
            "Images folder or .zip", key="data_path", placeholder="path/to/images"
        ).strip()
        st.caption("Searched recursively for png, jpg, webp and bmp.")
    else:
        source = data
        st.caption(BUILTIN_DATASETS[data])
    with st.form("launch", border=False):
        name = st.text_input("Run name", key="run_name", placeholder="automatic")
        a, b = st.columns(2)
        values = {
            "data": source,
            "resolution": a.selectbox("Resolution", (32, 64, 128, 256), key="resolution"),
            "filters": b.number_input("Filters n", 1, 1024, DEFAULTS["filters"], key="filters"),
            "gamma": a.number_input(
                "γ (gamma)",
                0.0,
                1.0,
                DEFAULTS["gamma"],
                0.05,
                key="gamma",
                help="Diversity ratio E[L(G(z))] / E[L(x)] in (0, 1]: lower, sharper and less "
                "varied. The paper shows 0.3, 0.5 and 0.7.",
            ),
            "lambda_k": b.number_input(
                "λₖ (lambda_k)",
                0.0,
                1.0,
                DEFAULTS["lambda_k"],
                0.0005,
                format="%.4f",
                key="lambda_k",
                help=LAMBDA_K_HELP,
            ),
            "eta": a.selectbox(
                "η (eta)", (1, 2), index=(1, 2).index(DEFAULTS["eta"]), key="eta", help=ETA_HELP
            ),
            "lr": b.number_input(
                "Learning rate", 0.0, 1.0, DEFAULTS["lr"], 1e-5, format="%.1e", key="lr"
            ),
            "batch_size": a.number_input(
                "Batch size", 1, 1024, DEFAULTS["batch_size"], key="batch"
            ),
            "steps": b.number_input("Steps", 1, 10_000_000, DEFAULTS["steps"], 100, key="steps"),
            "seed": a.number_input("Seed", 0, 2**31 - 1, DEFAULTS["seed"], key="seed"),
        }
        values["hflip"] = st.checkbox(
            "Random horizontal flips",
            DEFAULTS["hflip"],
            key="hflip",
            help="Mirror a random half of every batch left to right (not in the paper). On "
            "the built-in faces it slows the drift into mode collapse after the best step.",
        )
        with st.expander("Small data: held-out images, augmentation, best checkpoint"):
            values["heldout"] = st.number_input(
                "Held-out share",
                0.0,
                0.45,
                DEFAULTS["heldout"],
                0.01,
                key="heldout",
                help=HELDOUT_HELP,
            )
            values["augment"] = ",".join(
                st.multiselect(
                    "Augment what D sees",
                    AUGMENT_POLICIES,
                    DEFAULTS["augment"],
                    key="augment",
                    help=AUGMENT_HELP,
                )
            )
            p = st.number_input(
                "Probability p of each policy",
                0.0,
                1.0,
                DEFAULTS["augment_p"],
                0.05,
                key="augment_p",
                help="0.5 measured best on the built-in faces. An adaptive p (ADA's "
                "controller on the held-out gap) was measured and did not beat it.",
            )
            values["augment_p"] = p if values["augment"] else None
            values["score_every"] = st.number_input(
                "Score G every (steps, 0: never)",
                0,
                1_000_000,
                DEFAULTS["score_every"],
                key="score_every",
                help="Scores G (and G_ema, if kept) on the held-out images (classifier "
                "Frechet distance for the built-ins, else SWD) and keeps the best checkpoint "
                "apart from the latest; export takes the best, with the generator that won.",
            )
            values["ema_kimg"] = st.number_input(
                "G_ema half-life (thousands of images, 0: none)",
                0.0,
                10_000.0,
                DEFAULTS["ema_kimg"],
                0.5,
                key="ema_kimg",
                help=EMA_HELP,
            )
        with st.expander("Logging"):
            values["log_every"] = st.number_input(
                "Log every (steps)", 1, 100_000, DEFAULTS["log_every"], key="log_every"
            )
            values["sample_every"] = st.number_input(
                "Sample grid every", 1, 1_000_000, DEFAULTS["sample_every"], key="sample_every"
            )
            values["checkpoint_every"] = st.number_input(
                "Checkpoint every", 1, 1_000_000, DEFAULTS["checkpoint_every"], key="ckpt_every"
            )
        with st.expander("Speed"):
            values["amp"] = PRECISION[
                st.radio(
                    "Precision",
                    list(PRECISION),
                    key="precision",
                    help="bf16 autocast for the networks; the losses and k_t stay float32. "
                    "On a CPU with native bf16 (AMX on recent Xeons, AVX-512 BF16 on recent "
                    "EPYCs) 1.3 to 1.8 times as fast as float32 (bench/results/cpu-options.md); "
                    "slower on CPUs without it. Auto takes it wherever it pays; the run's "
                    "header says which path it took.",
                )
            ]
        submitted = st.form_submit_button(
            "Start training", type="primary", icon=":material/play_arrow:", width="stretch"
        )
    if submitted:
        _start(s, name.strip(), values)
    st.caption(
        "Each run trains in its own process: close the tab or reload, it keeps going. "
        "On 2 CPU cores, 32×32 with n = 16 takes about 0.05 s a step."
    )


def _start(s: settings.Settings, name: str, values: dict) -> None:
    try:
        config = launch.validate_launch(values)
        if not name:
            data = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(values["data"]).name).strip(".-")
            data = data or "data"
            name = (
                f"{data}-g{config.train.gamma:g}-n{config.model.n}-{time.strftime('%m%d-%H%M%S')}"
            )
        run_dir = launch.check_run_name(s.runs_dir, name)
        launch.start_run(run_dir, train_flags(config, PRESET))
    except launch.LaunchError as e:  # it may name the run or a folder
        st.error(widgets.plain(e), icon=":material/error:")
    except OSError as e:
        st.error(f"Could not start the run: {widgets.plain(e)}", icon=":material/error:")
    else:
        st.session_state["run"] = name  # watch it (the selector below is not drawn yet)
        st.success(f"Started **{widgets.plain(name)}**.", icon=":material/rocket_launch:")


s = settings.load()
with st.sidebar:
    if s.read_only:
        st.info(
            "**Read-only.** This dashboard shows existing runs and shipped checkpoints; "
            "it starts, stops and deletes nothing.",
            icon=":material/visibility:",
        )
    else:
        launch_form(s)

runs = list_runs(s.runs_dir, starting=True)
if not runs:
    st.title("BEGAN Studio")
    if s.read_only:
        st.info("No runs yet.")
    else:
        st.info(
            "No runs yet. Start one from the **New run** panel on the left: the defaults train "
            "on 1,124 emoji faces and show the equilibrium within a minute or two.",
            icon=":material/arrow_back:",
        )
    st.stop()

names = [r.name for r in runs]
states = {r.name: launch.run_state(r) for r in runs}
# The URL names the run shown (?run=NAME), so a reload or a shared link shows the same run.
asked = st.query_params.get("run")
if asked in names and asked != st.session_state.get("run_in_url"):
    st.session_state["run"] = asked
if st.session_state.get("run") not in (None, *names):
    del st.session_state["run"]  # deleted meanwhile
choice = st.selectbox("Run", names, key="run")
st.query_params["run"] = st.session_state["run_in_url"] = choice
live.show(dict(zip(names, runs, strict=True))[choice], s, states[choice])
