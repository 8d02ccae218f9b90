"""LeNet-5 as a zoo plugin: one function, one entry point, no import of the zoo."""

import keras


def lenet(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    filters: tuple[int, ...] = (6, 16),
    dense_units: tuple[int, ...] = (120, 84),
    dropout: float = 0.0,
) -> keras.Model:
    """LeNet-5: two 5x5 convolutions with max pooling, then two dense layers.

    Args:
        input_shape: image shape (height, width, channels); inputs are float32 in [0, 1].
        num_classes: number of output classes.
        filters: channels of the two convolutions.
        dense_units: widths of the two dense layers.
        dropout: dropout rate before the classifier.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for f in filters:
        x = keras.layers.Conv2D(f, 5, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    for units in dense_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="lenet")


lenet.recipe = {"epochs": 10, "batch_size": 128, "optimizer": "adam", "learning_rate": 1e-3}
