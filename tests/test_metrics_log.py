"""The dashboard's reader of metrics.jsonl (app/metrics_log.py): it parses a run's file once and
then only the bytes appended since, waits for a half-written line, reads a replaced or shortened
file again from the start, skips garbage as RunDir.read_metrics does, and keeps at most so many
runs in memory. And the charts' decimation, which keeps a long curve's spikes and its last point.
"""

import json
import os

import numpy as np
import pytest

from app import charts
from app.metrics_log import MetricsCache, MetricsLog, last_record
from began_core.runs.run_dir import RunDir

pytestmark = pytest.mark.faults


def record(step: int) -> dict:
    L_x = 0.5 / (1 + step) ** 0.3
    return {"step": step, "k_t": step / 1e5, "L_x": L_x, "L_G": 0.5 * L_x, "M_global": L_x}


def lines(steps) -> bytes:
    return "".join(json.dumps(record(s)) + "\n" for s in steps).encode()


def steps(log: MetricsLog) -> list[int]:
    return log.read().step.tolist()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "metrics.jsonl"


def test_appended_lines_are_picked_up_and_only_they_are_parsed(path):
    path.write_bytes(lines(range(10)))
    log = MetricsLog(path)
    assert steps(log) == list(range(10)) and log.lines_parsed == 10
    with open(path, "ab") as f:
        f.write(lines(range(10, 13)))
    metrics = log.read()
    assert metrics.step.tolist() == list(range(13)) and log.lines_parsed == 13
    assert metrics.last == record(12)
    assert metrics.column("L_x")[-1] == record(12)["L_x"]
    log.read()  # nothing new: nothing parsed
    assert log.lines_parsed == 13


def test_a_snapshot_does_not_change_as_the_log_grows(path):
    path.write_bytes(lines(range(3)))
    log = MetricsLog(path)
    before = log.read()
    with open(path, "ab") as f:
        f.write(lines(range(3, 3000)))  # the arrays grow (and move) behind the snapshot
    after = log.read()
    assert before.step.tolist() == [0, 1, 2] and len(before.column("k_t")) == 3
    assert len(after) == 3000 and after.column("k_t")[2999] == 2999 / 1e5


def test_a_partial_last_line_waits_for_its_newline(path):
    path.write_bytes(lines(range(3)))
    whole = json.dumps(record(3)) + "\n"
    with open(path, "ab") as f:
        f.write(whole[:17].encode())  # the trainer mid-append
    log = MetricsLog(path)
    assert steps(log) == [0, 1, 2]
    with open(path, "ab") as f:
        f.write(whole[17:-1].encode())  # all but the newline: still not complete
    assert steps(log) == [0, 1, 2]
    with open(path, "ab") as f:
        f.write(b"\n")
    assert steps(log) == [0, 1, 2, 3]
    assert log.read().last == record(3)


def test_a_truncated_file_is_read_again_from_the_start(path):
    run = RunDir(path.parent)
    path.write_bytes(lines(range(0, 100, 10)))
    log = MetricsLog(path)
    assert len(log.read()) == 10
    run.truncate_metrics(after_step=40)  # what a resume does: a shorter file, replaced
    assert steps(log) == [0, 10, 20, 30, 40]
    with open(path, "ab") as f:
        f.write(lines([41, 42]))
    assert steps(log) == [0, 10, 20, 30, 40, 41, 42]
    with open(path, "r+b") as f:  # cut short in place (same inode)
        f.truncate(len(lines([0, 10])))
    assert steps(log) == [0, 10]


def test_a_replaced_or_rewritten_file_is_read_again(path, tmp_path):
    path.write_bytes(lines(range(5)))
    log = MetricsLog(path)
    assert steps(log) == list(range(5))
    other = tmp_path / "other.jsonl"
    other.write_bytes(lines(range(100, 110)))  # longer than what was read
    os.replace(other, path)
    assert steps(log) == list(range(100, 110))
    # Rewritten in place, longer, same inode: the bytes before the offset changed.
    with open(path, "r+b") as f:
        f.write(lines(range(200, 220)))
    assert steps(log) == list(range(200, 220))
    path.unlink()
    assert steps(log) == []
    path.write_bytes(lines([7]))
    assert steps(log) == [7]


GARBAGE = (
    b'\xff\xfe garbage\n[1, 2]\n5\n{}\n{"k_t": 1}\n{"step": "9"}\n{"step": 1.5}\n'
    b'{"step": 99999999999999999999999}\n\n   \nnull\n{"step": 6, "L_x": 1e999}\n'
)


def test_garbage_lines_are_skipped_as_read_metrics_skips_them(path):
    run = RunDir(path.parent)
    path.write_bytes(lines([1, 2]) + GARBAGE + lines([3]) + b'{"step": 4, "k_')
    log = MetricsLog(path)
    metrics = log.read()
    assert metrics.step.tolist() == [1, 2, 6, 3]
    expected = [r for r in run.read_metrics() if r["step"] < 2**63]  # beyond int64: garbage
    assert [r["step"] for r in expected] == [1, 2, 6, 3]
    assert metrics.records(2) == expected[-2:]
    with open(path, "ab") as f:  # garbage appended later (some nested beyond reason), then a line
        f.write(b'4.2, "k_t": 0}\n\x00\x00\n' + b"[" * 100_000 + b"\n" + lines([5]))
    assert steps(log) == [1, 2, 6, 3, 5]


