"""Plugins that third-party packages ship, good and broken, seen through the `zoo` CLI.

Each plugin is a real module plus a real ``.dist-info`` folder on sys.path, which is all that
``importlib.metadata`` needs to see an installed distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo.cli import main

TINY = '''
import keras

def {name}(*, input_shape: tuple[int, ...], num_classes: int, units: int = 8) -> keras.Model:
    """{summary}"""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''

LOGITS = '''
import keras

def logits(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Forgets the softmax: returns logits."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))
'''

# BatchNormalization with momentum 0.999, as in every keras.applications and KerasHub backbone:
# after a few steps its moving statistics have barely moved, so only training-mode losses show
# that the model learns.
BATCHNORM = '''
import keras

def bnnet(*, input_shape: tuple[int, ...], num_classes: int,
          filters: tuple[int, ...] = (8, 16)) -> keras.Model:
    """A small conv net with BatchNormalization(momentum=0.999)."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for f in filters:
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.999)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''

PLUGINS = {
    # dist name: (version, module name, module source, {model: attribute})
    "good-plug": ("0.1.0", "goodplug", TINY.format(name="tiny", summary="A tiny dense net."), {"tiny": "tiny"}),
    "crashy-plug": ("0.2.0", "crashyplug", 'raise RuntimeError("boom at import")\n', {"crashy": "crashy"}),
    "needsdep-plug": ("1.0", "needsdepplug", "import not_installed_dependency_xyz\n\ndef needsdep(*, input_shape, num_classes):\n    pass\n", {"needsdep": "needsdep"}),
    "const-plug": ("1.0", "constplug", "notcallable = 42\n", {"notcallable": "notcallable"}),
    "positional-plug": ("1.0", "positionalplug", "def positional(input_shape, num_classes):\n    return None\n", {"positional": "positional"}),
    "dict-plug": ("1.0", "dictplug", 'def notamodel(*, input_shape, num_classes):\n    """Returns a dict."""\n    return {}\n', {"notamodel": "notamodel"}),
    "syntax-plug": ("1.0", "syntaxplug", "def syntaxbad(*, input_shape, num_classes):\n    return (\n", {"syntaxbad": "syntaxbad"}),
    "missing-plug": ("1.0", "missingplug", TINY.format(name="renamed", summary="Renamed."), {"missingattr": "missingattr"}),
    "logits-plug": ("1.0", "logitsplug", LOGITS, {"logits": "logits"}),
    "bn-plug": ("1.0", "bnplug", BATCHNORM, {"bnnet": "bnnet"}),
    "twin-a": ("1.0", "twina", TINY.format(name="twin", summary="Twin from A."), {"twin": "twin"}),
    "twin-b": ("2.0", "twinb", TINY.format(name="twin", summary="Twin from B."), {"twin": "twin"}),
}


