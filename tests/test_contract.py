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
