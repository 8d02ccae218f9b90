"""What `zoo train` refuses before it trains: a model whose finished run would be wrong or unusable
(outputs that are not probabilities; a layer Keras cannot reload in another process), and an
export base that serves another task. Nothing is written; the error is one line naming what to
change."""

from __future__ import annotations

import json

import keras
import pytest

import registry
import zoo


class Scale(keras.layers.Layer):
    """A custom layer with sub-layers made in build(), registered with no one."""

    def build(self, input_shape):
        self.dense = keras.layers.Dense(input_shape[-1])
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(x)


@keras.saving.register_keras_serializable(package="zoo_contract_test")
class RegisteredScale(Scale):
    pass


def head(kind: str):
    def build(*, input_shape, num_classes):
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Flatten()(inputs)
        x = {"unregistered": Scale, "registered": RegisteredScale}.get(kind, keras.layers.Identity)()(x)
        activation = None if kind == "logits" else "softmax"
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation=activation)(x))
    return build


@pytest.fixture
def register():
    names = []

    def add(kind: str) -> str:
        name = f"contract-{kind}"
        zoo.register(head(kind), name=name)
        names.append(name)
        return name

    yield add
    for name in names:
        registry._discovery._LOCAL.pop(name, None)


@pytest.mark.parametrize("kind, message", [
    ("logits", "model 'contract-logits': outputs are not probabilities (min "),
    ("unregistered", "model 'contract-unregistered' cannot be reloaded from its saved config, so its run could not be "
                     "evaluated or exported: Keras cannot locate its class 'Scale': register it with "
                     "@keras.saving.register_keras_serializable() where the plugin defines it"),
])
def test_a_model_whose_run_would_be_wrong_or_unusable_is_refused_before_training(kind, message, register,
                                                                                 tiny_data_dir, tmp_path):
    with pytest.raises(registry.PluginError) as err:
        zoo.train(register(kind), dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, run_dir=tmp_path / "run",
                  export=tmp_path / "exports", verbose=0)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "exports").exists()


def test_a_registered_custom_layer_trains_and_reloads(register, tiny_data_dir, tmp_path):
    run = zoo.train(register("registered"), dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1,
                    run_dir=tmp_path / "run", verbose=0)
    assert run.evaluate()["accuracy"] == pytest.approx(run.metrics["test_accuracy"])


