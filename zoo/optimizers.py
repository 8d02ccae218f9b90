"""The optimizers a recipe names (config.OPTIMIZERS), built the one way training and checks use."""

from __future__ import annotations

from typing import Any

import keras


def make(name: str, learning_rate: Any) -> keras.optimizers.Optimizer:
    """``name`` (adam, adamw, sgd or rmsprop) at ``learning_rate`` (a number or a schedule)."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.RMSprop(learning_rate)
