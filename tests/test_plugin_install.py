"""Real third-party plugins, pip-installed into a real virtualenv, driven through `zoo`.

The virtualenv borrows TensorFlow & co. from the running environment (a .pth file), so nothing is
downloaded: keras-zoo, the example plugin and tests/plugin_extra (a custom serialisable layer,
logits instead of probabilities, a syntax error, a missing attribute) are installed with
--no-deps --no-build-isolation. Training uses the tiny TFDS dataset prepared by the
``tiny_data_dir`` fixture: TFDS reads a prepared dataset from its files, so the `zoo` process does
not need the test package that defines it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import warm

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin_example"
EXTRA = ROOT / "tests" / "plugin_extra"
DATASETS = ROOT / "tests" / "dataset_plugin"
PRESETS = ROOT / "tests" / "preset_plugin"
MNIST = Path(os.environ.get("ZOO_MANUAL_DIR", ROOT.parent / "shared" / "datasets" / "mnist"))

# One virtualenv (the module fixture `venv`) for every test here: one xdist worker builds and uses it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("plugin_venv")]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``cmd`` with its output: a `zoo` command starts warm (tests/warm.py)."""
    return warm.run(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("plugin") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).check_returncode()
    site = Path(
        _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # Borrow the running environment's packages (TensorFlow, Keras, pip, setuptools) without
    # copying them; addsitedir also honours that environment's own .pth files.
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_outer.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(outer)))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    packages = {"keras-zoo": ROOT, "zoo-lenet": PLUGIN, "zoo-extra": EXTRA, "zoo-shapes-data": DATASETS}
    for package in (_copy(source, venv.parent / name) for name, source in packages.items()):
        result = _run([*pip, str(package)])
        assert result.returncode == 0, result.stderr
    return venv


def _copy(source: Path, target: Path) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    # Outputs a working tree may hold (.gitignore) are not part of the package.
    ignore = shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "tests", "runs", "exports", "bench", "tfds_data",
        "mutants", "htmlcov",
    )
    shutil.copytree(source, target, ignore=ignore)
    return target