def test_keys_a_record_lacks_read_as_missing(path):
    records = [{"step": 1, "L_x": 0.5}, {"step": 2}, {"step": 3, "L_x": 0.25, "score": 9.0}]
    records.append({"step": 4, "L_x": 0.2, "score_metric": "classifier_fd", "flag": True})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    metrics = MetricsLog(path).read()
    assert np.array_equal(metrics.column("L_x"), [0.5, np.nan, 0.25, 0.2], equal_nan=True)
    assert [a.tolist() for a in metrics.series("score")] == [[3], [9.0]]
    assert metrics.texts == {"score_metric": "classifier_fd"}
    assert metrics.column("flag")[-1] == 1.0
    assert "score" in metrics and "heldout_gap" not in metrics
    assert np.isnan(metrics.column("heldout_gap")).all()


def test_a_long_log_is_not_parsed_again_when_it_grows(path):
    """The issue's run: 45,000 lines gaining one at a time. Each append parses one line."""
    path.write_bytes(lines(range(45_000)))
    cache = MetricsCache()
    assert len(cache.read(path)) == 45_000
    log = cache.log(path)
    assert log.lines_parsed == 45_000
    for step in range(45_000, 45_020):
        with open(path, "ab") as f:
            f.write(lines([step]))
        metrics = cache.read(path)
        assert len(metrics) == step + 1 and metrics.last["step"] == step
    assert log.lines_parsed == 45_020
    # Compactly held: numbers in arrays, not a dict per line (~64 MB once for this file).
    assert log.nbytes() < 8 * 45_020 * 6 * 2 + (1 << 16)


def test_the_cache_keeps_the_recently_read_runs_within_its_bounds(tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"run{i}" / "metrics.jsonl"
        p.parent.mkdir()
        p.write_bytes(lines(range(1000)))
        paths.append(p)
    cache = MetricsCache(max_runs=3)
    for p in paths:
        cache.read(p)
    assert len(cache) == 3
    first = cache.log(paths[-1])
    cache.read(paths[-1])
    assert cache.log(paths[-1]) is first  # the newest were kept, not parsed again
    one = cache.log(paths[-1]).nbytes()
    small = MetricsCache(max_bytes=2 * one)
    for p in paths:
        small.read(p)
    assert len(small) == 2
    tiny = MetricsCache(max_bytes=1)  # the run being read is always kept
    assert len(tiny.read(paths[0])) == 1000 and len(tiny) == 1


def test_the_newest_record_is_read_from_the_end_of_the_file(path):
    assert last_record(path) is None
    path.write_bytes(lines(range(45_000)) + b"garbage\n" + b'{"step": 4, "k_')
    assert last_record(path) == record(44_999)
    cache = MetricsCache()
    assert cache.last(path) == record(44_999)
    assert len(cache) == 0  # no log parsed for it
    with open(path, "ab") as f:
        f.write(b't": 1}\n')
    assert cache.last(path) == {"step": 4, "k_t": 1}  # the file changed: read again
    path.write_bytes(lines([1]) + b"x" * 100_000 + b"\n")  # no record in its last 64 KiB
    assert cache.last(path) == record(1)
    assert cache.last(path.parent / "none.jsonl") == {}


# --------------------------------------------------------------------------- the charts


def test_decimation_keeps_spikes_the_extremes_and_the_last_point():
    rng = np.random.default_rng(0)
    y = rng.normal(size=45_000)
    y[12_345], y[30_001], y[7] = 50.0, -40.0, np.nan
    keep = charts.decimate(y, 1500)
    assert len(keep) <= 1500 and np.all(np.diff(keep) > 0)
    assert {0, 12_345, 30_001, 44_999} <= set(keep.tolist())
    assert np.nanmax(y[keep]) == 50.0 and np.nanmin(y[keep]) == -40.0
    assert charts.decimate(y[:1000], 1500).tolist() == list(range(1000))


def test_smoothing_is_the_debiased_moving_average():
    def reference(values, weight):  # TensorBoard's, one value at a time
        out, avg, n = [], 0.0, 0
        for v in values:
            if not np.isfinite(v):
                out.append(v)
                continue
            n += 1
            avg = weight * avg + (1 - weight) * v
            out.append(avg / (1 - weight**n))
        return out

    rng = np.random.default_rng(1)
    for n in (1, 5, 127, 128, 129, 3000):
        y = rng.random(n)
        if n > 10:
            y[[3, 9]] = np.nan, np.inf
        for weight in (0.0, 0.01, 0.6, 0.99):
            expected = reference(y, weight) if weight else y
            got = charts.smooth(y, weight)
            assert np.allclose(got, expected, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_a_long_run_sends_a_decimated_figure(path):
    path.write_bytes(lines(range(45_000)))
    metrics = MetricsLog(path).read()
    fig = charts.live_figure(metrics, 0.5)
    assert all(len(t.x) <= charts.MAX_POINTS for t in fig.data)
    assert all(t.x[-1] == 44_999 for t in fig.data)
    fig = charts.compare_figure([("a", 0.5, metrics), ("b", 0.7, metrics)])
    assert all(len(t.x) <= charts.MAX_POINTS for t in fig.data)


def test_the_runs_page_parses_only_the_runs_it_plots(runs_dir):
    """With many runs, the table needs each one's newest record: read from the file's end.
    Only the runs compared (three by default) have their whole log parsed and held."""
    from test_app import app, fake_run

    from app import widgets

    for i in range(10):
        fake_run(runs_dir, f"run{i}", records=50)
    at = app().switch_page("views/runs.py").run()
    assert not at.exception and len(at.dataframe[0].value["run"]) == 10
    assert list(at.dataframe[0].value["step"]) == [100] * 10
    held = [p for p in widgets._logs()._logs if os.fsdecode(p).startswith(str(runs_dir))]
    assert len(held) == 3 == len(at.multiselect(key="compare").value)
