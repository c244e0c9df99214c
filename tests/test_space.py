"""The Space as it starts (scripts/check_space.py, in CI's form: this interpreter, not a fresh
venv): the README front matter, then `python app.py` with a Space's environment against the
local Hub, every endpoint through gradio_client, and again offline from the preload cache."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("gradio_client")


def test_the_space_starts_and_serves_every_endpoint_online_and_offline():
    done = subprocess.run(
        [sys.executable, "-m", "scripts.check_space", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the Space starts and serves every endpoint" in done.stdout


def test_front_matter_problems_are_named():
    from scripts import check_space

    with pytest.raises(check_space.SpaceCheckError, match="python_version '3.11' is not '3.99'"):
        check_space.check_front_matter("3.99")
    meta = check_space.check_front_matter(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert [r for r, _, _ in check_space.preload_entries(meta)] == meta["models"]


def test_a_model_the_repository_does_not_ship_is_named(tmp_path, monkeypatch):
    from scripts import check_space

    for name in ("README.md", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "app.py").write_text("", encoding="utf-8")
    (tmp_path / "pretrained").mkdir()
    monkeypatch.setattr(check_space, "ROOT", tmp_path)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    with pytest.raises(
        check_space.SpaceCheckError, match="no folder of that name under pretrained"
    ):
        check_space.check_front_matter(python)
