"""Exports that go wrong: a version taken by a concurrent export, a SavedModel that differs from
the model. Neither may leave a numbered folder or a temporary behind."""

from __future__ import annotations

import numpy as np
import pytest

import registry
from zoo import export
from zoo.errors import ZooError


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
    real_verify = export.verify

    def verify_after_training_moved_on(path, model, images, tolerance):
        weights = model.get_weights()
        rng = np.random.default_rng(1)  # the in-memory model no longer matches what was written
        model.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in weights])
        try:
            return real_verify(path, model, images, tolerance)
        finally:
            model.set_weights(weights)

    monkeypatch.setattr(export, "verify", verify_after_training_moved_on)
    with pytest.raises(ZooError, match=r"exported model differs from the trained one \(max abs diff "):
        export.export_model(model, tmp_path, check_images=images)
    assert list(tmp_path.iterdir()) == []  # no version, no temporary
