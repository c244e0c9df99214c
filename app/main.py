"""BEGAN Studio dashboard: `streamlit run app/main.py` (from the repository root).

Training runs in separate processes (began_core.runs.launch) that write run directories
(began_core.runs.run_dir); these pages only read them, so a reload or a closed tab stops nothing.
Settings come from the environment (app/settings.py): BEGAN_READ_ONLY=1 for a public,
read-only dashboard, BEGAN_RUNS_DIR for where runs live.

One port for everything: this file is both the dashboard's script and its server.
`streamlit run` finds `streamlit_app` below (an `st.App`, Streamlit's ASGI mode), imports
this file as a module to build it, and serves it with uvicorn on --server.port; the
explorer (app/explorer.py) is mounted on the same server under /explorer/, and the Explore
page frames that path. Streamlit then runs this same file as the script of every page view,
as `__main__`.
"""

import sys
from pathlib import Path

# `streamlit run` puts app/ on the import path, not the repository root, and the Space installs
# requirements.txt without the checkout: the one place in the project that edits the path
# (tests/test_layering.py holds it to that).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

if __name__ == "__main__":  # the dashboard's script, run by Streamlit for every page view
    from app import settings

    # No icon from a font server: the dashboard must work offline.
    st.set_page_config(page_title="BEGAN Studio", layout="wide")

    read_only = settings.load().read_only
    pages = [
        st.Page(
            "views/train.py",
            title="Watch" if read_only else "Train",
            default=True,
        ),
        st.Page("views/runs.py", title="Runs & compare"),
        st.Page("views/explore.py", title="Explore"),
        st.Page("views/classroom.py", title="Classroom", url_path="classroom"),
    ]
    st.navigation(pages, position="top").run()
else:  # imported by `streamlit run` (or `uvicorn main:streamlit_app`) to build the server
    from app.explorer_server import EXPLORER_PATH, mountable

    _explorer = mountable(EXPLORER_PATH)
    streamlit_app = st.App(__file__, routes=[_explorer.route], lifespan=_explorer.lifespan)
