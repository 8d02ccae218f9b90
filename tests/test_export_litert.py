"""zoo export --format litert (#27), what only LiteRT has: float16 and int8 quantization with the
accuracy recorded and a loss past --max-accuracy-drop refused; a failing check publishes nothing.
The accuracy of model.tflite in LiteRT alone, a folder-trained model's input size and a kill while
writing are test_export_formats.py's, with the other formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import warm
from clicalls import zoo_cli

from zoo.errors import ZooError, ZooUsageError
from zoo.export import litert
from zoo.export.request import resolve
from zoo.export.saved_model import TOLERANCE

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def runs(tiny_runs):
    """The shared softmax and cnn runs on zoo_tiny."""
    return {name: tiny_runs(name) for name in ("softmax", "cnn")}


def tensor_types(path: Path) -> set[str]:
    """The element types of the file's tensors (FLOAT32, FLOAT16, INT8, ...)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = schema.Model.GetRootAs(path.read_bytes(), 0).Subgraphs(0)
    return {names[graph.Tensors(i).Type()] for i in range(graph.TensorsLength())}


def zoo_json(version: Path) -> dict:
    return json.loads((version / "assets.extra" / "zoo.json").read_text())


@pytest.mark.slow
def test_float16_halves_the_file_and_records_its_accuracy(runs, tmp_path):
    run = runs["cnn"]
    float32 = run.export(tmp_path / "f32", formats="litert").formats["litert"]
    half = run.export(tmp_path / "f16", formats="litert", quantize="float16").formats["litert"]
    assert half["quantization"] == "float16" and half["bytes"] < 0.6 * float32["bytes"]
    assert tensor_types(tmp_path / "f16" / "1" / "model.tflite") >= {"FLOAT16", "FLOAT32"}  # weights, compute
    assert "FLOAT16" not in tensor_types(tmp_path / "f32" / "1" / "model.tflite")
    assert half["max_abs_diff"] <= half["tolerance"] == max(1e-2, TOLERANCE[run.config.precision])
    accuracy = half["accuracy"]
    assert accuracy["split"] == "test" and accuracy["examples"] == 60
    assert accuracy["float"] == pytest.approx(run.metrics["test_accuracy"], abs=1 / 60)
    assert abs(accuracy["float"] - accuracy["quantized"]) <= 0.005


@pytest.mark.slow
def test_int8_is_calibrated_on_training_images_and_prints_both_accuracies(runs, tmp_path):
    run = runs["cnn"]
    # A process of its own: what the converter's C++ code writes to stderr shows, and must not.
    result = warm.run([Path(sys.executable).with_name("zoo"), "export", run.path, tmp_path / "exports", "--format",
                       "litert", "--quantize", "int8"], timeout=600)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    record = zoo_json(tmp_path / "exports" / "1")["litert"]
    assert record["quantization"] == "int8" and "INT8" in tensor_types(tmp_path / "exports" / "1" / "model.tflite")
    # zoo_tiny's training split is train[:90%] of 200 images: all 180 of them, fewer than 300.
    assert record["calibration"] == {"images": 180, "split": "train[:90%]", "dataset": "zoo_tiny"}
    accuracy = record["accuracy"]
    assert accuracy["examples"] == 60 and 100 * (accuracy["float"] - accuracy["quantized"]) <= 0.5
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("litert: /")]  # its file and check
    assert "model.tflite" in line and "LiteRT (int8)" in line
    assert f"test accuracy {100 * accuracy['quantized']:.2f}% quantized vs {100 * accuracy['float']:.2f}% float" in line
    notes = [line for line in result.stdout.splitlines() if line.startswith("litert: note: ")]
    if run.config.precision == "float32":  # what `auto` picked here
        assert notes == []
    else:  # the float32 copy is what was quantized: the file does not compute in float32
        assert notes == [f"litert: note: converted from a float32 copy, then quantized to int8: LiteRT has no "
                         f"{run.config.precision.removeprefix('mixed_')} kernels (the model trained in {run.config.precision})"]


@pytest.mark.slow
def test_int8_that_loses_accuracy_is_refused_and_nothing_is_published(runs, tmp_path, monkeypatch):
    """Calibrated on black images, the int8 ranges clip every real activation: accuracy falls."""
    run = runs["cnn"]
    shape = tuple(run.dataset["input_shape"])
    monkeypatch.setattr(litert, "calibration_images", lambda data, shape_: (np.zeros((50, *shape), np.uint8), "train"))
    with pytest.raises(ZooError, match=r"int8 test accuracy .*% against the float model's .*% on 60 test images "
                                       r"loses .* points, more than --max-accuracy-drop 0: not published"):
        run.export(tmp_path / "exports", formats="litert", quantize="int8", max_accuracy_drop=0)
    assert list((tmp_path / "exports").iterdir()) == []  # no version, no temporary


@pytest.mark.slow
def test_a_failing_litert_check_publishes_nothing(runs, tmp_path, monkeypatch):
    run = runs["softmax"]
    real = litert.check

    def check_after_training_moved_on(path, model, images, **kwargs):
        rng = np.random.default_rng(1)  # the in-memory model no longer matches the file
        model.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
        return real(path, model, images, **kwargs)

    monkeypatch.setattr(litert, "check", check_after_training_moved_on)
    with pytest.raises(ZooError, match=r"model.tflite in LiteRT: probabilities differ from the trained model's "
                                       r"\(max abs diff .*, tolerance .*\)"):
        run.export(tmp_path / "exports", formats="litert")
    assert list((tmp_path / "exports").iterdir()) == []


def test_quantize_without_litert_is_one_line(runs, tmp_path):
    result = zoo_cli("export", runs["softmax"].path, tmp_path / "exports", "--quantize", "int8")
    assert result.exit_code != 0 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == ("Error: --quantize int8: no format asked for takes it (float16 for litert, int8 for litert; "
                    "add --format litert)")
    assert not (tmp_path / "exports").exists()


def test_max_accuracy_drop_without_quantize_is_one_line(runs, tmp_path):
    """Without a quantized file there is nothing for the bound to bound: refused, not ignored."""
    result = zoo_cli("export", runs["softmax"].path, tmp_path / "exports", "--max-accuracy-drop", "1")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == "Error: --max-accuracy-drop bounds what a quantized LiteRT file may lose: give it with --quantize"
    assert not (tmp_path / "exports").exists()


def test_litert_on_the_jax_backend_is_refused_before_anything_loads():
    with pytest.raises(ZooUsageError, match=r"--format litert converts TensorFlow graphs, and Keras would run on jax"):
        resolve("litert", backend="jax")
