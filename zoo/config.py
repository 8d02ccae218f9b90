"""RunConfig: every setting of one training run, validated once, stored as config.json."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import files, formats
from .errors import ZooError, ZooUsageError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", "on", "off")
DEVICES_HELP = "auto, cpu, a number of devices (1 or more) or a list such as gpu:0,gpu:2"
MAX_DEVICES = 1024
INPUTS = ("auto", "memory", "stream")
BACKENDS = ("tensorflow", "jax")
SIZE_HELP = "a size such as 512MB, 4GB or 1.5GiB (powers of 1024) or a number of bytes"

# Upper bounds: values past them are typos or overflows (TensorFlow holds sizes in int32/int64,
# NumPy seeds in uint32), not requests anyone means.
MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 2**31 - 1
MAX_SEED = 2**32 - 1

# Used where neither the user nor the builder's recipe says otherwise.
DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "schedule": "constant",
    "label_smoothing": 0.0,
    "augment": False,
}


@dataclass(frozen=True)
class RunConfig:
    model: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    val_split: float = 0.1
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    optimizer: str = DEFAULTS["optimizer"]
    learning_rate: float = DEFAULTS["learning_rate"]
    schedule: str = DEFAULTS["schedule"]
    label_smoothing: float = DEFAULTS["label_smoothing"]
    augment: bool = DEFAULTS["augment"]
    # Fine-tuning: the preset whose weights the run starts from (a name, ``dist:name`` or a
    # preset folder's absolute path), and how long all but its head stay frozen: a number of
    # epochs, "all" (throughout) or None (never).
    init: str | None = None
    freeze: int | str | None = None
    seed: int = 0
    deterministic: bool = True
    # Where and how the run computes; a run records the resolved values (never "auto").
    backend: str = "tensorflow"  # Keras' backend: tensorflow or jax (zoo/compute/backend.py)
    precision: str = "auto"
    jit_compile: str = "auto"
    devices: str = "auto"
    # How the data reaches the model: "memory" (decoded once into RAM), "stream" (read from the
    # TFDS shards every epoch) or "auto" (memory when the decoded splits fit `memory_budget`).
    # A run records the path it took, never "auto".
    input: str = "auto"
    memory_budget: str | int | float | None = None  # None: a quarter of the machine's memory
    cache_dir: str | None = None
    # Folders of images only: the (height, width) and channels every image is prepared at.
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    strict_files: bool = False  # refuse a file that is not an image, rather than skip it
    data_dir: str | None = None
    manual_dir: str | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ZooUsageError(problems[0])
        if self.image_size is not None:  # "64,64", [64, 64] (JSON) and (64, 64) alike
            object.__setattr__(self, "image_size", parse_image_size(self.image_size))
        if self.freeze is not None:  # "2" (the command line) and 2 alike; "all"
            object.__setattr__(self, "freeze", parse_freeze(self.freeze))

    @classmethod
    def from_recipe(
        cls, model: str, recipe: Mapping[str, Any], overrides: Mapping[str, Any]
    ) -> RunConfig:
        """Command-line values win over the builder's recipe, which wins over DEFAULTS."""
        values = {k: v for k, v in overrides.items() if v is not None}
        for key, default in DEFAULTS.items():
            values.setdefault(key, recipe.get(key, default))
        return cls(model=model, **values)

    def dataset_options(self) -> dict[str, Any]:
        """Where the run's dataset lives and, for a folder, how its images are prepared: the
        keyword arguments of zoo.data's loaders."""
        return {
            "data_dir": self.data_dir,
            "manual_dir": self.manual_dir,
            "image_size": self.image_size,
            "channels": self.channels,
            "strict_files": self.strict_files,
        }

    def moved(self, data_dir: str | os.PathLike | None = None,
              manual_dir: str | os.PathLike | None = None) -> RunConfig:
        """This config with its dataset where it is on this machine now (``data_dir``,
        ``manual_dir`` where given), for whatever reads the data through the config."""
        given = {"data_dir": data_dir, "manual_dir": manual_dir}
        return dataclasses.replace(self, **{k: files.given(v, k.replace("_dir", " folder")).as_posix()
                                            for k, v in given.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies, which fails for read-only mappings.
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hparams"] = dict(self.hparams)
        return d

    @classmethod
    def read(cls, path: Path) -> RunConfig:
        """Read the ``config`` block of a run's config.json, with a one-line error if it is bad."""
        try:
            raw = formats.load(formats.RUN_CONFIG, path)["config"]  # older formats migrated
            if not isinstance(raw, dict):
                raise TypeError(f"the config block is {type(raw).__name__}, not an object")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in raw.items() if k in names})
        except FileNotFoundError:
            raise ZooUsageError(f"{path.parent} is not a run directory (no config.json)") from None
        except (ValueError, KeyError, TypeError, ZooUsageError) as exc:
            raise ZooError(f"{path} is corrupted or not a zoo config: {exc}") from None


