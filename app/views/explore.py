"""Explore: the Gradio explorer of trained generators (app/explorer.py) inside the dashboard.

The explorer runs once per dashboard process on a port of its own (127.0.0.1 unless
GRADIO_SERVER_NAME says otherwise) and is shown here in a frame, so this works wherever the
browser can reach that port: on the machine itself, or through a forwarded port.
"""

import streamlit as st

from app.explorer_server import serve_in_background

st.title("Explore trained generators")
st.caption(
    "Latent sliders, interpolation, mirror interpolation of a real image, and the paper's "
    "gamma comparison, on the checkpoints in pretrained/ and your runs. Also runs alone: "
    "`python app.py`."
)
try:
    url = serve_in_background()
except Exception as e:  # a port in use, say: the rest of the dashboard keeps working
    st.error(
        f"The explorer could not start ({type(e).__name__}: {e}). Set GRADIO_SERVER_PORT to a free port."
    )
else:
    st.iframe(url, height=1500)
    st.caption(f"Served at {url}")
