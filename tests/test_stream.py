"""The streaming input path (#14): choosing it, its order guarantees, the decoded cache on disk,
and a whole run through the installed `zoo` script on a multi-shard 64x64x3 TFDS dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tinydata
import warm
from test_data import _image_ids as _ids  # the index each test image carries in two pixels

from zoo.config import parse_size
from zoo.data import catalog, pipeline
from zoo.data.budget import default_memory_budget, machine_memory
from zoo.data.cache import cache_folder, fill_cache
from zoo.errors import ZooError, ZooUsageError

MB = 2**20
# zoo_stream: 320 train (288 after validation), 80 test images of 64x64x3.
EXAMPLE = 64 * 64 * 3 + 8


def _load(data_dir, **kwargs):
    kwargs.setdefault("batch_size", 32)
    return pipeline.load("zoo_stream", data_dir=data_dir, **kwargs)


# -- choosing the path ------------------------------------------------------------------------


def test_auto_keeps_what_fits_in_memory_and_streams_what_does_not(stream_data_dir):
    total = 400 * EXAMPLE  # train, validation and test, decoded
    fits = _load(stream_data_dir, memory_budget=total)
    assert (fits.input.train, fits.input.evaluation) == ("memory", "memory")
    assert fits.input.decoded_bytes == {"train": 288 * EXAMPLE, "validation": 32 * EXAMPLE, "test": 80 * EXAMPLE}
    assert "within the memory budget" in fits.input.reason

    big = _load(stream_data_dir, memory_budget=total - 1)
    assert big.input.train == "stream" and "more than the memory budget" in big.input.reason
    assert "zoo_stream" in big.input.reason and "64x64x3" in big.input.reason
    # Validation and test (112 images, 1.3 MB) get half the budget: here they fit.
    assert big.input.evaluation == "memory"
    # The buffer holds encoded examples (their mean size from TFDS's split record) in the
    # other half of the budget.
    builder = catalog.prepared_builder("zoo_stream", data_dir=stream_data_dir)
    encoded = builder.info.splits["train"].num_bytes / 320
    assert encoded < EXAMPLE / 1.2  # PNG: smaller than decoded even with noise
    assert abs(big.input.shuffle_buffer * (encoded + 128) - (total - 1) / 2) < encoded + 128
    # ... and never more than the split: with a large budget it holds all of it.
    assert _load(stream_data_dir, input="stream").input.shuffle_buffer == 288

    tight = _load(stream_data_dir, memory_budget=1 * MB)
    assert (tight.input.train, tight.input.evaluation) == ("stream", "stream")
    assert 1 <= tight.input.shuffle_buffer < 288  # what half a megabyte of encoded images holds
    assert tight.input.record()["budget_bytes"] == MB


def test_memory_refuses_a_split_larger_than_the_budget_with_both_sizes(stream_data_dir):
    with pytest.raises(ZooUsageError) as err:
        _load(stream_data_dir, input="memory", memory_budget=1 * MB)
    message = str(err.value)
    assert "`input` memory" in message and "4.69 MB" in message and "400 images of 64x64x3" in message
    assert "`memory_budget` 1 MB" in message and "\n" not in message


def test_the_default_budget_is_a_quarter_of_the_memory_this_process_may_use(stream_data_dir):
    assert default_memory_budget() == int(machine_memory() * 0.25)
    assert 0 < machine_memory() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert _load(stream_data_dir).input.budget_bytes == default_memory_budget()


@pytest.mark.parametrize("text, size", [
    ("512MB", 512 * MB), ("4GB", 4 * 2**30), ("1.5GiB", 3 * 2**29), ("4g", 4 * 2**30),
    ("100 kb", 100 * 1024), ("1000000", 1_000_000), (2048, 2048),
    ("0", None), ("-1GB", None), ("lots", None), ("4 GBs", None), ("iB", None), ("1e9", None),
    (True, None), (None, None), ("99999999TB", None), (1.5e9, 1_500_000_000), (1.5, None),
])
def test_memory_budget_sizes(text, size):
    assert parse_size(text) == size


# -- the order: a true reshuffle per epoch, from the seed alone ----------------------------------


def _epochs(splits, count):
    ids = _ids(splits.train)
    n = splits.info.num_train
    assert len(ids) == count * n
    return [ids[i * n:(i + 1) * n] for i in range(count)]


def test_every_streamed_epoch_is_a_new_permutation_that_the_seed_fixes(stream_data_dir):
    def orders(seed, epochs=range(3)):
        return _epochs(_load(stream_data_dir, input="stream", seed=seed, epochs=epochs), len(epochs))

    first = orders(0)
    # train[:90%] as the memory path reads it (TFDS stores examples in an order of its own).
    train = sorted(_ids(_load(stream_data_dir, input="memory").train))
    assert len(train) == 288 and all(sorted(epoch) == train for epoch in first)
    assert len({tuple(epoch) for epoch in first}) == 3  # every pair differs, epochs 0 and 2 too
    assert orders(0) == first  # the same seed, the same sequence of epochs
    assert orders(1)[0] != first[0]
    # Resuming at epoch 2 sees exactly the batches an uninterrupted run sees there.
    assert orders(0, range(2, 3)) == first[2:]


def test_shards_are_read_in_a_seeded_order_that_changes_every_epoch(stream_data_dir):
    # With a buffer of one example, the order is the order of the shards (TFDS interleaves 16
    # examples per shard at a time): the first block of each epoch comes from the first shard.
    splits = _load(stream_data_dir, input="stream", shuffle_buffer=1, epochs=range(8))
    assert splits.input.shuffle_buffer == 1
    epochs = _epochs(splits, 8)
    assert len({epoch[0] for epoch in epochs}) > 1
    assert all(sorted(epoch) == sorted(epochs[0]) for epoch in epochs)


def test_streamed_validation_and_test_are_whole_disjoint_and_unshuffled(stream_data_dir):
    a = _load(stream_data_dir, input="stream", memory_budget=MB, seed=0)
    b = _load(stream_data_dir, input="stream", memory_budget=MB, seed=1)
    memory = _load(stream_data_dir, input="memory")
    assert a.input.evaluation == "stream"
    assert _ids(a.validation) == _ids(memory.validation) == _ids(b.validation)
    assert _ids(a.test) == _ids(memory.test) == _ids(b.test)
    assert sorted(_ids(a.test)) == list(range(320, 400))
    assert not set(_ids(a.train)) & set(_ids(a.validation))
    assert sorted(_ids(a.train) + _ids(a.validation)) == list(range(320))


def test_streamed_images_are_decoded_normalised_and_keep_their_labels(stream_data_dir):
    splits = _load(stream_data_dir, input="stream", augment=False, epochs=range(1))
    for images, labels in splits.train:
        x = images.numpy()
        assert x.dtype == np.float32 and x.shape[1:] == (64, 64, 3) and 0.0 <= x.min() <= x.max() <= 1.0
        rows = x[..., 1].mean(axis=2).argmax(axis=1)  # the bright row at 2 + label
        np.testing.assert_array_equal(rows, 2 + labels.numpy())
        raw = np.rint(x * 255).astype(int)
        np.testing.assert_array_equal((raw[:, 0, 0, 0] * 256 + raw[:, 0, 1, 0]) % 4, labels.numpy())


def test_streamed_augmentation_follows_the_seed(stream_data_dir):
    def shifted(seed):
        return [x.numpy() for x, _ in _load(stream_data_dir, input="stream", augment=True, seed=seed).train]

    first = shifted(3)
    assert all(np.array_equal(a, b) for a, b in zip(first, shifted(3)))
    plain = [x.numpy() for x, _ in _load(stream_data_dir, input="stream", seed=3).train]
    assert not np.array_equal(first[0], plain[0])  # the same images, shifted


# -- the decoded cache (--cache-dir) ------------------------------------------------------------


def test_the_cache_is_written_once_and_gives_the_same_examples(stream_data_dir, tmp_path):
    cache = tmp_path / "cache"
    cached = _load(stream_data_dir, input="stream", cache_dir=str(cache), memory_budget=MB, epochs=range(2))
    folders = sorted(p.relative_to(cache) for p in cache.glob("*/*"))
    assert len(folders) == 3  # train, validation and test: all three stream with this budget
    assert not list(cache.rglob(".tmp-*"))
    epochs = _epochs(cached, 2)
    train = sorted(_ids(_load(stream_data_dir, input="memory").train))
    assert sorted(epochs[0]) == sorted(epochs[1]) == train and epochs[0] != epochs[1]
    assert sorted(_ids(cached.test)) == list(range(320, 400))
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    again = _load(stream_data_dir, input="stream", cache_dir=str(cache), memory_budget=MB, epochs=range(2))
    assert _epochs(again, 2) == epochs  # read back, not rewritten
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamp
    assert again.input.cache == cached.input.cache and Path(again.input.cache).parent == cache


def test_an_interrupted_cache_is_never_read_back(stream_data_dir, tmp_path):
    cache = tmp_path / "cache"
    _load(stream_data_dir, input="stream", cache_dir=str(cache))
    (split,) = Path(_load(stream_data_dir, input="stream", cache_dir=str(cache)).input.cache).iterdir()
    # What a writer killed halfway leaves: a hidden folder of a process that is gone, with a
    # truncated cache inside; and the published cache removed.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    abandoned = split.with_name(f".tmp-{dead}-1-{split.name}")
    abandoned.mkdir()
    for f in split.iterdir():
        (abandoned / f.name).write_bytes(f.read_bytes()[:100])
    for f in split.iterdir():
        f.unlink()
    split.rmdir()
    splits = _load(stream_data_dir, input="stream", cache_dir=str(cache), epochs=range(1))
    assert sorted(_ids(splits.train)) == sorted(_ids(_load(stream_data_dir, input="memory").train))
    assert split.is_dir() and not abandoned.exists()


def test_a_cache_that_does_not_fit_the_disk_is_refused_and_leaves_nothing(stream_data_dir, tmp_path):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MB tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(ZooError) as err:
            _load(stream_data_dir, input="stream", cache_dir=str(disk / "cache"))
        assert "has 1 MB free" in str(err.value) and "needs about 3.38 MB" in str(err.value)
        assert not list((disk / "cache").rglob("*/*"))  # at most the dataset's empty folder
        # Past the check (as when another process fills the disk meanwhile): the write itself
        # fails, in one line, and leaves nothing.
        folder = cache_folder(catalog.prepared_builder("zoo_stream", data_dir=stream_data_dir), str(disk))
        with pytest.raises(ZooError, match="cannot write the cache of 'zoo_stream' train in .*: .*space"):
            fill_cache(
                catalog.prepared_builder("zoo_stream", data_dir=stream_data_dir), "train", folder / "train",
                check_space=False,
            )
        assert not list(folder.iterdir())
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# -- whole runs through the installed `zoo` script --------------------------------------------

ZOO = Path(sys.executable).with_name("zoo")
# A budget of 1 MB streams zoo_stream's training split and its validation and test (4.7 MB in all).
STREAM_RUN = ("--dataset", "zoo_stream", "--input", "auto", "--memory-budget", "1MB",
              "--hp", "filters=4,8", "--hp", "dense_units=16", "--batch-size", "32",
              "--precision", "float32", "--augment")


def _zoo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return warm.run([str(ZOO), *args], env=env, timeout=timeout)


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([str(ZOO), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _history(run: Path) -> list[dict[str, str]]:
    import csv

    with (run / "history.csv").open() as f:
        columns = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
        return [{k: r[k] for k in columns} for r in csv.DictReader(f)]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_streamed_run_trains_evaluates_exports_and_resumes_exactly(stream_data_dir, tmp_path):
    """cnn on 64x64x3 colour images streamed from 4 shards, with the decoded cache on disk:
    recorded as streamed and why; killed after an epoch and resumed equals never interrupted
    (history and weights), which is also the determinism test; evaluate and export from the
    recorded run; the SavedModel serves raw uint8 images."""
    import keras
    import tensorflow as tf

    if not ZOO.is_file():
        pytest.skip(f"no installed console script at {ZOO}")
    cache = tmp_path / "cache"  # shared by both runs, which fill it at the same time
    common = ("train", "cnn", *STREAM_RUN, "--epochs", "6", "--data-dir", stream_data_dir,
              "--cache-dir", str(cache), "--run-dir")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = _start(*common, str(whole), "--export", str(tmp_path / "exports"))
    proc = _start(*common, str(killed))
    _wait_for(killed / "backup" / "state.json", proc)
    proc.kill()
    proc.wait()
    assert not (killed / "metrics.json").exists(), "killed too late: the run had finished"
    resumed = _zoo(*common, str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stdout, stderr = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, stderr[-2000:]

    record = json.loads((whole / "config.json").read_text())
    assert record["config"]["input"] == "stream"
    source = record["input"]
    assert (source["requested"], source["train"], source["evaluation"]) == ("auto", "stream", "stream")
    assert "more than the memory budget of 1 MB" in source["reason"]
    assert source["cache"] and Path(source["cache"]).parent == cache
    assert json.loads((whole / "metrics.json").read_text())["input"] == source
    assert "input: stream (the decoded splits of 'zoo_stream' take about 4.69 MB" in stdout

    assert _history(killed) == _history(whole) and len(_history(whole)) == 6
    weights = [keras.saving.load_model(r / "model.keras", compile=False).get_weights() for r in (whole, killed)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (whole, killed)]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"] > 0.5  # 4 classes, learnt

    evaluated = _zoo("evaluate", str(whole), "--split", "train[90%:]")
    assert evaluated.returncode == 0, evaluated.stderr
    validation = json.loads((whole / "eval-train-90.json").read_text())
    assert validation["accuracy"] == pytest.approx(float(_history(whole)[-1]["val_accuracy"]), abs=1e-6)

    serve = tf.saved_model.load(str(tmp_path / "exports" / "1")).signatures["serving_default"]
    images = np.stack([example["image"] for _, example in tinydata._examples(320, 336, (64, 64, 3), 4)])
    out = serve(image=tf.constant(images))
    model = keras.saving.load_model(whole / "model.keras", compile=False)
    np.testing.assert_allclose(out["probabilities"].numpy(), np.asarray(model(images / 255.0)), atol=1e-5)
    assert out["class_id"].dtype == tf.int64


@pytest.mark.slow
def test_a_memory_run_that_is_resumed_stays_in_memory(stream_data_dir, tmp_path):
    """`auto` on resume means the path the run took, whatever the budget says now; asking for
    the other path is a changed setting, refused like any other."""
    if not ZOO.is_file():
        pytest.skip(f"no installed console script at {ZOO}")
    run = tmp_path / "run"
    common = ("train", "softmax", "--dataset", "zoo_stream", "--data-dir", stream_data_dir,
              "--batch-size", "32", "--run-dir", str(run))
    proc = _start(*common, "--epochs", "200")
    _wait_for(run / "backup" / "state.json", proc)
    proc.kill()
    proc.wait()
    refused = _zoo(*common, "--epochs", "200", "--resume", "--input", "stream")
    assert refused.returncode == 2 and "different settings" in refused.stderr and "--input" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    resumed = _zoo(*common, "--epochs", "200", "--resume", "--memory-budget", "1MB")
    assert resumed.returncode == 2, resumed.stderr  # auto is memory, which no longer fits
    assert "--input memory: the decoded splits of 'zoo_stream' take about 4.69 MB" in resumed.stderr
    resumed = _zoo(*common, "--epochs", "200", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "config.json").read_text())["config"]["input"] == "memory"


@pytest.mark.integration
@pytest.mark.slow
def test_a_run_killed_while_writing_the_cache_leaves_nothing_that_is_read_back(mnist_data_dir, tmp_path):
    """MNIST's training split takes a second or more to write: kill the writer as it begins."""
    if not ZOO.is_file():
        pytest.skip(f"no installed console script at {ZOO}")
    cache = tmp_path / "cache"
    args = ("train", "softmax", "--epochs", "1", "--input", "stream", "--cache-dir", str(cache),
            "--data-dir", mnist_data_dir, "--run-dir")
    proc = _start(*args, str(tmp_path / "killed"))
    deadline = time.monotonic() + 300
    while not list(cache.glob("*/.tmp-*/*")):  # the writer has begun: kill it at once
        assert proc.poll() is None and time.monotonic() < deadline, "the cache was never started"
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    published = [p for p in cache.glob("*/*") if not p.name.startswith(".tmp-")]
    assert not published, "killed too late: the cache was complete"
    assert list(cache.glob("*/.tmp-*"))  # what the killed writer left

    result = _zoo(*args, str(tmp_path / "again"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(cache.glob("*/.tmp-*"))  # removed: its writer is gone
    assert len([p for p in cache.glob("*/*")]) == 1  # training only: validation and test fit in memory
    history = _history(tmp_path / "again")
    assert len(history) == 1 and float(history[0]["accuracy"]) > 0.8  # all 54,000 images, once
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test_accuracy"] > 0.88


def test_a_dataset_stored_as_array_record_is_refused_in_one_line(tmp_path):
    import tensorflow_datasets as tfds

    tinydata.ZooStream(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=1)
    )
    with pytest.raises(ZooUsageError, match="stored as array_record, which TFDS reads only through"):
        catalog.describe("zoo_stream", data_dir=str(tmp_path))
