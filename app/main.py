"""BEGAN Studio dashboard: `streamlit run app/main.py` (from the repository root).

Training runs in separate processes (began_core.launch) that write run directories
(began_core.runs); these pages only read them, so a reload or a closed tab stops nothing.
Settings come from the environment (app/settings.py): BEGAN_READ_ONLY=1 for a public,
read-only dashboard, BEGAN_RUNS_DIR for where runs live.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import settings  # noqa: E402

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
