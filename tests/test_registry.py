"""The registry with fake distributions (monkeypatched metadata) and with a real .dist-info."""

from __future__ import annotations

import importlib.metadata as metadata
import sys
import textwrap
from collections.abc import Callable

import keras
import numpy as np
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


def wrong_default(*, input_shape, num_classes, width: int = "16"):
    return None


def optional_hparams(*, input_shape, num_classes, maybe: int | None = None, sizes: tuple[int, ...] | None = (4,),
                     act: Callable = max):
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


def test_an_optional_hyperparameter_takes_none_or_its_type(fake_dists):
    fake_dists(FakeDist("d", "1", opt=f"{HERE}:optional_hparams"))
    builder = registry.get("opt")
    assert {k: (h.type_name, h.default) for k, h in builder.hyperparameters.items()} == {
        "maybe": ("int | None", None), "sizes": ("tuple[int, ...] | None", (4,)), "act": ("(not settable)", max)}
    assert builder.parse_hparams({"maybe": "3", "sizes": "None"}) == {"maybe": 3, "sizes": None}
    assert builder.coerce_hparams({"maybe": None, "sizes": [8, 8]}) == {"maybe": None, "sizes": (8, 8)}
    assert builder.check_hparams({"maybe": None}) == {"maybe": None}  # as config.json records it
    with pytest.raises(registry.HyperparameterError, match=r"^hyperparameter 'maybe' expects int \| None, received 'x'$"):
        builder.parse_hparams({"maybe": "x"})
    with pytest.raises(registry.HyperparameterError, match=r"^model 'opt': hyperparameter 'act' cannot be set, only its default"):
        builder.parse_hparams({"act": "min"})  # not "has no hyperparameter 'act'"


