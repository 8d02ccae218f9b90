"""`zoo predict` and `zoo runs` through the installed script, as a user calls them after training."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import warm

ZOO = Path(sys.executable).with_name("zoo")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def zoo_cli(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return warm.run([str(ZOO), *map(str, args)], env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory) -> Path:
    """A finished run in <here>/runs/ (so that `latest` finds it) and its export in <here>/exports."""
    here = tmp_path_factory.mktemp("predict")
    result = zoo_cli("train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "2",
                 "--precision", "float32", "--export", "exports", cwd=here)
    assert result.returncode == 0, result.stderr[-3000:]
    return here


@pytest.fixture(scope="module")
def images(trained) -> dict[str, Path]:
    """A grayscale PNG and a colour JPEG, neither of the model's 8x8."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = {"png": trained / "a.png", "jpg": trained / "b.jpg", "txt": trained / "notes.txt"}
    Image.fromarray(rng.integers(0, 256, (20, 14), dtype=np.uint8)).save(paths["png"])
    Image.fromarray(rng.integers(0, 256, (11, 11, 3), dtype=np.uint8)).save(paths["jpg"], quality=95)
    paths["txt"].write_text("not an image")
    # A folder of them: images beneath it, in sorted order; notes and hidden files left out.
    (trained / "pics" / "sub").mkdir(parents=True)
    shutil.copy(paths["png"], trained / "pics" / "a.png")
    shutil.copy(paths["jpg"], trained / "pics" / "sub" / "b.jpg")
    shutil.copy(paths["png"], trained / "pics" / ".hidden.png")
    (trained / "pics" / "notes.txt").write_text("not an image")
    (trained / "no-pics").mkdir()
    (trained / "no-pics" / "notes.txt").write_text("not an image")
    return paths


def served(export: Path, paths: list[Path]) -> list[list[tuple[str, float]]]:
    """What the export itself answers for the files, read and resized as in training."""
    import tensorflow as tf

    from zoo.data.imagefiles import decode
    from zoo.data.images import resize_images

    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    batch = np.stack([resize_images(decode(p, 1), (8, 8)).numpy() for p in paths])
    out = serve(image=tf.constant(batch))
    names = [[n.decode()] for n in out["class_name"].numpy()]
    return [[(name[0], float(row[int(i)]))] for name, row, i in zip(names, out["probabilities"].numpy(),
                                                                     out["class_id"].numpy())]


@pytest.mark.slow
def test_predict_prints_the_class_the_export_gives(trained, images):
    expected = served(trained / "exports" / "1", [images["png"], images["jpg"]])
    for target in ("exports", "exports/1", "latest"):  # an export base, a version, the newest run
        result = zoo_cli("predict", target, "a.png", "b.jpg", "--top", "1", cwd=trained)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stdout.strip().splitlines()
        assert [line.split(": ")[0] for line in lines] == ["a.png", "b.jpg"]
        for line, ((name, probability),) in zip(lines, expected):
            shown_name, shown_probability = line.split(": ")[1].split(" ")
            assert shown_name == name and float(shown_probability) == pytest.approx(probability, abs=1e-3)

    folder = zoo_cli("predict", "exports", "pics", "--top", "1", cwd=trained)
    assert folder.returncode == 0, folder.stderr[-3000:]
    lines = folder.stdout.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == ["pics/a.png", "pics/sub/b.jpg"]
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == [name for ((name, _),) in expected]

    as_json = zoo_cli("predict", "exports", "a.png", "--json", cwd=trained)
    (entry,) = json.loads(as_json.stdout)
    top = entry["top"]
    assert entry["image"] == "a.png" and len(top) == 3  # the default --top
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    assert top[0]["class_name"] == expected[0][0][0] and sum(t["probability"] for t in top) == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
def test_predict_answers_from_a_preset_as_its_model_does(trained, images):
    import zoo
    from zoo.data.imagefiles import decode
    from zoo.data.images import resize_images, to_model_input

    result = zoo_cli("predict", "cnn.mnist", "a.png", "--json", "--top", "1", cwd=trained)
    assert result.returncode == 0, result.stderr[-2000:]
    ((entry,),) = [e["top"] for e in json.loads(result.stdout)]
    model = zoo.create_model("cnn", weights="cnn.mnist")
    image = resize_images(decode(images["png"], 1), (28, 28)).numpy()[None]
    probabilities = np.asarray(model(to_model_input(image), training=False))[0]
    assert entry["class_id"] == int(probabilities.argmax())
    assert entry["probability"] == pytest.approx(float(probabilities.max()), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["exports", "missing.png"], "missing.png does not exist"),
    (["exports", "no-pics"], "no image file in the folder no-pics"),
    (["exports", "notes.txt"], "notes.txt is not a readable image"),
    ([".", "a.png"], "is neither a run directory (no config.json) nor an export"),
    (["no/such/run", "a.png"], "is not a run directory (no such folder)"),
    (["nosuchpreset", "a.png"], "nosuchpreset is neither a run directory (no such folder) nor a preset"),
])
def test_predict_refuses_in_one_line(trained, images, args, words):
    result = zoo_cli("predict", *args, cwd=trained)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.stderr


