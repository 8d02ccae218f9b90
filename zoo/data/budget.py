"""The memory-or-stream decision: the decoded size of the splits against a budget (a quarter of
the machine's or the container's memory by default)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from ..config import show_size
from ..errors import ZooUsageError
from .cache import cache_folder
from .catalog import DatasetInfo, decoded_bytes


@dataclass(frozen=True)
class InputChoice:
    """How a run's data reaches the model, decided once from TFDS metadata and recorded.

    ``train`` is ``"memory"`` (the decoded split held in RAM, one gather per batch) or
    ``"stream"`` (read from the TFDS shards every epoch through a shuffle buffer of
    ``shuffle_buffer`` examples); ``evaluation`` is the same choice for validation and test.
    """

    requested: str
    train: str
    evaluation: str
    reason: str
    budget_bytes: int
    decoded_bytes: dict[str, int]
    shuffle_buffer: int | None = None
    cache: str | None = None

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The budget's default share of the machine's memory. The memory path holds the decoded splits
# and, while it builds the training tensor, briefly a second copy of it; the model, TensorFlow
# itself and other processes (a sweep, the notebook) need the rest.
DEFAULT_BUDGET_FRACTION = 0.25


# Of the budget on the streaming path: the shuffle buffer takes one half, validation and test
# are held in memory when they fit the other.
_BUFFER_SHARE = 0.5


# What one buffered element costs beyond its bytes (tensor headers, the buffer's bookkeeping).
_ELEMENT_OVERHEAD = 128


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_memory_budget() -> int:
    return int(machine_memory() * DEFAULT_BUDGET_FRACTION)


def choose_input(
    builder: tfds.core.DatasetBuilder,
    info: DatasetInfo,
    requested: str = "auto",
    budget: int | None = None,
    cache_dir: str | None = None,
    shuffle_buffer: int | None = None,
) -> InputChoice:
    """Memory or stream, from the decoded sizes TFDS metadata gives (examples x image bytes).

    ``auto`` keeps the data in memory only when all three decoded splits fit ``budget``;
    ``memory`` is refused when they do not (better than being killed by the kernel halfway).
    """
    budget = budget or default_memory_budget()
    example = decoded_bytes(info.input_shape)
    sizes = {
        "train": info.num_train * example,
        "validation": info.num_validation * example,
        "test": info.num_test * example,
    }
    total = sum(sizes.values())
    shape = "x".join(map(str, info.input_shape))
    needed = (
        f"the decoded splits of '{info.name}' take about {show_size(total)} "
        f"({info.num_train + info.num_validation + info.num_test:,} images of {shape})"
    )
    where = f"`memory_budget` {show_size(budget)}"
    if requested == "memory" and total > budget:
        raise ZooUsageError(
            f"`input` memory: {needed}, more than {where}; use `input` stream or auto, "
            f"or a larger `memory_budget`"
        )
    budget_words = f"the memory budget of {show_size(budget)}"
    if requested == "memory" or (requested == "auto" and total <= budget):
        reason = "asked for" if requested == "memory" else f"{needed}, within {budget_words}"
        return InputChoice(requested, "memory", "memory", reason, budget, sizes)
    reason = "asked for" if requested == "stream" else f"{needed}, more than {budget_words}"
    evaluation = sizes["validation"] + sizes["test"] <= budget * (1 - _BUFFER_SHARE)
    cache = cache_folder(builder, cache_dir) if cache_dir else None
    if shuffle_buffer is None:
        # The buffer holds encoded examples (decoding comes after it), or decoded ones read back
        # from the cache.
        per_example = example if cache else _encoded_bytes_per_example(builder, "train", example)
        shuffle_buffer = int(budget * _BUFFER_SHARE // (per_example + _ELEMENT_OVERHEAD))
        shuffle_buffer = max(1, min(info.num_train, shuffle_buffer))
    return InputChoice(
        requested, "stream", "memory" if evaluation else "stream", reason, budget, sizes,
        shuffle_buffer=shuffle_buffer, cache=str(cache) if cache else None,
    )


def _encoded_bytes_per_example(builder: tfds.core.DatasetBuilder, split: str, unknown: int) -> int:
    """The mean size of one serialised example in the split's files (TFDS records the total);
    ``unknown`` where it has no record (tfds.testing.mock_data)."""
    try:
        whole = builder.info.splits[split]
    except KeyError:
        return unknown
    if whole.num_bytes and whole.num_examples:
        return -(-int(whole.num_bytes) // int(whole.num_examples))
    return unknown
