"""--format onnx (#27): model.onnx beside the SavedModel, served by ONNX Runtime alone. Runs on
zoo_tiny trained in-process: plain, convolutional, BatchNorm and custom-layer models score their
run's test accuracy in a process that has onnxruntime and numpy only; a folder-trained model says
whether its file takes any size; a missing extra, a failing check and a kill publish nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import registry
import zoo
from zoo.cli import main
from zoo.errors import ZooError
from zoo.export import onnx as zoo_onnx

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": "zoo_tiny", "epochs": 3, "batch_size": 16, "verbose": 0}
MODELS = {  # hyperparameters; softmax in float32, the others in the precision `auto` picks here
    "softmax": {},
    "cnn": {"filters": (4, 8), "dense_units": 16},
    "cnn-batchnorm": {"filters": (4, 8), "dense_units": 16, "batch_norm": True},
    "gainnet": {"units": 16},
}


def zoo_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    return line


def gainnet():
    """The custom-layer plugin of the install tests, registered here (no venv to install it in)."""
    sys.path.insert(0, str(ROOT / "tests" / "plugin_extra"))
    try:
        import zoo_extra
    finally:
        sys.path.remove(str(ROOT / "tests" / "plugin_extra"))
    zoo.register(zoo_extra.gainnet)
    return "gainnet"


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
    """One finished run on zoo_tiny per model, trained when first asked for."""
    base, made = tmp_path_factory.mktemp("onnx-runs"), {}

    def get(key: str):
        if key not in made:
            name = gainnet() if key == "gainnet" else key.split("-")[0]
            precision = "float32" if key == "softmax" else "auto"
            made[key] = zoo.train(name, data_dir=tiny_data_dir, hparams=MODELS[key], run_dir=base / key,
                                  precision=precision, **TINY)
        return made[key]

    yield get
    registry._discovery._LOCAL.pop("gainnet", None)  # registered for this module's tests only


def served_accuracy(path: Path, images: np.ndarray, labels: np.ndarray, tmp_path: Path) -> tuple[int, dict]:
    """Correct images and metadata_props of ``path`` in a fresh interpreter with onnxruntime and
    numpy only: the zoo, Keras and TensorFlow cannot be imported there."""
    np.savez(tmp_path / "split.npz", images=images, labels=labels)
    code = textwrap.dedent("""
        import json, sys
        for name in ("zoo", "registry", "keras", "tensorflow", "tf2onnx", "jax"):
            sys.modules[name] = None
        import numpy as np
        import onnxruntime as ort
        split = np.load(sys.argv[2])
        session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
        probabilities, class_id = session.run(["probabilities", "class_id"], {"image": split["images"]})
        print(json.dumps({"correct": int(np.sum(class_id == split["labels"])),
                          "metadata": dict(session.get_modelmeta().custom_metadata_map)}))
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(path), str(tmp_path / "split.npz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["correct"], out["metadata"]


def test_split(data_dir: str, name: str = "zoo_tiny"):
    import tensorflow_datasets as tfds

    return tfds.as_numpy(tfds.load(name, split="test", data_dir=data_dir, as_supervised=True, batch_size=-1))


test_split.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("key", list(MODELS))
def test_onnx_export_scores_the_runs_test_accuracy_in_onnxruntime_alone(key, runs, tiny_data_dir, tmp_path):
    run = runs(key)
    base = tmp_path / "exports"
    result = zoo_cli("export", run.path, base, "--format", "saved_model,onnx")
    assert result.exit_code == 0, result.output
    onnx_file = base / "1" / "model.onnx"
    lines = [line for line in result.output.splitlines() if line.startswith("onnx: ")]
    assert len(lines) == 1 and lines[0].startswith(f"onnx: {onnx_file} (") and "bytes); ONNX Runtime " in lines[0]
    assert "max abs diff" in lines[0] and "same class as Keras" in lines[0]
    record = json.loads((base / "1" / "assets.extra" / "zoo.json").read_text())
    assert record["formats"] == ["saved_model", "onnx"]
    checked = record["onnx"]
    assert checked["file"] == "model.onnx" and checked["bytes"] == onnx_file.stat().st_size
    assert checked["opset"] == zoo_onnx.OPSET and checked["dynamic_dims"] == ["batch"]
    assert checked["precision"] == run.config.precision
    assert checked["tolerance"] == zoo_onnx.TOLERANCE[run.config.precision] and checked["max_abs_diff"] <= checked["tolerance"]
    # The same images as the SavedModel's check, batched as 1 and as all of them.
    assert f"compared on {checked['images_compared']} images" in result.output and "warning" not in checked
    assert checked["batch_sizes"] == [1, checked["images_compared"]]

    images, labels = test_split(tiny_data_dir)
    correct, metadata = served_accuracy(onnx_file, images, labels, tmp_path)
    expected = run.metrics["test_accuracy"] * len(labels)
    assert abs(correct - expected) <= 1, (correct, expected, len(labels))
    assert json.loads(metadata["class_names"]) == run.dataset["class_names"]
    assert metadata["model"] == run.config.model and metadata["dataset"] == "zoo_tiny"
    assert metadata["run_dir"] == str(run.path) and metadata["zoo_version"] == zoo.__version__


def test_a_folder_trained_model_says_whether_its_onnx_file_takes_any_size(tmp_path):
    from imagefolders import write

    folder = write(tmp_path / "shapes", {"train": 12, "test": 4}, sizes=((24, 24), (30, 20)))
    run = zoo.train("softmax", dataset=str(folder), image_size=(24, 24), epochs=1, batch_size=8,
                    data_dir=str(tmp_path / "tfds"), run_dir=tmp_path / "run", verbose=0)
    result = zoo_cli("export", run.path, tmp_path / "exports", "--format", "onnx")
    assert result.exit_code == 0, result.output
    checked = json.loads((tmp_path / "exports" / "1" / "assets.extra" / "zoo.json").read_text())["onnx"]
    onnx_file = tmp_path / "exports" / "1" / "model.onnx"
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    if "warning" in checked:  # tf2onnx cannot convert the in-graph resizing: fixed size, said aloud
        assert checked["dynamic_dims"] == ["batch"] and checked["accepts"] == "uint8 [N, 24, 24, 3]"
        assert "takes fixed-size images only" in checked["warning"] and "tf2onnx" in checked["warning"]
        assert f"onnx: WARNING: {checked['warning']}" in result.output.splitlines()
        assert dict(session.get_modelmeta().custom_metadata_map)["fixed_size_because"]
        (probabilities,) = session.run(["probabilities"], {"image": np.zeros((2, 24, 24, 3), np.uint8)})
        assert probabilities.shape == (2, 3)
    else:  # any size, as the SavedModel
        assert checked["dynamic_dims"] == ["batch", "height", "width", "channels"]
        (probabilities,) = session.run(["probabilities"], {"image": np.zeros((2, 30, 20, 1), np.uint8)})
        assert probabilities.shape == (2, 3)


def test_without_the_onnx_extra_export_is_one_line_and_writes_nothing(runs, tmp_path, monkeypatch):
    import importlib.util

    from zoo.export import request

    real = importlib.util.find_spec
    monkeypatch.setattr(request.importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    base = tmp_path / "exports"
    line = one_line_error(zoo_cli("export", runs("softmax").path, base, "--format", "saved_model,onnx"))
    assert line == "Error: --format onnx needs tf2onnx: pip install 'keras-zoo[onnx]'"
    assert not base.exists()


def test_a_failing_onnx_check_publishes_no_version(runs, tmp_path, monkeypatch):
    run, base = runs("softmax"), tmp_path / "exports"

    def fails(path, *args, **kwargs):
        assert path.is_file()  # the file was written, in the temporary
        raise ZooError("--format onnx: probabilities differ from Keras' by up to 0.5 (tolerance 0.0001)")

    monkeypatch.setattr(zoo_onnx, "check", fails)
    line = one_line_error(zoo_cli("export", run.path, base, "--format", "onnx"))
    assert "--format onnx: probabilities differ" in line
    assert list(base.iterdir()) == []  # no version (not even the SavedModel), no temporary
    # The real check, with a tolerance nothing meets, names the check and by how much.
    monkeypatch.undo()
    monkeypatch.setattr(zoo_onnx, "TOLERANCE", {"float32": -1.0})
    line = one_line_error(zoo_cli("export", run.path, base, "--format", "onnx"))
    assert "--format onnx: probabilities differ from Keras' by up to " in line and "(tolerance -1)" in line
    assert list(base.iterdir()) == []


@pytest.mark.slow
def test_an_export_killed_while_writing_model_onnx_leaves_no_version(runs, tmp_path):
    """SIGKILL while tf2onnx converts (the SavedModel is written and checked by then): no numbered
    folder; the next export removes the dead one's temporary and publishes version 1."""
    run, base, marker = runs("softmax"), tmp_path / "exports", tmp_path / "converting"
    # `zoo export` as the command runs it, but its conversion waits (to be killed) once under way.
    code = textwrap.dedent(f"""
        import pathlib, sys, time
        import zoo.export.onnx as zoo_onnx
        def converting(*args, **kwargs):
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(600)
        zoo_onnx._convert = converting
        from zoo.cli import main
        sys.argv = ["zoo", "export", {str(run.path)!r}, {str(base)!r}, "--format", "saved_model,onnx"]
        main()
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "timed out waiting for the conversion"
        time.sleep(0.05)
    (tmp,) = [p for p in base.iterdir() if p.name.startswith(".tmp-")]
    assert (tmp / "saved_model.pb").is_file() and not (tmp / "model.onnx").exists()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not [p for p in base.iterdir() if p.name.isdigit()]
    result = zoo_cli("export", run.path, base, "--format", "saved_model,onnx")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # the stale temporary is gone
    assert (base / "1" / "model.onnx").is_file() and (base / "1" / "saved_model.pb").is_file()
