"""The Python API, as a notebook uses it: one import, a builder registered in a cell, a run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import registry
import zoo


def test_import_zoo_loads_neither_tensorflow_nor_keras():
    code = "import sys, zoo; print(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_dir_zoo_is_the_documented_api_and_its_submodules():
    """No helper (os, Path, Any) in the public namespace; every public function is in the API reference."""
    code = ("import types, zoo; public = [n for n in dir(zoo) if not n.startswith('_')]; print(*public); "
            "print(*[n for n in public if isinstance(getattr(zoo, n), types.ModuleType)])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    public, modules = (line.split() for line in result.stdout.splitlines())
    assert all(getattr(zoo, name).__name__ == f"zoo.{name}" for name in modules)  # zoo's own submodules only
    assert sorted(set(public) - set(modules)) == sorted(zoo.__all__)
    reference = (Path(__file__).parents[1] / "docs" / "api.md").read_text().split("::: registry")[0]
    assert sorted(re.findall(r"^ {8}- (\w+)$", reference, re.MULTILINE)) == sorted(zoo.__all__)


GLOG = re.compile(r"^[IWEF]\d{4} ", re.MULTILINE)  # TensorFlow's C++ lines: I0000 00:00:17... port.cc:153] ...


@pytest.mark.parametrize("call", [
    pytest.param("zoo.train('softmax', dataset='zoo_tiny', data_dir=DATA, epochs=1, run_dir=OUT, verbose=0)",
                 id="train"),
    pytest.param("zoo.bench('softmax', seeds=[0], dataset='zoo_tiny', data_dir=DATA, epochs=1, out=OUT)",
                 id="bench", marks=pytest.mark.slow),  # trains, exports and measures in a job: 20 s
    pytest.param("zoo.create_model('mlp', input_shape=(28, 28, 1), num_classes=10)", id="create_model"),
    pytest.param("import keras\nkeras.ops.ones(2)", id="a notebook's own import keras"),
    pytest.param("from zoo.cli import main\nmain(['list', '--check'])", id="zoo list --check"),  # imports plugins
])
def test_a_script_sees_no_tensorflow_log_lines(call, tiny_data_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ZOO_TF_LOGS")}
    code = f"import zoo\nDATA, OUT = {tiny_data_dir!r}, {str(tmp_path / 'out')!r}\n{call}\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not GLOG.search(result.stderr), result.stderr[:2000]
    assert "absl::InitializeLog" not in result.stderr


def test_a_script_using_a_run_sees_no_tensorflow_log_lines(tiny_data_dir, tmp_path):
    zoo.train("softmax", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, run_dir=tmp_path / "run", verbose=0)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ZOO_TF_LOGS")}
    for call in ("run.model()", "run.evaluate()", "run.export(OUT)", "run.publish(OUT + '-presets', license='MIT')"):
        code = f"import zoo\nOUT = {str(tmp_path / 'exports')!r}\nrun = zoo.Run.open({str(tmp_path / 'run')!r})\n{call}\n"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                                check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        assert not GLOG.search(result.stderr), (call, result.stderr[:2000])
        assert "absl::InitializeLog" not in result.stderr, call


def test_list_models_and_create_model():
    for shape, classes, says in (((28, 28, 1), 1, "`num_classes` must be at least 2, received 1"),
                                 ((0, 28, 1), 3, "`input_shape` is (height, width, channels) of positive sizes "
                                                 "(None: any), received (0, 28, 1)"),
                                 ((28, 28), 3, "`input_shape` is (height, width, channels) of positive sizes "
                                               "(None: any), received (28, 28)")):
        with pytest.raises(zoo.ZooUsageError, match=f"^{re.escape(says)}$"):
            zoo.create_model("mlp", input_shape=shape, num_classes=classes)
    assert {"softmax", "mlp", "cnn"} <= set(zoo.list_models())
    assert zoo.list_models("c*") == ["cnn"]
    model = zoo.create_model("cnn", input_shape=(28, 28, 1), num_classes=10, filters="8,16", dropout=0.1)
    assert model.output_shape == (None, 10) and model.layers[1].filters == 8
    with pytest.raises(registry.HyperparameterError, match="hyperparameter 'dropout' expects float"):
        zoo.create_model("cnn", input_shape=(28, 28, 1), num_classes=10, dropout="lots")
    with pytest.raises(registry.HyperparameterError, match="model 'mlp' rejects units=-5: ValueError"):
        zoo.create_model("mlp", input_shape=(28, 28, 1), num_classes=10, units=(-5,))


@pytest.fixture
def tinynet():
    import keras

    @zoo.register
    def tinynet(*, input_shape, num_classes, width: int = 16):
        """A notebook's own model."""
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Dense(width, activation="relu")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))

    yield tinynet
    registry._discovery._LOCAL.pop("tinynet", None)


