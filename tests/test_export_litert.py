"""zoo export --format litert (#27): model.tflite beside the SavedModel, reloaded by LiteRT alone
in a fresh process with the run's test accuracy; float16 and int8 quantization with the accuracy
recorded and a loss past --max-accuracy-drop refused; a failing check publishes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import zoo
from zoo.cli import main
from zoo.errors import ZooError, ZooUsageError
from zoo.export import litert
from zoo.export.request import resolve
from zoo.export.saved_model import TOLERANCE

pytest.importorskip("ai_edge_litert")

COMMON = {"dataset": "zoo_tiny", "epochs": 3, "batch_size": 32, "verbose": 0}


def zoo_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def bnnet(*, input_shape, num_classes, width: int = 8):
    """A model whose BatchNormalization must run on its moving statistics when served."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same")(inputs)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
    """Finished softmax, cnn and BatchNorm runs on zoo_tiny."""
    import registry

    base = tmp_path_factory.mktemp("litert-runs")
    zoo.register(bnnet, name="bnnet")
    try:
        yield {name: zoo.train(name, data_dir=tiny_data_dir, run_dir=base / name, **COMMON)
               for name in ("softmax", "cnn", "bnnet")}
    finally:
        registry._discovery._LOCAL.pop("bnnet", None)


@pytest.fixture(scope="module")
def test_split(tiny_data_dir):
    from zoo.data import pipeline

    return pipeline.split_arrays("zoo_tiny", "test", data_dir=tiny_data_dir)


# Run with `python -I`: the file, LiteRT and NumPy only (no zoo, Keras or TensorFlow to lean on).
ALONE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter
    path, data = sys.argv[1], np.load(sys.argv[2])
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    out = runner(image=data["images"])
    flat = open(path, "rb").read()
    model = schema.Model.GetRootAs(flat, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    record = json.loads(model.Buffers(entries["zoo"]).DataAsNumpy().tobytes())
    print(json.dumps({"correct": int((out["class_id"] == data["labels"]).sum()),
                      "dtypes": [str(out["probabilities"].dtype), str(out["class_id"].dtype)],
                      "class_names": record["class_names"], "zoo_version": record["zoo_version"],
                      "run_dir": record.get("run_dir"),
                      "heavy": sorted(m for m in ("tensorflow", "keras", "zoo") if m in sys.modules)}))
""")


def alone(path: Path, images: np.ndarray, labels: np.ndarray, tmp_path: Path) -> dict:
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    proc = subprocess.run([sys.executable, "-I", "-c", ALONE, str(path), str(tmp_path / "data.npz")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tensor_types(path: Path) -> set[str]:
    """The element types of the file's tensors (FLOAT32, FLOAT16, INT8, ...)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = schema.Model.GetRootAs(path.read_bytes(), 0).Subgraphs(0)
    return {names[graph.Tensors(i).Type()] for i in range(graph.TensorsLength())}


def zoo_json(version: Path) -> dict:
    return json.loads((version / "assets.extra" / "zoo.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["softmax", "cnn", "bnnet"])
def test_a_litert_file_alone_scores_the_runs_test_accuracy(runs, test_split, name, tmp_path):
    run = runs[name]
    result = run.export(tmp_path / "exports", formats="saved_model,litert")
    path = result.path / "model.tflite"
    images, labels = test_split
    seen = alone(path, images, labels, tmp_path)
    assert seen["heavy"] == []
    assert abs(seen["correct"] - round(run.metrics["test_accuracy"] * len(labels))) <= 1
    assert seen["dtypes"] == ["float32", "int64"]
    assert seen["class_names"] == run.dataset["class_names"] and seen["run_dir"] == str(run.path)
    assert seen["zoo_version"] == zoo.__version__
    meta = zoo_json(result.path)
    assert meta["formats"] == ["saved_model", "litert"]
    record = meta["litert"]
    assert record["file"] == "model.tflite" and record["bytes"] == path.stat().st_size
    # float32 LiteRT kernels against Keras: 1e-4; against a mixed-precision model, that precision's tolerance.
    assert record["tolerance"] == max(1e-4, TOLERANCE[run.config.precision])
    assert record["quantization"] is None and record["max_abs_diff"] <= record["tolerance"]
    assert record["batch_sizes"] == [1, result.examples_compared]


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
    result = zoo_cli("export", run.path, tmp_path / "exports", "--format", "litert", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    record = zoo_json(tmp_path / "exports" / "1")["litert"]
    assert record["quantization"] == "int8" and "INT8" in tensor_types(tmp_path / "exports" / "1" / "model.tflite")
    # zoo_tiny's training split is train[:90%] of 200 images: all 180 of them, fewer than 300.
    assert record["calibration"] == {"images": 180, "split": "train[:90%]", "dataset": "zoo_tiny"}
    accuracy = record["accuracy"]
    assert accuracy["examples"] == 60 and 100 * (accuracy["float"] - accuracy["quantized"]) <= 0.5
    (line,) = [line for line in result.output.splitlines() if line.startswith("litert: /")]  # its file and check
    assert "model.tflite" in line and "LiteRT (int8)" in line
    assert f"test accuracy {100 * accuracy['quantized']:.2f}% quantized vs {100 * accuracy['float']:.2f}% float" in line


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


def test_litert_on_the_jax_backend_is_refused_before_anything_loads():
    with pytest.raises(ZooUsageError, match=r"--format litert converts TensorFlow graphs, and Keras would run on jax"):
        resolve("litert", backend="jax")


@pytest.mark.slow
def test_a_folder_trained_model_exports_at_its_size_and_says_so(tmp_path):
    from imagefolders import write

    folder = write(tmp_path / "pictures", {"train": 12, "test": 4}, sizes=((24, 24), (30, 20)))
    run = zoo.train("softmax", dataset=str(folder), image_size=(16, 16), epochs=1, batch_size=8, verbose=0,
                    data_dir=str(tmp_path / "tfds"), run_dir=tmp_path / "run")
    result = zoo_cli("export", run.path, tmp_path / "exports", "--format", "litert")
    assert result.exit_code == 0, result.output
    record = zoo_json(tmp_path / "exports" / "1")["litert"]
    assert record["any_size"] is False
    (note,) = [n for n in record["notes"] if n.startswith("takes")]
    assert note.startswith("takes 16x16x3 images only (the SavedModel takes any size)")
    assert note in result.output
    assert "serving_default takes uint8 images [N, H, W, C] of any size" in result.output  # the SavedModel still does
