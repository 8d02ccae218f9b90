"""Streaming saves memory, and the default budget comes from the container's cgroup (#30, item 2).

docs/streaming.md: the default `--memory-budget` is "a quarter of the machine's memory, or of the
container's limit (cgroup `memory.max`) when that is lower", and the stream path reads the
training split from its shards every epoch instead of holding it, so that peak memory stays
below the split the memory path would hold. The other stream tests check which path is chosen and
in what order; these check the memory itself, in a fresh process that reads its own high-water
mark (VmHWM), and the cgroup file the budget is read from.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from zoo.data import budget

MB = 2**20
V2, V1 = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"


def _physical() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """Point the zoo's cgroup files (v2 and v1) at regular files here: returns a function that
    writes one (None removes it)."""
    files = {V2: tmp_path / "memory.max", V1: tmp_path / "memory.limit_in_bytes"}
    monkeypatch.setattr(budget, "Path", lambda p: pathlib.Path(files.get(str(p), p)))

    def write(v2: str | None = None, v1: str | None = None) -> None:
        for path, text in ((files[V2], v2), (files[V1], v1)):
            path.unlink(missing_ok=True)
            if text is not None:
                path.write_text(text)

    return write


def test_the_default_budget_is_a_quarter_of_the_cgroup_limit_when_lower(cgroup):
    limit = min(256 * MB, _physical() // 2)  # lower than the machine's memory, whatever it is
    cgroup(v2=f"{limit}\n")
    assert budget.machine_memory() == limit
    assert budget.default_memory_budget() == limit // 4
    cgroup(v1=f"{limit}\n")  # cgroup v1's file, where there is no v2 one
    assert budget.machine_memory() == limit
    cgroup(v2="max\n", v1=f"{limit}\n")  # v2 unlimited: the v1 limit still counts
    assert budget.machine_memory() == limit
    cgroup(v2="max\n")  # no limit at all: the machine's memory
    assert budget.machine_memory() == _physical()
    cgroup(v2=f"{_physical() * 4}\n")  # a limit above the machine's memory does not raise it
    assert budget.machine_memory() == _physical()
    cgroup()  # no cgroup files
    assert budget.machine_memory() == _physical()


# -- a dataset larger than the budget, and a small one like it ----------------------------------

SIZE = 160  # 160x160x3 images: 76.8 KB decoded, as much encoded (uncompressed PNG)
BIG_TRAIN, SMALL_TRAIN, TEST = 4000, 320, 64
# The zoo trains on train[:90%]: 3,600 images, 264 MB, against 21 MB for the small one. The big
# one's validation and test (36 MB) are more than half the budget, so they stream too.
CGROUP_LIMIT = 256 * MB  # -> a default budget of 64 MB


def _png(image: np.ndarray) -> bytes:
    """An uncompressed RGB PNG: the encoded split is as large as the decoded one, so a stream path
    that held the encoded examples in memory would be caught as well as one holding decoded ones."""
    height, width, _ = image.shape
    rows = np.zeros((height, 1 + width * 3), np.uint8)
    rows[:, 1:] = image.reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"".join([b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
                     chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)), chunk(b"IEND", b"")])


def _builders():
    import tensorflow_datasets as tfds

    class _Noise(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        TRAIN = 0

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    "label": tfds.features.ClassLabel(num_classes=4),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._examples(0, self.TRAIN), "test": self._examples(self.TRAIN, self.TRAIN + TEST)}

        def _generate_examples(self):  # the splits above are generators already
            raise NotImplementedError

        def _examples(self, start: int, stop: int):
            rng = np.random.default_rng(start)
            for i in range(start, stop):
                image = np.frombuffer(rng.bytes(SIZE * SIZE * 3), np.uint8).reshape(SIZE, SIZE, 3).copy()
                image[(i % 4) * 40:(i % 4) * 40 + 4] = 255  # the label, visible
                yield i, {"image": _png(image), "label": i % 4}

    class ZooMemoryBig(_Noise):
        TRAIN = BIG_TRAIN

    class ZooMemorySmall(_Noise):
        TRAIN = SMALL_TRAIN

    return ZooMemoryBig, ZooMemorySmall


# A fresh process per run: the cgroup file is the test's (the same seam as above), and it reports
# its own high-water mark (VmHWM, Linux's /proc/self/status) with TensorFlow imported and after
# one epoch. (Not two runs in one process: each later run there adds some 20-40 MB of its own.)
CHILD = textwrap.dedent("""
    import json, pathlib, re, sys

    def hwm():
        status = pathlib.Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\\s+(\\d+) kB", status, re.MULTILINE).group(1)) * 1024

    name, requested, data_dir, run_dir, limit_file = sys.argv[1:6]
    import zoo
    from zoo.data import budget
    budget.Path = lambda p: pathlib.Path(limit_file if str(p) == "/sys/fs/cgroup/memory.max" else p)
    import tensorflow, keras  # noqa: F401
    start = hwm()
    run = zoo.train("softmax", dataset=name, data_dir=data_dir, epochs=1, batch_size=32,
                    precision="float32", input=requested, run_dir=run_dir, verbose=0)
    print(json.dumps({"start": start, "peak": hwm(), "input": run.metrics["input"]}))
