"""Real, tiny TFDS image-classification datasets for tests: zoo_tiny and zoo_tiny_no_test
(8x8x1, 3 classes) and zoo_stream (64x64x3 colour images, prepared in several shards, for the
streaming path: shard order, shuffle buffer, decoding after it).

Every image is unique (its index is written into two pixels) and its label is visible (a bright
row at 2 + label), so split slicing and training are tested for real in seconds. Defining the
classes registers them with TFDS.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def _examples(start: int, stop: int, shape: tuple[int, int, int], classes: int):
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        label = i % classes
        # Dim noise keeps colour PNGs from compressing to nothing, as real photos don't.
        image = rng.integers(0, 40, shape, dtype=np.uint8) if shape[-1] == 3 else np.zeros(shape, np.uint8)
        image[0, 0, 0], image[0, 1, 0] = i // 256, i % 256
        image[2 + label, :, :] = 255
        yield i, {"image": image, "label": label}


class _Tiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    SPLITS: dict[str, tuple[int, int]] = {}
    SHAPE, CLASSES = (8, 8, 1), 3

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=self.SHAPE),
                "label": tfds.features.ClassLabel(num_classes=self.CLASSES),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {
            name: _examples(*bounds, self.SHAPE, self.CLASSES) for name, bounds in self.SPLITS.items()
        }

    def _generate_examples(self):  # the splits above are generators already
        raise NotImplementedError


class ZooTiny(_Tiny):
    SPLITS = {"train": (0, 200), "test": (200, 260)}


class ZooTinyNoTest(_Tiny):
    SPLITS = {"train": (0, 120)}


class ZooStream(_Tiny):
    SPLITS = {"train": (0, 320), "test": (320, 400)}
    SHAPE, CLASSES = (64, 64, 3), 4
    SHARDS = 4  # prepare with DownloadConfig(num_shards=SHARDS)
