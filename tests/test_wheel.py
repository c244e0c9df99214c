"""The package as a user installs it: a wheel, used from outside the checkout.

`pip install began-studio` must give a `began_core` that trains, loads and evaluates on its
own, without the repository beside it: its built-in data, its classifiers (the feature space
of `evaluate`) and its console script travel inside the wheel. The test builds the wheel from
this checkout, installs it (without dependencies, which this environment already has) into a
fresh folder, and runs it from a working directory that holds nothing of the project.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(wheels), str(ROOT)], check=True, cwd=ROOT)
    (wheel,) = wheels.glob("began_studio-*.whl")
    target = tmp_path_factory.mktemp("site")
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target"]
    subprocess.run([*install, str(target), str(wheel)], check=True)
    return wheel, target


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("BEGAN_CLASSIFIERS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_wheel_holds_the_package_and_its_assets_and_nothing_else(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"began_core", wheel.name.split("-")[0] + "-0.1.0.dist-info"}, tops
    for asset in (
        "began_core/assets/fluent_faces_64.png",
        "began_core/assets/classifiers/fluent-faces-32/model.safetensors",
        "began_core/assets/classifiers/fluent-faces-64/model.safetensors",
        "began_core/assets/classifiers/fashion-mnist-32/model.safetensors",
    ):
        assert asset in names, asset
    # Every subpackage is a real package (a missing __init__.py would make it a namespace).
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith(".py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, package


def test_the_installed_package_evaluates_a_checkpoint_from_anywhere(installed, tmp_path):
    _, target = installed
    result = _run(
        target,
        tmp_path,
        "-c",
        "import began_core, sys; from began_core.cli.main import main; print(began_core.__file__);"
        f" sys.argv = ['began', 'evaluate', {str(ROOT / 'pretrained' / 'fluent-faces-32-gamma0.5')!r},"
        " '--n', '64']; main()",
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert Path(first).is_relative_to(target), first  # not the checkout's copy
    assert "Frechet" in result.stdout or "FD" in result.stdout, result.stdout


def test_the_installed_package_trains_on_its_built_in_data(installed, tmp_path):
    _, target = installed
    out = tmp_path / "run"
    args = ["-m", "began_core", "train", "--out", str(out), "--data", "fluent-faces"]
    args += ["--resolution", "32", "--filters", "8", "--steps", "2", "--quiet"]
    result = _run(target, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert (out / "checkpoints").is_dir() and (out / "metrics.jsonl").is_file()
