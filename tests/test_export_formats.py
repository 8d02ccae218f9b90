"""All three formats in one export (#27): softmax, cnn, a BatchNorm cnn and a plugin with a custom
layer, trained on zoo_tiny, each exported as saved_model, onnx and litert in one call; every file,
served in its own runtime in a fresh process, scores its run's test accuracy. A folder-trained
model says which formats take any size; a file killed or cut short is never published."""

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
from clicalls import zoo_cli
from served import serve

import registry
import zoo
from zoo.errors import ZooError
from zoo.export import litert, onnx
from zoo.export.saved_model import TOLERANCE

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

ROOT = Path(__file__).resolve().parents[1]
ALL = "saved_model,onnx,litert"
MODULES = {"onnx": onnx, "litert": litert}


def zoo_json(version: Path) -> dict:
    return json.loads((version / "assets.extra" / "zoo.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_runs, tmp_path_factory, tiny_data_dir):
    """The shared zoo_tiny runs, and gainnet: the custom-layer plugin of the install tests,
    registered for this module only (no venv to install it in) and trained here."""
    sys.path.insert(0, str(ROOT / "tests" / "plugin_extra"))
    try:
        import zoo_extra
    finally:
        sys.path.remove(str(ROOT / "tests" / "plugin_extra"))
    zoo.register(zoo_extra.gainnet)
    made = {}

    def get(key: str) -> zoo.Run:
        if key != "gainnet":
            return tiny_runs(key)
        if key not in made:
            made[key] = zoo.train("gainnet", dataset="zoo_tiny", data_dir=tiny_data_dir, hparams={"units": 16},
                                  epochs=3, batch_size=32, run_dir=tmp_path_factory.mktemp("gainnet") / "run",
                                  verbose=0)
        return made[key]

    yield get
    registry._discovery._LOCAL.pop("gainnet", None)  # test_registry on this worker sees no leftover


@pytest.fixture(scope="module")
def test_split(tiny_data_dir):
    from zoo.data import pipeline

    return pipeline.split_arrays("zoo_tiny", "test", data_dir=tiny_data_dir)


KEYS = ["softmax", "cnn", "cnn-batchnorm", "gainnet"]


@pytest.fixture(scope="module")
def exported(runs, test_split, tmp_path_factory):
    """``key -> (run, the export command's result, {format: what serving it gave}, the trained
    model's classes)``: each run exported in all three formats by one command, then each format
    of every export served in its own runtime, one fresh process per format."""
    from zoo.data.images import to_model_input
    from zoo.evaluation import load_model

    base, done = tmp_path_factory.mktemp("exports"), {}
    for key in KEYS:
        run = runs(key)
        classes = load_model(run).predict(to_model_input(test_split[0]), verbose=0).argmax(-1).tolist()
        done[key] = (run, zoo_cli("export", run.path, base / key, "--format", ALL), classes)
    published = [key for key, (_, result, _) in done.items() if result.exit_code == 0]
    served = {fmt: dict(zip(published, serve(fmt, [base / key / "1" for key in published], *test_split, base)))
              for fmt in ("saved_model", "onnx", "litert")}
    return {key: (run, result, {fmt: served[fmt].get(key) for fmt in served}, classes)
            for key, (run, result, classes) in done.items()}


@pytest.mark.parametrize("key", KEYS)
def test_every_format_scores_the_runs_test_accuracy_in_its_own_runtime(key, exported, test_split):
    run, result, seen, classes = exported[key]
    assert result.exit_code == 0, result.output
    version = Path(result.output.split("exported ", 1)[1].split(" ", 1)[0])
    record = zoo_json(version)
    assert record["formats"] == ["saved_model", "onnx", "litert"]
    expected = run.metrics["test_accuracy"] * len(test_split[1])
    for fmt, heavy in (("saved_model", ["tensorflow"]), ("onnx", []), ("litert", [])):
        assert abs(seen[fmt]["correct"] - expected) <= 1, (fmt, seen[fmt]["correct"], expected)
        # And image by image: a near-chance model's count alone could match by luck.
        assert sum(a != b for a, b in zip(seen[fmt]["class_id"], classes)) <= 1, (fmt, seen[fmt]["class_id"], classes)
        assert seen[fmt]["dtypes"] == ["float32", "int64"] and seen[fmt]["heavy"] == heavy, (fmt, seen[fmt])
        names = run.dataset["class_names"]
        if fmt == "saved_model":  # the names of the classes it served (class_name), None for the others
            names = [n if n in seen[fmt]["class_names"] else None for n in names]
        assert seen[fmt]["class_names"] == names, (fmt, seen[fmt])
    # Each other format's line, and what zoo.json records of its check.
    for fmt, module in MODULES.items():
        checked, path = record[fmt], version / module.FILE
        (line,) = [line for line in result.output.splitlines() if line.startswith(f"{fmt}: /")]
        assert line == f"{fmt}: {path} ({checked['bytes']:,} bytes); {checked['check']}"
        assert checked["file"] == module.FILE and checked["bytes"] == path.stat().st_size
        assert checked["max_abs_diff"] <= checked["tolerance"] and "warning" not in checked
        assert checked["batch_sizes"] == [1, result_images(result.output)]
    assert record["onnx"]["opset"] == onnx.OPSET and record["onnx"]["dynamic_dims"] == ["batch"]
    assert record["onnx"]["precision"] == run.config.precision
    assert record["onnx"]["tolerance"] == onnx.TOLERANCE[run.config.precision]
    # float32 LiteRT kernels against Keras: 1e-4; against a mixed-precision model, that precision's.
    assert record["litert"]["tolerance"] == max(1e-4, TOLERANCE[run.config.precision])
    assert record["litert"]["quantization"] is None
    assert "any size" not in result.output  # a fixed-size model: nothing to say about sizes


def result_images(output: str) -> int:
    """How many images the export compared its formats on, from its first line."""
    return int(output.split("reloaded and compared on ", 1)[1].split(" ", 1)[0])


def test_a_folder_trained_model_exports_all_three_and_says_which_take_any_size(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from imagefolders import write

    folder = write(tmp_path / "shapes", {"train": 12, "test": 4}, sizes=((24, 24), (30, 20)))
    run = zoo.train("softmax", dataset=str(folder), image_size=(24, 24), epochs=1, batch_size=8,
                    data_dir=str(tmp_path / "tfds"), run_dir=tmp_path / "run", verbose=0)
    result = zoo_cli("export", run.path, tmp_path / "exports", "--format", ALL)
    assert result.exit_code == 0, result.output
    version, lines = tmp_path / "exports" / "1", result.output.splitlines()
    record = zoo_json(version)
    assert record["formats"] == ["saved_model", "onnx", "litert"]
    # The SavedModel takes any size and channel count, and says so.
    assert "serving_default takes uint8 images [N, H, W, C] of any size" in result.output
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    assert served(image=tf.zeros((2, 30, 20, 1), tf.uint8))["probabilities"].shape == (2, 3)
    fixed = "takes uint8 [N, 24, 24, 3] only, not any size as the SavedModel does: "
    # LiteRT cannot: its file takes the training size, and a WARNING line says so and why.
    assert record["litert"]["any_size"] is False
    assert record["litert"]["warning"] == fixed + litert.FIXED_SIZE_BECAUSE + (
        "; resize images to 24x24 with 3 channels before sending them, or serve the SavedModel")
    assert f"litert: WARNING: {record['litert']['warning']}" in lines
    runner = Interpreter(model_path=str(version / "model.tflite")).get_signature_runner("serving_default")
    assert runner(image=np.zeros((2, 24, 24, 3), np.uint8))["probabilities"].shape == (2, 3)
    # ONNX takes any size if tf2onnx converts the resizing, else the training size, said the same way.
    session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    if record["onnx"]["any_size"]:
        assert record["onnx"]["dynamic_dims"] == ["batch", "height", "width", "channels"]
        (probabilities,) = session.run(["probabilities"], {"image": np.zeros((2, 30, 20, 1), np.uint8)})
        assert "any size: saved_model, onnx; training size only: litert (see the warnings above)" in lines
    else:
        assert record["onnx"]["dynamic_dims"] == ["batch"] and record["onnx"]["warning"].startswith(fixed)
        assert "tf2onnx" in record["onnx"]["warning"] and f"onnx: WARNING: {record['onnx']['warning']}" in lines
        assert dict(session.get_modelmeta().custom_metadata_map)[onnx.FIXED_SIZE]
        (probabilities,) = session.run(["probabilities"], {"image": np.zeros((2, 24, 24, 3), np.uint8)})
        assert "any size: saved_model; training size only: onnx, litert (see the warnings above)" in lines
    assert probabilities.shape == (2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_an_export_killed_while_writing_its_file_leaves_no_version(fmt, runs, tmp_path):
    """SIGKILL with half of model.onnx or model.tflite written (the SavedModel is written and
    checked by then): no numbered folder; the next export removes the dead one's temporary and
    publishes version 1."""
    run, base, marker = runs("softmax"), tmp_path / "exports", tmp_path / "writing"
    name = MODULES[fmt].FILE
    # `zoo export` as the command runs it, but the file's bytes stop half-way (to be killed there).
    code = textwrap.dedent(f"""
        import os, pathlib, sys, time
        real = pathlib.Path.write_bytes
        def half_then_wait(self, data):
            if self.name.endswith({name!r}):
                with open(self, "wb") as f:
                    f.write(data[: len(data) // 2])
                pathlib.Path({str(marker)!r}).write_text(str(self))
                time.sleep(600)
            return real(self, data)
        pathlib.Path.write_bytes = half_then_wait
        from zoo.cli import main
        sys.argv = ["zoo", "export", {str(run.path)!r}, {str(base)!r}, "--format", "saved_model,{fmt}"]
        main()
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "timed out waiting for the file to be written"
            time.sleep(0.05)
        half = Path(marker.read_text())
        assert half.stat().st_size > 0 and (half.parent / "saved_model.pb").is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert not [p for p in base.iterdir() if p.name.isdigit()]  # nothing visible, half file or not
    assert half.parent.name.startswith(".tmp-") and half.parent.parent == base
    result = zoo_cli("export", run.path, base, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # the stale temporary is gone
    assert {"saved_model.pb", name} <= {p.name for p in (base / "1").iterdir()}


def without_last_metadata_entry(data: bytes) -> int:
    """Where a model.onnx ends without its last metadata_props entry: a protobuf cut between two
    fields still parses, so only the check's reading of every entry can tell."""
    import onnx as onnx_lib

    proto = onnx_lib.ModelProto()
    proto.ParseFromString(data)
    last = onnx_lib.ModelProto()
    last.metadata_props.add(key=proto.metadata_props[-1].key, value=proto.metadata_props[-1].value)
    tail = last.SerializeToString()
    assert data.endswith(tail)
    return len(data) - len(tail)


CUTS = {"half": lambda data: len(data) // 2, "last byte": lambda data: len(data) - 1,
        "last metadata entry": without_last_metadata_entry}


@pytest.mark.parametrize("fmt,cut", [("onnx", "half"), ("onnx", "last metadata entry"), ("litert", "half"),
                                     ("litert", "last byte")])
def test_a_file_cut_short_in_the_temporary_is_never_published(fmt, cut, runs, tmp_path, monkeypatch):
    run, module = runs("softmax"), MODULES[fmt]
    real = module.write

    def write_cut_short(*args, **kwargs):
        path = real(*args, **kwargs)
        data = path.read_bytes()
        path.write_bytes(data[: CUTS[cut](data)])
        return path

    monkeypatch.setattr(module, "write", write_cut_short)
    with pytest.raises(ZooError, match=rf"--format {fmt}") as failed:
        run.export(tmp_path / "exports", formats=fmt)
    assert "\n" not in str(failed.value)
    assert list((tmp_path / "exports").iterdir()) == []  # no version, no temporary