def test_register_checks_the_contract_and_refuses_installed_names(tinynet):
    assert "tinynet" in zoo.list_models() and zoo.list_models("tiny*") == ["tinynet"]

    def cnn(*, input_shape, num_classes):
        raise AssertionError("never built")

    with pytest.raises(registry.AmbiguousModelError, match="model 'cnn' is already registered by keras-zoo"):
        zoo.register(cnn)
    with pytest.raises(registry.PluginError, match="must take keyword-only arguments input_shape and num_classes"):
        zoo.register(lambda input_shape, num_classes: None, name="positional")
    assert "positional" not in zoo.list_models()


@pytest.mark.slow  # trains, reads, evaluates and exports: 12 s alone, 28 s beside another worker
def test_train_a_registered_builder_and_read_its_run(tinynet, tiny_data_dir, tmp_path):
    from zoo.check import run_checks

    assert all(r.passed for r in run_checks(registry.get("tinynet"))), run_checks(registry.get("tinynet"))
    run = zoo.train("tinynet", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=2, batch_size=32, learning_rate=0.01,
                    hparams={"width": 8}, run_dir=tmp_path / "run", export=tmp_path / "exports", verbose=0)
    assert isinstance(run, zoo.Run) and run.complete and run.exported.version == 1
    assert run.config.model == "tinynet" and dict(run.config.hparams) == {"width": 8}
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["model"]["origin"] == "registered in the process (zoo.register)"
    assert record["model"]["distribution"] is None and record["model"]["version"] is None
    assert [r["epoch"] for r in run.history] == [1, 2] and isinstance(run.history[0]["loss"], float)
    assert run.metrics["test_accuracy"] > 0.6 and run.dataset["name"] == "zoo_tiny"

    again = zoo.Run.open(tmp_path / "run")
    assert again.history == run.history and again.metrics == run.metrics
    images = np.zeros((2, 8, 8, 1), np.uint8)
    assert again.model().predict(images, verbose=0).shape == (2, 3)
    assert again.evaluate()["accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    assert again.export(tmp_path / "exports").version == 2


def test_a_run_leaves_no_global_determinism_behind(tiny_data_dir, tmp_path):
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()
    zoo.train("softmax", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, run_dir=tmp_path / "run", verbose=0)
    assert not tf_config.is_op_determinism_enabled()


def test_run_open_names_what_is_wrong(tmp_path):
    with pytest.raises(zoo.ZooUsageError, match=r"is not a run directory \(no such folder\)"):
        zoo.Run.open(tmp_path / "nothing")
    (tmp_path / "image.png").write_bytes(b"not a run")
    with pytest.raises(zoo.ZooUsageError, match=r"image.png is not a run directory \(a file\)$"):
        zoo.Run.open(tmp_path / "image.png")
    for wrong in (123, "", None):
        with pytest.raises(zoo.ZooUsageError, match=r"^a run directory is a folder path, received "):
            zoo.Run.open(wrong)
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.ZooUsageError, match=r"is not a run directory \(no config.json\)"):
        zoo.Run.open(tmp_path / "empty")


def test_train_takes_every_run_option():
    """zoo.train's keywords are RunConfig's fields: a field added to RunConfig without one fails here
    (zoo.train passes its locals for every name in plan.OPTIONS)."""
    import inspect

    from zoo import plan

    parameters = inspect.signature(zoo.train).parameters
    assert [name for name in plan.OPTIONS if name not in parameters] == []
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in plan.OPTIONS)


def test_evaluating_a_split_without_examples_says_so_and_writes_nothing(tiny_runs):
    run = tiny_runs("softmax")
    before = sorted(p.name for p in run.path.iterdir())
    with pytest.raises(zoo.ZooUsageError, match=r"^bad split 'train\[:0\]' of 'zoo_tiny': it has no examples$"):
        run.evaluate("train[:0]")
    assert sorted(p.name for p in run.path.iterdir()) == before