""")


@pytest.mark.slow
def test_streaming_a_split_larger_than_the_budget_keeps_it_out_of_memory(tmp_path_factory):
    """One epoch on a 264 MB training split at a 64 MB budget (a quarter of a cgroup limit of
    256 MB): the process's peak memory grows by far less than the split.

    The bar is relative to this machine: a small dataset of the same images through the same
    stream pipeline, in a process of its own beside it. tf.data's buffers, TensorFlow and the model cost
    the same in both (and more on a machine with more cores); a stream path that held the split,
    decoded or encoded, would add the difference of the splits, 243 MB.
    """
    if not pathlib.Path("/proc/self/status").is_file():
        pytest.skip("no /proc/self/status: VmHWM is Linux's")
    tmp = tmp_path_factory.mktemp("stream_memory")
    import tensorflow_datasets as tfds

    data_dir = tmp / "tfds"
    tfds.display_progress_bar(False)
    for cls in _builders():
        cls(data_dir=str(data_dir)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(num_shards=4))
    limit = tmp / "memory.max"
    limit.write_text(f"{CGROUP_LIMIT}\n")

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    children = {
        name: subprocess.Popen(
            [sys.executable, "-c", CHILD, name, requested, str(data_dir), str(tmp / name), str(limit)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, requested in (("zoo_memory_small", "stream"), ("zoo_memory_big", "auto"))
    }
    reports = {}
    for name, child in children.items():
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err[-3000:]
        reports[name] = json.loads(out.strip().splitlines()[-1])
    small, big = reports["zoo_memory_small"], reports["zoo_memory_big"]

    # The budget is the cgroup file's quarter, and the big dataset streams because of it.
    example = SIZE * SIZE * 3 + 8
    assert big["input"]["budget_bytes"] == CGROUP_LIMIT // 4
    assert big["input"]["requested"] == "auto" and big["input"]["train"] == "stream"
    assert "more than the memory budget of 64 MB" in big["input"]["reason"]
    assert big["input"]["decoded_bytes"]["train"] == BIG_TRAIN * 9 // 10 * example
    assert big["input"]["evaluation"] == "stream"  # nothing of the big dataset is held
    assert small["input"]["train"] == "stream"
    # The shuffle buffers hold about the same (half the budget or the small split): neither is
    # where the difference could come from.
    assert small["input"]["shuffle_buffer"] == SMALL_TRAIN * 9 // 10
    assert big["input"]["shuffle_buffer"] * example < CGROUP_LIMIT // 8 + 2 * MB

    split = big["input"]["decoded_bytes"]["train"] - small["input"]["decoded_bytes"]["train"]
    grown = big["peak"] - small["peak"]
    figures = (f"peak {small['peak'] / MB:.0f} MB in the small run, {big['peak'] / MB:.0f} MB in the big "
               f"one (+{grown / MB:.0f} MB); the splits differ by {split / MB:.0f} MB; "
               f"{small['start'] / MB:.0f} and {big['start'] / MB:.0f} MB with TensorFlow imported")
    assert grown < split / 2, figures
