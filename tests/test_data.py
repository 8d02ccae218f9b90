"""The TFDS pipeline: mock data for shapes and types; the tiny real dataset for split slicing,
shuffling and augmentation (tfds.testing.mock_data ignores split slicing)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from zoo.data import catalog, pipeline
from zoo.data.images import MAX_SHIFT
from zoo.errors import ZooError, ZooUsageError


@pytest.mark.parametrize("name, shape, classes", [("mnist", (28, 28, 1), 10), ("cifar100", (32, 32, 3), 100)])
def test_mock_datasets_give_normalised_batches(name, shape, classes, tmp_path):
    # mock_data replaces preparation and reading, not the offline check: give it files of the
    # registered names and sizes.
    for info in tfds.builder(name).url_infos.values():
        with (tmp_path / info.filename).open("wb") as f:
            f.truncate(int(info.size))
    with tfds.testing.mock_data(num_examples=40):
        splits = pipeline.load(name, batch_size=16, data_dir=str(tmp_path), manual_dir=str(tmp_path))
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
    splits = pipeline.load("zoo_tiny", val_fraction=0.25, batch_size=32, data_dir=tiny_data_dir)
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
    splits = pipeline.load("zoo_tiny", batch_size=20, augment=augment, data_dir=tiny_data_dir)
    for ds in (splits.train, splits.validation, splits.test):
        assert ds.options().autotune.enabled is False
        assert ds.options().experimental_optimization.apply_default_optimizations is False


def _epochs(splits) -> list[list[int]]:
    ids, n = _image_ids(splits.train), splits.info.num_train
    return [ids[i : i + n] for i in range(0, len(ids), n)]


def test_training_order_reshuffles_each_epoch_and_follows_the_seed(tiny_data_dir):
    def orders(seed):
        return _epochs(pipeline.load("zoo_tiny", batch_size=20, seed=seed, epochs=range(3), data_dir=tiny_data_dir))

    splits = pipeline.load("zoo_tiny", batch_size=20, epochs=range(3), data_dir=tiny_data_dir)
    assert splits.steps_per_epoch == 9 and int(splits.train.cardinality()) == 27  # 180 / 20, 3 epochs
    first, second, third = orders(0)
    assert first != second != third and sorted(first) == sorted(second) == sorted(set(third))
    assert len(first) == 180
    assert orders(0) == [first, second, third]  # the same seed, the same sequence of permutations
    assert orders(1)[0] != first


@pytest.mark.parametrize("augment", [False, True])
def test_a_resumed_stream_repeats_the_epochs_it_continues(tiny_data_dir, augment):
    # Exact resume rests on this: epoch k's batches depend on (seed, k) only.
    def batches(epochs):
        splits = pipeline.load("zoo_tiny", batch_size=32, seed=5, epochs=epochs, augment=augment, data_dir=tiny_data_dir)
        return [(x.numpy(), y.numpy()) for x, y in splits.train]

    whole, tail = batches(range(4)), batches(range(2, 4))
    assert len(whole) == 4 * 6 and len(tail) == 2 * 6
    for (xa, ya), (xb, yb) in zip(whole[12:], tail):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("augment", [False, True])
def test_labels_stay_with_their_images_through_the_permutation(tiny_data_dir, augment):
    # Each tiny image shows its label as a bright row (2 + label) and its index in two pixels.
    splits = pipeline.load("zoo_tiny", batch_size=32, seed=3, epochs=range(2), augment=augment, data_dir=tiny_data_dir)
    for images, labels in splits.train:
        rows = images.numpy()[..., 0].sum(axis=2).argmax(axis=1)
        if augment:  # a shift moves the row by up to MAX_SHIFT pixels
            assert np.all(np.abs(rows - (2 + labels.numpy())) <= MAX_SHIFT)
        else:
            np.testing.assert_array_equal(rows, 2 + labels.numpy())
            raw = np.rint(images.numpy() * 255).astype(int)
            np.testing.assert_array_equal((raw[:, 0, 0, 0] * 256 + raw[:, 0, 1, 0]) % 3, labels.numpy())


def test_seeded_augmentation_repeats_and_differs_between_epochs(tiny_data_dir):
    def shifted(seed):
        splits = pipeline.load("zoo_tiny", batch_size=180, seed=seed, epochs=range(2), augment=True, data_dir=tiny_data_dir)
        return [x.numpy() for x, _ in splits.train]

    first = shifted(0)
    np.testing.assert_array_equal(first[0], shifted(0)[0])
    assert not np.array_equal(first[0], shifted(1)[0])
    # The same images in another order and with other shifts the next epoch.
    assert not np.array_equal(np.sort(first[0].sum(axis=(1, 2, 3))), np.sort(first[1].sum(axis=(1, 2, 3))))


def test_validation_and_test_are_not_shuffled(tiny_data_dir):
    a = pipeline.load("zoo_tiny", batch_size=20, seed=0, data_dir=tiny_data_dir)
    b = pipeline.load("zoo_tiny", batch_size=20, seed=1, data_dir=tiny_data_dir)
    for split in ("validation", "test"):
        order = _image_ids(getattr(a, split))
        assert _image_ids(getattr(a, split)) == order == _image_ids(getattr(b, split))


def test_augmentation_shifts_training_images_only(tiny_data_dir):
    plain = pipeline.load("zoo_tiny", batch_size=200, data_dir=tiny_data_dir)
    shifted = pipeline.load("zoo_tiny", batch_size=200, data_dir=tiny_data_dir, augment=True)
    a, _ = next(iter(plain.train))
    b, _ = next(iter(shifted.train))
    assert a.shape == b.shape and 0.0 <= float(b.numpy().min()) and float(b.numpy().max()) <= 1.0
    rows_a, rows_b = a.numpy().sum(axis=(2, 3)), b.numpy().sum(axis=(2, 3))
    assert not np.array_equal(rows_a.argmax(axis=1), rows_b.argmax(axis=1))  # the label row moved
    assert np.all(np.abs(rows_a.argmax(axis=1) - rows_b.argmax(axis=1)) <= MAX_SHIFT)
    assert _image_ids(shifted.validation) == _image_ids(plain.validation)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_validation_fraction(fraction):
    with pytest.raises(ZooUsageError, match="`val_split` must be between 0 and 1"):
        catalog.split_strings(fraction)


def test_fraction_that_empties_a_split_is_refused(tiny_data_dir):
    with pytest.raises(ZooUsageError, match="`val_split` 0.001 leaves 200 training and 0 validation examples"):
        pipeline.load("zoo_tiny", val_fraction=0.001, data_dir=tiny_data_dir)


def test_unknown_dataset(tmp_path):
    with pytest.raises(ZooUsageError, match="unknown dataset 'no_such_dataset'"):
        pipeline.load("no_such_dataset", data_dir=str(tmp_path))


def test_missing_split(tiny_data_dir):
    with pytest.raises(ZooUsageError, match=re.escape("dataset 'zoo_tiny_no_test' has no split 'test' (it has: train; "
                                                      "a slice of one works too, e.g. train[90%:] or train[:1000])")):
        pipeline.load_split("zoo_tiny_no_test", "test", data_dir=tiny_data_dir)
    splits = pipeline.load("zoo_tiny_no_test", data_dir=tiny_data_dir)
    assert splits.test is None and splits.info.test_split is None


def test_offline_without_files_fails_fast_naming_both_options(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    empty = tmp_path / "manual"
    empty.mkdir()
    with pytest.raises(ZooError) as err:
        pipeline.load("mnist", data_dir=str(tmp_path / "tfds"), manual_dir=str(empty))
    message = str(err.value)
    assert "`manual_dir`" in message and "`data_dir`" in message and "ZOO_MANUAL_DIR" in message
    assert "t10k-images-idx3-ubyte.gz" in message


def test_preparing_says_what_it_does_instead_of_tfds_downloading_unknown_size(tmp_path, capfd):
    catalog.prepared_builder("zoo_tiny", data_dir=str(tmp_path))
    out, err = capfd.readouterr()
    assert "Downloading and preparing" not in out + err and "downloaded and prepared" not in out + err
    where = tmp_path / "zoo_tiny" / "1.0.0"
    assert f"preparing zoo_tiny into {where} ...\n" in err and f"prepared zoo_tiny in {where}\n" in err


def test_the_announcement_names_the_local_files_and_passes_other_output_on(capfd):
    from zoo.data import offline

    with offline.announced("mnist", "/data/mnist/3.0.1", "/files/mnist"):
        print("\x1b[1mDownloading and preparing dataset Unknown size (download: Unknown size) to /data...\x1b[0m")
        print("a line of a dataset's own")
        print("Dataset mnist downloaded and prepared to /data/mnist/3.0.1. Subsequent calls will reuse this data.")
    out, err = capfd.readouterr()
    assert out == "a line of a dataset's own\n"
    assert err == ("preparing mnist from the files in /files/mnist into /data/mnist/3.0.1 ...\n"
                   "prepared mnist in /data/mnist/3.0.1\n")