@pytest.mark.parametrize(
    "attribute, message",
    [
        ("not_callable", "is an int, not a callable builder"),
        ("positional", "must take keyword-only arguments input_shape and num_classes"),
        ("no_default", "hyperparameter 'units' has no default"),
        ("wrong_default", "hyperparameter 'width' defaults to '16', not int"),
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
        ({"filters": "(32,64)"}, {"filters": (32, 64)}),  # as Python and zoo tune --space write them
        ({"filters": "(32,)"}, {"filters": (32,)}),
        ({"filters": "32,"}, {"filters": (32,)}),
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
        ({"rate": "nan"}, "hyperparameter 'rate' expects a finite float, received 'nan'"),
        ({"flag": "maybe"}, "hyperparameter 'flag' expects bool, received 'maybe'"),
        ({"filters": "32,x"}, "hyperparameter 'filters' expects tuple[int, ...] (comma-separated), received '32,x'"),
        ({"filters": "32,,64"}, "hyperparameter 'filters' expects tuple[int, ...] (comma-separated), "
                                "received '32,,64': an empty value between commas"),
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


# --- Discovery details: names, versions, shadows, suggestions -------------------------------------


def test_distribution_names_are_compared_in_pep503_form():
    from registry._discovery import canonical

    assert canonical("My_Plugin.Extra--x") == "my-plugin-extra-x"


def test_a_distribution_without_name_or_version_is_still_listed(fake_dists):
    nameless = FakeDist(None, None, orphan=f"{HERE}:good")
    fake_dists(nameless)
    (entry,) = registry.entries()
    assert (entry.name, entry.dist, entry.version, entry.qualified) == ("orphan", "unknown", "", "unknown:orphan")


def test_a_shadowed_distribution_does_not_hide_the_ones_after_it(fake_dists):
    fake_dists(
        FakeDist("dup", "2.0", a=f"{HERE}:good"),
        FakeDist("DUP", "1.0", a=f"{HERE}:good"),
        FakeDist("other", "1.0", b=f"{HERE}:good"),
    )
    assert [(e.name, e.dist, e.version) for e in registry.entries()] == [("a", "dup", "2.0"), ("b", "other", "1.0")]


def test_selector_is_the_plain_name_unless_another_distribution_claims_it(fake_dists):
    fake_dists(FakeDist("pkg-a", "1", twin=f"{HERE}:good", solo=f"{HERE}:good"), FakeDist("pkg-b", "1", twin=f"{HERE}:good"))
    found = registry.entries()
    assert [registry.selector(e, found) for e in found] == ["solo", "pkg-a:twin", "pkg-b:twin"]


def test_ambiguous_name_message_in_full(fake_dists):
    fake_dists(FakeDist("pkg-a", "1.0", twin=f"{HERE}:good"), FakeDist("pkg-b", "2.0", twin=f"{HERE}:good"))
    with pytest.raises(registry.AmbiguousModelError) as err:
        registry.resolve("twin")
    assert str(err.value) == (
        "model 'twin' is registered by 2 distributions (pkg-a 1.0, pkg-b 2.0); "
        "choose one with 'pkg-a:twin' or 'pkg-b:twin'"
    )
    assert isinstance(err.value, LookupError)


def test_unknown_name_suggests_at_most_three(fake_dists):
    fake_dists(FakeDist("d", "1", cnn1=f"{HERE}:good", cnn2=f"{HERE}:good", cnn3=f"{HERE}:good", cnn4=f"{HERE}:good"))
    with pytest.raises(registry.UnknownModelError) as err:
        registry.resolve("cnn")
    assert str(err.value) == "unknown model 'cnn'. Did you mean: cnn4, cnn3, cnn2?"


def test_unknown_name_without_a_close_match_points_to_zoo_list(fake_dists):
    fake_dists(FakeDist("d", "1", resnet=f"{HERE}:good"))
    with pytest.raises(registry.UnknownModelError) as err:
        registry.resolve("zzz")
    assert str(err.value) == "unknown model 'zzz'. Run 'zoo list' to see them."
    with pytest.raises(registry.UnknownModelError, match="unknown model 'other-dist:resnet'"):
        registry.resolve("other-dist:resnet")  # the right name from the wrong distribution


def test_errors_name_the_model_as_the_user_spelled_it(fake_dists):
    fake_dists(FakeDist("pkg-a", "1", twin=f"{HERE}:positional"), FakeDist("pkg-b", "1", twin=f"{HERE}:good"))
    with pytest.raises(registry.PluginError, match=r"^model 'pkg-a:twin' must take keyword-only"):
        registry.get("pkg-a:twin")
    assert registry.get("PKG_B:twin").name == "PKG_B:twin"
    (entry,) = registry.find("pkg-a:twin")
    with pytest.raises(registry.PluginError, match=r"^model 'twin' must take keyword-only"):
        entry.load()  # without a shown name: the entry's own name


@pytest.mark.parametrize(
    "source, message",
    [
        ("raise ImportError()\n", "model 'm' (d 1, {mod}:f) failed to import: ImportError"),
        ("import sys\nsys.exit('unsupported platform: OSX')\n",
         "model 'm' (d 1, {mod}:f) failed to import: SystemExit: unsupported platform: OSX"),
        ("def g(): pass\n", "model 'm' (d 1, {mod}:f) failed to import: AttributeError: module '{mod}' has no attribute 'f'"),
        ("def f(:\n", "model 'm' (d 1, {mod}:f) failed to import: SyntaxError: invalid syntax ({mod}.py, line 1)"),
    ],
)
def test_every_kind_of_import_failure_is_one_plugin_error(fake_dists, tmp_path, monkeypatch, request, source, message):
    mod = f"plugin_{request.node.callspec.id.replace('-', '_')}"
    mod = "".join(c if c.isalnum() else "_" for c in mod)
    (tmp_path / f"{mod}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_dists(FakeDist("d", "1", m=f"{mod}:f"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("m")
    sys.modules.pop(mod, None)
    assert str(err.value) == message.format(mod=mod)
    assert err.value.details.startswith("Traceback (most recent call last):\n")
    # The traceback is joined as printed: every line is a header, an indented frame or the error.
    assert all(line.startswith(("Traceback", " ", type(err.value.__cause__).__name__, "SyntaxError"))
               for line in err.value.details.splitlines())


def test_plugin_error_details_default_to_the_message():
    assert registry.PluginError("short").details == "short"
    assert registry.PluginError("short", details="long\ntrace").details == "long\ntrace"


# --- Validation: signatures, annotations versus defaults, recipes ---------------------------------


def loose(*, input_shape, num_classes, units=4, rate: float = 1, size: tuple[int, int] = (2, 3),
          pair: tuple[int, str] = (1, "a"), widths=(8,), mixed=(1, "a"), opt: int | None = None,
          hook=None, **extra):
    """Loose builder: annotations and defaults disagree on purpose."""
    return None


def unresolvable(*, input_shape, num_classes, units: "NotDefinedAnywhere" = 4, rate=0.5):  # noqa: F821
    return None


def bare(*, input_shape, num_classes):
    return None


def unreadable_signature(*, input_shape, num_classes):
    return None


unreadable_signature.__signature__ = 42


def test_annotations_win_over_defaults_and_unannotated_types_come_from_the_default(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:loose"))
    builder = registry.get("m")
    assert {k: (h.name, h.type_name) for k, h in builder.hyperparameters.items()} == {
        "units": ("units", "int"),  # no annotation: the default's type
        "rate": ("rate", "float"),  # annotated float, default 1: float
        "size": ("size", "tuple[int, int]"),  # a fixed-length tuple keeps its length
        "pair": ("pair", "(not settable)"),  # mixed element types
        "widths": ("widths", "tuple[int, ...]"),  # one-element default
        "mixed": ("mixed", "(not settable)"),
        "opt": ("opt", "int | None"),  # Optional: its type or none
        "hook": ("hook", "(not settable)"),
    }
    assert builder.defaults() == {"units": 4, "rate": 1, "size": (2, 3), "widths": (8,), "opt": None}
    assert builder.parse_hparams({"rate": "2", "size": "1,2", "widths": "4"}) == {
        "rate": 2.0, "size": (1, 2), "widths": (4,)
    }
    with pytest.raises(registry.HyperparameterError, match="hyperparameter 'hook' cannot be set, only its default used"):
        builder.parse_hparams({"hook": "x"})  # not settable means not accepted either


def test_unresolvable_annotations_fall_back_to_the_defaults(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:unresolvable"))
    builder = registry.get("m")
    assert {k: h.type_name for k, h in builder.hyperparameters.items()} == {"units": "int", "rate": "float"}


def test_a_builder_without_hyperparameters_says_none_are_accepted(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:bare"))
    builder = registry.get("m")
    assert builder.summary == "" and builder.doc == "" and builder.recipe == {} and builder.defaults() == {}
    with pytest.raises(registry.HyperparameterError) as err:
        builder.parse_hparams({"x": "1"})
    assert str(err.value) == "model 'm' has no hyperparameter 'x'. Accepted: none"


def test_a_signature_that_cannot_be_read_is_a_plugin_error(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:unreadable_signature"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("m")
    assert str(err.value) == "model 'm': cannot read its signature (unexpected object 42 in __signature__ attribute)"


@pytest.mark.parametrize(
    "recipe, message",
    [
        ([("epochs", 3)], "model 'm': recipe must be a dict, received list"),
        ({"speed": 1}, "model 'm': unknown recipe key 'speed'; accepted: epochs, batch_size, optimizer, "
                       "learning_rate, schedule, label_smoothing, augment"),
        ({"epochs": True}, "model 'm': recipe 'epochs' has a bad value True"),  # bool is an int, but not here
        ({"epochs": "3"}, "model 'm': recipe 'epochs' has a bad value '3'"),
        ({"epochs": 2.0}, "model 'm': recipe 'epochs' has a bad value 2.0"),
        ({"augment": 1}, "model 'm': recipe 'augment' has a bad value 1"),
        ({"learning_rate": "0.1"}, "model 'm': recipe 'learning_rate' has a bad value '0.1'"),
    ],
)
def test_bad_recipes_name_the_key_and_the_value(fake_dists, monkeypatch, recipe, message):
    monkeypatch.setattr(bare, "recipe", recipe, raising=False)
    fake_dists(FakeDist("d", "1", m=f"{HERE}:bare"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("m")
    assert str(err.value) == message


def test_good_recipes_are_kept_as_given(fake_dists, monkeypatch):
    recipe = {"augment": True, "learning_rate": 3, "label_smoothing": 0.1, "optimizer": "sgd", "batch_size": 64}
    monkeypatch.setattr(bare, "recipe", recipe, raising=False)
    fake_dists(FakeDist("d", "1", m=f"{HERE}:bare"))
    assert registry.get("m").recipe == recipe


# --- Building: hyperparameters reach the builder, failures name it --------------------------------


def raises_on_build(*, input_shape, num_classes, units: int = 4):
    if units < 0:
        raise registry.HyperparameterError(f"units must be positive, received {units}")
    raise ValueError("no such layer")


def test_hyperparameters_reach_the_builder(fake_dists):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    model = registry.get("good").build(input_shape=[4, 4, 1], num_classes=3, units=7)
    assert model.layers[-2].units == 7 and model.input_shape == (None, 4, 4, 1)


def test_a_builder_that_raises_is_a_plugin_error_naming_the_inputs(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:raises_on_build"))
    builder = registry.get("m")
    with pytest.raises(registry.PluginError) as err:
        builder.build(input_shape=[2, 2, 1], num_classes=2)
    assert str(err.value) == (
        "model 'm' failed to build for input_shape=(2, 2, 1), num_classes=2: ValueError: no such layer"
    )
    assert isinstance(err.value.__cause__, ValueError)
    # A builder's own hyperparameter check is the user's mistake, not a plugin bug: it passes through.
    with pytest.raises(registry.HyperparameterError, match="^units must be positive, received -1$"):
        builder.build(input_shape=(2, 2, 1), num_classes=2, units=-1)


# --- Hyperparameter types ------------------------------------------------------------------------


def test_settable_types():
    from registry import _hparams as hp

    assert [hp.normalise_type(t) for t in (bool, int, float, str)] == [bool, int, float, str]
    assert hp.normalise_type(tuple[str, ...]) == tuple[str, ...]
    assert hp.normalise_type(tuple[int, int]) == tuple[int, int]
    assert hp.normalise_type(int | None) == int | None and hp.normalise_type(tuple[int, ...] | None) == tuple[int, ...] | None
    for unsettable in (tuple[int, str], tuple[list, list], tuple[list, ...], tuple, tuple[()], list[int],
                       int | str, int | str | None, list[int] | None, bytes, None):
        assert hp.normalise_type(unsettable) is None, unsettable


@pytest.mark.parametrize(
    "default, expected",
    [
        (3, int), (True, bool), (0.5, float), ("x", str),
        ((1, 2), tuple[int, ...]), ((4,), tuple[int, ...]), ((True, False), tuple[bool, ...]),
        ((1, True), None), ((1, "a"), None), ((), None), (None, None), ([1, 2], None), ((1.5, [2]), None),
    ],
)
def test_types_inferred_from_defaults(default, expected):
    from registry import _hparams as hp

    assert hp.infer_type(default) == expected


@pytest.mark.parametrize("text", ["", ",", " , "])
def test_an_empty_tuple_value_is_refused(fake_dists, text):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    with pytest.raises(registry.HyperparameterError) as err:
        registry.get("good").parse_hparams({"filters": text})
    assert str(err.value) == f"hyperparameter 'filters' expects tuple[int, ...] (comma-separated), received {text!r}"


@pytest.mark.parametrize(
    "pairs, expected",
    [
        ({"units": "-3", "rate": "1e-3", "name": " spaced "}, {"units": -3, "rate": 0.001, "name": " spaced "}),
        ({"flag": " ON "}, {"flag": True}),
        ({"flag": "0"}, {"flag": False}),
        ({"filters": "7"}, {"filters": (7,)}),
    ],
)
def test_more_text_values(fake_dists, pairs, expected):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    assert registry.get("good").parse_hparams(pairs) == expected


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"units": 4, "flag": True, "name": "abc"}, {"units": 4, "flag": True, "name": "abc"}),
        ({"rate": 1}, {"rate": 1.0}),
        ({"filters": (4, 8)}, {"filters": (4, 8)}),
        ({"filters": []}, {"filters": ()}),
    ],
)
def test_json_values_are_checked_and_converted(fake_dists, values, expected):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    out = registry.get("good").check_hparams(values)
    assert out == expected and [type(v) for v in out.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"units": True}, "hyperparameter 'units' expects int, received True"),
        ({"units": 4.0}, "hyperparameter 'units' expects int, received 4.0"),
        ({"units": [4]}, "hyperparameter 'units' expects int, received [4]"),
        ({"units": (4,)}, "hyperparameter 'units' expects int, received (4,)"),
        ({"rate": "0.5"}, "hyperparameter 'rate' expects float, received '0.5'"),
        ({"rate": False}, "hyperparameter 'rate' expects float, received False"),
        ({"flag": 1}, "hyperparameter 'flag' expects bool, received 1"),
        ({"name": 3}, "hyperparameter 'name' expects str, received 3"),
        ({"filters": [4, "x"]}, "hyperparameter 'filters' expects int, received 'x'"),
        ({"filters": "4,8"}, "hyperparameter 'filters' expects tuple[int, ...], received '4,8'"),
        ({"nope": 1}, "model 'good' has no hyperparameter 'nope'. Accepted: units, rate, flag, name, filters"),
    ],
)
def test_wrong_json_values_name_the_key(fake_dists, values, message):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    with pytest.raises(registry.HyperparameterError) as err:
        registry.get("good").check_hparams(values)
    assert str(err.value) == message


def test_tuple_values_are_checked_element_by_element(fake_dists):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    with pytest.raises(registry.HyperparameterError, match="'filters' expects int, received 'a'"):
        registry.get("good").check_hparams({"filters": ("a",)})


# --- Static inspection: what `zoo list` can tell from the source alone, importing nothing ----------


@pytest.fixture
def source(tmp_path, monkeypatch):
    """Write a plugin module (or a file of a package) under a fresh folder on sys.path."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def write(relative: str, text: str = "") -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    write.root = root
    return write


def static(value):
    from registry._static import inspect_entry

    before = set(sys.modules)
    info = inspect_entry(value)
    assert not {m for m in set(sys.modules) - before if m.startswith("st_")}, "inspection imported the plugin"
    return info.summary, info.problem


GOOD_DEF = '''
def f(*, input_shape, num_classes):
    """Summary line.

    More.
    """
'''


@pytest.mark.parametrize(
    "text, problem",
    [
        (GOOD_DEF, ""),
        ("def f(input_shape, num_classes):\n    pass\n", "'f' must take keyword-only arguments input_shape and num_classes"),
        ("def f(*, input_shape, num_classes, units, rate=0.5):\n    pass\n",
         "'f': hyperparameter 'units' has no default; every argument besides input_shape and num_classes needs one"),
        ("def f(width, depth=2, *, input_shape, num_classes):\n    pass\n", "'f': hyperparameter 'width' has no default; every argument besides input_shape and num_classes needs one"),
        ("def f(width=8, *args, input_shape, num_classes, units=4, **more):\n    pass\n", ""),
        ("f = 3\n", "'f' is an int, not a callable builder"),
        ("f = 'cnn'\n", "'f' is a str, not a callable builder"),
        ("f = 3\n" + GOOD_DEF, ""),  # the last binding counts
        ("def g():\n    pass\n", "'f' is not defined in st_mod.py"),
        ("from os import path\n", "'f' is not defined in st_mod.py"),
        ("import os\nimport json.decoder\n", "'f' is not defined in st_mod.py"),
        ("f: object = make()\n", ""),
        ("x = 1\nf = make()\n", ""),
        ("x, y = 1, 2\nf = x\n", ""),
        ("from os.path import join as f\n", ""),
        ("import f\n", "imports 'f', which is not installed"),
        ("from os.path import *\n", ""),
        ("def __getattr__(name):\n    pass\n", ""),
        ("try:\n    from fast import f\nexcept ImportError:\n    f = None\n", ""),
        ("if True:\n" + textwrap.indent(GOOD_DEF, "    "), ""),
        ("if True:\n    def f(x):\n        pass\n", "'f' must take keyword-only arguments input_shape and num_classes"),
        ("if True:\n    f = make()\n", ""),
        ("if True:\n    g = f\n", "'f' is not defined in st_mod.py"),  # a load, not a binding
        ("import st_missing_dep\n" + GOOD_DEF, "imports 'st_missing_dep', which is not installed"),
        ("from st_missing_dep.sub import x\n" + GOOD_DEF, "imports 'st_missing_dep.sub', which is not installed"),
        ("import sys, os.path\nfrom . import sibling\nfrom .rel import x\n" + GOOD_DEF, ""),
        ("try:\n    import st_missing_dep\nexcept ImportError:\n    pass\n" + GOOD_DEF, ""),
        ("def f(:\n", "syntax error in st_mod.py line 1: invalid syntax"),
    ],
)
def test_static_inspection_of_a_plugin_module(source, text, problem):
    source("st_mod.py", text)
    # The summary comes with the problem: `zoo list` shows both.
    assert static("st_mod:f") == ("Summary line." if "Summary line." in text else "", problem)


def test_static_inspection_reads_summaries_of_classes_and_dotted_attributes(source):
    source("st_cls.py", 'import email.utils\n\nclass Zoo:\n    """Builders as static methods."""\n\n'
                        'def factory(size):\n    pass\n\ndef undocumented(*, input_shape, num_classes):\n    pass\n')
    assert static("st_cls:Zoo") == ("Builders as static methods.", "")
    assert static("st_cls:factory.small") == ("", "")  # an attribute of a function: its signature is not the builder's
    assert static("st_cls:undocumented") == ("", "")
    assert static("st_cls:Zoo.cnn") == ("Builders as static methods.", "")  # no signature check on members
    assert static("st_cls:email.utils.parseaddr") == ("", "")


def test_static_inspection_of_packages_and_missing_modules(source):
    source("st_pkg/__init__.py", "raise RuntimeError('never imported')\n")
    source("st_pkg/models.py", GOOD_DEF)
    source("st_pkg/sub/__init__.py", GOOD_DEF)
    source("st_pkg/compiled.cpython-311-x86_64-linux-gnu.so")
    assert static("st_pkg.models:f") == ("Summary line.", "")
    assert static("st_pkg.sub:f") == ("Summary line.", "")
    assert static(" st_pkg.models : f ") == ("Summary line.", "")
    assert static("st_pkg.compiled:f") == ("", "")  # exists, but there is no source to read
    assert static("st_pkg.nothere:f") == ("", "module 'st_pkg.nothere' is not installed")
    assert static("st_nowhere.models:f") == ("", "module 'st_nowhere' is not installed")
    assert static("_json:make_scanner") == ("", "")  # a compiled top-level module


def test_static_inspection_never_imports_a_dependency_to_check_it(source):
    # `zoo list` must stay fast: `import st_heavy.models` only checks that st_heavy is installed.
    source("st_heavy/__init__.py", "raise RuntimeError('importing st_heavy is slow')\n")
    source("st_heavy/models.py")
    source("st_uses_heavy.py", "import st_heavy.models\nfrom st_heavy.models import layers\n" + GOOD_DEF)
    assert static("st_uses_heavy:f") == ("Summary line.", "")


def test_static_inspection_of_an_undecodable_file(source):
    (source.root / "st_latin.py").write_bytes(b"# caf\xe9\ndef f(*, input_shape, num_classes): pass\n")
    summary, problem = static("st_latin:f")
    assert problem.startswith("cannot parse st_latin.py: ") and "utf-8" in problem


def test_static_inspection_of_a_file_that_vanished(source, monkeypatch):
    from registry import _static

    monkeypatch.setattr(_static, "module_file", lambda module: source.root / "gone.py")
    assert static("st_gone:f") == ("", f"cannot read {source.root / 'gone.py'}: No such file or directory")


def test_static_inspection_sees_an_edited_file(source):
    import os

    source("st_edit.py", "f = 3\n")
    assert static("st_edit:f")[1] == "'f' is an int, not a callable builder"
    source("st_edit.py", GOOD_DEF)
    stat = (source.root / "st_edit.py").stat()
    os.utime(source.root / "st_edit.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert static("st_edit:f") == ("Summary line.", "")


# --- Whose fault a failed build is: the user's values or the plugin -------------------------------


def picky(*, input_shape: tuple[int, ...], num_classes: int, units: int = 4, filters: tuple[int, ...] = (8,),
          head: str = "dense") -> keras.Model:
    if units > 100:
        raise ValueError(f"units must be at most 100, received {units}\n(a second line)")
    if len(filters) > 2:
        raise TypeError("too many filters")
    if head == "crash":
        raise RuntimeError("internal error")
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    if head == "wide":
        return keras.Model(inputs, keras.layers.Dense(num_classes + 2)(x))
    if head == "sequence":
        return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Reshape((-1, 1))(x)))
    if head == "two":
        return keras.Model(inputs, [keras.layers.Dense(num_classes)(x), keras.layers.Dense(num_classes)(x)])
    if head == "pool":  # pooled below one pixel: Keras wraps the layer's error in lines of its own
        x = keras.layers.MaxPooling2D(2)(keras.layers.MaxPooling2D(2)(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def always_fails(*, input_shape, num_classes, units: int = 4):
    raise ValueError("broken for every input")


def fails_silently(*, input_shape, num_classes):
    raise ValueError()


def test_a_build_failure_without_a_message_names_the_exception(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:fails_silently"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("m").build(input_shape=(2, 2, 1), num_classes=3)
    assert str(err.value).rstrip(": ") == "model 'm' failed to build for input_shape=(2, 2, 1), num_classes=3: ValueError"


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"units": 1000}, "model 'm' rejects units=1000: ValueError: units must be at most 100, received 1000"),
        ({"filters": (1, 2, 3), "units": 2},
         "model 'm' rejects filters=1,2,3, units=2: TypeError: too many filters"),
        ({"head": "pool"},  # the reason inside the lines Keras wraps a layer's error in
         "model 'm' rejects head=pool: ValueError: Computed output size would be zero or negative. Received: "
         "`inputs.shape=[None 1 1 1]`, `pool_size=[2 2]`, `strides=(2, 2)`, `padding=valid`."),
    ],
)
def test_values_a_builder_rejects_are_the_users_mistake(fake_dists, hparams, message):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:picky"))
    with pytest.raises(registry.HyperparameterError) as err:
        registry.get("m").build(input_shape=(2, 2, 1), num_classes=3, **hparams)
    assert str(err.value) == message
    assert isinstance(err.value.__cause__, (ValueError, TypeError))


@pytest.mark.parametrize(
    "name, hparams, message",
    [
        ("picky", {"head": "crash"}, "failed to build for input_shape=(2, 2, 1), num_classes=3: RuntimeError: internal error"),
        ("always_fails", {"units": 2}, "failed to build for input_shape=(2, 2, 1), num_classes=3: ValueError: broken for every input"),
        ("always_fails", {}, "failed to build for input_shape=(2, 2, 1), num_classes=3: ValueError: broken for every input"),
        ("picky", {"head": "wide"}, "outputs shape (None, 5), expected (None, 3)"),
        ("picky", {"head": "sequence"}, "outputs shape (None, 4, 3), expected (None, 3)"),
        ("picky", {"head": "two"}, "outputs shape [(None, 3), (None, 3)], expected (None, 3)"),
        # A model that does not take the images it is given.
        *[("takes", {"inputs": inputs}, f"takes inputs of shape {shape}, expected (None, 2, 2, 1): build it from "
                                         "the input_shape it is given")
          for inputs, shape in (("channels_first", "(None, 1, 2, 2)"), ("fixed", "(None, 32, 32, 3)"),
                                ("flat", "(None, 4)"), ("two", "[(None, 2, 2, 1), (None, 2, 2, 1)]"))],
    ],
)
def test_failures_that_are_the_plugins_name_it(fake_dists, name, hparams, message):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:{name}"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("m").build(input_shape=[2, 2, 1], num_classes=3, **hparams)
    assert str(err.value) == f"model 'm' {message}"


def takes(*, input_shape, num_classes, inputs: str = "own"):
    """A softmax over the inputs the ``inputs`` choice makes (a plugin's mistakes about input_shape)."""
    h, w, c = input_shape
    if inputs == "sequential":  # no Input: built on its first batch, or by the zoo for input_shape
        return keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(num_classes, activation="softmax")])
    shapes = {"own": input_shape, "any_size": (None, None, c), "channels_first": (c, h, w), "fixed": (32, 32, 3),
              "flat": (h * w * c,)}
    if inputs == "two":
        first, second = keras.Input(shape=input_shape), keras.Input(shape=input_shape)
        x = keras.layers.Add()([first, second])
        return keras.Model([first, second], keras.layers.Dense(num_classes, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(x)))
    x = inputs_layer = keras.Input(shape=shapes[inputs])
    x = keras.layers.GlobalAveragePooling2D()(x) if len(shapes[inputs]) == 3 else x
    return keras.Model(inputs_layer, keras.layers.Dense(num_classes, activation="softmax")(x))


@pytest.mark.parametrize("inputs", ["own", "any_size", "sequential"])
def test_a_model_that_takes_the_images_builds_an_unbuilt_one_for_them(fake_dists, inputs):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:takes"))
    model = registry.get("m").build(input_shape=(4, 4, 1), num_classes=3, inputs=inputs)
    assert model.built and model.output_shape == (None, 3)
    assert model(np.zeros((2, 4, 4, 1), "float32")).shape == (2, 3)


class Subclassed(keras.Model):
    """A softmax over the flattened images with no symbolic inputs: Keras builds it on its first call."""

    def __init__(self, num_classes: int, size: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.flatten, self.dense = keras.layers.Flatten(), keras.layers.Dense(num_classes, activation="softmax")

    def call(self, x):
        if self.size is not None and x.shape[1] != self.size:
            raise ValueError(f"takes {self.size}x{self.size} images")
        return self.dense(self.flatten(x))


def subclassed(*, input_shape, num_classes, called: bool = False, classes: int = 0, size: int = 0):
    """A subclassed model, called once by the builder or not built at all."""
    model = Subclassed(classes or num_classes, size or None)
    if called:
        model(np.zeros((1, *input_shape), "float32"))
    return model


@pytest.mark.parametrize("called", [False, True])
def test_a_subclassed_model_is_checked_by_calling_it_on_a_batch_of_the_images(fake_dists, called, recwarn):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:subclassed"))
    model = registry.get("m").build(input_shape=(4, 4, 1), num_classes=3, called=called)
    assert model.built and tuple(model.get_build_config()["input_shape"][1:]) == (4, 4, 1)
    assert model(np.zeros((2, 4, 4, 1), "float32")).shape == (2, 3)
    assert not [w for w in recwarn if "build()" in str(w.message)]  # Keras' advice for an unbuilt layer


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"classes": 5}, "outputs shape (None, 5), expected (None, 3)"),
        ({"classes": 5, "called": True}, "outputs shape (None, 5), expected (None, 3)"),
        ({"size": 8}, "cannot be called on a batch of inputs of shape (None, 2, 2, 1): ValueError: takes 8x8 images"),
    ],
)
def test_a_subclassed_model_that_does_not_fit_the_images_names_what_it_does(fake_dists, hparams, message):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:subclassed"))
    with pytest.raises(registry.PluginError) as err:
        registry.get("m").build(input_shape=[2, 2, 1], num_classes=3, **hparams)
    assert str(err.value) == f"model 'm' {message}"


