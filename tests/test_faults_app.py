"""The dashboard with damaged runs: garbage in metrics.jsonl, a config.json edited by hand into
something invalid, a run folder deleted while the page shows it. The page keeps working."""

import shutil

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from test_app import app, fake_run

pytestmark = pytest.mark.faults


def test_dashboard_keeps_working_with_damaged_runs(runs_dir):
    fake_run(runs_dir, "good", records=10)
    garbage = fake_run(runs_dir, "garbage", records=10)
    with open(garbage.metrics_path, "ab") as f:
        f.write(b'\xff\xfe garbage\n[1, 2]\n5\n{"k_t": 1}\n{"step": 9, "k_')
    fake_run(runs_dir, "list-config", records=5).config_path.write_text("[1, 2]")
    bad = fake_run(runs_dir, "bad-types", records=5)
    bad.config_path.write_text('{"train": "fast", "model": {"n": "many"}, "data": 5}')
    at = app()
    assert not at.exception
    for name in ("garbage", "list-config", "bad-types"):
        at.selectbox(key="run").set_value(name)
        at.run()
        assert not at.exception, name
    shutil.rmtree(bad.path)  # deleted while the page shows it
    at.run()
    assert not at.exception
