"""--format onnx (#27), what only ONNX has: a missing extra and a failing check publish nothing,
and a model whose graph captures constants (an adapted Normalization) still takes only ``image``.
The accuracy of model.onnx in ONNX Runtime alone, a folder-trained model's input size and a kill
while writing are test_export_formats.py's, with the other formats."""

from __future__ import annotations

import numpy as np
import pytest
from clicalls import one_line_error, zoo_cli

import registry
import zoo
from zoo.errors import ZooError
from zoo.export import onnx as zoo_onnx


def test_without_the_onnx_extra_export_is_one_line_and_writes_nothing(tiny_runs, tmp_path, monkeypatch):
    import importlib.util

    from zoo.export import request

    real = importlib.util.find_spec
    monkeypatch.setattr(request.importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    base = tmp_path / "exports"
    line = one_line_error(zoo_cli("export", tiny_runs("softmax").path, base, "--format", "saved_model,onnx"))
    assert line == "Error: --format onnx needs tf2onnx: pip install 'keras-zoo[onnx]'"
    assert not base.exists()


def test_a_failing_onnx_check_publishes_no_version(tiny_runs, tmp_path, monkeypatch):
    run, base = tiny_runs("softmax"), tmp_path / "exports"

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


@pytest.fixture
def normnet():
    """A model whose first layer is a Normalization adapted in the builder: its mean and variance
    are tensors the serving function captures (not variables), far from 0 and 1."""
    import keras

    @zoo.register
    def normnet(*, input_shape, num_classes):
        norm = keras.layers.Normalization()
        norm.adapt(np.random.default_rng(0).uniform(0.1, 0.5, (64, *input_shape)).astype("float32"))
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Flatten()(norm(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))

    yield normnet
    registry._discovery._LOCAL.pop("normnet", None)


def test_a_model_with_a_normalization_layer_exports_a_file_that_takes_only_image(normnet, tiny_data_dir, tmp_path):
    import onnxruntime as ort

    from zoo.data import pipeline
    from zoo.data.images import to_model_input
    from zoo.evaluation import load_model

    run = zoo.train("normnet", dataset="zoo_tiny", data_dir=tiny_data_dir, precision="float32", epochs=1,
                    batch_size=32, run_dir=tmp_path / "run", verbose=0)
    model = load_model(run)
    mean = np.asarray(model.layers[1].mean)
    assert np.all(np.abs(mean - 0.3) < 0.05)  # adapted, not the identity
    result = zoo_cli("export", run.path, tmp_path / "exports", "--format", "onnx")
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "exports" / "1" / zoo_onnx.FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    images = pipeline.split_arrays("zoo_tiny", "test", data_dir=tiny_data_dir)[0]
    probabilities, class_id = session.run(["probabilities", "class_id"], {"image": images})
    expected = model.predict(to_model_input(images), verbose=0)
    assert np.max(np.abs(probabilities - expected)) <= zoo_onnx.TOLERANCE["float32"]
    assert np.array_equal(class_id, probabilities.argmax(-1))