@pytest.mark.parametrize(
    "value, text", [(3, "3"), (0.5, "0.5"), (True, "True"), ("relu", "relu"), ((32, 64), "32,64"), ([1], "1"), ((), "")]
)
def test_values_are_shown_as_they_are_typed(value, text):
    from registry import _hparams

    assert _hparams.show(value) == text


def test_fixed_length_tuples_keep_their_length(fake_dists):
    fake_dists(FakeDist("d", "1", m=f"{HERE}:loose"))
    builder = registry.get("m")
    assert builder.parse_hparams({"size": "4,5"}) == {"size": (4, 5)}
    with pytest.raises(registry.HyperparameterError) as err:
        builder.parse_hparams({"size": "4"})
    assert str(err.value) == "hyperparameter 'size' expects 2 comma-separated values (tuple[int, int]), received '4'"
    with pytest.raises(registry.HyperparameterError, match=r"expects 2 values \(tuple\[int, int\]\), received \[4, 5, 6\]"):
        builder.check_hparams({"size": [4, 5, 6]})


# --- Builders registered in the process (a notebook cell) ------------------------------------------


@pytest.fixture
def local_registry(monkeypatch, fake_dists):
    from registry import _discovery

    monkeypatch.setattr(_discovery, "_LOCAL", {})
    fake_dists(FakeDist("pkg", "1.5", cnn=f"{HERE}:good"))