@pytest.mark.slow
def test_a_file_that_is_not_an_image_is_named_and_the_others_are_still_answered(trained, images, tmp_path):
    import zoo
    from zoo.errors import ZooUsageError

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(images["png"], mixed / "a.png")
    (mixed / "b.png").write_bytes(b"not a png, cut short")  # an image's name, not an image
    shutil.copy(images["jpg"], mixed / "c.jpg")
    result = zoo_cli("predict", "exports", mixed, "--top", "1", cwd=trained)
    assert result.returncode == 2
    assert [line.split(": ")[0] for line in result.stdout.strip().splitlines()] == [str(mixed / "a.png"),
                                                                                    str(mixed / "c.jpg")]
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("Error: ") and "b.png is not a readable image" in error
    with pytest.raises(ZooUsageError, match="b.png is not a readable image"):  # the API's default: refused
        zoo.predict(trained / "exports", mixed)
    unreadable = []
    answers = zoo.predict(trained / "exports", mixed, top=1, unreadable=unreadable)
    assert [a["image"] for a in answers] == [str(mixed / "a.png"), str(mixed / "c.jpg")]
    assert [(path, "b.png is not a readable image" in reason) for path, reason in unreadable] == [
        (str(mixed / "b.png"), True)]
    assert answers == json.loads(zoo_cli("predict", "exports", mixed, "--top", "1", "--json", cwd=trained).stdout)


