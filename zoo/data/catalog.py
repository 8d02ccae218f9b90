"""Datasets by name: TFDS catalog datasets, dataset plugins and folders, prepared offline from a
manual folder where there is no network; what a run records about its dataset."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

import registry

from ..errors import DatasetNotHereError, ZooError, ZooUsageError, first_line
from . import folders
from .folder_builder import builder_for_folder
from .offline import (
    announced,
    check_preparable,
    no_absl_warnings,
    nothing_left_on_failure,
    quiet_unless_terminal,
)

TFDS_VERSION = tfds.__version__
TFDS_PREFIX = "tfds:"  # "tfds:mnist": TFDS's catalog dataset, even where a plugin has the name
AUTOTUNE = tf.data.AUTOTUNE
# Measured on 2 cores (scripts/bench_pipeline.py): with tf.data's autotuner on, whole stretches of
# training ran 1.6-1.9x slower with both cores partly idle, at random; off, never. AUTOTUNE then
# resolves to TensorFlow's fixed defaults. As Keras does for NumPy input, the default graph
# rewrites are off too: they rebuild the pipeline at every epoch and have nothing to fuse here.
OPTIONS = tf.data.Options()
OPTIONS.autotune.enabled = False
OPTIONS.experimental_optimization.apply_default_optimizations = False


@dataclass(frozen=True)
class DatasetInfo:
    """What the runner and the builders need to know about a dataset."""

    name: str
    version: str
    input_shape: tuple[int, ...]
    num_classes: int
    train_split: str
    validation_split: str
    test_split: str | None
    class_names: tuple[str, ...]
    num_train: int = 0
    num_validation: int = 0
    num_test: int = 0
    # Where the examples come from beyond TFDS's name and version: an image folder (its path,
    # files per split and class, fingerprint) or a dataset plugin (distribution and version).
    source: dict[str, Any] | None = None


@dataclass(frozen=True)
class Features:
    """What a model needs to be built, known from TFDS metadata before anything is prepared."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]


