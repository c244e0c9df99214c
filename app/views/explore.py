"""Explore: the Gradio explorer of trained generators (app/explorer.py) inside the dashboard.

`streamlit run app/main.py` serves the explorer on the dashboard's own port, under
/explorer/ (app/main.py mounts it), and this page frames that path: one port, same origin,
so it works through a forwarded port, a reverse proxy and a platform's single $PORT. When the
dashboard's script runs without that server (AppTest, say), the explorer starts on a port of
its own on 127.0.0.1 instead, which only a browser on this machine can reach.
"""

import streamlit as st

from app.explorer_server import mounted_path, serve_in_background

st.title("Explore trained generators")
st.caption(
    "Latent sliders, interpolation, mirror interpolation of a real image, and the paper's "
    "gamma comparison, on the checkpoints in pretrained/, your runs, and Hub repo ids "
    "(`user/repo` or `user/repo@revision`). Also runs alone: `python app.py`."
)
path = mounted_path()
if path:
    st.iframe(path, height=1500)
    st.caption(f"Served by this dashboard's server at {path}")
else:
    try:
        url = serve_in_background()
    except Exception as e:  # a port in use, say: the rest of the dashboard keeps working
        st.error(
            f"The explorer could not start ({type(e).__name__}: {e}). Set GRADIO_SERVER_PORT "
            "to a free port."
        )
    else:
        st.iframe(url, height=1500)
        st.caption(f"Served at {url}")
