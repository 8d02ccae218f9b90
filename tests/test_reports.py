"""The leaderboard's reports, built from records made here: results.md, results.csv, results.png
and the progress lines of `zoo bench`. No training."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path

import pytest

from zoo import formats
from zoo.benchmark import reports
from zoo.cli import bench as bench_cli

FIXTURE = Path(__file__).parent / "fixtures" / "format-v0" / "bench" / "results.jsonl"


def record(seed: int = 0, accuracy: float = 0.9, **changes) -> dict:
    """A full record of the current format (the old fixture's, migrated), with ``changes``."""
    base = formats.read(formats.BENCH_RECORD, json.loads(FIXTURE.read_text()), str(FIXTURE))
    return {**copy.deepcopy(base), "seed": seed, "test_accuracy": accuracy, "run_dir": f"/runs/softmax-seed{seed}",
            **changes}


def table_row(md: str) -> str:
    (row,) = [line for line in md.splitlines() if line.startswith("| 1 |")]
    return row


def test_one_seed_shows_its_accuracy_alone_and_two_show_the_deviation(tmp_path):
    reports.write_reports(tmp_path, [record(0, 0.9)])
    assert "| 1 | 0.9000 |" in table_row((tmp_path / "results.md").read_text())
    reports.write_reports(tmp_path, [record(0, 0.9), record(1, 0.92)])
    assert "| 2 | 0.9100 ± 0.0141 |" in table_row((tmp_path / "results.md").read_text())


def test_every_column_of_the_leaderboard_is_explained_under_it(tmp_path):
    reports.write_reports(tmp_path, [record()])
    md = (tmp_path / "results.md").read_text()
    header, legend = md.splitlines()[0], md.split("Columns:", 1)[1]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert len(columns) == 16
    assert [c for c in columns if f"**{c}**" not in legend] == []
    assert md.index("Columns:") > md.index("| 1 |")  # under the table
    assert "twice as fast" in legend and "milliseconds" in legend


def test_results_csv_is_flat(tmp_path):
    folder = {"kind": "folder", "path": "/pets", "fingerprint": "ab12", "files": {"test": {"cat": 3}},
              "skipped": {"not an image": {"count": 1, "examples": ["a,b.txt"]}}}
    reports.write_reports(tmp_path, [record(0, hparams={"filters": [16, 32], "l2": 0.0}),
                                     record(1, dataset_source=folder)])
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    cells = [v for row in rows for v in row.values()]
    assert not [v for v in cells if v.startswith(("{", "["))], "a cell holds JSON"
    first, second = rows
    assert (first["hparams.filters"], first["hparams.l2"]) == ("16,32", "0.0")
    assert (first["hardware.precision"], first["where.tf_threads"], first["plan.index"]) == ("float32", "0,0", "1")
    assert (first["input.decoded_bytes.train"], first["split_test"], first["env_cores"]) == ("12960", "test", "2")
    assert second["dataset_source.fingerprint"] == "ab12" and first["dataset_source.fingerprint"] == ""
    # Open-ended blocks (per class, per skipped file) stay in results.jsonl only.
    assert not [k for k in first if k.startswith(("dataset_source.files", "dataset_source.skipped"))]


@pytest.mark.parametrize("elapsed, done, total, ending", [
    (10, 1, 2, "ETA 10 s"), (0.2, 1, 5, "ETA 1 s"), (30, 1, 2, "ETA 30 s"), (90, 1, 3, "ETA 3 min"),
    (61, 1, 2, "ETA 2 min"), (3600, 1, 3, "ETA 2 h 00 min"), (50, 2, 2, "done in 50 s"), (200, 4, 4, "done in 4 min"),
])
def test_progress_lines_end_with_an_eta_from_the_jobs_so_far(elapsed, done, total, ending):
    assert bench_cli.progress_left(elapsed, done, total) == ending


@pytest.mark.parametrize("seconds, params", [([1.19], [7850]), ([1.1, 1.3], [7850, 7900]),
                                             ([3, 200], [7850, 1_200_000]), ([40, 90], [100_000, 110_000])])
def test_the_plot_labels_several_ticks_on_each_log_axis(seconds, params):
    import matplotlib.pyplot as plt

    rows = [{"model": f"m{i}", "epochs": 1, "acc_mean": 0.9, "acc_std": 0.0, "train_seconds": s, "params": p,
             "dataset": "d"} for i, (s, p) in enumerate(zip(seconds, params))]
    fig = reports.figure(rows)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        labels = [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
        assert 3 <= len(labels) <= 7 and len(set(labels)) == len(labels), labels
        assert all(re.fullmatch(r"\d+(\.\d+)?[kM]?", label) for label in labels), labels
    plt.close(fig)


def test_a_run_measured_again_counts_once_and_a_fine_tuned_one_stands_apart(tmp_path):
    again = record(0, 0.95)  # the same run directory as record(0): measured again, for more formats
    tuned = record(2, 0.97, run_dir="/runs/ft", init={"preset": "softmax.mnist", "digest": "sha256:ab", "freeze": "all"})
    rows = reports.leaderboard([record(0, 0.9), record(1, 0.92), again, tuned])
    assert [(r["model"], r["seeds"], round(r["acc_mean"], 3)) for r in rows] == [
        ("softmax batch_size=32 learning_rate=0.05 (from softmax.mnist, frozen all)", 1, 0.97),
        ("softmax batch_size=32 learning_rate=0.05", 2, 0.935)]
