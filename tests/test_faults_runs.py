"""Damaged run folders: a truncated or corrupt latest checkpoint (a resume falls back to the
previous complete one and says so), garbage in metrics.jsonl, a config.json edited by hand into
something invalid. The library and the CLI keep working and say what is wrong; the dashboard's
side is in test_faults_app.py."""

import json
import shutil

import pytest
import torch

from began_core.checkpoints.hub import load
from began_core.cli.main import main
from began_core.config import ConfigError
from began_core.runs.run_dir import RunDir
from began_core.training import training_state
from began_core.training.train import train

from conftest import TensorDataset, tiny_config

pytestmark = pytest.mark.faults

CONFIG = tiny_config(steps=4, log_every=1, sample_every=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run with checkpoints at steps 2 and 4, and its final weights. Trained with
    the tests' thread count (conftest): a module fixture runs before the autouse fixture that
    sets it, and another count changes the float sums, so no resume would match bit for bit."""
    torch.set_num_threads(2)
    run = RunDir(tmp_path_factory.mktemp("finished") / "run")
    list(train(CONFIG, run.path, dataset=TensorDataset()))
    return run, load(run.latest_checkpoint()).state_dict()


def copy(run: RunDir, where) -> RunDir:
    shutil.copytree(run.path, where)
    return RunDir(where)


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# (case, file of the latest checkpoint, damage, what the note says)
DAMAGE = [
    ("weights truncated", "model.safetensors", truncate, "model.safetensors unreadable"),
    (
        "weights garbage",
        "model.safetensors",
        lambda p: p.write_bytes(b"\x00" * 64),
        "model.safetensors",
    ),
    ("weights missing", "model.safetensors", lambda p: p.unlink(), "model.safetensors"),
    ("weights empty", "model.safetensors", lambda p: p.write_bytes(b""), "model.safetensors"),
    ("state truncated", "training_state.pt", truncate, "training_state.pt unreadable"),
    (
        "state garbage",
        "training_state.pt",
        lambda p: p.write_bytes(b"PK\x03\x04junk"),
        "training_state.pt",
    ),
    ("state missing", "training_state.pt", lambda p: p.unlink(), "training_state.pt"),
]


@pytest.mark.parametrize(
    ("name", "damage", "said"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE]
)
def test_resume_falls_back_from_a_damaged_latest_checkpoint(
    tmp_path, finished, capsys, name, damage, said
):
    source, final = finished
    run = copy(source, tmp_path / "run")
    latest = run.latest_checkpoint()
    assert latest.name == "step_0000004"
    damage(latest / name)
    assert said in training_state.problem(latest)
    list(train(CONFIG, run.path, dataset=TensorDataset(), resume=True))
    err = capsys.readouterr().err
    assert "checkpoint step_0000004" in err and "is damaged" in err and said in err
    assert "falling back to the previous complete checkpoint" in err
    w = load(run.latest_checkpoint()).state_dict()  # step 4 again, trained from step 2
    assert all(torch.equal(w[k], final[k]) for k in final)
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4]


def test_every_checkpoint_damaged_is_said_so(tmp_path, finished):
    run = copy(finished[0], tmp_path / "run")
    for _, ckpt in run.checkpoints():
        truncate(ckpt / "model.safetensors")
    with pytest.raises(ConfigError, match="all its checkpoints are damaged; start it afresh"):
        list(train(CONFIG, run.path, dataset=TensorDataset(), resume=True))


def test_latest_json_garbage_or_naming_a_missing_folder(tmp_path, finished):
    run = copy(finished[0], tmp_path / "run")
    pointer = run.checkpoints_dir / "latest.json"
    for text in ("{not json", '{"path": "step_9999999"}', "[]", ""):
        pointer.write_text(text)
        assert run.latest_checkpoint().name == "step_0000004"


METRICS_GARBAGE = [
    ("binary garbage", b"\xff\xfe\x00garbage\n"),
    ("half a line mid-file", b'{"step": 7, "k_'),
    ("a JSON list", b"[1, 2, 3]\n"),
    ("a number", b"5\n"),
    ("a record with no step", b'{"k_t": 0.1}\n'),
    ("an empty line", b"\n"),
    ("nul bytes", b"\x00\x00\x00\n"),
]


@pytest.mark.parametrize(
    "garbage", [g[1] for g in METRICS_GARBAGE], ids=[g[0] for g in METRICS_GARBAGE]
)
def test_metrics_reader_skips_garbage_lines(tmp_path, garbage):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 1, "k_t": 0.0})
    with open(run.metrics_path, "ab") as f:
        f.write(garbage + (b"\n" if not garbage.endswith(b"\n") else b""))
    run.append_metrics({"step": 2, "k_t": 0.1})
    with open(run.metrics_path, "ab") as f:
        f.write(garbage.rstrip(b"\n"))  # and as a half-written last line
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    run.truncate_metrics(1)
    assert [r["step"] for r in run.read_metrics()] == [1]


# (case, config.json's text, what the error says)
CONFIGS = [
    ("not JSON", "{model: 1", "is not valid JSON"),
    ("a list", "[1, 2]", "holds a list, not an object"),
    ("not UTF-8", b"\xff\xfe{}", "is not valid JSON"),
    ("an unknown key", '{"train": {"gamam": 0.5}}', "unknown TrainConfig keys ['gamam']"),
    ("a section of the wrong type", '{"train": "fast"}', "is not a valid run configuration"),
    (
        "a value of the wrong type",
        '{"train": {"gamma": "high"}}',
        "is not a valid run configuration",
    ),
    ("a value out of range", '{"train": {"gamma": 7}}', "gamma must be in (0, 1]"),
]


@pytest.mark.parametrize(("text", "said"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_hand_edited_config_gives_one_clear_line(tmp_path, finished, capsys, text, said):
    run = copy(finished[0], tmp_path / "run")
    if isinstance(text, bytes):
        run.config_path.write_bytes(text)
    else:
        run.config_path.write_text(text)
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "config.json" in err
    assert "Traceback" not in err
    # the checkpoints stand alone: sampling from the run still works
    assert main(["sample", str(run.path), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_cli_sample_of_a_damaged_checkpoint_is_one_line(tmp_path, finished, capsys):
    run = copy(finished[0], tmp_path / "run")
    truncate(run.latest_checkpoint() / "model.safetensors")
    assert main(["sample", str(run.path), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "step_0000004" in err and "Traceback" not in err


def test_status_json_garbage_reads_as_unknown(tmp_path):
    run = RunDir(tmp_path)
    for text in ("{", "[]", "\x00", ""):
        run.status_path.write_text(text)
        assert run.read_status()["state"] in ("unknown",)
    run.status_path.write_text(json.dumps({"state": "running"}))
    assert run.read_status()["state"] == "running"
