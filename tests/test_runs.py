import contextlib
import json

from began_core.runs.run_dir import RunDir, list_runs


def test_reader_tolerates_half_written_last_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 1, "k_t": 0.0})
    run.append_metrics({"step": 2, "k_t": 0.1})
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 3, "k_')  # a writer caught mid-line
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_checkpoint_write_is_all_or_nothing(tmp_path):
    run = RunDir(tmp_path)

    def good(d):
        (d / "a.txt").write_text("ok")

    def crash(d):
        (d / "a.txt").write_text("half")
        raise OSError("disk full")

    run.write_checkpoint(10, good)
    with contextlib.suppress(OSError):
        run.write_checkpoint(20, crash)
    assert [s for s, _ in run.checkpoints()] == [10]
    assert not list(run.checkpoints_dir.glob(".tmp*"))
    assert run.latest_checkpoint().name == "step_0000010"
    assert json.loads((run.checkpoints_dir / "latest.json").read_text())["step"] == 10


def test_only_newest_checkpoints_are_kept(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3, 4, 5):
        run.write_checkpoint(step, lambda d: (d / "x").write_text("x"), keep=2)
    assert [s for s, _ in run.checkpoints()] == [4, 5]


def test_status_and_stop_flag(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_status() == {"state": "unknown"}
    run.write_status("running", step=3)
    assert run.read_status()["state"] == "running" and run.read_status()["step"] == 3
    run.request_stop()
    assert run.stop_requested()
    run.clear_stop()
    assert not run.stop_requested()


def test_list_runs(tmp_path):
    assert list_runs(tmp_path / "none") == []
    (tmp_path / "a" / "checkpoints").mkdir(parents=True)
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "checkpoint_folder").mkdir()
    (tmp_path / "checkpoint_folder" / "config.json").write_text("{}")
    (tmp_path / "not_a_run").mkdir()
    assert [r.path.name for r in list_runs(tmp_path)] == ["a"]
