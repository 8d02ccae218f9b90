"""Every registered model, found through the registry (no hand-written list): build on two input
shapes, one training step, export a SavedModel, reload it with TensorFlow alone and compare."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import registry
from zoo.errors import ZooUsageError
from zoo.export.bundle import export_model

MODELS = [e.name for e in registry.entries() if not e.problem]
SHAPES = [((28, 28, 1), 10), ((32, 32, 3), 100)]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("input_shape, num_classes", SHAPES)
def test_build_train_export_reload_compare(name, input_shape, num_classes, tmp_path):
    model = registry.get(name).build(input_shape=input_shape, num_classes=num_classes)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, *input_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, 16)

    probs = model.predict(images / 255.0, verbose=0)
    assert probs.shape == (16, num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(images / 255.0, labels)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    result = export_model(model, tmp_path, check_images=images)
    assert result.version == 1 and result.path == tmp_path / "1"
    assert result.max_abs_diff <= 1e-5

    serve = tf.saved_model.load(str(result.path)).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.name == "image" and spec.dtype == tf.uint8 and spec.shape.as_list() == [None, *input_shape]
    outputs = serve.structured_outputs
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, num_classes]
    assert outputs["class_id"].dtype == tf.int64 and outputs["class_id"].shape.as_list() == [None]
    served = serve(image=tf.constant(images))
    expected = model.predict(images / 255.0, verbose=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["class_id"].numpy(), expected.argmax(axis=1))


@pytest.fixture(scope="module")
def small_model():
    return registry.get("softmax").build(input_shape=(4, 4, 1), num_classes=3)


def test_exports_take_the_next_version(small_model, tmp_path):
    images = np.zeros((2, 4, 4, 1), np.uint8)
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "keep").write_text("an older version")
    versions = [export_model(small_model, tmp_path, check_images=images).version for _ in range(2)]
    assert versions == [8, 9]
    assert (tmp_path / "7" / "keep").read_text() == "an older version"


def test_stale_temporary_of_a_dead_export_is_removed(small_model, tmp_path):
    dead = os.getpid() + 10_000_000  # beyond pid_max: no such process
    stale = tmp_path / f".tmp-{dead}-abcd1234"
    stale.mkdir()
    (stale / "saved_model.pb").write_bytes(b"half written")
    live = tmp_path / f".tmp-{os.getpid()}-live0000"
    live.mkdir()
    export_model(small_model, tmp_path, check_images=np.zeros((1, 4, 4, 1), np.uint8))
    assert not stale.exists()
    assert live.exists()  # a running export's temporary is never touched
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["1"]


def test_export_base_that_is_a_file_is_refused(small_model, tmp_path):
    target = tmp_path / "file"
    target.write_text("not a folder")
    with pytest.raises(ZooUsageError, match="exists and is not a directory"):
        export_model(small_model, target, check_images=np.zeros((1, 4, 4, 1), np.uint8))
