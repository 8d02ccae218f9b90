"""Plugins for the install tests: one with a custom layer, one that forgets its softmax."""

import keras


@keras.saving.register_keras_serializable(package="zoo_extra")
class Gain(keras.layers.Layer):
    """Multiplies its input by a learned per-channel gain, starting from ``initial``."""

    def __init__(self, initial: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial = initial

    def build(self, input_shape):
        self.gain = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.initial),
            name="gain",
        )

    def call(self, x):
        return x * self.gain

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


def gainnet(
    *, input_shape: tuple[int, ...], num_classes: int, units: int = 32, gain: float = 0.5
) -> keras.Model:
    """A dense net with a custom Gain layer: model.keras reloads only with this module imported."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = Gain(gain)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="gainnet")


gainnet.recipe = {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3}


def logits(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Forgets the softmax: returns logits, which `zoo check` must fail."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))
