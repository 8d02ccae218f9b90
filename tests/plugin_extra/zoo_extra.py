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


@keras.saving.register_keras_serializable(package="zoo_extra")
class LateBlock(keras.layers.Layer):
    """A residual dense block whose sub-layers are made in ``build()``, as many third-party layers
    are written: at load time they take the process's global dtype policy, not this layer's."""

    def __init__(self, units: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.inner = keras.layers.Dense(self.units, activation="relu")
        self.inner.build(input_shape)
        self.outer = keras.layers.Dense(input_shape[-1])
        self.outer.build((*input_shape[:-1], self.units))
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return x + self.outer(self.inner(x)) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="zoo_extra")
class EarlyBlock(keras.layers.Layer):
    """The same block with its sub-layers made in ``__init__`` (the other common way)."""

    def __init__(self, units: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(units, activation="relu")
        self.outer = None

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer = keras.layers.Dense(input_shape[-1])
        self.outer.build((*input_shape[:-1], self.units))

    def call(self, x):
        return x * keras.ops.sigmoid(self.outer(self.inner(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def blocknet(*, input_shape: tuple[int, ...], num_classes: int, units: int = 32) -> keras.Model:
    """Dense net of two custom blocks whose sub-layers are made in build() and in __init__."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = LateBlock(units // 2)(x)
    x = EarlyBlock(units // 2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="blocknet")


blocknet.recipe = {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3}


def mobilenet(*, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Keras' MobileNetV3Small (random weights) under its own input and head: BatchNormalization
    inside a nested functional model."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Resizing(32, 32)(inputs)  # the smallest input MobileNetV3 takes
    if input_shape[-1] == 1:
        x = keras.layers.Concatenate()([x, x, x])
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, include_top=False, pooling="avg",
        minimalistic=True, include_preprocessing=False,
    )
    x = backbone(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenet")


mobilenet.recipe = {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3}


def senet(*, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> keras.Model:
    """A small squeeze-and-excitation conv net: it learns at its recipe's 3e-3, slowly at Adam's
    default 1e-3 (a short fit of a few steps there barely moves its loss)."""
    x = inputs = keras.Input(shape=input_shape)
    for _ in range(2):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        scale = keras.layers.GlobalAveragePooling2D()(x)
        scale = keras.layers.Dense(width // 4, activation="relu")(scale)
        scale = keras.layers.Dense(width, activation="sigmoid")(scale)
        x = keras.layers.Multiply()([x, keras.layers.Reshape((1, 1, width))(scale)])
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x), name="senet")


senet.recipe = {"learning_rate": 3e-3}
