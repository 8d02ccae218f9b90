"""The TFDS pipeline: mock data for shapes and types; the tiny real dataset for split slicing,
shuffling and augmentation (tfds.testing.mock_data ignores split slicing)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from zoo import data
from zoo.errors import ZooError, ZooUsageError


@pytest.mark.parametrize("name, shape, classes", [("mnist", (28, 28, 1), 10), ("cifar100", (32, 32, 3), 100)])
def test_mock_datasets_give_normalised_batches(name, shape, classes, tmp_path):
    # mock_data replaces preparation and reading, not the offline check: give it files of the
    # registered names and sizes.
    for info in tfds.builder(name).url_infos.values():
        with (tmp_path / info.filename).open("wb") as f:
            f.truncate(int(info.size))
    with tfds.testing.mock_data(num_examples=40):
        splits = data.load(name, batch_size=16, data_dir=str(tmp_path), manual_dir=str(tmp_path))
        images, labels = next(iter(splits.train))
    assert splits.info.input_shape == shape and splits.info.num_classes == classes
    assert splits.info.train_split == "train[:90%]" and splits.info.validation_split == "train[90%:]"
    assert images.shape == (16, *shape) and images.dtype.name == "float32"
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    assert labels.shape == (16,) and labels.dtype.is_integer


def _image_ids(ds) -> list[int]:
    """The example index written into pixels (0,0) and (0,1) of each tiny image."""
    ids = []
    for images, _ in ds:
        raw = np.rint(images.numpy() * 255).astype(int)
        ids += list(raw[:, 0, 0, 0] * 256 + raw[:, 0, 1, 0])
    return ids


def test_train_and_validation_are_disjoint_and_cover_train(tiny_data_dir):
    splits = data.load("zoo_tiny", val_fraction=0.25, batch_size=32, data_dir=tiny_data_dir)
    train, val = _image_ids(splits.train), _image_ids(splits.validation)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(200))
    assert (len(train), len(val)) == (150, 50) == (splits.info.num_train, splits.info.num_validation)
    assert sorted(_image_ids(splits.test)) == list(range(200, 260))
    # Every epoch: the same validation examples, never any of them in training.
    assert set(_image_ids(splits.train)) == set(train)
    assert _image_ids(splits.validation) == val


@pytest.mark.parametrize("augment", [False, True])
def test_every_pipeline_runs_without_the_tf_data_autotuner(tiny_data_dir, augment):
    # On 2 cores the autotuner made whole stretches of training 1.6-1.9x slower (README).
    splits = data.load("zoo_tiny", batch_size=20, augment=augment, data_dir=tiny_data_dir)
    for ds in (splits.train, splits.validation, splits.test):
        assert ds.options().autotune.enabled is False
        assert ds.options().experimental_optimization.apply_default_optimizations is False


def test_training_order_reshuffles_each_epoch_and_follows_the_seed(tiny_data_dir):
    def orders(seed):
        ds = data.load("zoo_tiny", batch_size=20, seed=seed, data_dir=tiny_data_dir).train
        return _image_ids(ds), _image_ids(ds)

    assert int(data.load("zoo_tiny", batch_size=20, data_dir=tiny_data_dir).train.cardinality()) == 9  # 180 / 20
    first, second = orders(0)
    assert first != second and sorted(first) == sorted(second)  # new permutation each epoch
    assert orders(0) == (first, second)  # the same seed, the same sequence of permutations
    assert orders(1)[0] != first


def test_validation_and_test_are_not_shuffled(tiny_data_dir):
    a = data.load("zoo_tiny", batch_size=20, seed=0, data_dir=tiny_data_dir)
    b = data.load("zoo_tiny", batch_size=20, seed=1, data_dir=tiny_data_dir)
    for split in ("validation", "test"):
        order = _image_ids(getattr(a, split))
        assert _image_ids(getattr(a, split)) == order == _image_ids(getattr(b, split))


def test_augmentation_shifts_training_images_only(tiny_data_dir):
    plain = data.load("zoo_tiny", batch_size=200, data_dir=tiny_data_dir)
    shifted = data.load("zoo_tiny", batch_size=200, data_dir=tiny_data_dir, augment=True)
    a, _ = next(iter(plain.train))
    b, _ = next(iter(shifted.train))
    assert a.shape == b.shape and 0.0 <= float(b.numpy().min()) and float(b.numpy().max()) <= 1.0
    rows_a, rows_b = a.numpy().sum(axis=(2, 3)), b.numpy().sum(axis=(2, 3))
    assert not np.array_equal(rows_a.argmax(axis=1), rows_b.argmax(axis=1))  # the label row moved
    assert np.all(np.abs(rows_a.argmax(axis=1) - rows_b.argmax(axis=1)) <= data.MAX_SHIFT)
    assert _image_ids(shifted.validation) == _image_ids(plain.validation)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_validation_fraction(fraction):
    with pytest.raises(ZooUsageError, match="`val_split` must be between 0 and 1"):
        data.split_strings(fraction)


def test_fraction_that_empties_a_split_is_refused(tiny_data_dir):
    with pytest.raises(ZooUsageError, match="`val_split` 0.001 leaves an empty split of 'zoo_tiny'"):
        data.load("zoo_tiny", val_fraction=0.001, data_dir=tiny_data_dir)


def test_unknown_dataset(tmp_path):
    with pytest.raises(ZooUsageError, match="unknown dataset 'no_such_dataset'"):
        data.load("no_such_dataset", data_dir=str(tmp_path))


def test_missing_split(tiny_data_dir):
    with pytest.raises(ZooUsageError, match="dataset 'zoo_tiny_no_test' has no split 'test' \\(it has: train\\)"):
        data.load_split("zoo_tiny_no_test", "test", data_dir=tiny_data_dir)
    splits = data.load("zoo_tiny_no_test", data_dir=tiny_data_dir)
    assert splits.test is None and splits.info.test_split is None


def test_offline_without_files_fails_fast_naming_both_options(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    empty = tmp_path / "manual"
    empty.mkdir()
    with pytest.raises(ZooError) as err:
        data.load("mnist", data_dir=str(tmp_path / "tfds"), manual_dir=str(empty))
    message = str(err.value)
    assert "`manual_dir`" in message and "`data_dir`" in message and "ZOO_MANUAL_DIR" in message
    assert "t10k-images-idx3-ubyte.gz" in message