def _problems(c: RunConfig) -> list[str]:
    """What is wrong with ``c``, one sentence each (empty when nothing is)."""
    checks = [
        (_int_in(c.epochs, 1, MAX_EPOCHS), f"`epochs` must be between 1 and {MAX_EPOCHS}, received {c.epochs!r}"),
        (
            _int_in(c.batch_size, 1, MAX_BATCH_SIZE),
            f"`batch_size` must be between 1 and {MAX_BATCH_SIZE}, received {c.batch_size!r}",
        ),
        (
            _number(c.val_split) and 0.0 < c.val_split < 1.0,
            f"`val_split` must be between 0 and 1 (exclusive), received {c.val_split!r}",
        ),
        (
            _number(c.learning_rate) and math.isfinite(c.learning_rate) and c.learning_rate > 0,
            f"`learning_rate` must be a positive number, received {c.learning_rate!r}",
        ),
        (
            _number(c.label_smoothing) and 0.0 <= c.label_smoothing < 1.0,
            f"`label_smoothing` must be in [0, 1), received {c.label_smoothing!r}",
        ),
        (_int_in(c.seed, 0, MAX_SEED), f"`seed` must be between 0 and {MAX_SEED}, received {c.seed!r}"),
        (
            not (c.jit_compile == "on" and c.deterministic is True and c.backend == "tensorflow"),
            (
                "`jit_compile` on needs deterministic ops off (--no-deterministic, deterministic=False): "
                "Keras turns XLA off under TensorFlow's op determinism (not every XLA kernel is deterministic)"
            ),
        ),
        (parse_devices(c.devices) is not None, f"`devices` must be {DEVICES_HELP}; received {c.devices!r}"),
        (
            c.memory_budget is None or parse_size(c.memory_budget) is not None,
            f"`memory_budget` must be {SIZE_HELP}; received {c.memory_budget!r}",
        ),
        (
            c.cache_dir is None or (isinstance(c.cache_dir, str) and c.cache_dir.strip() != ""),
            f"`cache_dir` must be a folder path, received {c.cache_dir!r}",
        ),
        (
            c.image_size is None or parse_image_size(c.image_size) is not None,
            f"`image_size` must be HEIGHT,WIDTH (e.g. 64,48) or one size for a square, each 1 to 16384; received {c.image_size!r}",
        ),
        (c.channels in (None, 1, 3), f"`channels` must be 1 or 3, received {c.channels!r}"),
        (
            c.init is None or (isinstance(c.init, str) and c.init.strip() != ""),
            f"`init` must be a preset (a name such as cnn.mnist, dist:name or a preset folder), received {c.init!r}",
        ),
        (
            c.freeze is None or parse_freeze(c.freeze) is not None,
            f"`freeze` must be a number of epochs (0 or more) or all, received {c.freeze!r}",
        ),
        (
            c.freeze is None or c.init is not None,
            "`freeze` needs `init`: it freezes the layers a preset gave (zoo train MODEL --init PRESET --freeze N)",
        ),
    ]
    choices = {
        "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS,
        "jit_compile": JIT_COMPILE, "backend": BACKENDS, "input": INPUTS,
    }
    for name, allowed in choices.items():
        value = getattr(c, name)
        checks.append((value in allowed, f"unknown `{name}` {value!r}; choose one of {', '.join(allowed)}"))
    for name in ("augment", "deterministic", "strict_files"):
        value = getattr(c, name)
        checks.append((isinstance(value, bool), f"`{name}` must be true or false, received {value!r}"))
    return [message for ok, message in checks if not ok]


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_devices(text: Any) -> str | int | tuple[tuple[str, int], ...] | None:
    """``"auto"``, a device count, or ``(("GPU", 0), ("GPU", 2))``; None when ``text`` is none of them.

    ``cpu`` is ``(("CPU", 0),)``: the CPU even where there are GPUs.
    """
    if not isinstance(text, str):
        return None
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    if text == "cpu":
        return (("CPU", 0),)
    if text.isdigit():
        count = int(text)
        return count if 1 <= count <= MAX_DEVICES else None
    names = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(cpu|gpu):(\d{1,4})\s*", item)
        if not match:
            return None
        names.append((match.group(1).upper(), int(match.group(2))))
    if len(set(names)) != len(names) or len({kind for kind, _ in names}) != 1:
        return None  # a device twice, or CPUs and GPUs mixed
    return tuple(names)


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
MAX_SIZE = 2**60  # an exbibyte: anything larger is a typo


def parse_size(text: Any) -> int | None:
    """Bytes for ``512MB``, ``4GB``, ``1.5GiB``, ``4g`` or ``1000000`` (None when unreadable).

    Units are powers of 1024 whether written MB or MiB, as for RAM sizes (Docker, ``free -h``).
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, float) and text.is_integer():  # 1.5e9 from Python
        text = int(text)
    if isinstance(text, int):
        return text if 1 <= text <= MAX_SIZE else None
    if not isinstance(text, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match or (match.group(3) == "ib" and not match.group(2)):
        return None
    size = float(match.group(1)) * _UNITS[match.group(2)]
    return int(size) if 1 <= size <= MAX_SIZE else None


def show_size(size: int) -> str:
    """``1.5 GB`` for 1.5 * 2**30 bytes (powers of 1024, as parse_size reads them)."""
    for unit, factor in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


def parse_freeze(value: Any) -> int | str | None:
    """``"all"``, or a number of epochs from ``3`` or ``"3"``; None if unreadable."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return "all"
        value = int(text) if text.isdigit() else None
    return value if _int_in(value, 0, MAX_EPOCHS) else None


def parse_image_size(value: Any) -> tuple[int, int] | None:
    """``"64,64"``, ``"64x48"``, ``64`` or ``(64, 48)`` -> (height, width); None if unreadable."""
    if isinstance(value, str):
        parts = value.replace("x", ",").split(",")
        if len(parts) == 1:
            parts = parts * 2
        try:
            value = tuple(int(p) for p in parts)
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    return None
