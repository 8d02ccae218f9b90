"""Two real, tiny TFDS image-classification datasets for tests: zoo_tiny and zoo_tiny_no_test.

8x8x1 images, 3 classes. Every image is unique (its index is written into two pixels) and its
label is visible (a bright row at 2 + label), so split slicing and training are tested for real
in seconds. Defining the classes registers them with TFDS.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def _examples(start: int, stop: int):
    for i in range(start, stop):
        label = i % 3
        image = np.zeros((8, 8, 1), np.uint8)
        image[0, 0, 0], image[0, 1, 0] = i // 256, i % 256
        image[2 + label, :, 0] = 255
        yield i, {"image": image, "label": label}


class _Tiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    SPLITS: dict[str, tuple[int, int]] = {}

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(num_classes=3),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {name: _examples(*bounds) for name, bounds in self.SPLITS.items()}

    def _generate_examples(self):  # the splits above are generators already
        raise NotImplementedError


class ZooTiny(_Tiny):
    SPLITS = {"train": (0, 200), "test": (200, 260)}


class ZooTinyNoTest(_Tiny):
    SPLITS = {"train": (0, 120)}
