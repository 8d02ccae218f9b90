"""The `zoo` launcher through Click's CliRunner, on the tiny real TFDS dataset."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import zoo
from zoo.cli import main

# The module fixtures tiny_run and broken_runs are trained once: one xdist worker runs this module.
pytestmark = pytest.mark.xdist_group("cli")


def zoo_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_version():
    result = zoo_cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"zoo, version {zoo.__version__}"


def test_list_shows_builtins_with_distribution():
    result = zoo_cli("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SUMMARY", "DISTRIBUTION", "VERSION", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    for name in ("softmax", "mlp", "cnn"):
        assert "keras-zoo" in rows[name] and rows[name].rstrip().endswith("ok")


def test_list_pattern_and_json():
    result = zoo_cli("list", "*m*", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"mlp", "softmax"} and "cnn" not in {r["name"] for r in rows}
    assert set(rows[0]) == {"name", "summary", "distribution", "version", "status", "reason"}


def test_list_without_match_fails():
    result = zoo_cli("list", "nothing*")
    assert result.exit_code == 1
    assert one_line_error(result) == "Error: no model matches 'nothing*'"


def test_info_shows_hyperparameters_recipe_and_size():
    result = zoo_cli("info", "cnn")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("cnn: Two convolution")
    assert "source: keras-zoo" in out and "(zoo.models.cnn:cnn)" in out
    assert "filters      tuple[int, ...]  32,64" in out and "batch_norm   bool" in out
    assert "recommended recipe: epochs=15" in out
    assert "parameters for (28, 28, 1) with 10 classes: " in out
    presets = out.split("presets (zoo evaluate NAME, zoo train MODEL --init NAME):\n", 1)[1].splitlines()
    assert presets[0].split() == ["NAME", "DATASET", "TEST_ACC", "SIZE", "LICENSE", "FROM"]
    assert presets[1].split()[:3] == ["cnn.mnist", "mnist", "0.9953"] and "Apache-2.0" in presets[1]


@pytest.fixture(scope="module")
def tiny_run(tiny_data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    result = zoo_cli("train", "mlp", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "2",
                     "--batch-size", "32", "--hp", "units=16,16,16", "--hp", "dropout=0", "--run-dir", run,
                     "--export", run.parent / "exports")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stdout and f"run directory: {run}" in result.stdout
    assert f"exported {run.parent / 'exports' / '1'} (version 1)" in result.stdout
    (run.parent / "train.out").write_text(result.stdout)  # what the console showed
    return run


def test_train_writes_the_run_directory(tiny_run):
    assert {p.name for p in tiny_run.iterdir() if not p.name.startswith(("eval-", "confusion-"))} == {
        "config.json", "history.csv", "metrics.json", "model.keras", "curves.png", "tensorboard", ".lock"
    }
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["config"]["hparams"] == {"units": [16, 16, 16], "dropout": 0.0}
    assert config["config"]["epochs"] == 2 and config["config"]["learning_rate"] == 1e-3  # the mlp recipe
    assert config["model"]["distribution"] == "keras-zoo" and config["dataset"]["num_train"] == 180
    assert config["dataset"]["validation_split"] == "train[90%:]" and config["versions"]["keras"]
    with (tiny_run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    console = re.findall(r"^Epoch (\d+)/2\b", (tiny_run.parent / "train.out").read_text(), re.MULTILINE)
    assert [r["epoch"] for r in rows] == console == ["1", "2"]  # counted from 1, as the console counts
    assert [r["epoch"] for r in zoo.Run.open(tiny_run).history] == [1, 2]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                            "train_seconds", "val_seconds", "examples_per_second"}
    assert all(float(r["examples_per_second"]) > 0 for r in rows)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["params"] > 0 and metrics["epochs"] == 2
    assert metrics["test_accuracy"] > 0.6  # it learned: chance is 1/3 on three classes
    assert metrics["hparams"]["units"] == [16, 16, 16]
    assert (tiny_run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert any((tiny_run / "tensorboard").rglob("*tfevents*"))


def test_curves_count_epochs_as_history_csv_and_the_console(tiny_run, tmp_path, monkeypatch):
    """curves.png's x axis is history.csv's epoch column, 1 and 2, not shifted once more."""
    import matplotlib.figure

    from zoo.training import runner

    drawn, savefig = [], matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *args, **kwargs: (drawn.append(fig), savefig(fig, *args, **kwargs))[1])
    runner.plot_curves(zoo.Run.open(tiny_run).history, tmp_path / "curves.png", title="mlp")
    (figure,) = drawn
    assert [list(line.get_xdata()) for ax in figure.axes for line in ax.lines] == [[1, 2]] * 4


def test_evaluate_and_export_a_finished_run(tiny_run, tmp_path):
    result = zoo_cli("evaluate", tiny_run)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"test: accuracy {metrics['test_accuracy']:.4f}, loss {metrics['test_loss']:.4f}"
    # Per class and the confusion matrix: rows are the test split's true classes, in full.
    import tensorflow_datasets as tfds

    evaluated = json.loads((tiny_run / "eval-test.json").read_text())
    names, matrix = evaluated["confusion"]["labels"], np.array(evaluated["confusion"]["matrix"])
    config = json.loads((tiny_run / "config.json").read_text())
    labels = tfds.as_numpy(tfds.load(config["config"]["dataset"], split="test", data_dir=config["config"]["data_dir"],
                                     as_supervised=True, batch_size=-1))[1]
    assert names == config["dataset"]["class_names"]
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=len(names)).tolist()
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert evaluated["per_class_accuracy"] == {
        n: pytest.approx(matrix[i, i] / matrix[i].sum()) for i, n in enumerate(names)}
    assert lines[1] == "per class: " + ", ".join(f"{n} {matrix[i, i] / matrix[i].sum():.3f}" for i, n in enumerate(names))
    assert lines[2] == "confusion (rows: true class, columns: predicted):" and len(lines) == 4 + len(names)
    assert (tiny_run / "confusion-test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = zoo_cli("evaluate", tiny_run, "--split", "train[:10%]")
    assert other.exit_code == 0 and other.stdout.startswith("train[:10%]: accuracy")
    # Another slice with the same letters and digits has a file of its own; the first keeps its.
    again = zoo_cli("evaluate", tiny_run, "--split", "train[10%:]")
    assert again.exit_code == 0 and again.stdout.startswith("train[10%:]: accuracy")
    assert json.loads((tiny_run / "eval-train-10.json").read_text())["split"] == "train[:10%]"
    (second,) = [p for p in tiny_run.glob("eval-train-10-*.json")]
    assert json.loads(second.read_text())["split"] == "train[10%:]"
    assert (tiny_run / f"confusion-{second.stem[5:]}.png").is_file()
    for version in (1, 2):
        result = zoo_cli("export", tiny_run, tmp_path / "exports")
        assert result.exit_code == 0, result.output
        assert f"(version {version}); reloaded and compared on" in result.stdout
        assert (tmp_path / "exports" / str(version) / "assets.extra" / "zoo.json").is_file()


@pytest.fixture(scope="module")
def broken_runs(tiny_run, tiny_data_dir, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("broken")
    runs = {}
    for name in ("no_model", "bad_model", "bad_config", "not_json"):
        runs[name] = base / name
        shutil.copytree(tiny_run, runs[name])
    (runs["no_model"] / "model.keras").unlink()
    (runs["bad_model"] / "model.keras").write_bytes(b"PK\x03\x04 truncated zip")
    (runs["bad_config"] / "config.json").write_text('{"config": {"model": "mlp", "epochs": "many"}}')
    (runs["not_json"] / "config.json").write_text("{not json")
    no_test = base / "no_test"
    result = zoo_cli("train", "softmax", "--dataset", "zoo_tiny_no_test", "--data-dir", tiny_data_dir,
                     "--epochs", "1", "--run-dir", no_test)
    assert result.exit_code == 0, result.output
    runs["no_test"] = no_test
    (base / "a_file").write_text("a regular file where a folder is expected")
    runs["a_file"] = base / "a_file"
    (base / "empty").mkdir()
    runs["empty"] = base / "empty"
    (base / "wrong_size").mkdir()  # MNIST's file names, not its files
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (base / "wrong_size" / name).write_bytes(b"not mnist")
    runs["wrong_size"] = base / "wrong_size"
    runs["renamed"] = shutil.copytree(tiny_run, base / "renamed")  # its config's model edited by hand
    record = json.loads((runs["renamed"] / "config.json").read_text())
    record["config"]["model"] = "nonexistent"
    (runs["renamed"] / "config.json").write_text(json.dumps(record))
    runs["zero_epochs"] = base / "zero-epochs.json"  # a recipe file whose own value is wrong
    runs["zero_epochs"].write_text(json.dumps({"model": "softmax", "options": {"epochs": 0}, "hparams": {}}))
    return runs


# (arguments, exit code, words the one-line error must contain). {x} is filled from broken_runs.
# The cases that need the tiny TFDS datasets (registered in this process only); every other bad
# input goes through the installed console script in test_bad_input.py.
BAD_INPUTS = [
    (["train", "softmax", "--val-split", "0.001"], 2,
     "--val-split 0.001 leaves 200 training and 0 validation examples in 'zoo_tiny'"),
    (["train", "cnn", "--hp", "filter=8,16"], 2, "no hyperparameter 'filter'. Did you mean 'filters'?"),
    (["train", "cnn", "--hp", "dropout=lots"], 2, "hyperparameter 'dropout' expects float"),
    (["train", "mlp", "--hp", "units=-5,-5,-5"], 2, "model 'mlp' rejects units=-5,-5,-5: ValueError"),
    (["train", "softmax", "--dataset", "mnist/noconfig"], 2,
     "cannot load dataset 'mnist/noconfig': 'mnist' has no configs; give it as 'mnist'"),
    (["train", "softmax", "--dataset", "cifar10_corrupted/fog_9"], 2,
     "'cifar10_corrupted' has no config 'fog_9'; its configs: brightness_1, brightness_2,"),
    (["train", "softmax", "--dataset", "../mnist"], 2, "mnist does not exist"),  # written like a path
    (["train", "softmax", "--dataset", "tfds:"], 2, "--dataset 'tfds:' names no dataset"),
    (["train", "softmax", "--dataset", "mnist/"], 2, "a folder of images is written as a path: ./mnist/"),
    (["train", "softmax", "--hp", "l2=inf"], 2, "hyperparameter 'l2' expects a finite float, received 'inf'"),
    (["train", "softmax", "--dataset", "nosuchdist:foo"], 2,
     "unknown dataset 'nosuchdist:foo': no installed distribution 'nosuchdist' registers a dataset 'foo'"),
    (["train", "softmax", "--dataset", "imdb_reviews"], 2, "is not an image-classification dataset"),
    (["train", "softmax", "--dataset", "mnist", "--data-dir", "{empty}/tfds", "--manual-dir", "{wrong_size}"], 2,
     "is not the file dataset 'mnist' needs"),
    (["train", "cnn", "--hp", "filters=8,16,32"], 2, "model 'cnn' rejects filters=8,16,32: ValueError"),
    (["check", "mlp", "--hp", "units=-5,-5,-5"], 2, "model 'mlp' rejects units=-5,-5,-5: ValueError"),
    (["train", "softmax", "--recipe", "{zero_epochs}"], 2, "zero-epochs.json: epochs must be between 1 and 1000000"),
    (["evaluate", "{no_test}", "--split", "test"], 2, "dataset 'zoo_tiny_no_test' has no split 'test'"),
    (["evaluate", "{no_test}", "--split", "train[abc]"], 2, "bad split 'train[abc]'"),
    (["evaluate", "{no_test}", "--split", "train[5:2]"], 2, "bad split 'train[5:2]' of 'zoo_tiny_no_test': it has no examples"),
    (["export", "{no_test}", "{a_file}"], 2, "exists and is not a directory"),
    (["evaluate", "{bad_model}"], 1, "cannot load"),
    (["evaluate", "{bad_config}"], 1, "is corrupted or not a zoo config"),
    (["evaluate", "{not_json}"], 1, "is corrupted or not a zoo config"),
    (["evaluate", "{renamed}"], 1, "is corrupted or not a zoo config: its config trains 'nonexistent', its model record is"),
    (["export", "{no_model}", "{empty}/exports"], 2, "has no model.keras"),
]


def _snapshot(root: Path) -> dict[str, tuple]:
    """A file by its content's hash and mtime (same-size rewrites show), a folder by its name."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("args, code, words", BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS])
