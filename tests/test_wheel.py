"""The package as a user installs it: a wheel, used from outside the checkout.

`pip install began-studio` must give a `began_core` that trains, loads and evaluates on its
own, without the repository beside it: its built-in data, its classifiers (the feature space
of `evaluate`) and the `began` command travel inside the wheel. The test builds the wheel from
this checkout, installs it into a fresh venv, and runs it from a working directory that holds
nothing of the project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel, and a fresh venv it is installed in. Its dependencies, which this
    environment already has, are reached through a .pth file, so no network is needed."""
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path_factory.mktemp("source") / "began-studio"
    anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", "*_cache")
    top = {".git", ".venv", "runs", "build", "dist"}  # began_core/runs is the package's own

    def skip(folder: str, names: list[str]) -> set[str]:
        at_top = Path(folder) == ROOT
        return set(anywhere(folder, names)) | ({n for n in names if n in top} if at_top else set())

    shutil.copytree(ROOT, source, ignore=skip)
    wheels = tmp_path_factory.mktemp("wheels")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(wheels), str(source)], check=True, cwd=source)
    (wheel,) = wheels.glob("began_studio-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", purelib], check=True, capture_output=True, text=True)
    deps = [p for p in sys.path if Path(p, "torch").is_dir()]
    Path(site.stdout.strip(), "dependencies.pth").write_text("\n".join(deps) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(wheel)], check=True)
    return wheel, venv


def _run(venv: Path, cwd: Path, program: str, *args: str) -> subprocess.CompletedProcess:
    drop = ("PYTHONPATH", "BEGAN_CLASSIFIERS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [venv / "bin" / program, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_wheel_holds_the_package_and_its_assets_and_nothing_else(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"began_core", "began_studio-0.1.0.dist-info"}, tops
    for asset in (
        "began_core/assets/fluent_faces_64.png",
        "began_core/assets/classifiers/fluent-faces-32/model.safetensors",
        "began_core/assets/classifiers/fluent-faces-64/model.safetensors",
        "began_core/assets/classifiers/fashion-mnist-32/model.safetensors",
    ):
        assert asset in names, asset
    # Every subpackage is a real package (a missing __init__.py would make it a namespace).
    for package in {n.rsplit("/", 1)[0] for n in names if n.endswith(".py")}:
        assert f"{package}/__init__.py" in names, package


def test_the_began_command_is_installed(installed, tmp_path):
    _, venv = installed
    result = _run(venv, tmp_path, "began", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "sample", "evaluate", "export"):
        assert command in result.stdout, command


def test_the_installed_package_evaluates_a_shipped_generator_from_anywhere(installed, tmp_path):
    _, venv = installed
    where = _run(venv, tmp_path, "python", "-c", "import began_core; print(began_core.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(venv), where  # not the checkout's copy
    shipped = ROOT / "pretrained" / "fluent-faces-64-gamma0.5"
    result = _run(venv, tmp_path, "began", "evaluate", str(shipped), "--n", "64")
    assert result.returncode == 0, result.stderr
    assert "Frechet" in result.stdout, result.stdout


def test_the_installed_package_trains_on_its_built_in_data(installed, tmp_path):
    _, venv = installed
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--data", "fluent-faces", "--resolution", "32"]
    result = _run(venv, tmp_path, "began", *args, "--filters", "8", "--steps", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "checkpoints").is_dir() and (out / "metrics.jsonl").is_file()
