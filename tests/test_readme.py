"""The README's first two commands are the contract with a newcomer and with CI; the rest of
the README is a front page that leads to docs/. (Links, anchors and tables of the README and
the docs pages: tests/test_docs.py.)"""

import argparse
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUICK_TESTS = "python -m pytest -q -m 'not slow'"


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


def test_readme_states_the_quick_test_command_beside_the_full_one():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    _, test_command = readme_commands()
    after = text[text.index(test_command) + len(test_command) :]
    assert f"`{QUICK_TESTS}`" in after[:600]  # right after the full command
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^\s*"slow: ', pyproject, re.M)  # the marker it deselects is declared


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "BEGAN in a paragraph" and "Shipped generators" in headings


def linked_pages(page: Path) -> set[Path]:
    targets = re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
    return {(page.parent / t).resolve() for t in targets}


def test_every_docs_page_is_reached_from_the_readme():
    seen, todo = set(), [(ROOT / "README.md").resolve()]
    while todo:
        page = todo.pop()
        if page not in seen and page.is_file():
            seen.add(page)
            todo += linked_pages(page)
    pages = {p.resolve() for p in DOCS}
    assert pages - seen == set()
    readers = {"getting-started", "dashboard", "classroom", "results", "speed", "gpu", "operations"}
    linked = {p.stem for p in linked_pages(ROOT / "README.md")}
    assert readers <= linked  # the front page links each reader's page itself


def began_commands(text: str) -> list[list[str]]:
    """The words of every `python -m began_core ...` line in the bash blocks of a page."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for i in [
                i for i, w in enumerate(words[:-1]) if w == "-m" and words[i + 1] == "began_core"
            ]:
                rest = words[i + 2 :]
                if "&&" in rest:
                    rest = rest[: rest.index("&&")]
                commands.append(rest)
    return commands


def test_every_documented_command_and_flag_exists():
    from began_core.cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    checked = 0
    for page in DOCS:
        for words in began_commands(page.read_text(encoding="utf-8")):
            name = page.relative_to(ROOT)
            assert words and words[0] in sub.choices, f"{name}: {words}"
            options = sub.choices[words[0]]._option_string_actions
            for w in (w.strip("[]") for w in words[1:]):  # [--step N | --latest]
                if w.startswith("--") and not w.startswith("--$"):
                    assert w.split("=")[0] in options, f"{name}: {words[0]} {w}"
                    checked += 1
    assert checked > 50  # the pages' commands were found
