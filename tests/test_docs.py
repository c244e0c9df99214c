"""The docs a newcomer reads: README.md and docs/*.md. Every relative link and image points at a
file that exists, every #anchor at a heading of its target (GitHub's slugs), every table copied
from a results file equals what scripts/docs_tables.py makes of that file, and every bench/ or
scripts/ command names a file that exists, run the way the file itself says. No network."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import docs_tables

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCREENSHOTS = ("train", "runs", "explore", "classroom")  # docs/screenshots/NAME.png

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
# [text](target) and ![alt](target), target without spaces, an optional "title" after it.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^\s()<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)=\"([^\"]+)\"", re.I)


def prose(text: str) -> str:
    """The text a renderer turns into links: no code blocks, code spans or comments."""
    text = FENCE.sub("", text)
    text = COMMENT.sub("", text)
    return CODE_SPAN.sub("", text)


def links(text: str) -> list[str]:
    text = prose(text)
    return LINK.findall(text) + HTML_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text as rendered, lowercased, every character other
    than letters, digits, spaces, '-' and '_' dropped, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|__|\*)", "", text)  # emphasis (a '_' inside a word is kept)
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' slugs (a repeated one gets -1, -2, ...) and any
    <a id=...> or <a name=...>."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, heading in HEADING.findall(FENCE.sub("", COMMENT.sub("", text))):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found | set(HTML_ANCHOR.findall(text))


def broken(path: Path, root: Path = ROOT) -> list[str]:
    """Links of `path` that point at no file, or at no anchor of their file."""
    problems = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            problems.append(f"{target}: no file {dest.relative_to(root.resolve())}")
        elif not dest.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif anchor:
            if dest.is_dir() or dest.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_image_resolves(page):
    assert broken(page) == []


def test_the_slug_rule_is_githubs():
    assert slug("G_ema: a moving average of G's weights") == "g_ema-a-moving-average-of-gs-weights"
    assert slug("gamma 0.3, 0.5 and 0.7 on the ring and the grid") == (
        "gamma-03-05-and-07-on-the-ring-and-the-grid"
    )
    assert slug("Runs & compare") == "runs--compare"
    assert slug("The `Procfile`, **briefly**") == "the-procfile-briefly"
    assert slug("Finding a 2-D BEGAN that works: what was tried") == (
        "finding-a-2-d-began-that-works-what-was-tried"
    )
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## A") == {"a", "a-1", "a-2"}


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# Here it is\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/there.md#here-it-is) [gone](docs/gone.md) ![pic](docs/pic.png)\n"
        "[bad anchor](docs/there.md#elsewhere) [self](#nowhere) [web](https://example.com)\n"
        "`[code](docs/gone.md)` <!-- [comment](docs/gone.md) -->\n"
        "```\n[block](docs/gone.md)\n```\n"
    )
    assert broken(page, tmp_path) == [
        "docs/gone.md: no file docs/gone.md",
        "docs/pic.png: no file docs/pic.png",
        "docs/there.md#elsewhere: no heading #elsewhere in there.md",
        "#nowhere: no heading #nowhere in README.md",
    ]


def test_screenshots_that_exist_are_shown_on_the_front_page():
    readme = prose((ROOT / "README.md").read_text(encoding="utf-8"))
    for name in SCREENSHOTS:
        if (ROOT / "docs" / "screenshots" / f"{name}.png").is_file():
            assert f"](docs/screenshots/{name}.png)" in readme, name


# The tables copied from results files.


def test_every_table_equals_its_results_file():
    assert docs_tables.main(["--check"]) == 0


def test_the_table_check_runs_as_its_docstring_says():
    result = subprocess.run(
        [sys.executable, "-m", "scripts.docs_tables", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def copy_docs(tmp_path: Path) -> Path:
    """README.md, docs/*.md and every results file a table is made from, under tmp_path."""
    for path in DOCS:
        dest = tmp_path / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    for table in docs_tables.TABLES.values():
        dest = tmp_path / table.source
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / table.source, dest)
    return tmp_path


def test_a_changed_table_is_named_and_regenerated(tmp_path, capsys):
    root = copy_docs(tmp_path)
    speed = root / "docs" / "speed.md"
    text = speed.read_text(encoding="utf-8")
    assert "| 32 | 32 | 16 | 24.7 | 82.6 |" in text
    speed.write_text(
        text.replace("| 32 | 32 | 16 | 24.7 | 82.6 |", "| 32 | 32 | 16 | 24.7 | 99.9 |")
    )
    assert docs_tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "docs/speed.md: table cpu-grid differs from bench/results/cpu.json" in err
    assert "cpu-profile" not in err  # only the table that differs is named

    assert docs_tables.main(["--root", str(root)]) == 0  # regenerated from the JSON
    assert speed.read_text(encoding="utf-8") == text
    assert docs_tables.main(["--check", "--root", str(root)]) == 0


def test_a_changed_results_file_fails_the_check(tmp_path, capsys):
    root = copy_docs(tmp_path)
    source = root / "docs" / "small-data.json"
    results = json.loads(source.read_text())
    results["base"]["15000"]["classifier_fd"] = 58.0  # the table shows 59.8
    source.write_text(json.dumps(results))
    assert docs_tables.main(["--check", "--root", str(root)]) == 1
    assert "table small-data differs from docs/small-data.json" in capsys.readouterr().err


def test_markers_that_name_no_table_or_do_not_close_are_refused(tmp_path, capsys):
    root = copy_docs(tmp_path)
    page = root / "docs" / "results.md"
    page.write_text(
        page.read_text(encoding="utf-8")
        + "\n<!-- table:no-such -->\n| x |\n<!-- /table:no-such -->\n"
        + "\n<!-- table:cpu-grid -->\n| never closed |\n"
    )
    assert docs_tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "no table named 'no-such'" in err
    assert "<!-- table:cpu-grid --> has no <!-- /table:cpu-grid -->" in err


# Commands that run a file of this checkout.

COMMAND = re.compile(r"\bpython3? (-m (bench|scripts)\.(\w+)|(bench|scripts)/(\w+)\.py)\b")


def usage(path: Path) -> str:
    return path.read_text(encoding="utf-8").split('"""')[1] if path.suffix == ".py" else ""


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_bench_and_scripts_commands_name_files_that_exist(page):
    """Every `python -m bench.NAME` or `scripts.NAME` a page shows names a file of the checkout,
    and benches are run as modules only: run by path, a bench could not import the package."""
    for m in COMMAND.finditer(page.read_text(encoding="utf-8")):
        folder, name = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
        if name.isupper():  # a placeholder: python -m scripts.NAME
            continue
        assert (ROOT / folder / f"{name}.py").is_file(), m.group(0)
        if folder == "bench":
            assert m.group(1).startswith("-m"), (
                f"{page.name}: {m.group(0)} (python -m bench.{name})"
            )


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_each_bench_shows_itself_run_as_a_module(path):
    """A bench's usage lines are the form that works: `python -m bench.NAME`, never by path."""
    if '__name__ == "__main__"' not in path.read_text(encoding="utf-8"):
        return  # the package, or a part the benches import (the reference step, the tables)
    own = usage(path)
    assert f"python -m bench.{path.stem}" in own, path.name
    assert f"bench/{path.stem}.py " not in own, path.name
