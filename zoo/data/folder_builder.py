"""A folder of images as a TFDS dataset (``ZooImageFolder``), prepared once under a name made of
the folder's fingerprint and image shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from . import folders, imagefiles
from .images import resize_images


class ZooImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Images from class folders, prepared once per folder content and image shape.

    The config name is the folder's fingerprint and shape, so a folder whose files change (or
    the same folder at another ``image_size``) is prepared anew, in a folder of its own, while
    an unchanged one is read from ``data_dir`` again.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.1.0": "Decoded by Pillow (zoo.data.imagefiles.decode): every format it reads, first frames, EXIF "
                 "orientation, 16 bits scaled to 8; PNG and JPEG pixels may differ from 1.0.0's.",
        "1.0.0": "PNG and JPEG, decoded by tf.io.decode_image.",
    }

    def __init__(self, folder: folders.Folder, **kwargs: Any) -> None:
        self.folder = folder
        self.zoo_name, self.zoo_source = str(folder.path), folder.record()
        height, width, channels = folder.shape
        name = f"{folder.fingerprint}-{height}x{width}x{channels}"
        super().__init__(config=tfds.core.BuilderConfig(name=name), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=f"Images from {self.folder.path}",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=self.folder.shape),
                "label": tfds.features.ClassLabel(names=list(self.folder.classes)),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {split: self._examples(split) for split in self.folder.files}

    def _examples(self, split: str):
        for label, names in self.folder.files[split].items():
            for name in names:
                yield name, {"image": _decode_file(self.folder.path / name, self.folder.shape), "label": label}

    def _generate_examples(self):  # the splits above are generators already
        raise NotImplementedError


_SCANNED: dict[tuple, folders.Folder] = {}


def builder_for_folder(
    name: str,
    data_dir: str | None,
    image_size: tuple[int, int] | None,
    channels: int | None,
    strict_files: bool = False,
) -> ZooImageFolder:
    # Reading every image's header takes seconds for a large folder; a run asks several times.
    folder = folders.walk(name, strict=strict_files)
    key = (folder.path, folder.fingerprint, image_size, channels, folder.skipped)
    if key not in _SCANNED:
        _SCANNED[key] = folders.with_shape(folder, image_size, channels)
    return ZooImageFolder(_SCANNED[key], data_dir=data_dir)


def _decode_file(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One image as prepared: decoded by Pillow (every format alike), resized as served."""
    image = imagefiles.decode(path, shape[2])
    if tuple(image.shape[:2]) != shape[:2]:
        image = resize_images(image, shape[:2]).numpy()
    return image
