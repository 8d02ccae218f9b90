"""Exports that go wrong: a version taken by a concurrent export, a SavedModel that differs from
the model. Neither may leave a numbered folder or a temporary behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import registry
from clicalls import zoo_cli
from zoo.errors import ZooError
from zoo.export import bundle as export
from zoo.export import saved_model


@pytest.fixture(scope="module")
def model_and_images():
    model = registry.get("softmax").build(input_shape=(8, 8, 1), num_classes=3)
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    return model, images


def test_a_version_taken_meanwhile_is_skipped(model_and_images, tmp_path, monkeypatch):
    model, images = model_and_images
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"another export's")
    answers = iter([1])  # the first look says 1 is free: another export published it meanwhile
    real = export.next_version
    monkeypatch.setattr(export, "next_version", lambda base: next(answers, None) or real(base))
    result = export.export_model(model, tmp_path, check_images=images)
    assert result.version == 2 and (tmp_path / "2" / "saved_model.pb").is_file()
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() == b"another export's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_a_saved_model_that_differs_is_not_published(model_and_images, tmp_path, monkeypatch):
    model, images = model_and_images
    real_verify = saved_model.verify

    def verify_after_training_moved_on(path, model, images, tolerance, class_names=None):
        weights = model.get_weights()
        rng = np.random.default_rng(1)  # the in-memory model no longer matches what was written
        model.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in weights])
        try:
            return real_verify(path, model, images, tolerance, class_names)
        finally:
            model.set_weights(weights)

    monkeypatch.setattr(saved_model, "verify", verify_after_training_moved_on)
    with pytest.raises(ZooError, match=r"exported model differs from the trained one \(max abs diff "):
        export.export_model(model, tmp_path, check_images=images)
    assert list(tmp_path.iterdir()) == []  # no version, no temporary


def test_a_fixed_size_export_refuses_other_shapes_naming_both_and_names_classes(model_and_images, tmp_path):
    """A model trained at 8x8x1 serves exactly that: a batch of another rank, size or channel count
    is TensorFlow's InvalidArgumentError (TF Serving's INVALID_ARGUMENT) naming both shapes, not an
    error from inside the model or a silent broadcast. class_name is the class id's name."""
    import re

    import tensorflow as tf

    model, images = model_and_images
    result = export.export_model(model, tmp_path, check_images=images, class_names=["cat", "dog", "eel"])
    assert result.accepts == "uint8 images [N, 8, 8, 1]"
    serve = tf.saved_model.load(str(result.path)).signatures["serving_default"]
    out = serve(image=tf.constant(images))
    assert [n.decode() for n in out["class_name"].numpy()] == [["cat", "dog", "eel"][i] for i in out["class_id"].numpy()]
    for shape, shown in (((5, 8, 8), "[5 8 8]"), ((1, 40, 52, 1), "[1 40 52 1]"), ((2, 8, 8, 3), "[2 8 8 3]"),
                         ((8, 8, 1), "[8 8 1]")):
        message = f"image must be a uint8 batch of shape [N, 8, 8, 1]; received shape {shown}"
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            serve(image=tf.zeros(shape, tf.uint8))


def test_a_version_is_on_disk_before_it_is_renamed_into_place(model_and_images, tmp_path, monkeypatch):
    """Every file and folder of the temporary is fsynced before the rename that publishes it, and
    the export base after it: after a power cut a version is whole or absent, never cut short."""
    import os

    model, images = model_and_images
    synced, renames = [], []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def rename(src, dst):
        renames.append((str(src), str(dst), len(synced)))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    result = export.export_model(model, tmp_path, check_images=images, metadata={"model": "softmax"})
    ((src, _, before),) = [r for r in renames if r[1] == str(result.path)]
    written = [src, *(str(Path(src) / p.relative_to(result.path)) for p in result.path.rglob("*"))]
    assert len(written) > 3 and set(written) <= set(synced[:before])  # saved_model.pb, variables/, zoo.json, ...
    assert str(tmp_path) in synced[before:]


@pytest.mark.slow  # a run trained, then exported: 10 s
def test_an_export_never_prepares_its_runs_dataset_again(tmp_path):
    """The run's dataset gone from its data folder (deleted, or the run copied elsewhere): the
    export compares on random images and says why; it neither downloads nor prepares the data,
    which would recreate the folder and take minutes for a large dataset."""
    import shutil

    from tinydata import ZooTiny

    import zoo

    data = tmp_path / "tfds"
    ZooTiny(data_dir=str(data)).download_and_prepare()
    run = zoo.train("softmax", dataset="zoo_tiny", data_dir=str(data), epochs=1, precision="float32",
                    run_dir=tmp_path / "run", verbose=0)
    shutil.rmtree(data)
    result = run.export(tmp_path / "exports")
    assert result.version == 1 and result.random_because == f"zoo_tiny is not prepared in {data}"
    assert not data.exists()
    # Where the data is now (--data-dir): compared on the run's test images again.
    elsewhere = tmp_path / "elsewhere"
    ZooTiny(data_dir=str(elsewhere)).download_and_prepare()
    assert run.export(tmp_path / "exports", data_dir=elsewhere).random_because == ""
    result = zoo_cli("export", run.path, tmp_path / "exports", "--data-dir", elsewhere)
    assert result.exit_code == 0, result.output[-2000:]
    assert "random" not in result.stdout and "compared on 60 images: max abs diff" in result.stdout, result.stdout
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["1", "2", "3"]
