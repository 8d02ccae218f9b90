"""The registry with fake distributions (monkeypatched metadata) and with a real .dist-info."""

from __future__ import annotations

import importlib.metadata as metadata
import sys
import textwrap

import keras
import pytest

import registry


class FakeDist:
    """What the registry reads from a distribution: its name, version and entry points."""

    def __init__(self, name: str, version: str, **models: str) -> None:
        self.metadata = {"Name": name}
        self.version = version
        self.entry_points = [metadata.EntryPoint(k, v, registry.GROUP) for k, v in models.items()]
        self.entry_points.append(metadata.EntryPoint("zoo", "elsewhere:main", "console_scripts"))


def good(*, input_shape: tuple[int, ...], num_classes: int, units: int = 4, rate: float = 0.5,
         flag: bool = False, name: str = "x", filters: tuple[int, ...] = (8, 16)) -> keras.Model:
    """A good builder.

    More text.
    """
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(units)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


good.recipe = {"epochs": 3, "learning_rate": 0.01}
not_callable = 42


def positional(input_shape, num_classes):
    return None


def no_default(*, input_shape, num_classes, units):
    return None


def returns_dict(*, input_shape, num_classes):
    return {}


def bad_recipe(*, input_shape, num_classes):
    return None


bad_recipe.recipe = {"epochs": 3, "speed": "fast"}


@pytest.fixture
def fake_dists(monkeypatch):
    def install(*dists):
        monkeypatch.setattr(metadata, "distributions", lambda: iter(dists))

    return install


HERE = __name__


def test_entries_are_listed_sorted_with_distribution_and_version(fake_dists):
    fake_dists(FakeDist("b-dist", "2.0", zeta=f"{HERE}:good"), FakeDist("a-dist", "1.0", alpha=f"{HERE}:good"))
    found = registry.entries()
    assert [(e.name, e.dist, e.version, e.value) for e in found] == [
        ("alpha", "a-dist", "1.0", f"{HERE}:good"),
        ("zeta", "b-dist", "2.0", f"{HERE}:good"),
    ]


def test_shadowed_distribution_is_listed_once(fake_dists):
    # The same distribution twice on sys.path (e.g. user site and venv): the first one wins.
    fake_dists(FakeDist("Same_Dist", "2.0", m=f"{HERE}:good"), FakeDist("same-dist", "1.0", m=f"{HERE}:good"))
    assert [(e.name, e.version) for e in registry.entries()] == [("m", "2.0")]


def test_find_with_shell_patterns(fake_dists):
    fake_dists(FakeDist("d", "1", cnn=f"{HERE}:good", cnn_big=f"{HERE}:good", mlp=f"{HERE}:good"))
    assert [e.name for e in registry.find("cnn*")] == ["cnn", "cnn_big"]
    assert [e.name for e in registry.find("d:m?p")] == ["mlp"]
    assert registry.find("nothing*") == []
    assert len(registry.find(None)) == 3


def test_unknown_name_suggests_close_matches(fake_dists):
    fake_dists(FakeDist("d", "1", resnet=f"{HERE}:good", mlp=f"{HERE}:good"))
    with pytest.raises(registry.UnknownModelError, match=r"unknown model 'resnt'\. Did you mean: resnet"):
        registry.resolve("resnt")


def test_duplicate_name_is_an_error_naming_both_and_dist_prefix_selects(fake_dists):
    fake_dists(FakeDist("pkg-a", "1.0", twin=f"{HERE}:good"), FakeDist("pkg-b", "2.0", twin=f"{HERE}:positional"))
    with pytest.raises(registry.AmbiguousModelError) as err:
        registry.resolve("twin")
    assert "pkg-a 1.0" in str(err.value) and "pkg-b 2.0" in str(err.value)
    assert "'pkg-a:twin' or 'pkg-b:twin'" in str(err.value)
    assert registry.resolve("pkg-a:twin").dist == "pkg-a"
    assert registry.resolve("PKG_B:twin").dist == "pkg-b"  # distribution names are normalised
    assert registry.get("pkg-a:twin").fn is good


def test_valid_builder_is_loaded_with_typed_hyperparameters_and_recipe(fake_dists):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    builder = registry.get("good")
    assert builder.summary == "A good builder."
    assert {k: (h.type_name, h.default) for k, h in builder.hyperparameters.items()} == {
        "units": ("int", 4), "rate": ("float", 0.5), "flag": ("bool", False), "name": ("str", "x"),
        "filters": ("tuple[int, ...]", (8, 16)),
    }
    assert builder.recipe == {"epochs": 3, "learning_rate": 0.01}
    model = builder.build(input_shape=(4, 4, 1), num_classes=3, units=2)
    assert isinstance(model, keras.Model) and model.output_shape == (None, 3)


