"""zoo.config.RunConfig: one-line errors naming the option, recipe precedence, config.json I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

import pytest

from zoo import formats
from zoo.config import (
    DEFAULTS,
    DEVICES_HELP,
    JIT_COMPILE,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_SEED,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    RunConfig,
    parse_devices,
)
from zoo.errors import ZooError, ZooUsageError


def test_defaults_are_valid_and_match_the_defaults_table():
    config = RunConfig(model="cnn")
    assert {k: getattr(config, k) for k in DEFAULTS} == DEFAULTS
    assert (config.dataset, config.val_split, config.seed, config.deterministic) == ("mnist", 0.1, 0, True)
    assert config.hparams == {} and config.data_dir is None and config.manual_dir is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "`epochs` must be between 1 and 1000000, received 0"),
        ("epochs", -3, "`epochs` must be between 1 and 1000000, received -3"),
        ("epochs", 1_000_001, "`epochs` must be between 1 and 1000000, received 1000001"),
        ("epochs", 2.0, "`epochs` must be between 1 and 1000000, received 2.0"),
        ("epochs", True, "`epochs` must be between 1 and 1000000, received True"),
        ("epochs", "3", "`epochs` must be between 1 and 1000000, received '3'"),
        ("batch_size", 0, "`batch_size` must be between 1 and 2147483647, received 0"),
        ("batch_size", 2**31, "`batch_size` must be between 1 and 2147483647, received 2147483648"),
        ("batch_size", 64.0, "`batch_size` must be between 1 and 2147483647, received 64.0"),
        ("val_split", 0.0, "`val_split` must be between 0 and 1 (exclusive), received 0.0"),
        ("val_split", 1.0, "`val_split` must be between 0 and 1 (exclusive), received 1.0"),
        ("val_split", -0.5, "`val_split` must be between 0 and 1 (exclusive), received -0.5"),
        ("val_split", "0.1", "`val_split` must be between 0 and 1 (exclusive), received '0.1'"),
        ("learning_rate", 0.0, "`learning_rate` must be a positive number, received 0.0"),
        ("learning_rate", -1e-3, "`learning_rate` must be a positive number, received -0.001"),
        ("learning_rate", float("nan"), "`learning_rate` must be a positive number, received nan"),
        ("learning_rate", float("inf"), "`learning_rate` must be a positive number, received inf"),
        ("learning_rate", True, "`learning_rate` must be a positive number, received True"),
        ("learning_rate", None, "`learning_rate` must be a positive number, received None"),
        ("label_smoothing", 1.0, "`label_smoothing` must be in [0, 1), received 1.0"),
        ("label_smoothing", -0.1, "`label_smoothing` must be in [0, 1), received -0.1"),
        ("label_smoothing", False, "`label_smoothing` must be in [0, 1), received False"),
        ("optimizer", "adagrad", "unknown `optimizer` 'adagrad'; choose one of adam, adamw, sgd, rmsprop"),
        ("optimizer", "Adam", "unknown `optimizer` 'Adam'; choose one of adam, adamw, sgd, rmsprop"),
        ("schedule", "step", "unknown `schedule` 'step'; choose one of constant, cosine"),
        ("augment", 1, "`augment` must be true or false, received 1"),
        ("augment", "false", "`augment` must be true or false, received 'false'"),
        ("seed", -1, "`seed` must be between 0 and 4294967295, received -1"),
        ("seed", 2**32, "`seed` must be between 0 and 4294967295, received 4294967296"),
        ("seed", False, "`seed` must be between 0 and 4294967295, received False"),
        ("deterministic", 0, "`deterministic` must be true or false, received 0"),
        ("precision", "fp8", "unknown `precision` 'fp8'; choose one of auto, float32, mixed_bfloat16, mixed_float16"),
        ("precision", "float16", "unknown `precision` 'float16'; choose one of auto, float32, mixed_bfloat16, mixed_float16"),
        ("jit_compile", "maybe", "unknown `jit_compile` 'maybe'; choose one of auto, on, off"),
        ("jit_compile", True, "unknown `jit_compile` True; choose one of auto, on, off"),
        ("jit_compile", "on", "`jit_compile` on needs deterministic ops off (--no-deterministic, "
                              "deterministic=False): Keras turns XLA off under TensorFlow's op determinism "
                              "(not every XLA kernel is deterministic)"),
        *(
            ("devices", value, f"`devices` must be {DEVICES_HELP}; received {value!r}")
            for value in ("0", "-1", "", "gpu:x", "gpu", "gpu:0,gpu:0", "cpu:0,gpu:1", "2.5", "1025", 2, None)
        ),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_setting_and_the_value(field, value, message):
    with pytest.raises(ZooUsageError) as err:
        RunConfig(model="cnn", **{field: value})
    assert str(err.value) == message


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 1),
        ("epochs", MAX_EPOCHS),
        ("batch_size", 1),
        ("batch_size", MAX_BATCH_SIZE),
        ("val_split", 0.001),
        ("val_split", 0.999),
        ("learning_rate", 1e-9),
        ("learning_rate", 1),  # an int is a number
        ("label_smoothing", 0.0),
        ("label_smoothing", 0),
        ("label_smoothing", 0.999),
        ("augment", True),
        ("seed", 0),
        ("seed", MAX_SEED),
        ("deterministic", False),
        *(("optimizer", name) for name in OPTIMIZERS),
        *(("schedule", name) for name in SCHEDULES),
        *(("precision", name) for name in PRECISIONS),
        *(("jit_compile", name) for name in JIT_COMPILE if name != "on"),
        *(("devices", text) for text in ("auto", "cpu", "1", "1024", "gpu:0,gpu:2", "GPU:1", "cpu:0, cpu:1")),
    ],
)
def test_settings_at_the_edge_of_their_range_are_accepted(field, value):
    config = RunConfig(model="cnn", **{field: value})
    assert getattr(config, field) == value


def test_xla_on_is_accepted_without_deterministic_ops():
    assert RunConfig(model="cnn", jit_compile="on", deterministic=False).jit_compile == "on"


def test_the_bounds_are_what_the_messages_say():
    assert (MAX_EPOCHS, MAX_BATCH_SIZE, MAX_SEED) == (1_000_000, 2**31 - 1, 2**32 - 1)


def test_the_first_bad_setting_is_reported():
    with pytest.raises(ZooUsageError, match="^`epochs`"):
        RunConfig(model="cnn", epochs=0, batch_size=0, seed=-1)
    with pytest.raises(ZooUsageError, match="^`seed`"):
        RunConfig(model="cnn", seed=-1, deterministic="yes")


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        RunConfig(model="cnn").epochs = 3  # type: ignore[misc]


def test_command_line_wins_over_recipe_which_wins_over_defaults():
    recipe = {"epochs": 3, "learning_rate": 0.01, "augment": True}
    overrides = {"epochs": 7, "batch_size": None, "seed": 5, "hparams": {"units": 8}}
    config = RunConfig.from_recipe("mlp", recipe, overrides)
    assert config.model == "mlp"
    assert config.epochs == 7  # command line
    assert config.learning_rate == 0.01 and config.augment is True  # recipe
    assert config.batch_size == DEFAULTS["batch_size"]  # None means "not given": the default
    assert config.optimizer == "adam" and config.schedule == "constant"
    assert config.seed == 5 and config.hparams == {"units": 8}


def test_from_recipe_validates_the_merged_values():
    with pytest.raises(ZooUsageError, match="^`epochs` must be between 1 and 1000000, received 0$"):
        RunConfig.from_recipe("mlp", {"epochs": 0}, {})


class Frozen(Mapping):
    """A read-only mapping that is not a dict, as a Python API caller might pass."""

    def __init__(self, **items):
        self._items = items

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


def test_to_dict_has_every_field_and_a_plain_dict_of_hparams():
    config = RunConfig(model="cnn", hparams=Frozen(filters=(8, 16)), epochs=2)
    d = config.to_dict()
    assert type(d["hparams"]) is dict and d["hparams"] == {"filters": (8, 16)}
    assert d["model"] == "cnn" and d["epochs"] == 2 and d["manual_dir"] is None
    assert list(d) == [
        "model", "hparams", "dataset", "val_split", "epochs", "batch_size", "optimizer",
        "learning_rate", "schedule", "label_smoothing", "augment", "init", "freeze", "seed", "deterministic",
        "backend", "precision", "jit_compile", "devices", "input", "memory_budget", "cache_dir", "image_size",
        "channels", "strict_files", "data_dir", "manual_dir",
    ]
    d["hparams"]["filters"] = (1,)
    assert config.hparams["filters"] == (8, 16)  # a copy: the frozen config stays as it was


def test_to_dict_accepts_a_read_only_mapping_proxy():
    config = RunConfig(model="cnn", hparams=MappingProxyType({"units": 4}))
    assert config.to_dict()["hparams"] == {"units": 4}


def write_config(path, block, version=formats.CURRENT[formats.RUN_CONFIG]):
    """A config.json in format ``version`` (0: as written before files carried one)."""
    record = {"config": block, "model": {"entry": "x"}}
    record = formats.stamp(formats.RUN_CONFIG, record) if version else record
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_read_round_trips_and_ignores_keys_it_does_not_know(tmp_path):
    config = RunConfig(model="cnn", hparams={"units": 4}, epochs=2, optimizer="sgd", data_dir="d")
    block = {**config.to_dict(), "added_by_a_later_version": 1}
    assert RunConfig.read(write_config(tmp_path / "config.json", block)) == config


def test_parse_devices_reads_every_form_and_rejects_the_rest():
    assert parse_devices("auto") == "auto" and parse_devices(" AUTO ") == "auto"
    assert parse_devices("cpu") == (("CPU", 0),)
    assert parse_devices("3") == 3
    assert parse_devices("gpu:0,gpu:2") == (("GPU", 0), ("GPU", 2))
    assert parse_devices("cpu:1") == (("CPU", 1),)
    for bad in ("0", "gpu:", "gpu:-1", "tpu:0", "gpu:0,,gpu:1", "gpu:1,gpu:1", "cpu:0,gpu:0", 1, None):
        assert parse_devices(bad) is None, bad


def test_read_of_a_run_from_before_precision_was_a_setting_says_float32(tmp_path):
    block = RunConfig(model="cnn").to_dict()
    for key in ("precision", "jit_compile", "devices"):
        del block[key]
    config = RunConfig.read(write_config(tmp_path / "config.json", block, version=0))
    assert (config.precision, config.jit_compile, config.devices) == ("float32", "auto", "auto")


def test_read_of_a_folder_without_config_json_is_a_usage_error_naming_the_folder(tmp_path):
    with pytest.raises(ZooUsageError) as err:
        RunConfig.read(tmp_path / "run-1" / "config.json")
    assert str(err.value) == f"{tmp_path / 'run-1'} is not a run directory (no config.json)"


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"model": {}}',  # no config block
        '{"config": {"epochs": 3}}',  # no model
    ],
)
def test_read_of_a_corrupted_config_names_the_file(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ZooError) as err:
        RunConfig.read(path)
    assert type(err.value) is ZooError
    assert str(err.value).startswith(f"{path} is corrupted or not a zoo config: ")
    assert "\n" not in str(err.value)


def test_read_of_an_edited_config_with_a_bad_value_names_the_file_and_the_value(tmp_path):
    path = write_config(tmp_path / "config.json", {"model": "cnn", "epochs": 0})
    with pytest.raises(ZooError) as err:
        RunConfig.read(path)
    # Not a usage error: nothing the user typed this time is wrong, the file is.
    assert type(err.value) is ZooError
    assert str(err.value) == f"{path} is corrupted or not a zoo config: `epochs` must be between 1 and 1000000, received 0"


@pytest.mark.parametrize("block", ['["cnn"]', "null", '"cnn"'])
def test_read_of_a_config_block_that_is_not_an_object_names_the_file(tmp_path, block):
    path = tmp_path / "config.json"
    path.write_text(f'{{"config": {block}}}', encoding="utf-8")
    with pytest.raises(ZooError, match="is corrupted or not a zoo config"):
        RunConfig.read(path)


def test_a_recipe_file_with_settings_beside_options_is_refused_not_ignored(tmp_path):
    """A hand-written, flat recipe ({"model", "epochs", ...}) would train with none of its settings."""
    import json

    from zoo import recipes
    from zoo.errors import ZooUsageError

    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"model": "mlp", "epochs": 1, "learning_rate": 0.01, "hparams": {"dropout": 0.1}}))
    with pytest.raises(ZooUsageError, match=r"flat.json: unknown key 'epochs' \(put training settings under "
                                            r"\"options\", as zoo tune writes them\)$"):
        recipes.read(flat)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"model": "mlp", "options": {"epochs": 1}, "notes": "mine"}))
    with pytest.raises(ZooUsageError, match=r"unknown key 'notes' \(a recipe file holds model, options, hparams, tuning"):
        recipes.read(odd)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"model": "mlp", "options": {"epochs": 1}, "hparams": {"dropout": 0.1}}))
    assert dict(recipes.read(good).options) == {"epochs": 1}
