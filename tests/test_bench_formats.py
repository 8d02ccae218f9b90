"""`zoo bench --format`: every exported format measured in its own runtime, side by side in the
leaderboard; a bad --format or --quantize refused before anything trains."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import warm
from click.testing import CliRunner

import zoo
from zoo.benchmark import records as bench_records
from zoo.benchmark import reports
from zoo.cli import main

TINY_CNN = ("cnn", "--hp", "filters=4,8", "--hp", "dense_units=16", "--dataset", "zoo_tiny", "--epochs", "3",
            "--batch-size", "16", "--seeds", "0")
GROUPS = ("ONNX", "LiteRT")
FILES = {"onnx": "model.onnx", "litert": "model.tflite"}


@pytest.fixture(scope="module")
def benched(tiny_data_dir, tmp_path_factory):
    """One tiny cnn benched with all three formats: its folder and its one record."""
    out = tmp_path_factory.mktemp("bench-formats") / "out"
    proc = warm.run([sys.executable, "-m", "zoo", "bench", *TINY_CNN, "--data-dir", tiny_data_dir,
                     "--format", "saved_model,onnx,litert", "--out", str(out)],
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = bench_records.read_records(out)
    return out, record


def test_each_format_is_measured_in_its_own_runtime(benched):
    _, record = benched
    assert set(record["formats"]) == {"onnx", "litert"}  # the SavedModel keeps its own figures
    export = Path(record["export_dir"])
    test_examples = 60  # zoo_tiny's test split
    for name, figures in record["formats"].items():
        assert figures["bytes"] == (export / FILES[name]).stat().st_size
        assert figures["runtime"].startswith({"onnx": "onnxruntime ", "litert": "ai-edge-litert "}[name])
        assert 0 < figures["latency_ms"] <= figures["latency_ms_p99"] < 1000
        assert figures["throughput"] > 0 and figures["batch"] == test_examples
        assert figures["test_examples"] == test_examples and figures["quantization"] is None
        # The same model in another runtime: the same images right, give or take one.
        assert abs(figures["test_correct"] - record["test_accuracy"] * test_examples) <= 1 + 1e-6
    # The SavedModel's size is its own files', not the other formats' beside it.
    others = sum((export / f).stat().st_size for f in FILES.values())
    every = sum(p.stat().st_size for p in export.rglob("*") if p.is_file())
    assert record["saved_model_bytes"] == every - others


def test_the_leaderboard_has_a_column_group_per_measured_format(benched):
    out, record = benched
    lines = (out / "results.md").read_text().splitlines()
    header, row = lines[0], next(line for line in lines if line.startswith("| 1 |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    values = dict(zip(cells, (c.strip() for c in row.strip("|").split("|"))))
    assert len(cells) == 16 + 4 * len(GROUPS) == len(values)
    for group, name in zip(GROUPS, ("onnx", "litert")):
        figures = record["formats"][name]
        assert values[f"{group} MB"] == f"{figures['bytes'] / 1e6:.2f}"
        assert values[f"{group} ms (batch 1)"] == f"{figures['latency_ms']:.2f}"
        assert values[f"{group} ex/s (256)"] == f"{figures['throughput']:,.0f}"
        assert values[f"{group} test accuracy"] == f"{figures['test_accuracy']:.4f}"
    assert reports.csv_row(record)["formats.litert.bytes"] == record["formats"]["litert"]["bytes"]  # results.csv


def test_records_without_formats_still_render_without_their_columns(benched):
    _, record = benched
    old = {k: v for k, v in record.items() if k != "formats"}  # a record of before formats
    md = reports.markdown(reports.leaderboard([old]), old["env"], [])
    assert "ONNX" not in md and "LiteRT" not in md and "| 1 | cnn" in md
    # Beside a record that has them: one row, the formats' figures from the record that has them.
    (row,) = reports.leaderboard([old, record])
    assert row["formats"]["ONNX"]["bytes"] == record["formats"]["onnx"]["bytes"]
    assert "| ONNX MB |" in reports.markdown([row], record["env"], [])


def refused(tmp_path, *args: str) -> str:
    """``zoo bench ARGS --out OUT``: one line, a non-zero exit, nothing trained or written."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", *TINY_CNN, *args, "--out", str(out)])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and not out.exists(), line
    return line


@pytest.mark.parametrize("args, message", [
    (("--format", "saved_model,pdf"), "unknown --format pdf; choose from saved_model, onnx, litert"),
    (("--format", ""), "unknown --format (none)"),
    (("--quantize", "int8"), "--quantize int8: no format asked for takes it"),
    (("--format", "onnx", "--quantize", "float16"), "--quantize float16: no format asked for takes it"),
    (("--quantize", "int4"), "Invalid value for '--quantize'"),
    (("--format", "litert", "--quantize", "int8", "--max-accuracy-drop", "-1"), "--max-accuracy-drop must be 0 to 100"),
])
def test_a_bad_format_or_quantization_is_one_line_before_anything_trains(tmp_path, args, message):
    assert message in refused(tmp_path, *args)


def test_the_python_api_refuses_them_the_same_way(tmp_path):
    with pytest.raises(zoo.ZooUsageError, match="unknown `formats` pdf"):
        zoo.bench("cnn", out=tmp_path / "out", dataset="zoo_tiny", formats=["onnx", "pdf"])
    with pytest.raises(zoo.ZooUsageError, match="`quantize` int8: no format asked for takes it"):
        zoo.bench(from_presets="cnn.mnist", out=tmp_path / "out", formats="onnx", quantize="int8")
    assert not (tmp_path / "out").exists()


def test_more_formats_are_another_job_of_the_same_run(benched, tiny_data_dir):
    """--out records a job once per set of formats: asked for more, the finished run is measured
    again (not trained again)."""
    from zoo.benchmark import jobs
    from zoo.export.request import resolve

    options = {"backend": "tensorflow", "dataset": "zoo_tiny", "data_dir": tiny_data_dir, "epochs": 3, "batch_size": 16}
    hparams = {"filters": "4,8", "dense_units": "16"}
    out = benched[0]
    plain, = jobs.sweep_jobs(["cnn"], seeds=[0], out=out, hparams=hparams, options=options)
    more, = jobs.sweep_jobs(["cnn"], seeds=[0], out=out, hparams=hparams, options=options,
                            export=resolve("onnx,litert"))
    assert plain.run_dir == more.run_dir == Path(benched[1]["run_dir"]) and plain.key != more.key
    assert more.key == benched[1]["job"] and jobs.Job.from_dict(json.loads(json.dumps(more.to_dict()))).export == more.export
