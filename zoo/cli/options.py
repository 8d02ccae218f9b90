"""The training options of ``zoo train`` and ``zoo bench``: one table of RunConfig's fields.

Every RunConfig field a command line can set (all but the model and its hyperparameters) has one
row here, checked against the dataclass at import, so the CLI, ``zoo.train`` (whose options are
the same fields, :data:`zoo.plan.OPTIONS`) and the config cannot drift apart. A value left at None
is decided later: by the model's recipe, or ``auto``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..config import (
    BACKENDS,
    DEVICES_HELP,
    INPUTS,
    JIT_COMPILE,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
)
from ..errors import ZooError, ZooUsageError
from ..export.request import FORMATS, QUANTIZATIONS
from ..plan import OPTIONS

RECIPE = "Default: the model's recipe."


def _folder_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An absolute folder path; "" is refused (resolved, it would be the working directory)."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("must be a folder path, not empty", param=param)
    return str(Path(value).expanduser().resolve())


# field: (group, flag or None for --field-name, click.option keywords). Groups: "source" (where
# the data is), "init" (train only: fine-tuning a preset), "run" (train only), "recipe", "hardware" (None means auto, and keeps `zoo bench
# --from-runs` able to tell that nothing was asked for), "input" and "data".
TABLE: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "dataset": ("source", None, dict(
        default="mnist", show_default=True,
        help="A TFDS image-classification dataset, a dataset plugin (zoo list --datasets) or a "
             "folder of class folders of images.")),
    "init": ("init", None, dict(
        metavar="PRESET",
        help="Start from a preset's weights (a name such as cnn.mnist, dist:name or a preset "
             "folder; zoo list --presets). The model's hyperparameters default to the preset's. "
             "With the preset's class names (and order), every weight loads; otherwise the head "
             "(the layers nearest the outputs) starts fresh.")),
    "freeze": ("init", None, dict(
        metavar="N|all",
        help="With --init: train only the head for the first N epochs, then every layer; all: "
             "only the head throughout. [default: nothing frozen]")),
    "epochs": ("recipe", None, dict(type=int, help=RECIPE)),
    "batch_size": ("recipe", None, dict(type=int, help=RECIPE)),
    "learning_rate": ("recipe", None, dict(type=float, help=RECIPE)),
    "optimizer": ("recipe", None, dict(type=click.Choice(OPTIMIZERS), help=RECIPE)),
    "schedule": ("recipe", None, dict(type=click.Choice(SCHEDULES), help=RECIPE)),
    "label_smoothing": ("recipe", None, dict(type=float, help="Default: the model's recipe (0 if none).")),
    "augment": ("recipe", "--augment/--no-augment", dict(
        default=None, help="Random shifts of up to 2 pixels on training images. " + RECIPE)),
    "val_split": ("run", None, dict(
        type=float, default=0.1, show_default=True,
        help="Fraction of the train split held out for validation (the last part).")),
    "seed": ("run", None, dict(type=int, default=0, show_default=True)),
    "deterministic": ("run", "--deterministic/--no-deterministic", dict(
        default=True, show_default=True,
        help="Deterministic TensorFlow ops: the same seed gives the same history.")),
    "backend": ("hardware", None, dict(
        type=click.Choice(BACKENDS),
        help="Keras' backend: tensorflow, or jax (pip install \"keras-zoo[jax]\"; the one that "
             "trains across machines). [default: $KERAS_BACKEND, else tensorflow; for --resume, "
             "the run's own]")),
    "precision": ("hardware", None, dict(
        type=click.Choice(PRECISIONS),
        help="Keras dtype policy. auto: mixed_float16 on NVIDIA GPUs of compute capability 7.0 or "
             "newer, mixed_bfloat16 on CPUs with avx512_bf16 or amx_bf16, float32 otherwise. The "
             "softmax always computes in float32. [default: auto]")),
    "jit_compile": ("hardware", None, dict(
        type=click.Choice(JIT_COMPILE),
        help="XLA compilation. auto: Keras' default (on with a GPU, off on a CPU-only machine, "
             "with several devices and with deterministic ops). on needs --no-deterministic. "
             "[default: auto]")),
    "devices": ("hardware", None, dict(
        help=f"{DEVICES_HELP}. auto: every GPU, else the CPU. N: the first N GPUs; on a machine "
             "without GPUs, N logical CPU devices, which exist to test the multi-device path and "
             "make nothing faster. Several devices train data-parallel (MirroredStrategy; "
             "DataParallel on JAX); the recipe's batch size is the global batch, split over them, "
             "and the learning rate is unchanged. [default: auto]")),
    "input": ("input", None, dict(
        type=click.Choice(INPUTS),
        help="memory: decode the splits once into RAM (fastest); stream: read the TFDS shards "
             "every epoch through a shuffle buffer (any size); auto: memory when the decoded "
             "splits fit --memory-budget. [default: auto]")),
    "memory_budget": ("input", None, dict(
        metavar="SIZE",
        help="Memory the data may take, e.g. 512MB or 4GB (powers of 1024). It decides auto and "
             "sizes the streaming shuffle buffer. [default: a quarter of the machine's memory]")),
    "cache_dir": ("input", None, dict(
        type=click.Path(), callback=_folder_path,
        help="Streaming: write the decoded examples here once and read them back in later "
             "epochs and runs (for datasets whose decoding is the bottleneck).")),
    "image_size": ("data", None, dict(
        metavar="H,W",
        help="Folders of images: resize every image to this height and width (one number: a "
             "square) while preparing (needed when their sizes differ); the export resizes served "
             "images the same way.")),
    "channels": ("data", None, dict(
        type=int,
        help="Folders of images: 1 (grayscale) or 3 (RGB). [default: 1 if every image is "
             "grayscale, else 3]")),
    "strict_files": ("data", None, dict(
        is_flag=True, default=None,
        help="Folders of images: refuse a file that is not an image (a README, a PDF), rather "
             "than skip it. Hidden and system files (.DS_Store, Thumbs.db, __MACOSX/) are "
             "skipped either way.")),
    "data_dir": ("data", None, dict(
        envvar="TFDS_DATA_DIR", type=click.Path(file_okay=False, resolve_path=True),
        help="Where TFDS keeps prepared datasets [env: TFDS_DATA_DIR].")),
    "manual_dir": ("data", None, dict(
        envvar="ZOO_MANUAL_DIR", type=click.Path(exists=True, file_okay=False, resolve_path=True),
        help="Folder with the dataset's downloaded files, to prepare offline [env: ZOO_MANUAL_DIR].")),
}
if set(TABLE) != set(OPTIONS):  # a RunConfig field without a row, or a row without a field
    raise ZooError(f"zoo.cli.options.TABLE and RunConfig disagree: {sorted(set(TABLE) ^ set(OPTIONS))}")


def run_options(*groups: str):
    """Decorate a command with the options of ``groups``, in the table's order."""
    options = [
        click.option(flag or f"--{field.replace('_', '-')}", field, **spec)
        for field, (group, flag, spec) in TABLE.items() if group in groups
    ]

    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def export_options(what: str):
    """``--format``, ``--quantize`` and ``--max-accuracy-drop`` of ``zoo export`` and ``zoo bench``
    (``what``: what the command does with the formats, for the help), resolved by the command with
    :func:`zoo.export.request.resolve`."""
    options = [
        click.option("--format", "formats", default="saved_model", show_default=True, metavar="FORMAT[,FORMAT...]",
                     help=f"{', '.join(FORMATS)}: {what}"),
        click.option("--quantize", type=click.Choice(sorted({q for qs in QUANTIZATIONS.values() for q in qs})),
                     help="Quantize the LiteRT file (int8: calibrated on the run's training images)."),
        click.option("--max-accuracy-drop", type=float, metavar="POINTS",
                     help="Refuse a quantized file that loses more test accuracy than this. [default: 0.5]"),
    ]

    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def dataset_place_options(fn):
    """``--data-dir`` and ``--manual-dir`` of ``zoo evaluate`` and ``zoo export``: where a run's or
    a preset's dataset is on this machine now."""
    fn = click.option("--manual-dir", type=click.Path(exists=True, file_okay=False, resolve_path=True),
                      help="Folder with the dataset's downloaded files, to prepare it offline. [default: the "
                           "run's; for a preset ZOO_MANUAL_DIR]")(fn)
    return click.option("--data-dir", type=click.Path(file_okay=False, resolve_path=True),
                        help="Where TFDS keeps the dataset prepared. [default: where the run trained; for a "
                             "preset TFDS_DATA_DIR or TFDS's own]")(fn)


def hp_pairs(items: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ZooUsageError(f"--hp expects KEY=VALUE, received {item!r}")
        if key.strip() in pairs:
            raise ZooUsageError(f"--hp {key.strip()} is given twice")
        pairs[key.strip()] = value.strip()
    return pairs


def space_pairs(items: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ZooUsageError(f"--space expects KEY=RANGE such as learning_rate=log(1e-4,1e-2), received {item!r}")
        if key.strip() in pairs:
            raise ZooUsageError(f"--space {key.strip()} is given twice")
        pairs[key.strip()] = value.strip()
    return pairs