@keras.saving.register_keras_serializable(package="zoo_contract_test")
class SubNet(keras.Model):
    """A subclassed model as Keras' saving guide writes one: registered, its config rebuilds it."""

    def __init__(self, num_classes: int, units: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.units = num_classes, units
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.classify = keras.layers.Dense(num_classes, activation="softmax")

    def call(self, images):
        return self.classify(self.hidden(self.flatten(images)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "units": self.units}


def subnet(*, input_shape: tuple[int, ...], num_classes: int, units: int = 8) -> keras.Model:
    """A subclassed model, unbuilt: the zoo builds it for input_shape."""
    return SubNet(num_classes, units, name="subnet")


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_subclassed_model_trains_evaluates_exports_and_reloads(precision, tiny_data_dir, tmp_path):
    zoo.register(subnet)
    try:
        run = zoo.train("subnet", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, precision=precision,
                        run_dir=tmp_path / "run", verbose=0)
        model = run.model()
        assert isinstance(model, SubNet) and model.classify.dtype_policy.name == "float32"  # as it trained
        result = run.evaluate()
        assert (result["accuracy"], result["loss"]) == (run.metrics["test_accuracy"], run.metrics["test_loss"])
        export = run.export(tmp_path / "exports", formats="onnx")
        assert export.accepts == "uint8 images [N, 8, 8, 1]" and "onnx" in export.formats
    finally:
        registry._discovery._LOCAL.pop("subnet", None)


def test_zoo_check_passes_a_subclassed_model_and_words_an_unregistered_class_as_zoo_train_does(tmp_path):
    from zoo.check import _images, _keras_roundtrip, run_checks

    failed = [r for r in run_checks(subnet) if not r.passed]
    assert not failed, failed
    model = head("unregistered")(input_shape=(8, 8, 1), num_classes=3)
    with pytest.raises(AssertionError) as err:
        _keras_roundtrip(model, _images((8, 8, 1), 3)[0], tmp_path, "float32")
    assert str(err.value) == ("cannot reload model.keras: Keras cannot locate its class 'Scale': register it with "
                              "@keras.saving.register_keras_serializable() where the plugin defines it")


def _served(base, class_names, input_shape) -> None:
    """A version under ``base`` whose zoo.json says it answers ``class_names`` for ``input_shape``."""
    from zoo import formats

    (base / "1" / "assets.extra").mkdir(parents=True)
    record = formats.stamp(formats.EXPORT, {"class_names": class_names, "input_shape": input_shape, "dataset": "other"})
    (base / "1" / "assets.extra" / "zoo.json").write_text(json.dumps(record))


def test_an_export_base_serving_other_classes_is_refused_before_anything_is_written(tiny_runs, tiny_data_dir,
                                                                                   tmp_path):
    run = tiny_runs("softmax")
    base = tmp_path / "exports"
    _served(base, ["cat", "dog"], [28, 28, 1])
    message = rf"^export base {base} serves 2 classes \(cat, dog\) of 28x28x1 images \(version 1, other\); this model answers "
    with pytest.raises(zoo.ZooUsageError, match=message):
        run.export(base)
    with pytest.raises(zoo.ZooUsageError, match=message):  # zoo train --export: before it trains
        zoo.train("softmax", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, run_dir=tmp_path / "run",
                  export=base, verbose=0)
    assert not (tmp_path / "run").exists() and sorted(p.name for p in base.iterdir()) == ["1"]

    same = tmp_path / "same"  # the same classes and input: a new version of the same task
    _served(same, run.dataset["class_names"], run.dataset["input_shape"])
    assert run.export(same).version == 2


def any_size(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Takes images of any height and width (a ``None`` size, as docs/plugins.md allows)."""
    inputs = keras.Input(shape=(None, None, input_shape[-1]))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def test_a_model_that_takes_any_size_is_served_at_the_size_it_trained_on(tiny_data_dir, tmp_path):
    """Its export takes the run's images, in every format, and zoo check's export passes it."""
    import numpy as np
    import tensorflow as tf

    from zoo.check import run_checks

    zoo.register(any_size)
    try:
        run = zoo.train("any_size", dataset="zoo_tiny", data_dir=tiny_data_dir, epochs=1, precision="float32",
                        run_dir=tmp_path / "run", verbose=0)
        export = run.export(tmp_path / "exports", formats="saved_model,onnx")
        assert export.accepts == "uint8 images [N, 8, 8, 1]" and export.max_abs_diff <= export.tolerance
        assert "same class as Keras" in export.formats["onnx"]["check"]
        images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
        served = tf.saved_model.load(str(export.path)).signatures["serving_default"](image=tf.constant(images))
        expected = run.model()(images.astype("float32") / 255, training=False)
        assert np.abs(served["probabilities"].numpy() - np.asarray(expected)).max() <= export.tolerance
        (exported,) = [r for r in run_checks(any_size) if r.name.startswith("export")]
        assert exported.passed, exported
    finally:
        registry._discovery._LOCAL.pop("any_size", None)


class NoConfig(keras.Model):
    """Subclassed, with arguments in __init__ and no get_config(): Keras can neither save nor reload it."""

    def __init__(self, num_classes, width, **kwargs):
        super().__init__(**kwargs)
        self.flat, self.hidden = keras.layers.Flatten(), keras.layers.Dense(width)
        self.out = keras.layers.Dense(num_classes, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(self.flat(x)))


def _doubled(x):
    return x * 2


def _with_lambda(function):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(keras.layers.Lambda(function)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


@pytest.mark.parametrize("make, says", [
    (lambda: NoConfig(3, 4), "its class 'NoConfig' takes arguments in __init__() but has no get_config(): implement "
                             "get_config() returning them, and register the class with "
                             "@keras.saving.register_keras_serializable()"),
    (lambda: _with_lambda(lambda x: x * 2), "a Lambda layer's Python lambda is not saved with the model: write it as "
                                            "a custom layer, registered with @keras.saving.register_keras_serializable()"),
    (lambda: _with_lambda(_doubled), "Keras cannot locate its function '_doubled': register it with "
                                     "@keras.saving.register_keras_serializable() where the plugin defines it"),
], ids=["no get_config", "lambda", "named function"])
def test_a_model_keras_cannot_save_or_reload_is_one_line_saying_what_to_change(make, says, tmp_path):
    """zoo train refuses it before training; zoo check fails its .keras check with the same advice."""
    from zoo.check import _images, _keras_roundtrip
    from zoo.models import contract

    model = make()
    images = _images((8, 8, 1), 3)[0]
    model(images[:2].astype("float32"))
    with pytest.raises(registry.PluginError) as refused:
        contract.check_before_training("plugged", model, (8, 8, 1), call=False)
    assert str(refused.value).endswith(f"so its run could not be evaluated or exported: {says}"), str(refused.value)
    with pytest.raises(AssertionError) as failed:
        _keras_roundtrip(model, images, tmp_path, "float32")
    assert str(failed.value).endswith(f"model.keras: {says}"), str(failed.value)
