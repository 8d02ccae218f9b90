"""Your own images (#18): folders in both layouts (PNG and JPEG, sizes that differ), their checks,
preparation and its cache, provenance, and a whole run through the installed `zoo` script whose
SavedModel serves images of another size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import warm
from imagefolders import CLASSES, write

from zoo.config import parse_image_size
from zoo.data import catalog, folders, pipeline
from zoo.data.images import resize_images, to_model_input
from zoo.errors import ZooUsageError

ZOO = Path(sys.executable).with_name("zoo")


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> Path:
    """TFDS ImageFolder layout: train/ and test/, PNG and JPEG, 24x24 and 30x20 images."""
    return write(tmp_path_factory.mktemp("images") / "shapes", {"train": 40, "test": 10},
                 sizes=((24, 24), (30, 20)))


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    """Keras layout: class folders only, grayscale PNG of one size."""
    return write(tmp_path_factory.mktemp("images") / "gray", {"": 30}, sizes=((16, 16),),
                 formats=("png",), channels=1)


# -- scanning: layouts, shapes and every way a folder can be wrong ------------------------------


def test_the_split_layout_gives_splits_classes_and_a_fingerprint(split_folder):
    folder = folders.scan(split_folder, image_size=(24, 24))
    assert folder.layout == "splits" and folder.classes == CLASSES
    assert folder.counts() == {"test": {c: 10 for c in CLASSES}, "train": {c: 40 for c in CLASSES}}
    assert folder.shape == (24, 24, 3) and folder.resized  # the 30x20 images are resized
    assert folder.fingerprint == folders.walk(split_folder).fingerprint  # headers do not enter it
    record = folder.record()
    assert record["path"] == str(split_folder) and record["files"]["train"]["circle"] == 40


def test_the_keras_layout_is_all_training_and_keeps_one_size_and_grayscale(class_folder):
    folder = folders.scan(class_folder)
    assert folder.layout == "classes" and list(folder.files) == ["train"]
    assert folder.shape == (16, 16, 1) and not folder.resized
    assert folders.scan(class_folder, channels=3).shape == (16, 16, 3)


def test_one_colour_image_among_grayscale_ones_makes_rgb_and_is_named(tmp_path):
    from PIL import Image

    from imagefolders import image

    folder = write(tmp_path / "mostly-gray", {"": 4}, sizes=((16, 16),), formats=("png",), channels=1)
    Image.fromarray(image(0, (16, 16), np.random.default_rng(1))).save(folder / "circle" / "z-colour.png")
    scanned = folders.scan(folder)
    assert scanned.shape == (16, 16, 3) and scanned.colour_file == "circle/z-colour.png"
    assert folders.colour_summary(scanned.record()) == (
        f"3 channels (RGB): circle/z-colour.png is in colour, the other images of {folder} are grayscale "
        f"(--channels 1 trains on grayscale)")
    assert folders.scan(folder, channels=3).colour_file is None  # asked for: nothing to explain
    all_colour = folders.scan(write(tmp_path / "colour", {"": 2}, sizes=((16, 16),), formats=("png",)))
    assert all_colour.shape == (16, 16, 3) and all_colour.colour_file is None
    assert "colour_file" not in all_colour.record() and folders.colour_summary(all_colour.record()) == ""
    # A second colour image: counted; one grayscale image among colour ones explains nothing.
    Image.fromarray(image(1, (16, 16), np.random.default_rng(2))).save(folder / "circle" / "zz-colour.png")
    assert folders.colour_summary(folders.scan(folder).record()) == (
        f"3 channels (RGB): 2 images are in colour (circle/z-colour.png the first), the other images of {folder} "
        f"are grayscale (--channels 1 trains on grayscale)")
    grey = np.asarray(Image.open(folder / "circle" / "z-colour.png").convert("L"))
    Image.fromarray(grey).save(tmp_path / "colour" / "circle" / "grey.png")
    mostly_colour = folders.scan(tmp_path / "colour")
    assert mostly_colour.shape == (16, 16, 3) and folders.colour_summary(mostly_colour.record()) == ""


def test_images_of_different_sizes_need_an_image_size_and_the_error_names_two(split_folder):
    with pytest.raises(ZooUsageError) as err:
        folders.scan(split_folder)
    message = str(err.value)
    assert "differ in size" in message and "is 24x24" in message and "is 30x20" in message
    assert message.count(".png") + message.count(".jpg") == 2 and "`image_size`" in message


def test_the_fingerprint_changes_with_the_files(tmp_path):
    folder = write(tmp_path / "f", {"": 3})
    before = folders.walk(folder).fingerprint
    (folder / "circle" / "circle-0000.png").touch()  # a new modification time
    touched = folders.walk(folder).fingerprint
    (folder / "circle" / "circle-0001.jpg").unlink()
    assert len({before, touched, folders.walk(folder).fingerprint}) == 3


def _bad(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    if name == "a_file":
        root.write_text("not a folder")
    elif name == "no_classes":
        root.mkdir()
        (root / "readme.txt").write_text("hello")
    elif name == "empty_class":
        write(root, {"": 2})
        (root / "hexagon").mkdir()
    elif name == "not_an_image":
        write(root, {"": 2})
        (root / "square" / "notes.txt").write_text("not an image")
    elif name == "corrupt":
        write(root, {"": 2})
        (root / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    elif name == "test_only_class":
        write(root, {"train": 2, "test": 1})
        write(root / "test" / "x", {"": 1})  # test/x/circle/...: a class folder "x" with a subfolder
    elif name == "mixed_layouts":
        write(root, {"train": 2})
        write(root, {"": 1})
    elif name == "no_train":
        write(root, {"validation": 2, "test": 1})
    elif name == "broken_link":
        write(root, {"": 2})
        (root / "circle" / "dangling.png").symlink_to(root / "nowhere.png")
    elif name == "empty_test":
        write(root, {"train": 2})
        (root / "test").mkdir()
    elif name == "one_class":
        write(root, {"": 2})
        for other in ("square", "triangle"):
            for f in (root / other).iterdir():
                f.unlink()
            (root / other).rmdir()
    return root


BAD_FOLDERS = [
    ("missing", "does not exist"),
    ("a_file", "is not a folder"),
    ("no_classes", "has no class folders"),
    ("empty_class", "hexagon holds no images"),
    ("not_an_image", "notes.txt is not an image"),
    ("corrupt", "broken.png is not a readable image"),
    ("test_only_class", "class 'x' appears in the test split"),
    ("mixed_layouts", "lies outside any class folder of"),
    ("no_train", "has test/ but no train/: the split layout needs train/"),
    ("broken_link", "dangling.png is a broken link"),
    ("empty_test", "split folder"),
    ("one_class", "has one class (circle/); a classifier needs at least two"),
]


@pytest.mark.parametrize("name, words", BAD_FOLDERS, ids=[b[0] for b in BAD_FOLDERS])
def test_a_bad_folder_is_one_line_naming_the_culprit(name, words, tmp_path):
    root = _bad(tmp_path, name)
    with pytest.raises(ZooUsageError) as err:
        folders.scan(root, strict=name == "not_an_image")  # skipped and counted without strict
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, size", [
    ("64,64", (64, 64)), ("64x48", (64, 48)), ("32", (32, 32)), ((28, 28), (28, 28)), ([8, 9], (8, 9)),
    ("0,4", None), ("a,b", None), ("1,2,3", None), ("99999,2", None), (True, None), (None, None),
])
def test_image_sizes(text, size):
    assert parse_image_size(text) == size


def test_names_that_are_paths_and_names_that_are_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets").mkdir()
    (tmp_path / "mnist").mkdir()  # a folder named like a catalog dataset does not replace it
    assert catalog.is_folder("pets") and catalog.is_folder("./nothing") and catalog.is_folder("~/x")
    assert catalog.is_folder("./mnist") and not catalog.is_folder("mnist")
    assert not catalog.is_folder("imagenet_resized/64x64") and not catalog.is_folder("cifar10")
    assert catalog.dataset_name("pets") == str(tmp_path / "pets")
    assert catalog.dataset_name("mnist") == "mnist" and catalog.dataset_name("./mnist") == str(tmp_path / "mnist")
    with pytest.raises(ZooUsageError, match="`dataset` is empty"):
        catalog.dataset_name("")


def test_class_folders_may_hold_sub_folders_in_both_layouts(tmp_path):
    keras_layout = write(tmp_path / "k", {"": 2})
    write(keras_layout / "circle" / "2019", {"": 1})  # circle/2019/<classes>/...: deeper images of circle
    folder = folders.walk(keras_layout)
    assert folder.layout == "classes" and folder.classes == CLASSES
    assert folder.counts()["train"]["circle"] == 2 + 3


def test_extra_split_folders_are_prepared_and_test_is_found_in_any_case(tmp_path):
    root = write(tmp_path / "s", {"train": 3, "Test": 1, "validation": 1})
    folder = folders.walk(root)
    assert sorted(folder.files) == ["test", "train", "validation"]


# -- preparation: a TFDS dataset per folder content and shape ----------------------------------


def test_a_folder_is_prepared_once_and_again_when_it_changes(tmp_path):
    folder = write(tmp_path / "pets", {"train": 6, "test": 2})
    tfds_dir = tmp_path / "tfds"
    splits = pipeline.load(str(folder), data_dir=str(tfds_dir), batch_size=8)
    assert splits.info.input_shape == (24, 24, 3) and splits.info.class_names == CLASSES
    assert (splits.info.num_train, splits.info.num_validation, splits.info.num_test) == (16, 2, 6)
    assert splits.info.source["fingerprint"] == folders.walk(folder).fingerprint
    prepared = sorted(p.name for p in (tfds_dir / "zoo_image_folder").iterdir())
    assert len(prepared) == 1
    images, labels = next(iter(splits.test))
    # Labels are the folder names: each class's bright band sits where imagefolders drew it.
    rows = images.numpy().mean(axis=(2, 3)).argmax(axis=1) / 24
    np.testing.assert_array_equal(np.digitize(rows, [0.45, 0.75]), labels.numpy())

    pipeline.load(str(folder), data_dir=str(tfds_dir), batch_size=8)  # unchanged: read again
    assert sorted(p.name for p in (tfds_dir / "zoo_image_folder").iterdir()) == prepared
    write(folder, {"train": 7})  # one more image per class
    again = pipeline.load(str(folder), data_dir=str(tfds_dir), batch_size=8)
    assert again.info.num_train + again.info.num_validation == 21
    assert len(list((tfds_dir / "zoo_image_folder").iterdir())) == 2


def test_a_corrupt_image_found_while_preparing_leaves_nothing_prepared(tmp_path):
    folder = write(tmp_path / "pets", {"": 3})
    # A readable header and broken data: only decoding finds out.
    good = (folder / "circle" / "circle-0000.png").read_bytes()
    (folder / "circle" / "circle-0000.png").write_bytes(good[:60])
    tfds_dir = tmp_path / "tfds"
    with pytest.raises(ZooUsageError, match="circle-0000.png is not a readable image"):
        pipeline.load(str(folder), data_dir=str(tfds_dir))
    leftovers = [p for p in tfds_dir.rglob("*") if p.is_file()] if tfds_dir.exists() else []
    assert leftovers == []


def test_image_size_on_a_catalog_dataset_is_refused(tmp_path):
    with pytest.raises(ZooUsageError, match="`image_size` and `channels` apply to folders of images"):
        catalog.describe("mnist", data_dir=str(tmp_path), image_size=(32, 32))


# -- a whole run through the installed script --------------------------------------------------


def _zoo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return warm.run([str(ZOO), *args], env=env, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_train_evaluate_export_and_serve_a_folder_of_mixed_sizes(installed, split_folder, tmp_path):
    import keras
    import tensorflow as tf
    from imagefolders import image

    run, exports, tfds_dir = tmp_path / "run", tmp_path / "exports", tmp_path / "tfds"
    # A relative path, from another working directory: the run records it absolute.
    relative = os.path.relpath(split_folder, tmp_path)
    trained = _zoo("train", "cnn", "--dataset", relative, "--image-size", "24,24", "--epochs", "4", "--batch-size", "16",
                   "--hp", "filters=8,16", "--hp", "dense_units=32", "--precision", "float32",
                   "--data-dir", str(tfds_dir), "--run-dir", str(run), "--export", str(exports), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["dataset"] == str(split_folder) and record["config"]["image_size"] == [24, 24]
    source = record["dataset"]["source"]
    assert source["files"] == {"test": {c: 10 for c in CLASSES}, "train": {c: 40 for c in CLASSES}}
    assert source["fingerprint"] == folders.walk(split_folder).fingerprint and source["resized"]
    assert record["dataset"]["class_names"] == list(CLASSES)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8

    evaluated = _zoo("evaluate", str(run))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((run / "eval-test.json").read_text())["accuracy"] == pytest.approx(metrics["test_accuracy"])

    zoo_json = json.loads((exports / "1" / "assets.extra" / "zoo.json").read_text())
    assert zoo_json["class_names"] == list(CLASSES) and zoo_json["dataset_source"]["path"] == str(split_folder)
    serve = tf.saved_model.load(str(exports / "1")).signatures["serving_default"]
    # Any height, width and channel count: converted and resized in the graph.
    assert serve.structured_input_signature[1]["image"].shape.as_list() == [None, None, None, None]
    rng = np.random.default_rng(7)
    model = keras.saving.load_model(run / "model.keras", compile=False)
    for size in ((40, 56), (24, 24), (13, 9)):  # larger, the training size, smaller
        pixels = np.stack([image(label, size, rng) for label in range(3)])
        out = serve(image=tf.constant(pixels))
        expected = model(to_model_input(resize_images(pixels, (24, 24))))
        np.testing.assert_allclose(out["probabilities"].numpy(), np.asarray(expected), atol=1e-5)
        assert out["class_id"].dtype == tf.int64
    assert list(out["class_id"].numpy()) == [0, 1, 2]  # the bands tell the classes apart at any size


@pytest.mark.slow
def test_a_folder_without_a_test_split_says_so_and_reports_no_test_metrics(installed, class_folder, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    trained = _zoo("train", "softmax", "--dataset", str(class_folder), "--epochs", "2",
                   "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(run), "--export", str(exports))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"no test split in {class_folder}: no test metrics (validation accuracy" in trained.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test_accuracy" not in metrics and "test_loss" not in metrics
    # No test split: evaluate takes the held-out validation slice, and says so; so does
    # --split validation (the folder has no validation/); an explicit test split is refused
    # with the splits there are and the slice syntax.
    for args in ((), ("--split", "validation")):
        evaluated = _zoo("evaluate", str(run), *args)
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        lines = evaluated.stdout.splitlines()
        assert lines[0] == (f"no {'validation' if args else 'test'} split in {class_folder}: evaluated on the "
                            f"held-out validation slice train[90%:]")
        assert lines[1].startswith("train[90%:]: accuracy ")
    result = json.loads((run / "eval-train-90.json").read_text())
    counts = json.loads((run / "config.json").read_text())["dataset"]["num_validation"]
    assert sum(map(sum, result["confusion"]["matrix"])) == counts and result["note"].startswith("no validation split")
    refused = _zoo("evaluate", str(run), "--split", "test")
    assert refused.returncode == 2, refused.stderr
    assert f"has no split 'test' (it has: train; a slice of one works too, e.g. train[90%:]" in refused.stderr

    # Every image had one size (16x16, grayscale): the export still serves any size and colour,
    # since images sent to a server vary, and says so.
    assert ("serving_default takes uint8 images [N, H, W, C] of any size and 1 to 4 channels (made "
            "grayscale and resized to 16x16 in the graph)") in trained.stdout
    import keras
    import tensorflow as tf

    serve = tf.saved_model.load(str(exports / "1")).signatures["serving_default"]
    model = keras.saving.load_model(run / "model.keras", compile=False)
    rng = np.random.default_rng(3)
    for size in ((40, 52), (13, 9)):
        gray = rng.integers(0, 256, (2, *size, 1), dtype=np.uint8)
        out = serve(image=tf.constant(gray))
        expected = model(to_model_input(resize_images(gray, (16, 16))))
        np.testing.assert_allclose(out["probabilities"].numpy(), np.asarray(expected), atol=1e-5)
        assert [n.decode() for n in out["class_name"].numpy()] == [CLASSES[i] for i in out["class_id"].numpy()]
        colour = serve(image=tf.constant(np.repeat(gray, 3, axis=-1)))
        np.testing.assert_allclose(colour["probabilities"].numpy(), out["probabilities"].numpy(), atol=1e-6)


@pytest.mark.parametrize("args, words", [
    (["--dataset", "{a_file}"], "is not a folder"),
    (["--dataset", "./no/such/folder"], "does not exist"),
    (["--dataset", "{mixed}"], "differ in size"),
    (["--dataset", "{mixed}", "--image-size", "0,5"], "--image-size must be HEIGHT,WIDTH"),
    (["--dataset", "{mixed}", "--image-size", "24,24", "--channels", "2"], "--channels must be 1 or 3"),
    (["--dataset", "mnist", "--image-size", "32,32"], "--image-size and --channels apply to folders"),
])
@pytest.mark.slow
def test_bad_folder_requests_through_the_script_are_one_line_and_leave_nothing(installed, args, words, split_folder, tmp_path):
    (tmp_path / "a_file").write_text("x")
    places = {"a_file": str(tmp_path / "a_file"), "mixed": str(split_folder)}
    result = _zoo("train", "mlp", *[a.format(**places) for a in args], "--data-dir", str(tmp_path / "tfds"),
                  "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()


def test_a_folder_streams_like_any_tfds_dataset(tmp_path):
    folder = write(tmp_path / "pets", {"train": 10, "test": 3})
    memory = pipeline.load(str(folder), data_dir=str(tmp_path / "tfds"), batch_size=8, input="memory")
    stream = pipeline.load(str(folder), data_dir=str(tmp_path / "tfds"), batch_size=8, input="stream", epochs=range(2))
    assert stream.input.train == "stream"
    seen = [labels.numpy() for _, labels in stream.train]
    assert sum(len(b) for b in seen) == 2 * memory.info.num_train
    assert sorted(np.concatenate([y.numpy() for _, y in memory.train])) == sorted(np.concatenate(seen)[:27])

    # Not just as many of each label: each epoch streams the very (image, label) pairs the memory
    # path trains on, every one once, and the second epoch in another order.
    def pairs(dataset) -> list[tuple[bytes, int]]:
        return [(image.tobytes(), int(label)) for images, labels in dataset
                for image, label in zip(images.numpy(), labels.numpy())]

    expected, streamed = pairs(memory.train), pairs(stream.train)
    n = memory.info.num_train
    assert len(expected) == n == 27 and len(set(expected)) == n  # 27 distinct images
    epochs = [streamed[:n], streamed[n:]]
    assert [sorted(e) for e in epochs] == [sorted(expected)] * 2
    assert epochs[0] != epochs[1]


@pytest.mark.slow
def test_bench_on_a_folder_records_which_images_it_used(installed, split_folder, tmp_path):
    out = tmp_path / "bench"
    result = _zoo("bench", "softmax", "--dataset", str(split_folder), "--image-size", "24,24", "--epochs", "1",
                  "--seeds", "0", "--precision", "float32", "--data-dir", str(tmp_path / "tfds"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    fingerprint = folders.walk(split_folder).fingerprint
    assert record["dataset_source"]["fingerprint"] == fingerprint
    assert record["dataset_source"]["files"]["test"] == {c: 10 for c in CLASSES}
    # Two preparations of one folder (another size, other images) are never averaged.
    assert record["dataset"] == f"{split_folder}@{fingerprint[:8]} 24x24x3"
    assert f"| {split_folder}@{fingerprint[:8]} 24x24x3 |" in (out / "results.md").read_text()
    import csv

    with (out / "results.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["dataset_source.fingerprint"] == fingerprint


@pytest.mark.slow
def test_a_run_whose_images_changed_or_moved_says_so_and_still_exports(installed, tmp_path):
    folder = write(tmp_path / "pets", {"train": 10, "test": 3})
    run = tmp_path / "run"
    trained = _zoo("train", "softmax", "--dataset", str(folder), "--epochs", "1",
                   "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(run))
    assert trained.returncode == 0, trained.stderr[-2000:]
    before = folders.walk(folder).fingerprint
    write(folder, {"test": 4})  # one more test image per class
    evaluated = _zoo("evaluate", str(run))
    assert evaluated.returncode == 0, evaluated.stderr
    now = folders.walk(folder).fingerprint
    assert f"note: the images changed since this run trained (fingerprint {before}, now {now})" in evaluated.stdout
    result = json.loads((run / "eval-test.json").read_text())
    assert (result["trained_on_fingerprint"], result["fingerprint"]) == (before, now)

    # The folder moved away (or the run was copied to a server): evaluating needs the images, a
    # quantized export too (its accuracy is measured on them); a plain export compares on random ones.
    folder.rename(tmp_path / "moved")
    gone = f"dataset folder {folder} does not exist"
    evaluated = _zoo("evaluate", str(run))
    assert evaluated.returncode == 2 and evaluated.stderr.strip() == f"Error: {gone}", evaluated.stderr
    quantized = _zoo("export", str(run), str(tmp_path / "exports"), "--format", "litert", "--quantize", "float16")
    assert quantized.returncode == 2, quantized.stderr
    assert quantized.stderr.strip() == f"Error: --quantize float16 measures the quantized file on the run's own images: {gone}"
    exported = _zoo("export", str(run), str(tmp_path / "exports"))
    assert exported.returncode == 0, exported.stderr
    assert f"note: compared on random images, not test images: {gone}" in exported.stdout
    assert "compared on 64 images: max abs diff" in exported.stdout
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["1"]


@pytest.mark.slow
def test_a_resume_after_the_images_changed_is_refused(installed, tmp_path):
    folder = write(tmp_path / "pets", {"train": 30, "test": 3})
    run = tmp_path / "run"
    args = ("train", "softmax", "--dataset", str(folder), "--epochs", "300", "--batch-size", "8",
            "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(run))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([str(ZOO), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        import time

        deadline = time.monotonic() + 300
        while not (run / "backup" / "state.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    write(folder, {"train": 31})  # one more image per class
    refused = _zoo(*args, "--resume")
    assert refused.returncode == 2, refused.stderr
    assert "changed since run" in refused.stderr and "resume needs the same images" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_list_datasets_without_plugins_says_what_works_instead():
    from click.testing import CliRunner

    from zoo.cli import main

    result = CliRunner().invoke(main, ["list", "--datasets"])
    assert result.exit_code == 0 and "no dataset plugins are installed" in result.output
    result = CliRunner().invoke(main, ["list", "--datasets", "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == []
    result = CliRunner().invoke(main, ["list", "--datasets", "zz*"])
    assert result.exit_code == 1 and "no dataset plugin matches 'zz*'" in result.output


def test_a_folder_is_prepared_from_its_own_files_whatever_manual_dir_says(tmp_path, capsys):
    folder = write(tmp_path / "pets", {"train": 2, "test": 1})
    catalog.prepared_builder(str(folder), data_dir=str(tmp_path / "tfds"), manual_dir="/files/mnist")
    err = capsys.readouterr().err
    assert err.startswith(f"preparing {folder} into ") and "/files/mnist" not in err


def test_a_folder_given_to_predict_holds_the_images_training_would_take(tmp_path):
    """The same files count as images for `zoo predict FOLDER` as for training on it: an image
    without an extension, a linked folder (a link back to an ancestor is followed no further),
    not a text file, a hidden file or a hidden folder."""
    from PIL import Image

    from zoo.data.imagefiles import image_paths

    root = tmp_path / "pets"
    cls = root / "cat"
    (cls / "deep").mkdir(parents=True)
    pixels = np.zeros((8, 8), np.uint8)
    Image.fromarray(pixels).save(cls / "a.png")
    Image.fromarray(pixels).save(cls / "deep" / "no-extension", format="PNG")
    (cls / "notes.txt").write_text("not an image")
    (cls / ".DS_Store").write_bytes(b"\0")
    (cls / ".hidden").mkdir()
    Image.fromarray(pixels).save(cls / ".hidden" / "h.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.fromarray(pixels).save(elsewhere / "b.jpg")
    (cls / "linked").symlink_to(elsewhere, target_is_directory=True)
    (cls / "deep" / "loop").symlink_to(cls, target_is_directory=True)
    (root / "dog").mkdir()
    Image.fromarray(pixels).save(root / "dog" / "d.png")
    trained = folders.walk(root)
    predicted = image_paths([root])
    assert [p.relative_to(root).as_posix() for p in predicted] == [
        "cat/a.png", "cat/deep/no-extension", "cat/linked/b.jpg", "dog/d.png"]
    assert trained.counts() == {"train": {"cat": 3, "dog": 1}}
    with pytest.raises(ZooUsageError, match=f"^{tmp_path / 'nope.png'} does not exist$"):
        image_paths([tmp_path / "nope.png"])
