"""A dataset plugin: a TFDS builder in your own package, named in the zoo.datasets group."""

import numpy as np
import tensorflow_datasets as tfds


class Shapes(tfds.core.GeneratorBasedBuilder):
    """Bright bars at three heights on 20x20 grayscale noise: three classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(20, 20, 1)),
                "label": tfds.features.ClassLabel(names=["low", "middle", "high"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 300), "test": self._generate_examples(300, 360)}

    def _generate_examples(self, start, stop):
        rng = np.random.default_rng(start)
        for i in range(start, stop):
            label = i % 3
            image = rng.integers(0, 50, (20, 20, 1), dtype=np.uint8)
            image[4 + 5 * label : 7 + 5 * label] = 250
            yield i, {"image": image, "label": label}