def zoo(venv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return warm.run([str(venv / "bin" / "zoo"), *args], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                      timeout=600)


def test_installed_plugin_is_listed_with_its_distribution(venv):
    result = zoo(venv, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["lenet"]["distribution"] == "zoo-lenet"
    assert rows["lenet"]["version"] == "1.0.0"
    assert rows["lenet"]["status"] == "ok"
    assert rows["lenet"]["summary"].startswith("LeNet-5")
    assert {"softmax", "mlp", "cnn"} <= rows.keys()


def test_plugin_is_not_visible_outside_its_environment():
    import registry

    assert not {"lenet", "gainnet", "syntaxbad"} & {e.name for e in registry.entries()}


def test_installed_plugin_info_and_check(venv):
    info = zoo(venv, "info", "lenet")
    assert info.returncode == 0, info.stderr
    assert "zoo-lenet 1.0.0 (zoo_lenet:lenet)" in info.stdout
    assert "filters" in info.stdout and "tuple[int, ...]" in info.stdout
    check = zoo(venv, "check", "lenet")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout
    assert check.stdout.count("PASS") >= 7


def test_check_fits_an_installed_plugin_with_its_recipe(venv):
    """A squeeze-and-excitation plugin whose recipe says 3e-3: `zoo check`'s short fit trains it
    with that, until its loss drops, and passes it."""
    check = zoo(venv, "check", "senet", "--precision", "float32")
    assert check.returncode == 0, check.stdout + check.stderr
    (line,) = [line for line in check.stdout.splitlines() if "short fit moves the loss" in line]
    assert line.startswith("PASS") and line.endswith("(adam at 0.003, the recipe's)"), line


@pytest.mark.integration
@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST files not found in {MNIST}")
def test_installed_plugin_trains_evaluates_and_exports(venv, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    train = zoo(
        venv, "train", "lenet", "--epochs", "1", "--hp", "filters=4,8", "--hp", "dense_units=32,16",
        "--manual-dir", str(MNIST), "--data-dir", str(tmp_path / "tfds"),
        "--run-dir", str(run), "--export", str(exports),
    )
    assert train.returncode == 0, train.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distribution"] == "zoo-lenet"
    assert metrics["hparams"]["dense_units"] == [32, 16]
    assert metrics["test_accuracy"] > 0.9
    assert (exports / "1" / "saved_model.pb").is_file()
    evaluate = zoo(venv, "evaluate", str(run))
    assert evaluate.returncode == 0, evaluate.stderr
    assert f"accuracy {metrics['test_accuracy']:.4f}" in evaluate.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    return line


def test_list_flags_broken_plugins_and_keeps_the_others(venv):
    result = zoo(venv, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["syntaxbad"]["status"] == "broken"
    assert rows["syntaxbad"]["reason"] == (
        "syntax error in zoo_extra_syntax.py line 5: '(' was never closed"
    )
    assert rows["missingattr"]["status"] == "broken"
    assert rows["missingattr"]["reason"] == "'not_defined_anywhere' is not defined in zoo_extra.py"
    assert {rows[name]["status"] for name in ("gainnet", "logits", "lenet", "cnn")} == {"ok"}
    table = zoo(venv, "list", "syntaxbad")
    assert "broken: syntax error in zoo_extra_syntax.py line 5" in table.stdout


@pytest.mark.parametrize(
    "model, reason",
    [
        ("syntaxbad",
         "failed to import: SyntaxError: '(' was never closed (zoo_extra_syntax.py, line 5)"),
        ("missingattr",
         "failed to import: AttributeError: module 'zoo_extra' has no attribute 'not_defined_anywhere'"),
    ],
)
def test_train_broken_plugin_fails_with_one_line(venv, tiny_data_dir, tmp_path, model, reason):
    run = tmp_path / "run"
    result = zoo(venv, "train", model, "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                 "--run-dir", str(run))
    assert result.returncode == 1, result.stdout + result.stderr
    line = one_line_error(result)
    assert line.startswith(f"Error: model '{model}' (zoo-extra 0.1.0, "), line
    assert line.endswith(reason), line
    assert not run.exists()


def test_check_fails_a_plugin_that_returns_logits(venv):
    result = zoo(venv, "check", "logits")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  probabilities: outputs are not probabilities" in result.stdout
    assert "PASS  short fit moves the loss" in result.stdout  # one failure does not stop the others
    assert one_line_error(result) == "Error: logits: 1 check(s) failed"


@pytest.fixture(scope="module")
def gain_run(venv, tiny_data_dir, tmp_path_factory) -> Path:
    """A trained run of the plugin whose model has a custom layer (zoo_extra.Gain)."""
    run = tmp_path_factory.mktemp("gainnet") / "run"
    train = zoo(venv, "train", "gainnet", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                "--run-dir", str(run))
    assert train.returncode == 0, train.stderr[-2000:]
    return run


def test_custom_layer_plugin_is_reloaded_by_evaluate_in_a_fresh_process(venv, gain_run):
    metrics = json.loads((gain_run / "metrics.json").read_text())
    assert metrics["distribution"] == "zoo-extra" and metrics["epochs"] == 1
    assert metrics["test_accuracy"] > 0.6  # 3 classes: chance is 1/3
    # model.keras names the layer "zoo_extra>Gain": loading it needs the plugin module imported.
    assert b"zoo_extra>Gain" in zipfile.ZipFile(gain_run / "model.keras").read("config.json")
    evaluate = zoo(venv, "evaluate", str(gain_run))
    assert evaluate.returncode == 0, evaluate.stderr
    assert f"accuracy {metrics['test_accuracy']:.4f}" in evaluate.stdout


def test_an_installed_package_ships_a_preset_that_is_listed_loaded_evaluated_and_exported(venv, tiny_data_dir, tmp_path):
    """A package with no code, only a preset as package data (tests/preset_plugin), pip-installed:
    `zoo list --presets` lists it without importing TensorFlow or the package (whose import
    fails), and `zoo evaluate` and `zoo export` use it by name."""
    import zoo as zoo_api

    run = zoo_api.train("mlp", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=2, batch_size=32,
                    hparams={"units": (16, 16, 16)}, run_dir=tmp_path / "run", verbose=0)
    package = _copy(PRESETS, tmp_path / "zoo-tiny-presets")
    preset = run.publish(package / "zoo_tiny_presets", license="CC-BY-4.0", name="mlp.tiny")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    assert _run([*pip, str(package)]).returncode == 0

    listing = _run([str(venv / "bin" / "python"), "-P", "-c", (
        "import json, sys\nfrom zoo.cli import main\ntry:\n    main(['list', '--presets', '--json'])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'zoo_tiny_presets'}))")])
    assert listing.returncode == 0, listing.stderr
    *rows, modules = listing.stdout.strip().splitlines()
    assert modules == "[]"
    row = {r["name"]: r for r in json.loads("\n".join(rows))}["mlp.tiny"]
    assert row["origin"] == "zoo-tiny-presets 0.1.0" and row["license"] == "CC-BY-4.0" and row["model"] == "mlp"
    assert "/site-packages/zoo_tiny_presets/mlp.tiny" in row["path"]  # the installed copy, not the source

    env = {"TFDS_DATA_DIR": tiny_data_dir}
    evaluate = zoo(venv, "evaluate", "mlp.tiny", env=env)
    assert evaluate.returncode == 0, evaluate.stderr
    published = preset.record["metrics"]["test_accuracy"]
    assert evaluate.stdout.startswith(f"test: accuracy {published:.4f}, ") and f"(published: {published:.4f})" in evaluate.stdout
    export = zoo(venv, "export", "mlp.tiny", str(tmp_path / "exports"), env=env)
    assert export.returncode == 0, export.stderr
    meta = json.loads((tmp_path / "exports" / "1" / "assets.extra" / "zoo.json").read_text())
    assert meta["preset"] == "mlp.tiny" and meta["preset_digest"] == preset.digest and meta["license"] == "CC-BY-4.0"


def test_the_built_in_presets_are_installed_with_the_package(venv):
    result = zoo(venv, "list", "--presets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("softmax.mnist", "mlp.mnist", "cnn.mnist"):
        assert rows[name]["origin"].startswith("keras-zoo ") and "/site-packages/zoo/models/presets/" in rows[name]["path"]
    verify = zoo(venv, "verify", "cnn.mnist")
    assert verify.returncode == 0 and verify.stdout.startswith("cnn.mnist: 2 files verified"), verify.stderr


def test_a_run_whose_plugin_is_not_installed_names_what_to_install(gain_run, tiny_data_dir, tmp_path):
    """The environment running the tests has no zoo-extra: where the plugin is not installed, a
    model that needs its layers is one line naming the distribution and version; a run of plain
    Keras layers whose plugin is gone still evaluates."""
    here = Path(sys.executable).with_name("zoo")
    result = _run([str(here), "evaluate", str(gain_run)])
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    version = json.loads((gain_run / "config.json").read_text())["model"]["version"]
    assert line.startswith(f"Error: cannot load {gain_run / 'model.keras'}: model 'gainnet' needs the layers of its "
                           f"plugin, zoo-extra {version}, which is not installed here: pip install \"zoo-extra=={version}\"")
    assert "Full object config" not in line and len(line) < 500  # Keras' reason, not the layer's whole config

    plain = tmp_path / "plain"
    trained = _run([str(here), "train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                    "--epochs", "1", "--run-dir", str(plain)])
    assert trained.returncode == 0, trained.stderr[-2000:]
    config = json.loads((plain / "config.json").read_text())  # as if a plugin that is gone made it
    config["config"]["model"] = "tinyconv"
    config["model"].update(name="tinyconv", origin="entry point", distribution="zoo-tinyconv", version="0.1.0")
    (plain / "config.json").write_text(json.dumps(config))
    evaluated = _run([str(here), "evaluate", str(plain)])
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = json.loads((plain / "metrics.json").read_text())["test_accuracy"]
    assert evaluated.stdout.startswith(f"test: accuracy {accuracy:.4f}")
    # Its preset is built by the plugin's builder: what to install, in one line.
    published = _run([str(here), "publish", str(plain), str(tmp_path / "presets"), "--license", "MIT"])
    assert published.returncode == 0, published.stderr
    (preset,) = (tmp_path / "presets").iterdir()
    refused = _run([str(here), "evaluate", str(preset)])
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"Error: preset {preset.name} is a preset of model 'tinyconv' of the plugin zoo-tinyconv, which is not "
        f"installed here: pip install \"zoo-tinyconv==0.1.0\""], refused.stderr


def test_custom_layer_plugin_exports(venv, gain_run, tmp_path):
    export = zoo(venv, "export", str(gain_run), str(tmp_path / "exports"))
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "exports" / "1" / "saved_model.pb").is_file()


@pytest.mark.parametrize("model, precision", [("lenet", "mixed_bfloat16"), ("gainnet", "mixed_float16")])
def test_float32_plugins_train_in_mixed_precision_on_two_devices_unchanged(
    venv, tiny_data_dir, tmp_path, model, precision
):
    """Plugins written for float32 (one with a custom layer) run mixed and data-parallel as they are."""
    import keras
    import numpy as np
    import tensorflow as tf

    run, exports = tmp_path / "run", tmp_path / "exports"
    train = zoo(venv, "train", model, "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "2",
                "--precision", precision, "--devices", "2", "--run-dir", str(run), "--export", str(exports))
    assert train.returncode == 0, train.stderr[-2000:]
    assert f"{precision} on 2 CPU devices" in train.stdout
    hardware = json.loads((run / "metrics.json").read_text())["hardware"]
    assert hardware["precision"] == precision and hardware["replicas"] == 2
    assert hardware["devices"] == ["CPU:0", "CPU:1"] and hardware["jit_compile"] is False
    # Every layer computes in 16 bits but the one that makes the probabilities.
    layers = json.loads(zipfile.ZipFile(run / "model.keras").read("config.json"))["config"]["layers"]
    dtypes = [layer["config"].get("dtype") for layer in layers if layer["class_name"] != "InputLayer"]
    policies = [dtype["config"]["name"] for dtype in dtypes if dtype]
    assert policies[-1] == "float32" and set(policies[:-1]) == {precision}
    # The serving contract is the float32 one, read with TensorFlow alone.
    metadata = json.loads((exports / "1" / "assets.extra" / "zoo.json").read_text())
    assert metadata["precision"] == precision and 0 < metadata["verified_tolerance"] <= 0.03
    serve = tf.saved_model.load(str(exports / "1")).signatures["serving_default"]
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    out = serve(image=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32 and out["class_id"].dtype == tf.int64
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    assert keras.config.dtype_policy().name == "float32"  # nothing leaked into this process


# -- models written the ordinary way (#24) -------------------------------------------------------


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_layers_that_make_sub_layers_train_resume_evaluate_and_export_in_mixed_precision(
    venv, tiny_data_dir, tmp_path, precision
):
    """blocknet's custom layers make their Dense sub-layers in build() and in __init__: they are
    not in model.keras' config and take the loading process's global policy (float32) unless the
    zoo loads the model under the run's."""
    run, exports = tmp_path / "run", tmp_path / "exports"
    args = ["train", "blocknet", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--epochs", "30",
            "--precision", precision, "--run-dir", str(run)]
    proc = subprocess.Popen([str(venv / "bin" / "zoo"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        _wait_for_file(run / "backup" / "state.json", proc)
    finally:
        proc.kill()
        proc.communicate()
    assert not (run / "metrics.json").exists(), "killed too late: the run had finished"
    resumed = zoo(venv, *args, "--resume", "--export", str(exports))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["hardware"]["precision"] == precision and metrics["epochs"] == 30
    assert (exports / "1" / "saved_model.pb").is_file()
    evaluate = zoo(venv, "evaluate", str(run))
    assert evaluate.returncode == 0, evaluate.stderr
    assert f"accuracy {metrics['test_accuracy']:.4f}" in evaluate.stdout


def test_a_keras_applications_backbone_exports_in_inference_mode(venv, tiny_data_dir, tmp_path):
    """MobileNetV3Small under the plugin's own input and head: its BatchNormalization sits in a
    nested model, which a plain call after `fit` runs in training mode; the export must not."""
    import numpy as np
    import tensorflow as tf

    run, exports = tmp_path / "run", tmp_path / "exports"
    train = zoo(venv, "train", "mobilenet", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                "--precision", "float32", "--epochs", "1", "--run-dir", str(run), "--export", str(exports))
    assert train.returncode == 0, train.stderr[-2000:]
    metadata = json.loads((exports / "1" / "assets.extra" / "zoo.json").read_text())
    assert metadata["verified_tolerance"] == 1e-5
    # The exported BatchNormalization uses its moving statistics: a batch of one image gives the
    # same probabilities alone as inside a batch of others (batch statistics would not).
    serve = tf.saved_model.load(str(exports / "1")).signatures["serving_default"]
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    together = serve(image=tf.constant(images))["probabilities"].numpy()
    alone = serve(image=tf.constant(images[:1]))["probabilities"].numpy()
    np.testing.assert_allclose(alone[0], together[0], atol=1e-5)
    check = zoo(venv, "check", "mobilenet", "--precision", "float32")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout


def test_check_runs_in_the_precision_train_would_pick(venv):
    from zoo.compute import devices

    expected, reason = devices.resolve_precision("auto")  # this machine's answer, whatever it is
    check = zoo(venv, "check", "blocknet")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"precision: {expected} ({reason})" in check.stdout
    assert "PASS  save and reload .keras: max abs diff 0" in check.stdout
    for precision in ("mixed_bfloat16", "mixed_float16"):  # every mixed policy, on any machine
        check = zoo(venv, "check", "blocknet", "--precision", precision)
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"precision: {precision} (requested)" in check.stdout
        assert "FAIL" not in check.stdout


# -- dataset plugins (#18) -----------------------------------------------------------------------


def test_dataset_plugins_are_listed_without_importing_them(venv, tmp_path):
    marker = tmp_path / "imported"
    result = zoo(venv, "list", "--datasets", "--json", env={"ZOO_TEST_IMPORT_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["shapes"]["distribution"] == "zoo-shapes-data" and rows["shapes"]["version"] == "2.1.0"
    assert rows["shapes"]["summary"].startswith("Bright bars at three heights")
    assert rows["brokenshapes"]["entry_point"] == "zoo_shapes_broken:Shapes"
    assert not marker.exists()  # the broken module was never imported
    table = zoo(venv, "list", "--datasets")
    assert table.returncode == 0 and "shapes" in table.stdout and "zoo-shapes-data" in table.stdout


def test_a_dataset_plugin_trains_and_its_run_names_the_package(venv, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    result = zoo(venv, "train", "mlp", "--dataset", "shapes", "--epochs", "2", "--batch-size", "32",
                 "--data-dir", str(tmp_path / "tfds"), "--run-dir", str(run), "--export", str(exports))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "config.json").read_text())
    assert record["dataset"]["source"] == {
        "kind": "plugin", "distribution": "zoo-shapes-data", "version": "2.1.0",
        "entry_point": "zoo_shapes_data:Shapes",
    }
    assert record["dataset"]["class_names"] == ["low", "middle", "high"]
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] > 0.9
    evaluated = zoo(venv, "evaluate", str(run))  # a fresh process imports the plugin again
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_broken_dataset_plugin_fails_alone_in_one_line(venv, tmp_path):
    marker = tmp_path / "imported"
    result = zoo(venv, "train", "mlp", "--dataset", "brokenshapes", "--data-dir", str(tmp_path / "tfds"),
                 "--run-dir", str(tmp_path / "run"), env={"ZOO_TEST_IMPORT_MARKER": str(marker)})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        "Error: dataset 'brokenshapes' (zoo-shapes-data 2.1.0, zoo_shapes_broken:Shapes) failed to "
        "import: RuntimeError: this plugin's data server is unreachable"
    )
    assert marker.exists() and not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
    listed = zoo(venv, "list", "--datasets", "--json")
    assert listed.returncode == 0 and {"shapes", "brokenshapes"} <= {r["name"] for r in json.loads(listed.stdout)}
