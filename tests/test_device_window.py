"""scripts/device_window.sh, the one script for a short GPU window: its CPU dry run (every stage
at a toy size, as CI can run it) packs real results within the output folder's limits, and
--unpack places them into a checkout; packing splits what is over 16 MiB and leaves behind,
with its reason, what does not fit, which --rest then packs into a second folder."""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from began_core.checkpoints import hub
from scripts import device_window

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_window.sh"
MiB = 1 << 20
NAME = re.compile(r"[A-Za-z0-9._-]+")


def window(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=dict(os.environ, PYTHON=sys.executable),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_within_limits(out: Path) -> list[Path]:
    files = [p for p in out.rglob("*") if not p.is_dir()]
    assert all(p.is_file() and not p.is_symlink() for p in files)
    assert len(files) <= 8, files
    assert all(p.stat().st_size <= 16 * MiB for p in files)
    assert sum(p.stat().st_size for p in files) <= 64 * MiB
    for p in files:
        rel = p.relative_to(out)
        assert len(rel.parts) <= 3 and all(NAME.fullmatch(part) for part in rel.parts), rel
    assert device_window.check_limits(out) == []
    return files


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("window")
    done = window("--dry-run", "--work", str(base / "work"), str(base / "out"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return base / "out", done.stdout


def members(archive: Path, into: Path) -> list[str]:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")
        return tar.getnames()


@pytest.mark.slow
def test_dry_run_packs_real_results_within_the_limits(dry_run, tmp_path):
    out, stdout = dry_run
    names = {p.name for p in assert_within_limits(out)}
    assert {"manifest.json", "summary.md", "window.tar.gz"} <= names
    assert {f"gamma{g}.tar.gz" for g in ("0.3", "0.5", "0.7")} <= names
    assert "Unpack into the checkout" in stdout  # the summary is printed as well

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dry_run"] and manifest["complete"]
    stages = {s["stage"]: s["status"] for s in manifest["stages"]}
    assert {"env", "tests", "bench", "train", "score", "export"} <= set(stages)
    assert set(stages.values()) == {"ok"}, stages

    got = members(out / "window.tar.gz", tmp_path)
    bench = json.loads((tmp_path / "bench/results/cpu.json").read_text())
    assert bench["dry_run"] and bench["rows"] and bench["rows"][0]["began_core"]["images_per_s"] > 0
    assert "bench/results/profile.json" in got and "window/tests.xml" in got
    # the shipped step's record is replaced only with the shipped generators themselves
    assert ("docs/scores-64.json" in got) == manifest["export"]["selected"]
    scores = json.loads((tmp_path / "runs/scores-64.json").read_text())
    assert {r["run"] for r in scores["rows"]} == {"gamma0.3", "gamma0.5", "gamma0.7"}
    assert all(r["step"] >= 2 and r["heldout_fd"] > 0 for r in scores["rows"])
    assert scores["reference"]  # the shipped generators, scored to be beaten

    got = members(out / "gamma0.5.tar.gz", tmp_path)
    export = manifest["export"]
    where = "pretrained" if export["selected"] else "exports"
    model = hub.load(tmp_path / where / "fluent-faces-64-gamma0.5")
    image = model.generate(model.sample_z(1, generator=torch.Generator().manual_seed(0)))
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    step = manifest["training"]["gamma0.5"]["checkpoint_packed"]
    assert f"runs/gamma0.5/checkpoints/{step}/training_state.pt" in got  # it can resume
    assert "runs/gamma0.5/metrics.jsonl" in got


@pytest.mark.slow
def test_unpack_places_them_and_refuses_to_overwrite(dry_run, tmp_path):
    out, _ = dry_run
    refused = window("--unpack", str(out))  # into this checkout: a dry run's results are not
    assert refused.returncode != 0 and "dry run" in refused.stderr

    co = tmp_path / "checkout"
    done = window("--unpack", str(out), "--into", str(co))
    assert done.returncode == 0, done.stderr
    assert (co / "bench/results/cpu.json").is_file()
    runs = co / "runs" / "window64"
    selected = json.loads((out / "manifest.json").read_text())["export"]["selected"]
    assert (co / "docs/scores-64.json").is_file() == selected
    for g in ("0.3", "0.5", "0.7"):
        latest = json.loads((runs / f"gamma{g}/checkpoints/latest.json").read_text())["path"]
        assert (runs / f"gamma{g}/checkpoints" / latest / "training_state.pt").is_file()
        exported = co / "pretrained" if selected else runs / "exports"  # not eligible: aside
        assert (exported / f"fluent-faces-64-gamma{g}" / "model.safetensors").is_file()
    assert (runs / "scores-64.json").is_file()

    (runs / "scores-64.json").write_text("{}\n")
    (co / "bench/results/cpu.md").unlink()
    again = window("--unpack", str(out), "--into", str(co))
    assert again.returncode == 1 and "scores-64.json" in again.stderr
    assert "--force" in again.stderr and not (co / "bench/results/cpu.md").exists()
    forced = window("--unpack", str(out), "--into", str(co), "--force")
    assert forced.returncode == 0 and (co / "bench/results/cpu.md").is_file()
    assert json.loads((runs / "scores-64.json").read_text())["rows"]


def fake_runs(base: Path, checkpoint_mib: int) -> tuple[Path, Path]:
    """Three runs with a latest checkpoint of random (incompressible) bytes, and a work folder
    with a bench result, as a real window leaves them."""
    runs, work = base / "runs", base / "work"
    (work / "bench").mkdir(parents=True)
    (work / "bench" / "cuda.json").write_text(json.dumps({"rows": [], "hardware": "test"}))
    for g in ("0.3", "0.5", "0.7"):
        run = runs / f"gamma{g}"
        ck = run / "checkpoints" / "step_0001000"
        ck.mkdir(parents=True)
        (ck / "training_state.pt").write_bytes(os.urandom(checkpoint_mib * MiB))
        (run / "checkpoints" / "latest.json").write_text('{"step": 1000, "path": "step_0001000"}')
        (run / "config.json").write_text("{}")
        (run / "status.json").write_text('{"state": "stopped", "step": 1000}')
    return runs, work


def test_pack_splits_big_archives_and_leaves_behind_what_does_not_fit(tmp_path):
    runs, work = fake_runs(tmp_path, 20)
    out = tmp_path / "out"
    assert device_window.pack(out, work, runs, final=True, dry_run=True) == 0
    assert_within_limits(out)
    manifest = json.loads((out / "manifest.json").read_text())
    split = [a for a in manifest["archives"].values() if len(a["parts"]) > 1]
    assert split and all(p["bytes"] <= 16 * MiB for a in split for p in a["parts"])
    (left,) = manifest["left_behind"]  # 3 x 20 MiB: the third checkpoint needs more files
    assert left["label"] == "gamma 0.7: checkpoint step_0001000" and "8" in left["why"]
    assert "--rest" in (out / "summary.md").read_text()

    rest = tmp_path / "rest"
    assert device_window.pack(rest, work, runs, final=True, dry_run=True, rest=True) == 0
    assert_within_limits(rest)
    assert json.loads((rest / "manifest.json").read_text())["left_behind"] == []

    co = tmp_path / "co"
    for folder in (out, rest):
        assert device_window.unpack(folder, co, None, force=False) == 0
    for g in ("0.3", "0.5", "0.7"):
        state = co / "runs/window64" / f"gamma{g}/checkpoints/step_0001000/training_state.pt"
        assert (
            state.read_bytes()
            == (runs / f"gamma{g}/checkpoints/step_0001000/training_state.pt").read_bytes()
        )


def test_unpack_refuses_a_missing_or_damaged_part(tmp_path):
    runs, work = fake_runs(tmp_path, 18)
    out = tmp_path / "out"
    assert device_window.pack(out, work, runs, final=True, dry_run=True) == 0
    part = next(p for p in sorted(out.iterdir()) if p.name.endswith(".tar.gz.2"))
    part.write_bytes(part.read_bytes()[:-1] + b"x")
    with pytest.raises(SystemExit, match="checksum"):
        device_window.unpack(out, tmp_path / "co", None, force=False)
    part.unlink()
    with pytest.raises(SystemExit, match="missing"):
        device_window.unpack(out, tmp_path / "co", None, force=False)
    assert not (tmp_path / "co").exists()  # nothing written


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "ten", "OUT"], "whole number"),
        (["--budget", "30", "OUT"], "too short"),
        (["--frobnicate", "OUT"], "unknown option"),
        (["OUT", "OUT2"], "one output folder"),
    ],
)
def test_bad_input_is_named(args, message, tmp_path):
    done = window(*[str(tmp_path / a) if a.startswith("OUT") else a for a in args])
    assert done.returncode == 2 and message in done.stderr


def test_an_output_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    done = window("--dry-run", "--work", str(tmp_path / "work"), str(tmp_path / "out"))
    assert done.returncode == 2 and "did not write" in done.stderr
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