def test_arguments_of_the_wrong_kind_are_named_in_one_line(tmp_path):
    with pytest.raises(registry.PluginError, match=r"^cannot register 123: a builder is a function"):
        zoo.train(123, run_dir=tmp_path / "run")
    with pytest.raises(zoo.ZooUsageError, match=r"^`hparams` is a mapping of name to value, received list "):
        zoo.train("mlp", hparams=["dropout=0.1"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("call, says", [
    (lambda d: zoo.train("softmax", dataset=5, run_dir=d), "zoo.train(): `dataset` takes a string or a path, received int 5"),
    (lambda d: zoo.train("softmax", epochs="2", run_dir=d), "zoo.train(): `epochs` takes an integer or None, received str '2'"),
    (lambda d: zoo.train("softmax", seed=True, run_dir=d), "`seed` takes an integer, received bool True"),
    (lambda d: zoo.train("softmax", verbose="no", run_dir=d), "`verbose` takes True or False or one of 0, 1, 2, 'auto', "
                                                              "received str 'no'"),
    (lambda d: zoo.train("softmax", verbose=5, run_dir=d), "`verbose` takes True or False or one of 0, 1, 2, 'auto', "
                                                           "received int 5"),
    (lambda d: zoo.train("softmax", image_size=[8, "x"], run_dir=d), "`image_size` takes a string or an integer or 2 integers or None"),
    (lambda d: zoo.train("softmax", run_dir=3), "`run_dir` takes a string or a path or None, received int 3"),
    (lambda d: zoo.create_model("softmax", input_shape=28, num_classes=3), "`input_shape` takes a list (an integer or None each) or None, received int 28"),
    (lambda d: zoo.create_model("softmax", input_shape=(8, 8, 1), num_classes="10"), "`num_classes` takes an integer or None"),
    (lambda d: zoo.list_models(5), "zoo.list_models(): `pattern` takes a string or None, received int 5"),
    (lambda d: zoo.predict(d, 5), "zoo.predict(): `images` takes a string or a path or a list (a string or a path each)"),
    (lambda d: zoo.bench("softmax", seeds="012", out=d), "zoo.bench(): `seeds` takes a list of integers, received str '012'"),
    (lambda d: zoo.tune("mlp", trials="3", out=d), "zoo.tune(): `trials` takes an integer, received str '3'"),
])
def test_python_arguments_of_the_wrong_kind_are_one_line_and_write_nothing(call, says, tmp_path):
    with pytest.raises(zoo.ZooUsageError) as err:
        call(tmp_path / "out")
    assert says in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_run_refuses_arguments_of_the_wrong_kind_and_takes_numpy_integers(tiny_runs):
    run = tiny_runs("softmax")
    with pytest.raises(zoo.ZooUsageError, match=r"^zoo.Run.evaluate\(\): `split` takes a string or None, received int 5$"):
        run.evaluate(5)
    with pytest.raises(zoo.ZooUsageError, match=r"^zoo.Run.export\(\): `export_base` takes a string or a path, received"):
        run.export(5)
    model = zoo.create_model("softmax", input_shape=np.array([8, 8, 1]), num_classes=np.int64(3))
    assert model.output_shape == (None, 3)
    model = zoo.create_model("mlp", input_shape=(8, 8, 1), num_classes=3, dropout=np.float32(0.25),
                             units=(np.int64(8), 8, 8))  # hyperparameters from an array, as Python's
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [8, 8, 8, 3]


def test_numpy_values_paths_and_flags_as_0_or_1_are_taken_as_python_ones(tiny_data_dir, tmp_path, monkeypatch):
    run = zoo.train("softmax", dataset="zoo_tiny", data_dir=Path(tiny_data_dir), epochs=np.int64(1),
                    batch_size=np.int64(16), seed=np.int64(2), learning_rate=np.float32(0.01), val_split=np.float64(0.2),
                    deterministic=np.True_, augment=0, run_dir=tmp_path / "run", verbose=0)
    config = run.config
    assert (config.epochs, config.batch_size, config.seed, config.augment, config.deterministic) == (1, 16, 2, False, True)
    assert type(config.epochs) is int and type(config.learning_rate) is float and config.val_split == pytest.approx(0.2)

    monkeypatch.setattr(registry._discovery, "_LOCAL", dict(registry._discovery._LOCAL))  # this test's own

    @zoo.register(name="any_size_gap")
    def any_size_gap(*, input_shape: tuple[int, ...], num_classes: int, width: int = 4) -> keras.Model:
        """Pooled over any image size."""
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(width, 3)(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))

    model = zoo.create_model("any_size_gap", input_shape=(None, None, 3), num_classes=3, width=np.int64(2))
    assert model.input_shape == (None, None, None, 3)
    with pytest.raises(zoo.ZooUsageError, match=r"^bench\(\) got an unknown option 'batchsize'$"):
        zoo.bench("softmax", seeds=np.arange(1), batchsize=3, out=tmp_path / "bench")
    assert not (tmp_path / "bench").exists()


def test_a_path_given_as_dataset_is_always_a_folder(tmp_path, monkeypatch):
    """Path("./mnist") prints as "mnist", a catalog name: as a Path it still means the folder."""
    monkeypatch.chdir(tmp_path)
    for call in (lambda: zoo.train("softmax", dataset=Path("./mnist"), epochs=1, verbose=0),
                 lambda: zoo.bench("softmax", seeds=[0], dataset=Path("mnist"), out=tmp_path / "bench")):
        with pytest.raises(zoo.ZooUsageError, match=f"^dataset folder {re.escape(str(tmp_path / 'mnist'))} does not exist"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, no run started
    with pytest.raises(zoo.ZooUsageError, match=r"^`models` is empty: leave it out \(None\) to benchmark every healthy model$"):
        zoo.bench([], seeds=[0], out=tmp_path / "bench")  # a filter that matched nothing is not "every model"
    assert not (tmp_path / "bench").exists()


@pytest.mark.slow  # five tiny trainings and evaluations in this process: 15 s
def test_a_notebook_that_trains_model_after_model_sees_no_retracing_warnings(tiny_data_dir, tmp_path, caplog):
    """Each zoo.train builds a model of its own, whose train and test functions TensorFlow counts as
    one function retraced ("5 out of the last 5 calls ... triggered tf.function retracing")."""
    import logging

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for i in range(5):
            run = zoo.train("softmax", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, precision="float32",
                            run_dir=tmp_path / f"run{i}", verbose=0)
            run.evaluate("test")
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