def test_bad_input_gives_one_line_error_and_creates_nothing(args, code, words, broken_runs, tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would appear here
    args = [a.format(**broken_runs) for a in args]
    if args[0] == "train" and "--run-dir" not in args and "--resume" not in args:
        args += ["--run-dir", str(tmp_path / "run")]
    base = broken_runs["a_file"].parent
    before = _snapshot(base)
    extra = []
    if args[0] == "train":  # the tiny dataset unless the case names its own
        extra = ([] if "--dataset" in args else ["--dataset", "zoo_tiny"]) + (
            [] if "--data-dir" in args else ["--data-dir", tiny_data_dir])
    result = zoo_cli(*args, *extra)
    assert result.exit_code == code, result.output
    assert words in one_line_error(result)
    assert _snapshot(base) == before
    assert list(tmp_path.iterdir()) == []


def test_default_run_dir_is_a_new_folder_under_runs(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = zoo_cli("train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "1")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("softmax-") and (run / "model.keras").is_file()


@pytest.mark.parametrize("name, safe", [("dist:cnn", "dist-cnn"), ("../../etc/x", "etc-x"), ("a/b", "a-b"), ("..", "model")])
def test_model_names_cannot_leave_the_runs_folder(name, safe):
    from zoo.files import safe_name

    assert safe_name(name) == safe


# The last line of defence: whatever nobody foresaw is one line, its traceback in a log file.
def _boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line of the message")


def test_unexpected_error_is_one_line_with_the_traceback_in_a_temporary_log(monkeypatch, tmp_path):
    monkeypatch.setattr("zoo.training.runner.train", _boom)
    result = zoo_cli("train", "softmax", "--run-dir", tmp_path / "run")
    assert result.exit_code == 1
    line = one_line_error(result)
    assert line.startswith("Error: RuntimeError: boom (traceback in ") and "ZOO_DEBUG=1" in line
    log = Path(line.split("traceback in ", 1)[1].split(";", 1)[0])
    assert log.parent != tmp_path / "run" and "Traceback (most recent call last)" in log.read_text()
    assert "second line of the message" in log.read_text()
    log.unlink()


def test_unexpected_error_during_a_run_is_logged_in_the_run_directory(monkeypatch, tiny_data_dir, tmp_path):
    monkeypatch.setattr("zoo.training.runner.plot_curves", _boom)  # after config.json is written
    run = tmp_path / "run"
    result = zoo_cli("train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                     "--epochs", "1", "--run-dir", run)
    assert result.exit_code == 1
    assert f"(traceback in {run / 'error.log'};" in one_line_error(result)
    assert "in plot_curves" not in result.output and "_boom" in (run / "error.log").read_text()


def test_zoo_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr("zoo.training.runner.train", _boom)
    monkeypatch.setenv("ZOO_DEBUG", "1")
    result = zoo_cli("train", "softmax", "--run-dir", tmp_path / "run")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


def test_os_error_names_the_file_and_the_reason(monkeypatch, tiny_data_dir, tmp_path):
    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr("zoo.files.write_json", full_disk)
    run = tmp_path / "run"
    result = zoo_cli("train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--run-dir", run)
    assert result.exit_code == 1
    assert one_line_error(result) == f"Error: No space left on device: {run / 'config.json'}"


def test_library_words_become_the_command_options():
    from zoo.cli.app import _cli_words
    from zoo.cli.train import train

    message = "`epochs` must be at least 1; `run_dir` and `export_base` and `units` stay"
    assert _cli_words(message, train) == "--epochs must be at least 1; --run-dir and --export and units stay"


def test_cli_works_with_click_8_1_without_no_args_is_help_error():
    # Click 8.1 has no NoArgsIsHelpError; naming it in an except clause crashed every error path.
    code = (
        "import click.exceptions as e; del e.NoArgsIsHelpError\n"
        "from zoo.cli import main\n"
        "main(['train', 'softmax', '--epochs', 'x'], prog_name='zoo')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: Invalid value for '--epochs': 'x' is not a valid integer. (see 'zoo train --help')"
    ]


def test_class_names_in_a_script_the_font_lacks_draw_without_warnings(tmp_path):
    """A folder's classes may be named in any script (ねこ, 鳥): the confusion matrix is drawn
    (boxes where the font has no glyph), and zoo evaluate prints no matplotlib warnings."""
    import warnings

    from zoo.evaluation import plot_confusion

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion(np.eye(3, dtype=int), ["ねこ", "いぬ", "鳥"], tmp_path / "confusion.png", "pets")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_confusion_matrix_lines_up_wide_and_long_class_names(capsys):
    from zoo.cli.output import cells
    from zoo.cli.runs import _echo_confusion

    names = ["犬", "猫猫猫猫", "ç", "circle-long"]
    _echo_confusion({"confusion": {"labels": names, "matrix": [[5, 0, 0, 1], [0, 12, 0, 0], [1, 0, 3, 0], [0, 0, 0, 7]]},
                     "per_class_accuracy": dict.fromkeys(names, 1.0)})
    header, *rows = capsys.readouterr().out.splitlines()[2:]
    assert len({cells(line) for line in (header, *rows)}) == 1  # every line as wide on a terminal
    assert header.split() == ["犬", "猫猫猫", "ç", "circle"]  # names up to 6 cells, not cut to the counts' 2
    assert [row.split()[0] for row in rows] == names


@pytest.mark.parametrize("command, says", [("bench", "continues the sweep"), ("tune", "continues the study")])
def test_ctrl_c_of_a_sweep_or_a_study_says_the_same_command_continues(command, says, tiny_data_dir, monkeypatch, tmp_path):
    from zoo.benchmark import sweep
    from zoo.tuning import run as tuning_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "training_jobs", interrupted)  # as if Ctrl-C came while it ran
    monkeypatch.setattr(tuning_run, "work", interrupted)
    result = zoo_cli(command, "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--out", str(tmp_path / "out"),
                     *(["--trials", "1"] if command == "tune" else []))
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1].startswith(f"interrupted: the same command {says}")