def test_a_registered_builder_is_listed_and_loaded_without_an_entry_point(local_registry):
    entry = registry.register(bare)
    assert (entry.name, entry.dist, entry.version, entry.value) == ("bare", "local", "", f"{HERE}:bare")
    assert entry.local and entry.problem == ""
    assert [(e.name, e.dist) for e in registry.entries()] == [("bare", "local"), ("cnn", "pkg")]
    assert registry.get("bare").fn is bare
    again = registry.register(loose, name="bare")  # a notebook cell run twice replaces it
    assert registry.get("bare").fn is loose and again.value == f"{HERE}:loose"
    assert [e.name for e in registry.entries()].count("bare") == 1


@pytest.mark.parametrize("name", ["a:b", " spaced", "trailing ", "my model!", "a/b", "../../x", "", ".hidden"])
def test_register_refuses_names_that_could_not_be_selected(local_registry, name):
    with pytest.raises(registry.PluginError) as err:
        registry.register(bare, name=name)
    assert str(err.value) == (
        f"cannot register {bare!r} as {name!r}: give it a name of letters, digits, '.', '_' and '-', "
        f"e.g. register(name='mynet')"
    )


@pytest.mark.parametrize("name", ["mynet", "my-net.v2", "my_net", "réseau"])
def test_register_takes_names_of_letters_digits_dots_underscores_and_hyphens(local_registry, name):
    assert registry.register(bare, name=name).name == name


