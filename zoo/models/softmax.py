"""Multinomial logistic regression."""

from __future__ import annotations

import keras


def softmax(
    *, input_shape: tuple[int, ...], num_classes: int, l2: float = 0.0
) -> keras.Model:
    """Linear classifier: one dense softmax layer over the flattened pixels.

    Args:
        input_shape: image shape (height, width, channels); inputs are float32 in [0, 1].
        num_classes: number of output classes.
        l2: L2 penalty on the weights (0 disables it).
    """
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=regularizer, name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name="softmax")


softmax.recipe = {"epochs": 10, "batch_size": 128, "optimizer": "adam", "learning_rate": 3e-3,
                  "schedule": "cosine"}