@pytest.mark.slow
def test_runs_shows_running_interrupted_failed_and_finished_runs(trained, tmp_path):
    (finished,) = (trained / "runs").iterdir()
    base = tmp_path / "many"
    base.mkdir()
    for name in ("finished", "interrupted", "failed", "running"):
        shutil.copytree(finished, base / name)
    for name in ("interrupted", "failed", "running"):  # killed after its first epoch
        (base / name / "metrics.json").unlink()
        (base / name / "model.keras").unlink()
        history = (base / name / "history.csv").read_text().splitlines()
        (base / name / "history.csv").write_text("\n".join(history[:2]) + "\n")
    (base / "failed" / "failed.json").write_text(json.dumps({"reason": "loss is nan", "finished_epochs": 1}))
    (base / "unreadable").mkdir()
    (base / "unreadable" / "config.json").write_text("{not json")

    with open(base / "running" / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what `zoo train` holds while it trains
        listed = zoo_cli("runs", base, "--json")
        table = zoo_cli("runs", base)
    assert listed.returncode == 0, listed.stderr
    rows = {Path(r["run"]).name: r for r in json.loads(listed.stdout)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "finished": "finished", "interrupted": "interrupted", "failed": "failed", "running": "running",
        "unreadable": "unreadable"}
    metrics = json.loads((finished / "metrics.json").read_text())
    assert rows["finished"]["test_accuracy"] == metrics["test_accuracy"] and rows["finished"]["epochs"] == 2
    assert rows["interrupted"]["epochs"] == 1 and rows["interrupted"]["test_accuracy"] is None
    assert {r["model"] for n, r in rows.items() if n != "unreadable"} == {"softmax"}
    assert all(r["precision"] == "float32" and r["dataset"] == "zoo_tiny" for n, r in rows.items() if n != "unreadable")
    header, *lines = table.stdout.strip().splitlines()
    assert header.split() == ["RUN", "MODEL", "DATASET", "STATUS", "EPOCHS", "VAL_ACC", "TEST_ACC", "PRECISION",
                              "CREATED"]
    shown = {Path(line.split()[0]).name: line.split()[3] for line in lines}
    assert shown == {name: r["status"] for name, r in rows.items()}
    assert next(line for line in lines if "/running " in line).split()[4] == "1/2"

    # latest: the newest run under ./runs, wherever a RUN_DIR is expected.
    evaluated = zoo_cli("evaluate", "latest", cwd=trained)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads((finished / "eval-test.json").read_text())["accuracy"] == pytest.approx(metrics["test_accuracy"])
    resumed = zoo_cli("train", "softmax", "--resume", "--run-dir", "latest", cwd=trained)
    assert resumed.returncode == 2 and f"run {finished} is already complete" in resumed.stderr, resumed.stderr
    nothing = zoo_cli("evaluate", "latest", cwd=tmp_path)
    assert nothing.returncode == 2 and "Error: latest stands for the newest run under" in nothing.stderr


@pytest.mark.slow
def test_one_damaged_run_is_listed_unreadable_and_refused_in_one_line(trained, tmp_path):
    """A run whose metrics.json is cut short, whose history.csv holds no numbers or whose
    config.json lost its dataset does not take `zoo runs` down: it is listed as unreadable, and
    the commands that read it say which file is corrupted."""
    import zoo

    (finished,) = (trained / "runs").iterdir()
    base = tmp_path / "many"
    for name in ("good", "metrics", "history", "dataset"):
        shutil.copytree(finished, base / name)
    (base / "metrics" / "metrics.json").write_text('{"format_version": 1, "test_accuracy": ')
    (base / "history" / "history.csv").write_text("epoch,loss\nx,y\n")
    record = json.loads((base / "dataset" / "config.json").read_text())
    (base / "dataset" / "config.json").write_text(json.dumps({**record, "dataset": None}))

    listed = zoo_cli("runs", base, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {Path(r["run"]).name: r["status"] for r in json.loads(listed.stdout)} == {
        "good": "finished", "metrics": "unreadable", "history": "unreadable", "dataset": "unreadable"}
    assert zoo.list_runs(base) == json.loads(listed.stdout)  # the API lists what the command does
    for name, says in (("metrics", "metrics.json is corrupted: Expecting value"),
                       ("history", "history.csv is corrupted: invalid literal"),
                       ("dataset", "config.json is corrupted or not a zoo config: its dataset is None")):
        refused = zoo_cli("publish", base / name, tmp_path / f"presets-{name}", "--license", "MIT")
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1 and says in lines[0], refused.stderr
        assert not (tmp_path / f"presets-{name}").exists()


@pytest.mark.slow
def test_the_python_api_answers_as_the_commands_do(trained, images):
    import zoo

    script = zoo_cli("predict", "exports", "a.png", "--json", cwd=trained)
    assert script.returncode == 0, script.stderr[-2000:]
    (answer,) = zoo.predict(trained / "exports", [images["png"]], top=2)
    assert answer["top"] == json.loads(script.stdout)[0]["top"][:2]
    assert zoo.predict(trained / "exports", images["png"], top=2) == [answer]  # one path, not a list
    with pytest.raises(zoo.ZooUsageError, match="^no image given: name image files or folders of them$"):
        zoo.predict(trained / "exports", [])  # as the command refuses no IMAGES
    (row,) = zoo.list_runs(trained / "runs")
    assert row["status"] == "finished" and row["model"] == "softmax" and row["epochs"] == row["of_epochs"] == 2


def test_predict_tells_a_broken_link_or_a_pipe_as_training_does(tmp_path):
    """In a folder, a broken link is refused (training refuses it too) and a pipe named like an
    image is not an image (training skips it); named itself, each says what it is."""
    from zoo.data.imagefiles import image_paths
    from zoo.errors import ZooUsageError

    folder = tmp_path / "pics"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    os.mkfifo(folder / "a" / "pipe.png")
    assert image_paths([folder]) == [folder / "a" / "1.png"]
    with pytest.raises(ZooUsageError, match=r"pipe.png is not a regular file$"):
        image_paths([folder / "a" / "pipe.png"])
    (folder / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    for named in (folder, folder / "a" / "gone.png"):
        with pytest.raises(ZooUsageError, match=r"gone.png is a broken link$"):
            image_paths([named])