def test_register_refuses_a_lambda_and_a_broken_builder(local_registry):
    with pytest.raises(registry.PluginError, match=r"as '<lambda>': give it a name"):
        registry.register(lambda *, input_shape, num_classes: None)
    with pytest.raises(registry.PluginError, match="^model 'positional' must take keyword-only"):
        registry.register(positional)
    assert registry.entries()[0].dist == "pkg"  # nothing was registered


def test_register_refuses_an_installed_name_and_says_how_to_choose(local_registry):
    with pytest.raises(registry.AmbiguousModelError) as err:
        registry.register(bare, name="cnn")
    assert str(err.value) == (
        "model 'cnn' is already registered by pkg 1.5; register yours under another name "
        "(register(name=...)) or use the installed one as 'pkg:cnn'"
    )


def test_coerce_hparams_takes_python_values_and_text_alike(fake_dists):
    fake_dists(FakeDist("d", "1", good=f"{HERE}:good"))
    builder = registry.get("good")
    assert builder.coerce_hparams({"units": "8", "rate": 1, "flag": "yes", "name": "7", "filters": [4, 8]}) == {
        "units": 8, "rate": 1.0, "flag": True, "name": "7", "filters": (4, 8)
    }
    assert builder.coerce_hparams({"filters": "4,8", "units": 3}) == {"filters": (4, 8), "units": 3}
    with pytest.raises(registry.HyperparameterError, match="^hyperparameter 'units' expects int, received 'x'$"):
        builder.coerce_hparams({"units": "x"})
    with pytest.raises(registry.HyperparameterError, match="^hyperparameter 'units' expects int, received 2.5$"):
        builder.coerce_hparams({"units": 2.5})


