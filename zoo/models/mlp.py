"""Multi-layer perceptron with three hidden dense layers."""

from __future__ import annotations

import keras


def mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    units: tuple[int, ...] = (512, 512, 512),
    dropout: float = 0.2,
) -> keras.Model:
    """Three hidden dense ReLU layers with dropout, then a softmax layer.

    Args:
        input_shape: image shape (height, width, channels); inputs are float32 in [0, 1].
        num_classes: number of output classes.
        units: widths of the three hidden layers.
        dropout: dropout rate after each hidden layer.
    """
    if len(units) != 3:
        raise ValueError(f"mlp has three hidden layers; `units` needs 3 widths. Received: units={units}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten()(inputs)
    for width in units:
        x = keras.layers.Dense(width, activation="relu")(x)
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mlp")


mlp.recipe = {"epochs": 15, "batch_size": 128, "optimizer": "adam", "learning_rate": 1e-3,
              "schedule": "cosine"}