def install_fake_plugins(root: Path) -> None:
    for dist, (version, module, source, models) in PLUGINS.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {module}:{attr}\n" for name, attr in models.items())
        (info / "entry_points.txt").write_text(f"[zoo.models]\n{lines}")


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    install_fake_plugins(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for _, module, _, _ in PLUGINS.values():
        sys.modules.pop(module, None)


def zoo(*args: str):
    return CliRunner().invoke(main, list(args))


def test_list_shows_every_plugin_and_flags_broken_ones_without_importing(plugins):
    result = zoo("list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["tiny"]["status"] == "ok" and rows["tiny"]["distribution"] == "good-plug"
    assert rows["tiny"]["summary"] == "A tiny dense net."
    assert "not_installed_dependency_xyz" in rows["needsdep"]["reason"]
    assert "not a callable builder" in rows["notcallable"]["reason"]
    assert "keyword-only" in rows["positional"]["reason"]
    # Duplicates are listed by distribution, and nothing was imported to list them.
    assert {"twin-a:twin", "twin-b:twin"} <= rows.keys()
    assert not {"goodplug", "crashyplug", "twina"} & sys.modules.keys()


def test_list_table_shows_broken_status_with_reason(plugins):
    result = zoo("list", "*plug*")
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("notcallable"))
    assert "broken: 'notcallable' is an int, not a callable builder" in line


@pytest.mark.parametrize(
    "model, reason",
    [
        ("syntaxbad", "syntax error in syntaxplug.py line 2: '(' was never closed"),
        ("missingattr", "'missingattr' is not defined in missingplug.py"),
    ],
)
def test_list_flags_what_the_source_proves_broken(plugins, model, reason):
    result = zoo("list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert (rows[model]["status"], rows[model]["reason"]) == ("broken", reason)
    assert rows["tiny"]["status"] == "ok"
    assert not {"syntaxplug", "missingplug"} & sys.modules.keys()


def test_list_check_imports_and_reports_import_failures(plugins):
    result = zoo("list", "crashy", "--check", "--json")
    assert result.exit_code == 1  # the table, then a status that can gate CI
    (row,) = json.loads(result.stdout)
    assert row["status"] == "broken"
    assert "RuntimeError: boom at import" in row["reason"]
    assert zoo("list", "crashy", "--check").exit_code == 1 and zoo("list", "crashy").exit_code == 0
    healthy = zoo("list", "tiny", "--check")
    assert healthy.exit_code == 0 and "tiny" in healthy.stdout


def test_info_of_broken_plugin_shows_full_traceback_and_fails(plugins):
    result = zoo("info", "crashy")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stdout
    assert "crashyplug.py" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("Error: model 'crashy' (crashy-plug 0.2.0")


def test_info_of_a_plugin_broken_for_one_reason_says_it_once(plugins):
    result = zoo("info", "notcallable")
    assert result.exit_code == 1
    assert (result.stdout + result.stderr).count("is an int, not a callable builder") == 1, result.output
    assert result.stdout.splitlines()[0] == "notcallable: broken"


@pytest.mark.parametrize(
    "model, reason",
    [
        ("crashy", "failed to import: RuntimeError: boom at import"),
        ("needsdep", "ModuleNotFoundError: No module named 'not_installed_dependency_xyz'"),
        ("notcallable", "is an int, not a callable builder"),
        ("positional", "must take keyword-only arguments input_shape and num_classes"),
        ("syntaxbad", "failed to import: SyntaxError: '(' was never closed (syntaxplug.py, line 2)"),
        ("missingattr",
         "failed to import: AttributeError: module 'missingplug' has no attribute 'missingattr'"),
    ],
)
def test_train_broken_plugin_fails_with_its_reason(plugins, model, reason):
    result = zoo("train", model, "--run-dir", str(plugins / "run"))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and reason in line
    assert not (plugins / "run").exists()


def test_good_plugin_unaffected_by_broken_ones(plugins):
    result = zoo("info", "tiny")
    assert result.exit_code == 0, result.output
    assert "good-plug 0.1.0 (goodplug:tiny)" in result.stdout
    assert "units" in result.stdout


def test_builder_returning_non_model_fails_check(plugins):
    result = zoo("check", "notamodel")
    assert result.exit_code == 1
    assert "FAIL  build 28x28x1 / 10 classes: model 'notamodel' returned dict, expected a keras.Model" in result.stdout


@pytest.mark.parametrize("command", ["train", "info", "check"])
def test_duplicate_name_needs_a_distribution(plugins, command):
    result = zoo(command, "twin")
    assert result.exit_code == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "twin-a 1.0" in message and "twin-b 2.0" in message
    assert "'twin-a:twin' or 'twin-b:twin'" in message


def test_duplicate_name_selected_by_distribution(plugins):
    result = zoo("info", "twin-b:twin")
    assert result.exit_code == 0, result.output
    assert "Twin from B." in result.stdout and "twin-b 2.0" in result.stdout


def test_check_fails_a_model_that_returns_logits(plugins):
    result = zoo("check", "logits")
    assert result.exit_code == 1
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert lines["FAIL  probabilities"].endswith("end with a softmax")
    assert lines["PASS  build 28x28x1 / 10 classes"]
    assert result.stderr.strip() == "Error: logits: 1 check(s) failed"


def test_check_passes_a_batchnorm_model_that_learns(plugins):
    # Judged by inference-mode losses (model.evaluate on noise images) it failed: 2.3633 -> 2.3690.
    result = zoo("check", "bnnet")
    assert result.exit_code == 0, result.output
    assert "PASS  short fit moves the loss: training loss" in result.stdout
    assert "FAIL" not in result.stdout


def test_check_passes_for_good_plugin(plugins):
    result = zoo("check", "good-plug:tiny", "--hp", "units=4")
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout
    assert "all checks passed" in result.stdout


def test_listing_imports_neither_tensorflow_nor_plugins(plugins):
    code = textwrap.dedent(
        """
        import sys
        from zoo.cli import main
        try:
            main(["list"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        try:
            main(["--help"])
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m.split(".")[0] in
              {"tensorflow", "keras", "goodplug", "crashyplug", "twina", "twinb"}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), *sys.path])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_reader_that_leaves_early_is_no_error(tmp_path):
    """`zoo list | head -n 1`: the pipe closes before zoo writes; zoo stops quietly, no log file."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where a traceback log would go
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # before the interpreter has started: every write finds no reader
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert stderr == b"" and proc.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_plugin_named_like_a_tfds_dataset_is_picked_by_name_only(tmp_path, monkeypatch, tiny_data_dir):
    """A plugin's dataset called `mnist` does not silently replace TFDS's (a run trained on TFDS's
    would be evaluated on the plugin's): the bare name is refused before anything is written,
    `DIST:mnist` is the plugin's and `tfds:mnist` TFDS's."""
    info = tmp_path / "shadow_data-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shadow-data\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo.datasets]\nmnist = tinydata:ZooTiny\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    refused = zoo("train", "softmax", "--dataset", "mnist", "--run-dir", "run")
    assert refused.exit_code == 2 and refused.stderr.strip() == (
        "Error: dataset 'mnist' names both TFDS's catalog dataset and plugin shadow-data 1.0's (tinydata:ZooTiny): "
        "give 'tfds:mnist' for TFDS's or 'shadow-data:mnist' for the plugin's")
    assert not (tmp_path / "run").exists()
    plugin = zoo("train", "softmax", "--dataset", "shadow-data:mnist", "--data-dir", tiny_data_dir, "--epochs", "1",
                 "--run-dir", "run")
    assert plugin.exit_code == 0, plugin.output
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["dataset"]["name"] == "zoo_tiny" and record["dataset"]["source"]["distribution"] == "shadow-data"
    # TFDS's, by its registered size: refused before any data is read or prepared.
    catalog = zoo("train", "softmax", "--dataset", "tfds:mnist", "--input", "memory", "--memory-budget", "1MB",
                  "--run-dir", "other")
    assert catalog.exit_code == 2 and "the decoded splits of 'mnist' take about 52.9 MB" in catalog.stderr, catalog.output


CRASHING_DATASET = '''
from tinydata import _Tiny


def _exploding(count):
    for i in range(count):
        if i == 3:
            raise RuntimeError("generator exploded")
        yield i, {"image": __import__("numpy").zeros((8, 8, 1), "uint8"), "label": 0}


class ZooCrash(_Tiny):
    def _split_generators(self, dl_manager):
        return {"train": _exploding(10)}
'''


def test_a_dataset_plugin_that_fails_to_prepare_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    info = tmp_path / "crash_data-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crash-data\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo.datasets]\ncrash = crashdata:ZooCrash\n")
    (tmp_path / "crashdata").mkdir()  # TFDS finds a builder's files through its package
    (tmp_path / "crashdata" / "__init__.py").write_text(CRASHING_DATASET)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "manual").mkdir()
    monkeypatch.setenv("ZOO_MANUAL_DIR", str(tmp_path / "manual"))  # not this plugin's files
    result = zoo("train", "softmax", "--dataset", "crash", "--data-dir", tmp_path / "tfds", "--run-dir", tmp_path / "run")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"preparing crash into {tmp_path / 'tfds' / 'zoo_crash' / '1.0.0'} ...",
        "Error: dataset 'crash' (crash-data 1.0, crashdata:ZooCrash) failed to prepare: RuntimeError: generator exploded"]
    assert not (tmp_path / "run").exists() and not list((tmp_path / "tfds").rglob("*.tfrecord*"))
    sys.modules.pop("crashdata", None)