def test_a_loaded_module_without_a_spec_does_not_break_listing(monkeypatch):
    import types

    from registry import _static

    module = types.ModuleType("specless_plugin")
    module.__spec__ = None  # as __main__ has when Python runs a script
    monkeypatch.setitem(sys.modules, "specless_plugin", module)
    assert _static.inspect_entry("specless_plugin:build").problem == "module 'specless_plugin' is not installed"


# -- dataset plugins (zoo.datasets) ---------------------------------------------------------------


class FakeDataDist(FakeDist):
    def __init__(self, name: str, version: str, **datasets: str) -> None:
        super().__init__(name, version)
        self.entry_points += [metadata.EntryPoint(k, v, registry.DATASET_GROUP) for k, v in datasets.items()]


class NotABuilder:
    """Has no download_and_prepare."""


def test_dataset_plugins_are_found_by_name_and_two_claims_are_an_error(fake_dists):
    fake_dists(FakeDataDist("zoo-pets", "1.0", pets="test_registry:NotABuilder"),
               FakeDataDist("other-pets", "2.0", pets="test_registry:NotABuilder", birds="nowhere_module:B"))
    assert [(e.name, e.dist) for e in registry.dataset_entries()] == [
        ("birds", "other-pets"), ("pets", "other-pets"), ("pets", "zoo-pets")]
    assert registry.find_dataset("mnist") is None  # TFDS's catalog then
    assert registry.find_dataset("zoo-pets:pets").dist == "zoo-pets"
    with pytest.raises(registry.AmbiguousModelError, match=r"dataset 'pets' is registered by 2 distributions "
                       r"\(other-pets 2.0, zoo-pets 1.0\); choose one with 'other-pets:pets' or 'zoo-pets:pets'"):
        registry.find_dataset("pets")
    birds = registry.find_dataset("birds")
    assert birds.problem == "module 'nowhere_module' is not installed"  # from the source, no import
    with pytest.raises(registry.PluginError, match=r"dataset 'birds' \(other-pets 2.0, nowhere_module:B\) "
                       r"failed to import: ModuleNotFoundError"):
        birds.load()
    with pytest.raises(registry.PluginError, match="is <class 'test_registry.NotABuilder'>, not a TFDS dataset builder"):
        registry.find_dataset("zoo-pets:pets").load()
    assert registry.find_dataset("zoo-pets:pets").summary == "Has no download_and_prepare."


def test_a_partial_builder_is_described_by_the_function_it_wraps():
    """zoo info and zoo list show a builder's docstring; for functools.partial(f, ...) that is f's,
    not partial's own ("partial(func, *args, **keywords) - new function with partial application")."""
    import functools

    from registry._builder import validate

    def wide(*, input_shape, num_classes, width: int = 8):
        """A one-layer net, made narrow by a partial.

        More words."""
        import keras

        inputs = keras.Input(shape=input_shape)
        flat = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Dense(width)(flat)))

    builder = validate("narrow", functools.partial(wide, width=4))
    assert builder.summary == "A one-layer net, made narrow by a partial."
    assert builder.doc.endswith("More words.")
