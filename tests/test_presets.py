"""Presets: publish a run, find it (path, search path, name), verify it on every load, use it
(create_model, evaluate, export), and the built-in presets on the real MNIST."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from clicalls import one_line_error, zoo_cli

import registry
import zoo
from zoo.presets import catalog
from zoo.presets.store import PRESET_JSON, SEAL, WEIGHTS, Preset, seal

HP = {"units": (16, 16, 16), "dropout": 0.0}


@pytest.fixture(scope="module")
def tiny(tiny_data_dir, tmp_path_factory):
    """A finished mlp run on zoo_tiny, and the preset it was published as."""
    base = tmp_path_factory.mktemp("presets")
    run = zoo.train("mlp", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=2, batch_size=32, hparams=HP,
                    run_dir=base / "run", verbose=0)
    preset = run.publish(base / "shelf", license="mit", name="mlp.tiny")
    return run, preset


def copy_of(preset: Preset, folder: Path) -> Path:
    return Path(shutil.copytree(preset.path, folder / preset.path.name))


def test_publish_writes_weights_record_and_card(tiny):
    run, preset = tiny
    assert sorted(p.name for p in preset.path.iterdir()) == ["README.md", WEIGHTS, PRESET_JSON]
    record = json.loads((preset.path / PRESET_JSON).read_text())
    assert record["format_version"] == 1 and record["name"] == "mlp.tiny"
    assert record["license"] == "MIT"  # canonical SPDX spelling of "mit"
    assert record["model"]["name"] == "mlp" and record["model"]["hparams"]["units"] == [16, 16, 16]
    assert record["classes"] == run.dataset["class_names"]
    assert record["input"] == {"shape": run.dataset["input_shape"], "dtype": "uint8",
                               "scaling": "float32 = uint8 / 255, in [0, 1]", "any_size": False, "resize": None}
    assert record["metrics"]["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1 / 60 + 1e-9)
    assert record["dataset"]["name"] == "zoo_tiny" and record["dataset"]["test_split"] == "test"
    assert record["recipe"]["epochs"] == 2 and "data_dir" not in record["recipe"]  # no path of this machine
    assert record["parent"] is None and record["environment"]["versions"]["keras"]
    assert set(record["files"]) == {WEIGHTS, "README.md"}
    for name, entry in record["files"].items():
        import hashlib

        data = (preset.path / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert preset.digest == f"sha256:{record[SEAL]}" and len(preset.digest) == 71
    assert seal(record) == {k: v for k, v in record.items() if k != "format_version"}  # the seal covers the rest
    card = (preset.path / "README.md").read_text()
    assert card.startswith("# mlp.tiny") and "**License:** MIT" in card and "zoo evaluate mlp.tiny" in card


def test_round_trip_create_model_gives_the_runs_weights_and_accuracy(tiny, tiny_data_dir):
    run, preset = tiny
    model = zoo.create_model("mlp", weights=preset.path)
    trained = run.model()
    assert len(model.weights) == len(trained.weights)
    for mine, theirs in zip(model.weights, trained.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    from zoo.presets import use

    result = use.evaluate(Preset(preset.path))
    assert result["split"] == "test" and result["published_accuracy"] == preset.record["metrics"]["test_accuracy"]
    assert abs(result["accuracy"] - run.metrics["test_accuracy"]) <= 1 / 60 + 1e-9


def test_a_flipped_byte_makes_every_load_refuse(tiny, tmp_path):
    _, preset = tiny
    folder = copy_of(preset, tmp_path)
    zoo.create_model("mlp", weights=folder)  # verified once: its hashes are cached
    weights = folder / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    stat = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: still caught
    with pytest.raises(zoo.ZooError, match=rf"{weights} does not match its manifest \(sha256 [0-9a-f]{{64}}, "
                                           rf"preset.json says {preset.record['files'][WEIGHTS]['sha256']}\)"):
        zoo.create_model("mlp", weights=folder)
    for args in (("verify", folder), ("evaluate", folder), ("export", folder, tmp_path / "exports")):
        assert "does not match its manifest" in one_line_error(zoo_cli(*args))
    assert not (tmp_path / "exports").exists()


def test_verify_rehashes_and_names_the_digest(tiny):
    _, preset = tiny
    result = zoo_cli("verify", preset.path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (f"mlp.tiny: 2 files verified ({zoo.config.show_size(preset.size)}; "
                                     f"digest {preset.digest})")


def test_bad_presets_are_one_line_errors(tiny, tmp_path, monkeypatch):
    run, preset = tiny
    missing = copy_of(preset, tmp_path / "missing")
    (missing / WEIGHTS).unlink()
    other_shape = copy_of(preset, tmp_path / "shape")
    record = json.loads((other_shape / PRESET_JSON).read_text())
    record["model"]["hparams"]["units"] = [8, 8, 8]
    (other_shape / PRESET_JSON).write_text(json.dumps(seal(record)))  # as if published so
    edited = copy_of(preset, tmp_path / "edited")
    record = json.loads((edited / PRESET_JSON).read_text())
    record["classes"] = ["a", "b", "c"]  # an edit, not a publish: the seal no longer matches
    (edited / PRESET_JSON).write_text(json.dumps(record))
    a_file = tmp_path / "notes.txt"  # a file of this folder, named without a folder: not a preset's name
    a_file.write_text("notes")
    monkeypatch.chdir(tmp_path)
    cases = [
        (dict(name="mlp", weights=missing), f"preset mlp.tiny: {missing / WEIGHTS} is missing"),
        (dict(name="mlp", weights=edited), f"preset mlp.tiny: {edited / PRESET_JSON} does not match its own "
                                           f"checksum (record_sha256): it was edited since it was published"),
        (dict(name="mlp", weights=other_shape), "preset mlp.tiny: weight 0 ("),
        (dict(name="cnn", weights=preset.path), "preset mlp.tiny is a preset of model 'mlp', not 'cnn'"),
        (dict(name="mlp", weights=run.path), f"{run.path} is a run directory, not a preset: publish it first "
                                              f"(zoo publish {run.path} PRESETS_FOLDER --license SPDX-ID)"),
        (dict(name="mlp", weights="nothing.here"), "unknown preset 'nothing.here'."),
        (dict(name="mlp", weights=a_file.name), f"{a_file.name} is not a preset (no preset.json)"),
        (dict(name="mlp", weights=preset.path, num_classes=4), "preset mlp.tiny has 3 classes, not 4"),
    ]
    for kwargs, message in cases:
        with pytest.raises(zoo.ZooError) as err:
            zoo.create_model(**kwargs)
        assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)
    assert a_file.read_text() == "notes"


def test_publish_refuses_what_it_cannot_vouch_for(tiny, tmp_path):
    run, preset = tiny
    shelf = tmp_path / "shelf"
    cases = [
        (("--license", "Apache 2"), "--license 'Apache 2' is not an SPDX license expression"),
        (("--license", "MIT", "--name", "../up"), "--name '../up': a preset name is letters"),
        (("--license", "MIT", "--name", ""), "--name '': a preset name is letters"),  # not the default name
    ]
    for args, message in cases:
        assert one_line_error(zoo_cli("publish", run.path, shelf, *args)).startswith(f"Error: {message}")
    # The same name again: never overwritten.
    error = one_line_error(zoo_cli("publish", run.path, preset.path.parent, "--license", "MIT", "--name", "mlp.tiny"))
    assert error == f"Error: {preset.path} exists: a preset is never overwritten; choose another --name or DEST"
    # An unfinished run, and one whose model.keras is not the model its metrics.json measured.
    unfinished = Path(shutil.copytree(run.path, tmp_path / "unfinished"))
    (unfinished / "metrics.json").unlink()
    assert one_line_error(zoo_cli("publish", unfinished, shelf, "--license", "MIT")) == (
        f"Error: cannot publish run {unfinished}: it did not finish (interrupted)")
    changed = Path(shutil.copytree(run.path, tmp_path / "changed"))
    metrics = json.loads((changed / "metrics.json").read_text())
    metrics["test_accuracy"] = metrics["test_accuracy"] - 0.2
    (changed / "metrics.json").write_text(json.dumps(metrics))
    error = one_line_error(zoo_cli("publish", changed, shelf, "--license", "MIT"))
    assert "model.keras is not the model that was measured" in error
    assert not shelf.exists() or not [p for p in shelf.iterdir()]  # nothing written, nothing left aside


def test_the_search_path_finds_by_name_and_the_first_folder_wins(tiny, tmp_path, monkeypatch):
    _, preset = tiny
    first, second = tmp_path / "team", tmp_path / "mine"
    copy_of(preset, first), copy_of(preset, second)
    monkeypatch.setenv(catalog.SEARCH_ENV, f"{first}{os.pathsep}{second}")
    assert catalog.find("mlp.tiny").path == (first / "mlp.tiny").resolve()
    result = zoo_cli("list", "--presets", "--json", "*.tiny")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["path"], r["shadowed_by"]) for r in rows] == [
        (str((first / "mlp.tiny").resolve()), None), (str((second / "mlp.tiny").resolve()), str((first / "mlp.tiny").resolve()))]
    assert rows[0]["license"] == "MIT" and rows[0]["model"] == "mlp" and rows[0]["dataset"] == "zoo_tiny"
    table = zoo_cli("list", "--presets").stdout
    assert f"(shadowed by {(first / 'mlp.tiny').resolve()})" in table and "softmax.mnist" in table


def test_exporting_a_preset_names_it_in_zoo_json(tiny, tmp_path):
    _, preset = tiny
    result = zoo_cli("export", preset.path, tmp_path / "exports")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "exports" / "1" / "assets.extra" / "zoo.json").read_text())
    assert meta["preset"] == "mlp.tiny" and meta["preset_digest"] == preset.digest and meta["license"] == "MIT"
    assert meta["class_names"] == preset.class_names


def test_listing_presets_imports_neither_tensorflow_nor_their_package():
    code = textwrap.dedent(
        """
        import sys
        from zoo.cli import main
        try:
            main(["list", "--presets", "--json"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras"} or m == "zoo.models.presets"))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    *listing, modules = result.stdout.strip().splitlines()
    assert modules == "[]"
    assert {"softmax.mnist", "mlp.mnist", "cnn.mnist"} <= {r["name"] for r in json.loads("\n".join(listing))}


@pytest.mark.integration
@pytest.mark.slow
def test_the_built_in_presets_give_their_published_accuracy(mnist_data_dir, monkeypatch):
    """Evaluated here, on the real MNIST test split, each built-in preset gives the accuracy its
    preset.json publishes (to one example in 10,000: bfloat16 round-off may flip a tie)."""
    from zoo.presets import use

    monkeypatch.setenv("TFDS_DATA_DIR", mnist_data_dir)
    for name, at_least in (("softmax.mnist", 0.92), ("mlp.mnist", 0.98), ("cnn.mnist", 0.995)):
        preset = catalog.find(name)
        assert preset.origin.startswith("keras-zoo ") and preset.record["license"] == "Apache-2.0"
        published = preset.record["metrics"]["test_accuracy"]
        assert published >= at_least
        result = use.evaluate(preset)
        assert result["split"] == "test" and abs(result["accuracy"] - published) <= 1e-4 + 1e-9, (name, result)


def _package_shipping(site: Path, dist: str, package: str, preset: Preset) -> None:
    """A distribution ``dist`` (a .dist-info folder on sys.path) whose package ``package`` ships
    ``preset`` as package data under the entry-point group zoo.presets; importing the package fails,
    so a listing or a load that imported it would show."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text("raise ImportError('a preset package is read, never imported')\n")
    shutil.copytree(preset.path, site / package / preset.path.name)
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[zoo.presets]\n{preset.path.name} = {package}:{preset.path.name}\n")


def test_two_packages_shipping_one_name_is_an_error_and_dist_name_chooses(tiny, tmp_path, monkeypatch):
    _, preset = tiny
    _package_shipping(tmp_path, "twin-a", "twin_a_presets", preset)
    _package_shipping(tmp_path, "twin-b", "twin_b_presets", preset)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(zoo.ZooError) as err:
        catalog.find("mlp.tiny")
    assert str(err.value) == ("preset 'mlp.tiny' is registered by 2 distributions (twin-a 1.0, twin-b 1.0); "
                              "choose one with 'twin-a:mlp.tiny' or 'twin-b:mlp.tiny'")
    chosen = catalog.find("twin-b:mlp.tiny")
    assert chosen.path == (tmp_path / "twin_b_presets" / "mlp.tiny").resolve() and chosen.origin == "twin-b 1.0"
    model = zoo.create_model("mlp", weights="twin-a:mlp.tiny")  # loaded: verified, package never imported
    assert model.count_params() > 0 and "twin_a_presets" not in sys.modules
    rows = {r["name"]: r for r in zoo.list_presets("*mlp.tiny")}
    assert set(rows) == {"twin-a:mlp.tiny", "twin-b:mlp.tiny"}
    assert one_line_error(zoo_cli("evaluate", "twin-c:mlp.tiny")) == (
        "Error: no installed distribution 'twin-c' ships a preset 'mlp.tiny'")


def test_evaluate_finds_the_dataset_where_data_dir_says(tiny, tmp_path, monkeypatch):
    """A run or a preset evaluated on a machine whose datasets live elsewhere: ``--data-dir`` is
    where the dataset is looked for, and prepared when it is not there yet."""
    run, preset = tiny
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    for target, where in ((str(preset.path), tmp_path / "for-preset"), (str(run.path), tmp_path / "for-run")):
        result = zoo_cli("evaluate", target, "--data-dir", str(where))
        assert result.exit_code == 0, result.output
        assert f"prepared zoo_tiny in {where / 'zoo_tiny'}" in result.output and (where / "zoo_tiny").is_dir()
        expected = preset.record["metrics"]["test_accuracy"] if target == str(preset.path) else run.metrics["test_accuracy"]
        assert f"\ntest: accuracy {expected:.4f}, " in result.output, result.output
    assert one_line_error(zoo_cli("evaluate", str(run.path), "--data-dir", str(run.path / "config.json"))).startswith(
        "Error: Invalid value for '--data-dir'")


def test_a_plugin_naming_its_model_like_the_presets_leaves_the_preset_its_own(tiny, tmp_path, monkeypatch):
    """Another installed distribution registers a model 'mlp' too: the model name alone is
    ambiguous, but a preset records the distribution it was trained with and loads from it
    (the other plugin is never imported)."""
    run, preset = tiny
    info = tmp_path / "zoo_twin_mlp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-twin-mlp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo.models]\nmlp = zoo_twin_mlp:mlp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.AmbiguousModelError, match="model 'mlp' is registered by 2 distributions"):
        zoo.create_model("mlp", input_shape=(8, 8, 1), num_classes=3)
    assert preset.record["model"]["distribution"] == "keras-zoo"
    model = zoo.create_model("keras-zoo:mlp", weights=str(preset.path))
    assert model.count_params() > 0 and "zoo_twin_mlp" not in sys.modules
    result = zoo.evaluate_preset(str(preset.path))
    assert result["accuracy"] == preset.record["metrics"]["test_accuracy"]


@pytest.mark.slow  # a run trained and published: 10 s
def test_a_preset_of_a_notebook_model_says_to_register_it_where_it_loads(tiny_data_dir, tmp_path):
    """A builder registered with zoo.register exists only in the process that trained it: its
    preset names no distribution, and a process without the builder is told what to do."""
    import keras

    from zoo.errors import ZooError
    from zoo.presets import weights

    @zoo.register(name="nbnet")
    def nbnet(*, input_shape, num_classes):
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Flatten()(inputs)))

    try:
        run = zoo.train("nbnet", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, precision="float32",
                        run_dir=tmp_path / "run", verbose=0)
        preset = run.publish(tmp_path / "shelf", license="MIT")
        assert "registered with zoo.register in the process that trained it" in (preset.path / "README.md").read_text()
    finally:
        registry._discovery._LOCAL.pop("nbnet", None)
    with pytest.raises(ZooError, match=r"^preset nbnet.zoo_tiny is a preset of model 'nbnet', which was registered "
                                       r"with zoo.register in the process that trained it and is not registered here"):
        weights.build(preset)