@pytest.mark.parametrize(
    "attribute, message",
    [
        ("not_callable", "is a int, not a callable builder"),
        ("positional", "must take keyword-only arguments input_shape and num_classes"),
        ("no_default", "hyperparameter 'units' has no default"),
        ("bad_recipe", "unknown recipe key 'speed'"),
    ],
)
def test_invalid_builders_are_plugin_errors_naming_the_culprit(fake_dists, attribute, message):
    fake_dists(FakeDist("bad-dist", "1", bad=f"{HERE}:{attribute}"))
    with pytest.raises(registry.PluginError, match=message) as err:
        registry.get("bad")
    assert "'bad'" in str(err.value) and "\n" not in str(err.value)


def test_builder_returning_non_model_fails_on_build(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:returns_dict"))
    with pytest.raises(registry.PluginError, match="returned dict, expected a keras.Model"):
        registry.get("m").build(input_shape=(2, 2, 1), num_classes=2)


def test_import_failure_is_one_line_with_full_traceback_in_details(fake_dists, tmp_path, monkeypatch):
    (tmp_path / "explodes.py").write_text("raise RuntimeError('first line\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_dists(FakeDist("boom-dist", "0.1", boom="explodes:builder"), FakeDist("ok", "1", fine=f"{HERE}:good"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("boom")
    assert str(err.value) == (
        "model 'boom' (boom-dist 0.1, explodes:builder) failed to import: RuntimeError: first line"
    )
    assert "Traceback (most recent call last)" in err.value.details and "explodes.py" in err.value.details
    assert registry.get("fine").fn is good  # the others are unaffected


@pytest.mark.parametrize(
    "pairs, expected",
    [
        ({"units": "8"}, {"units": 8}),
        ({"rate": "0.25", "flag": "true"}, {"rate": 0.25, "flag": True}),
        ({"flag": "no", "name": "abc"}, {"flag": False, "name": "abc"}),
        ({"filters": "32, 64,128"}, {"filters": (32, 64, 128)}),
    ],
)
def test_hyperparameters_parse_by_annotation(fake_dists, pairs, expected):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    assert registry.get("good").parse_hparams(pairs) == expected


@pytest.mark.parametrize(
    "pairs, message",
    [
        ({"unit": "8"}, "model 'good' has no hyperparameter 'unit'. Did you mean 'units'? Accepted: units, rate, flag, name, filters"),
        ({"units": "eight"}, "hyperparameter 'units' expects int, received 'eight'"),
        ({"rate": "nan"}, "hyperparameter 'rate' expects float, received 'nan'"),
        ({"flag": "maybe"}, "hyperparameter 'flag' expects bool, received 'maybe'"),
        ({"filters": "32,x"}, "hyperparameter 'filters' expects tuple[int, ...] (comma-separated), received '32,x'"),
    ],
)
def test_bad_hyperparameters_say_what_and_why(fake_dists, pairs, message):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    with pytest.raises(registry.HyperparameterError) as err:
        registry.get("good").parse_hparams(pairs)
    assert str(err.value) == message


def test_check_hparams_restores_tuples_from_json_and_rejects_wrong_types(fake_dists):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    builder = registry.get("good")
    assert builder.check_hparams({"filters": [4, 8], "rate": 1}) == {"filters": (4, 8), "rate": 1.0}
    with pytest.raises(registry.HyperparameterError, match="'units' expects int"):
        builder.check_hparams({"units": "4"})


def test_real_dist_info_on_sys_path_is_discovered_without_import(tmp_path, monkeypatch):
    package = tmp_path / "fakeplugin"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('importing the package is not allowed')\n")
    (package / "models.py").write_text(textwrap.dedent('''
        import keras

        def tiny(*, input_shape: tuple[int, ...], num_classes: int, width: int = 3) -> keras.Model:
            """Tiny model from a real dist-info."""
            inputs = keras.Input(shape=input_shape)
            x = keras.layers.Flatten()(inputs)
            return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
    '''))
    info = tmp_path / "fakeplugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[zoo.models]\nfaketiny = fakeplugin.models:tiny\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    (entry,) = registry.find("faketiny")
    assert (entry.dist, entry.version, entry.value) == ("fakeplugin", "1.2.3", "fakeplugin.models:tiny")
    assert entry.summary == "Tiny model from a real dist-info." and entry.problem == ""
    assert "fakeplugin" not in sys.modules and "fakeplugin.models" not in sys.modules
    # Loading really imports it (and the package's __init__ raises): the failure is isolated.
    with pytest.raises(registry.PluginError, match="importing the package is not allowed"):
        registry.get("faketiny")
    (package / "__init__.py").write_text("")
    sys.modules.pop("fakeplugin", None)
    model = registry.get("faketiny").build(input_shape=(2, 2, 1), num_classes=2)
    assert model.output_shape == (None, 2)
    sys.modules.pop("fakeplugin", None)
    sys.modules.pop("fakeplugin.models", None)


def test_builtins_are_ordinary_entry_points_of_keras_zoo():
    builtins = {e.name: e for e in registry.entries() if e.dist == "keras-zoo"}
    assert set(builtins) == {"softmax", "mlp", "cnn"}
    assert builtins["cnn"].value == "zoo.models.cnn:cnn"
    assert all(e.summary and not e.problem for e in builtins.values())
