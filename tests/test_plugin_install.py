"""A real third-party plugin, pip-installed into a real virtualenv, driven through `zoo`.

The virtualenv borrows TensorFlow & co. from the running environment (a .pth file), so nothing is
downloaded: keras-zoo and the example plugin are installed with --no-deps --no-build-isolation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin_example"
MNIST = Path(os.environ.get("ZOO_MANUAL_DIR", ROOT.parent / "shared" / "datasets" / "mnist"))

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kwargs)


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
    for package in (_copy(ROOT, venv.parent / "keras-zoo"), _copy(PLUGIN, venv.parent / "zoo-lenet")):
        result = _run([*pip, str(package)])
        assert result.returncode == 0, result.stderr
    return venv


def _copy(source: Path, target: Path) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    ignore = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "runs", "exports")
    shutil.copytree(source, target, ignore=ignore)
    return target


def zoo(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return _run([str(venv / "bin" / "zoo"), *args])


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

    assert "lenet" not in {e.name for e in registry.entries()}


def test_installed_plugin_info_and_check(venv):
    info = zoo(venv, "info", "lenet")
    assert info.returncode == 0, info.stderr
    assert "zoo-lenet 1.0.0 (zoo_lenet:lenet)" in info.stdout
    assert "filters" in info.stdout and "tuple[int, ...]" in info.stdout
    check = zoo(venv, "check", "lenet")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout
    assert check.stdout.count("PASS") >= 7


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST files not found in {MNIST}")
def test_installed_plugin_trains_evaluates_and_exports(venv, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    train = zoo(
        venv, "train", "lenet", "--epochs", "1", "--hp", "dense_units=64,32",
        "--manual-dir", str(MNIST), "--data-dir", str(tmp_path / "tfds"),
        "--run-dir", str(run), "--export", str(exports),
    )
    assert train.returncode == 0, train.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distribution"] == "zoo-lenet"
    assert metrics["hparams"]["dense_units"] == [64, 32]
    assert metrics["test_accuracy"] > 0.9
    assert (exports / "1" / "saved_model.pb").is_file()
    evaluate = zoo(venv, "evaluate", str(run))
    assert evaluate.returncode == 0, evaluate.stderr
    assert f"accuracy {metrics['test_accuracy']:.4f}" in evaluate.stdout
