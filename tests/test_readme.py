"""The README's first two commands are the contract with a newcomer and with CI."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_ci_runs_exactly_the_readme_test_command():
    _, test_command = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert test_command in ci


def test_readme_main_command_uses_only_shipped_data():
    main_command, _ = readme_commands()
    assert "pip install -r requirements.txt" in main_command
    assert "--data" not in main_command or "fluent-faces" in main_command


def test_readme_front_matter_makes_a_valid_gradio_space():
    import gradio
    from huggingface_hub import metadata_load

    from began_core.checkpoints import hub

    meta = metadata_load(ROOT / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (ROOT / meta["app_file"]).is_file() and meta["python_version"] == "3.11"
    assert len(meta["short_description"]) <= 60  # the Hub refuses longer ones
    requirements = (ROOT / "requirements.txt").read_text()
    assert f"gradio=={gradio.__version__}" in requirements  # the Space runs what CI tested
    shipped = [p for p in (ROOT / "pretrained").iterdir() if (p / hub.WEIGHTS).is_file()]
    assert shipped, "a Space runs the explorer on the generators shipped in pretrained/"