def describe(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> Features:
    """Check that ``name`` is an image-classification dataset that can be loaded, without loading it.

    Everything knowable before the work starts is checked here: the name, version and config
    against the TFDS registry, the features, and, for a dataset not prepared yet, that its data
    folder can be written and its files can be had (from ``manual_dir`` or the network).
    """
    with no_absl_warnings():
        builder = _builder(name, data_dir, image_size, channels, strict_files)
        features = features_of(builder)
        if not builder.is_prepared():
            check_preparable(builder, manual_dir)
    return features


def split_strings(val_fraction: float) -> tuple[str, str]:
    """TFDS slices for train and validation: disjoint by construction, the same every epoch."""
    if not 0.0 < val_fraction < 1.0:
        raise ZooUsageError(f"`val_split` must be between 0 and 1 (exclusive), received {val_fraction}")
    cut = f"{100.0 * (1.0 - val_fraction):g}%"
    return f"train[:{cut}]", f"train[{cut}:]"


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
    # We cache and shuffle ourselves, after decoding; TFDS's own auto-cache would be a second copy.
    return builder.as_dataset(
        split=split,
        as_supervised=True,
        shuffle_files=False,
        read_config=tfds.ReadConfig(try_autocache=False),
    )


def prepared_builder(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
    prepare: bool = True,
) -> tfds.core.DatasetBuilder:
    """The TFDS builder for ``name``, prepared offline from ``manual_dir`` where needed.

    ``name`` is a TFDS catalog name, a dataset plugin's name or a folder of images. ``prepare``
    False: a catalog or plugin dataset that is not prepared in ``data_dir`` is a
    :class:`DatasetNotHereError` instead of a download or a preparation (a folder, which is its
    own files, is prepared from them either way).
    """
    with no_absl_warnings():
        builder = _builder(name, data_dir, image_size, channels, strict_files)
        prepared = builder.is_prepared()
    if prepared:
        return builder
    if not prepare and not is_folder(name):
        raise DatasetNotHereError(f"{name} is not prepared in {builder.data_dir_root}")
    check_preparable(builder, manual_dir)
    config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        # The prepared-data bucket needs the network and would only be slower to fail.
        try_download_gcs=False,
    )
    plugin = getattr(builder, "zoo_source", None)
    # A folder is its own files; a plugin reads manual_dir only if it asks for manual downloads.
    reads_manual = not is_folder(name) and (not plugin or getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    with nothing_left_on_failure(builder), quiet_unless_terminal(), \
            announced(name, builder.data_dir, manual_dir if reads_manual else None):
        try:
            builder.download_and_prepare(download_config=config)
        except Exception as exc:
            if plugin and not isinstance(exc, (ZooError, registry.RegistryError)):  # its code, its failure
                raise registry.PluginError(
                    f"dataset '{name}' ({plugin['distribution']} {plugin['version']}, {plugin['entry_point']}) "
                    f"failed to prepare: {type(exc).__name__}: {first_line(exc)}") from None
            if type(exc).__name__ != "NonMatchingChecksumError":
                raise
            found = re.search(r"downloaded to (.+?), has wrong checksum", str(exc))
            file = found.group(1) if found else first_line(exc)
            raise ZooError(
                f"{file} does not have the checksum TFDS registered for dataset '{name}': it is "
                f"not the original file; replace it with the original download"
            ) from None
    return builder


def _builder(
    name: str,
    data_dir: str | None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    strict_files: bool = False,
) -> tfds.core.DatasetBuilder:
    """The builder ``name`` means: a folder of images, a dataset plugin or a TFDS catalog name.

    ``tfds.builder``'s errors (multi-line, several types) become one usage-error line.
    """
    if is_folder(name):
        return builder_for_folder(name, data_dir, image_size, channels, strict_files)
    if image_size is not None or channels is not None:
        raise ZooUsageError(
            f"`image_size` and `channels` apply to folders of images; dataset '{name}' has "
            f"images of one size already"
        )
    if strict_files:
        raise ZooUsageError(f"`strict_files` applies to folders of images; dataset '{name}' is not one")
    plugin = None if name.startswith(TFDS_PREFIX) else registry.find_dataset(name)
    if plugin is not None:
        cls = plugin.load()
        if ":" not in name:
            _refuse_shadowing(name, plugin, cls)
        try:
            builder = cls(data_dir=data_dir)
        except Exception as exc:  # a plugin must not take the zoo down with a traceback
            raise registry.PluginError(
                f"dataset '{name}' ({plugin.dist} {plugin.version}, {plugin.value}) cannot be "
                f"built: {type(exc).__name__}: {first_line(exc)}"
            ) from None
        builder.zoo_source = plugin.record()
        return builder
    catalog = name.removeprefix(TFDS_PREFIX)
    if not catalog.strip():
        raise ZooUsageError(f"`dataset` {name!r} names no dataset; give a TFDS name, a dataset plugin or a folder")
    try:
        return tfds.builder(catalog, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        dist, _, short = catalog.partition(":")
        if short and not re.fullmatch(r"[\d.*]+", short) and not name.startswith(TFDS_PREFIX):  # dist:name
            raise ZooUsageError(f"unknown dataset '{name}': no installed distribution '{dist}' registers a dataset "
                                f"'{short}' (zoo list --datasets shows them)") from None
        raise ZooUsageError(
            f"unknown dataset '{catalog}' (see https://www.tensorflow.org/datasets/catalog)"
        ) from None
    except (AssertionError, ValueError, TypeError) as exc:  # version, config or name syntax
        # TFDS prefixes its reason with the builder's arguments; the reason is what helps.
        reason = first_line(exc).rpartition("}\": ")[2].rstrip(".")
        if "BuilderConfig" in reason:  # TFDS's list of close names follows on lines of its own
            reason = _configs_of(catalog)
        elif catalog.endswith("/"):  # `mnist/`: a folder written without ./
            reason += f"; a folder of images is written as a path: ./{catalog}"
        raise ZooUsageError(f"cannot load dataset '{name}': {reason}") from None


def _refuse_shadowing(name: str, plugin: registry.DatasetEntry, cls: type) -> None:
    """A plugin's dataset named as one of TFDS's catalog is ambiguous: neither is picked silently
    (a run trained on the catalog's would be evaluated on the plugin's)."""
    try:
        catalog_cls = tfds.builder_cls(name)
    except Exception:  # noqa: BLE001  (not in the catalog, whatever TFDS raises for it)
        return
    if catalog_cls is not cls:
        raise ZooUsageError(
            f"dataset '{name}' names both TFDS's catalog dataset and plugin {plugin.dist} {plugin.version}'s "
            f"({plugin.value}): "
            f"give '{TFDS_PREFIX}{name}' for TFDS's or '{plugin.dist}:{name}' for the plugin's")


def _configs_of(name: str) -> str:
    """What to say of ``name``'s config (``base/config``) when TFDS has no such config."""
    base, _, config = name.partition(":")[0].partition("/")
    configs = [c.name for c in (getattr(tfds.builder_cls(base), "BUILDER_CONFIGS", None) or [])]
    if not configs:
        return f"'{base}' has no configs; give it as '{base}'"
    shown = ", ".join(configs[:20]) + (f" … ({len(configs)} in all)" if len(configs) > 20 else "")
    return f"'{base}' has no config '{config}'; its configs: {shown}"


def has_split(builder: tfds.core.DatasetBuilder, split_name: str) -> bool:
    try:  # indexing, not `in`: it also answers for tfds.testing.mock_data's split dict
        builder.info.splits[split_name]
    except (KeyError, ValueError):  # TFDS raises ValueError for an unknown split name
        return False
    return True


def features_of(builder: tfds.core.DatasetBuilder) -> Features:
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2:
        raise ZooUsageError(f"dataset '{info.name}' has no (image, label) supervised keys")
    image_key, label_key = keys
    image, label = info.features[image_key], info.features[label_key]
    if not isinstance(image, tfds.features.Image) or not isinstance(label, tfds.features.ClassLabel):
        raise ZooUsageError(f"dataset '{info.name}' is not an image-classification dataset")
    file_format = getattr(info, "file_format", None)
    if file_format is not None and file_format != tfds.core.FileFormat.TFRECORD:
        # TFDS's tf.data reader (as_dataset) reads TFRecord files only.
        raise ZooUsageError(
            f"dataset '{info.name}' is stored as {file_format.value}, which TFDS reads only "
            f"through as_data_source; prepare it as TFRecord (file_format='tfrecord')"
        )
    if any(d is None for d in image.shape):
        raise ZooUsageError(
            f"dataset '{info.name}' has images of varying size {image.shape}; the zoo needs a fixed shape"
        )
    return Features(
        name=getattr(builder, "zoo_name", info.name),  # a folder: its path
        input_shape=tuple(int(d) for d in image.shape),
        num_classes=int(label.num_classes),
        class_names=tuple(label.names),
    )


def info_of(builder: tfds.core.DatasetBuilder, train_split: str, val_split: str) -> DatasetInfo:
    features = features_of(builder)
    return DatasetInfo(
        name=features.name,
        version=str(builder.info.version),
        input_shape=features.input_shape,
        num_classes=features.num_classes,
        train_split=train_split,
        validation_split=val_split,
        test_split="test" if has_split(builder, "test") else None,
        class_names=features.class_names,
        source=getattr(builder, "zoo_source", None),
    )


# ---------------------------------------------------------------------------------------------
# Folders of images, prepared as TFDS datasets


def is_folder(name: str) -> bool:
    """Whether ``--dataset`` names a folder of images rather than a plugin or TFDS dataset.

    Written like a path, it is one; a bare name only when it is an existing folder that no
    dataset plugin and no TFDS builder is called (TFDS names may hold "/": ``imagenet_resized/64x64``).
    """
    if not name.strip():
        raise ZooUsageError("`dataset` is empty; give a TFDS name, a dataset plugin or a folder")
    if folders.written_as_path(name):
        return True
    if not Path(name).expanduser().is_dir():
        return False
    return registry.find_dataset(name) is None and name.split(":")[0].split("/")[0] not in tfds.list_builders()


def dataset_name(name: str | os.PathLike) -> str:
    """``dataset`` as a run records it: a folder as an absolute path (a resume or a bench job may
    start in another working directory), any other name as it is. A ``pathlib.Path`` is always a
    folder: ``Path("./mnist")`` prints as ``mnist``, but the catalog's MNIST is not meant."""
    if not isinstance(name, str):
        return folders.folder_text(name)
    return str(Path(name).expanduser().resolve()) if is_folder(name) else name


def count(ds: tf.data.Dataset) -> int:
    # TFDS attaches the exact cardinality to each (sliced) split, so this reads nothing.
    n = int(ds.cardinality())
    return n if n >= 0 else int(ds.reduce(0, lambda count, *_: count + 1))


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
    try:  # TFDS's record of the (sliced) split: nothing is read; a reversed slice (train[5:2]) is negative there
        return max(0, int(builder.info.splits[split].num_examples))
    except KeyError:  # no split record (tfds.testing.mock_data): count what the split holds
        return count(read_split(builder, split))


def decoded_bytes(shape: tuple[int, ...]) -> int:
    """One decoded example: uint8 pixels and an int64 label."""
    return math.prod(shape) + 8
