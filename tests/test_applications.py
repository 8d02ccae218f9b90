"""Real architectures no one here wrote: keras.applications families as an installed plugin.

tests/applications_plugin (zoo-applications) wraps every keras.applications family as a builder;
scripts/conformance.py runs `zoo check` on all of them (docs/results/conformance.md). Two stay
in the suite, installed into a virtualenv the way tests/test_plugin_install.py installs its
plugins and driven through the installed `zoo`, at the default precision (auto):

- mobilenetv3small: BatchNormalization inside a nested functional model (the backbone under the
  wrapper's own Input and head), the way transfer learning wraps a backbone; it is also trained
  for an epoch and exported.
- convnextmicro (ConvNeXt at one block per stage; ConvNeXtTiny is the script's): Keras' own custom
  layers (keras.src.applications.convnext.LayerScale and
  StochasticDepth, not registered as serialisable), which the .keras reload must find.
"""

from __future__ import annotations

import json

import pytest
from test_plugin_install import ROOT, _copy, _run, zoo

APPLICATIONS = ROOT / "tests" / "applications_plugin"

# One virtualenv (the module fixture `venv`) for every test here: one xdist worker builds and uses it.
# The first test also builds the venv; convnexttiny's checks take minutes on 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("applications_venv"), pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """keras-zoo and zoo-applications pip-installed; TensorFlow & co. borrowed (test_plugin_install)."""
    import sys
    import sysconfig
    from pathlib import Path

    venv = tmp_path_factory.mktemp("applications") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).check_returncode()
    site = Path(
        _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_outer.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(outer)))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    for package in (_copy(ROOT, venv.parent / "keras-zoo"), _copy(APPLICATIONS, venv.parent / "zoo-applications")):
        result = _run([*pip, str(package)])
        assert result.returncode == 0, result.stderr
    return venv


def _passes_every_check(venv, model: str) -> str:
    result = zoo(venv, "check", model)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "FAIL" not in result.stdout, result.stdout
    # contract, two builds, probabilities, short fit, save/reload, export, parameters
    assert result.stdout.count("PASS  ") == 8, result.stdout
    assert f"{model}: all checks passed" in result.stdout
    return result.stdout


def test_the_families_are_installed_entry_points(venv):
    result = zoo(venv, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("mobilenetv3small", "convnexttiny", "inceptionresnetv2", "nasnetmobile"):
        assert rows[name]["distribution"] == "zoo-applications" and rows[name]["status"] == "ok", rows[name]
    assert rows["mobilenetv3small"]["summary"].startswith("MobileNetV3Small (keras.applications")


def test_nested_batchnorm_backbone_passes_every_check(venv):
    out = _passes_every_check(venv, "mobilenetv3small")
    assert "precision: " in out


def test_keras_custom_layer_family_passes_every_check(venv):
    # The family really has Keras' own unregistered layers, nested in the backbone.
    probe = _run([str(venv / "bin" / "python"), "-c", (
        "import zoo_applications as z\n"
        "m = z.convnextmicro(input_shape=(28, 28, 1), num_classes=10)\n"
        "print(sorted({f'{type(l).__module__}.{type(l).__name__}' for l in m.get_layer('convnext_micro').layers}))"
    )])
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert "keras.src.applications.convnext.LayerScale" in probe.stdout
    _passes_every_check(venv, "convnextmicro")  # ConvNeXtTiny itself: scripts/conformance.py


def test_nested_batchnorm_backbone_trains_and_exports(venv, tiny_data_dir, tmp_path):
    run, exports = tmp_path / "run", tmp_path / "exports"
    train = zoo(venv, "train", "mobilenetv3small", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
                "--epochs", "1", "--batch-size", "32", "--run-dir", str(run), "--export", str(exports))
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distribution"] == "zoo-applications" and metrics["epochs"] == 1
    assert (exports / "1" / "saved_model.pb").is_file()
    evaluate = zoo(venv, "evaluate", str(run))  # a fresh process reloads the nested model
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    assert f"accuracy {metrics['test_accuracy']:.4f}" in evaluate.stdout
