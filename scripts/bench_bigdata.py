"""Training on a dataset bigger than the memory path should hold: peak memory and throughput.

Generates a synthetic TFDS image-classification dataset (the builder is defined here) whose
decoded training split (examples x H x W x C bytes) is at least --train-gib GiB, plus a small
one from the same generator (the first --small-fraction of its training examples, the same test
split) that fits in memory. Then it trains a light cnn, each run a child `python -m zoo train`:

  (a) big dataset, --input auto --memory-budget BUDGET, --big-epochs epochs (default 1)
  (b) small dataset, --input memory, --small-epochs epochs (default 2)
  (c) small dataset, --input stream, the same

and prints a markdown table: the decoded training split the run would hold on the memory path
(the zoo's own figure, `decoded_bytes.train` of the run's input record), the child's peak
resident memory (os.wait4's ru_maxrss), their ratio, the path the run recorded and why, steady
training throughput (epochs 2..N; epoch 1 alone for a 1-epoch run, whose tracing is a small part
of an epoch of minutes) and test accuracy.

Targets (#14): the big dataset's decoded training split >= 2 GiB; (a) takes the streaming path
and its peak RSS stays below the memory path's training split (ratio < 1.0). (b) and (c) put the
two paths' throughput and peak RSS side by side on the data that fits.

This process never imports TensorFlow, and generation runs in a process of its own: Linux
reports as a child's ru_maxrss at least the high-water mark of the process that started it (exec
records the memory it replaces, which after fork or vfork is the parent's), so a parent holding
TensorFlow or a generation buffer would inflate every child's figure. The parent's own peak is
printed as that floor.

The images are 64x64x3 uint8 by default: a grating whose orientation is the class (10 classes,
18 degrees apart), at a random phase and a random contrast, plus uniform noise per pixel and
channel; each example is a function of (split, index) alone. The light cnn reached 0.77 test
accuracy after one epoch of 20,000 such examples (chance 0.10; with one contrast for all it was
either chance or 1.00). They are stored as uncompressed PNG, written here (about 10 us an image,
12x faster than PIL): the encoded split is as large as the decoded one, the worst case for a
shuffle buffer of encoded examples, and decoding it costs little. Generation is one process
(about 0.1 ms an example, most of it TFDS's serialising and writing; the time reported includes
a few seconds of TFDS's own imports). Prepared datasets are reused from --data-dir: a dataset's
name spells out every setting its examples depend on.

    .venv/bin/python scripts/bench_bigdata.py [--train-gib 2.3] [--small-fraction 0.1]
        [--test-examples 10000] [--image-size 64] [--memory-budget 1GB] [--big-epochs 1]
        [--small-epochs 2] [--hp filters=8,16 --hp dense_units=64] [--data-dir /tmp/zoo-bigdata]
        [--skip RUN ...]

Smoke test (seconds): --train-gib 0.02 --test-examples 500 --memory-budget 10MB
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import platform
import resource
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from _bench import git_state  # scripts/_bench.py

from zoo.config import SIZE_HELP, parse_size  # (no TensorFlow in zoo.config)

ROOT = Path(__file__).resolve().parents[1]
DATASET = "bigdata_images"
NUM_CLASSES = 10
PHASES = 8  # a grating's phase is one of these, so each class's images are a small table
SPLITS = {"train": 0, "test": 1}  # a split's examples are drawn from a random stream of their own
CHUNK = 512  # examples generated at once; an example depends on its index only, not on this
SHARD_BYTES = 128 << 20  # TFDS suggests shards of 100-200 MB


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything a generated dataset's examples depend on: equal specs, equal datasets."""

    num_train: int
    num_test: int
    size: int = 64
    channels: int = 3
    noise: int = 128  # width of the uniform noise; the grating gets the rest of 0..255

    @property
    def config(self) -> str:
        return (f"train{self.num_train}-test{self.num_test}-{self.size}px{self.channels}"
                f"-noise{self.noise}")

    @property
    def name(self) -> str:
        return f"{DATASET}/{self.config}"

    @property
    def image_bytes(self) -> int:
        return self.size * self.size * self.channels


# ---------------------------------------------------------------------------------------------
# The examples (NumPy only)


@functools.cache
def gratings(size: int) -> np.ndarray:
    """float32 [class, phase, y, x] in -1..1: one grating per orientation and phase."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = np.pi * np.arange(NUM_CLASSES) / NUM_CLASSES
    phase = 2 * np.pi * np.arange(PHASES) / PHASES
    wavelength = 8.0  # pixels: short enough for 3x3 kernels to see the orientation
    along = x * np.cos(angle)[:, None, None] + y * np.sin(angle)[:, None, None]
    return np.sin(2 * np.pi * along[:, None] / wavelength + phase[None, :, None, None]).astype(
        np.float32)


def chunk_examples(spec: Spec, split: str, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, H, W, C] and labels of examples chunk*CHUNK onwards, always the same ones."""
    rng = np.random.default_rng([SPLITS[split], chunk])
    labels = rng.integers(NUM_CLASSES, size=CHUNK)
    phases = rng.integers(PHASES, size=CHUNK)
    # A contrast per example, from none to full: faint gratings are hard to tell apart and blank
    # ones impossible, so accuracy rises with training below 100 % instead of jumping from
    # chance to 100 % as it does at one contrast for all.
    contrast = rng.random(CHUNK, dtype=np.float32)[:, None, None]
    amplitude = (255 - spec.noise) / 2
    signal = amplitude * (1 + contrast * gratings(spec.size)[labels, phases])
    shape = (CHUNK, spec.size, spec.size, spec.channels)
    # Random bytes scaled to 0..noise: 10x faster than rng.integers with bounds.
    raw = np.frombuffer(rng.bytes(math.prod(shape)), np.uint8).reshape(shape)
    images = ((raw.astype(np.uint16) * (spec.noise + 1)) >> 8).astype(np.uint8)
    images += np.rint(signal).astype(np.uint8)[..., None]  # at most 255: no wrap
    return images, labels


def png(image: np.ndarray) -> bytes:
    """An uncompressed PNG of a uint8 [H, W, C] image (C = 1 or 3)."""
    height, width, channels = image.shape
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # filter byte 0: none
    rows[:, 1:] = image.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)),
        _png_chunk(b"IEND", b""),
    ])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def examples(spec: Spec, split: str, count: int):
    """(index, PNG bytes, label) for examples 0..count-1 of ``split``."""
    for chunk in range(-(-count // CHUNK)):
        images, labels = chunk_examples(spec, split, chunk)
        for offset in range(min(CHUNK, count - chunk * CHUNK)):
            yield chunk * CHUNK + offset, png(images[offset]), int(labels[offset])


# ---------------------------------------------------------------------------------------------
# Preparing (in a process of its own: it imports TensorFlow)


@functools.cache
def builder_class():
    """The TFDS builder, defined on first use: defining it imports TensorFlow (see the top)."""
    import tensorflow_datasets as tfds

    @dataclasses.dataclass
    class Config(tfds.core.BuilderConfig):
        spec: Spec | None = None

    class BigdataImages(tfds.core.GeneratorBasedBuilder):
        """Synthetic gratings in noise; the class is the orientation."""

        # Bump when the examples change: a prepared dataset is reused by name and version.
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            spec = self.builder_config.spec
            return tfds.core.DatasetInfo(  # (not from_configs: that reads a package's files)
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(spec.size, spec.size, spec.channels)),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            spec = self.builder_config.spec
            return {"train": self._generate_examples("train", spec.num_train),
                    "test": self._generate_examples("test", spec.num_test)}

        def _generate_examples(self, split, count):
            spec = self.builder_config.spec
            for index, image, label in examples(spec, split, count):
                yield index, {"image": image, "label": label}  # PNG bytes are stored as they are

    return BigdataImages, Config


def prepare(spec: Spec, data_dir: str) -> dict:
    """Generate ``spec`` into ``data_dir`` unless it is there; what the table reports about it."""
    import tensorflow_datasets as tfds

    builder_cls, config_cls = builder_class()
    builder = builder_cls(config=config_cls(name=spec.config, spec=spec), data_dir=data_dir)
    log = Path(data_dir) / "generation.json"  # seconds per dataset, for reruns that reuse it
    seconds = json.loads(log.read_text()) if log.is_file() else {}
    reused = builder.is_prepared()
    if not reused:
        tfds.display_progress_bar(False)
        shards = max(4, math.ceil(spec.num_train * spec.image_bytes / SHARD_BYTES))
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # TFDS's messages; stdout is the report's
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(num_shards=shards))
        seconds[spec.config] = time.perf_counter() - start
        log.write_text(json.dumps(seconds, indent=1))
    train = builder.info.splits["train"]
    return {"reused": reused, "seconds": seconds.get(spec.config), "shards": train.num_shards,
            "train_examples": train.num_examples, "encoded_train_bytes": train.num_bytes}


# ---------------------------------------------------------------------------------------------
# Training runs (children; this process stays small)


def train_in_child(spec: Spec, args: argparse.Namespace, input_path: str, epochs: int,
                   run_dir: Path) -> dict:
    """`python -m zoo train cnn` on ``spec``; its run record plus the child's peak RSS."""
    from zoo.runs import Run  # reads run folders without TensorFlow

    cmd = [sys.executable, "-m", "zoo", "train", "cnn", "--dataset", spec.name,
           "--data-dir", args.data_dir, "--epochs", str(epochs), "--seed", str(args.seed),
           "--input", input_path, "--memory-budget", args.memory_budget, "--run-dir", str(run_dir)]
    cmd += [word for hp in args.hp for word in ("--hp", hp)] + shlex.split(args.zoo_args)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log = run_dir.with_suffix(".log")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        sys.exit(f"failed: {shlex.join(cmd)}\n  " + "\n  ".join(tail) + f"\n(log: {log})")
    run = Run.open(run_dir)
    rates = [r["examples_per_second"] for r in run.history]
    return {
        "command": cmd,
        "seconds": time.perf_counter() - start,
        "peak_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
        "parent_floor_mib": floor,
        "input": (run.metrics or {}).get("input") or run.record.get("input") or {},
        "steady": statistics.mean(rates[1:] or rates),
        "test_accuracy": run.metrics["test_accuracy"],
        "train_seconds": run.metrics["train_seconds"],
        "versions": run.record.get("versions", {}),
    }


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # 2.3: the zoo trains on train[:90%], so that part alone is over 2 GiB.
    parser.add_argument("--train-gib", type=float, default=2.3,
                        help="decoded size of the big dataset's TFDS train split, GiB "
                             "(default: %(default)s)")
    parser.add_argument("--small-fraction", type=float, default=0.1,
                        help="the small dataset's share of the big one's training examples")
    parser.add_argument("--test-examples", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3)
    parser.add_argument("--noise", type=int, default=128,
                        help="width of the uniform pixel noise, 0-254 (the signal gets the rest)")
    parser.add_argument("--memory-budget", default="1GB",
                        help="--memory-budget of every run (default: %(default)s)")
    parser.add_argument("--big-epochs", type=int, default=1)
    parser.add_argument("--small-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hp", action="append", metavar="KEY=VALUE",
                        help="cnn hyperparameters (default: filters=8,16 and dense_units=64)")
    parser.add_argument("--zoo-args", default="",
                        help="more `zoo train` options for every run, e.g. '--no-augment'")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "zoo-bigdata"),
                        help="generated datasets, reused across runs (default: %(default)s)")
    parser.add_argument("--skip", nargs="+", choices=("a", "b", "c"), default=[],
                        help="runs to leave out")
    args = parser.parse_args()
    if parse_size(args.memory_budget) is None:
        parser.error(f"--memory-budget: {SIZE_HELP}")
    args.hp = args.hp or ["filters=8,16", "dense_units=64"]
    args.data_dir = os.path.abspath(args.data_dir)
    if not 0 < args.small_fraction < 1:
        parser.error("--small-fraction must be between 0 and 1")
    if not 0 <= args.noise <= 254:
        parser.error("--noise must be between 0 and 254")
    if ROOT in Path(args.data_dir).parents or Path(args.data_dir) == ROOT:
        parser.error("--data-dir must be outside the repository")
    return args


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.1f} MiB"


def main() -> None:
    args = parse_args()
    commit, load = git_state(), os.getloadavg()[0]
    image_bytes = args.image_size**2 * args.channels
    num_train = math.ceil(args.train_gib * 2**30 / image_bytes)
    shape = {"size": args.image_size, "channels": args.channels, "noise": args.noise}
    big = Spec(num_train, args.test_examples, **shape)
    small = Spec(math.ceil(num_train * args.small_fraction), args.test_examples, **shape)
    # Checked now rather than after (a)'s minutes: the zoo refuses --input memory beyond it.
    small_bytes = (small.num_train + small.num_test) * (small.image_bytes + 8)
    if small_bytes > parse_size(args.memory_budget):
        sys.exit(f"the small dataset's decoded splits ({gib(small_bytes)}) do not fit "
                 f"--memory-budget {args.memory_budget}: lower --small-fraction or --test-examples")
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)

    # "spawn": a fresh interpreter, so that none of TensorFlow stays in this process.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        prepared = {spec: pool.apply(prepare, (spec, args.data_dir)) for spec in (big, small)}
    for spec, p in prepared.items():
        how = "reused, generated" if p["reused"] else "generated"
        print(f"{spec.name}: {p['train_examples']:,} training examples in {p['shards']} shards, "
              f"{gib(p['encoded_train_bytes'])} encoded; {how} in {p['seconds'] or 0:.1f} s",
              file=sys.stderr, flush=True)

    jobs = [("a", big, "auto", args.big_epochs), ("b", small, "memory", args.small_epochs),
            ("c", small, "stream", args.small_epochs)]
    results = {}
    runs = Path(tempfile.mkdtemp(prefix="zoo-bigdata-runs-"))  # kept if a run fails: its log
    for key, spec, input_path, epochs in jobs:
        if key in args.skip:
            continue
        print(f"({key}) {spec.name} --input {input_path}, {epochs} epoch(s)...",
              file=sys.stderr, flush=True)
        results[key] = r = train_in_child(spec, args, input_path, epochs, runs / key)
        print(f"    {r['seconds']:.0f} s, peak RSS {gib(r['peak_rss'])}, "
              f"{r['steady']:,.0f} ex/s, test accuracy {r['test_accuracy']:.4f}",
              file=sys.stderr, flush=True)
    shutil.rmtree(runs)

    versions = next(iter(results.values()))["versions"] if results else {}
    floor = max((r["parent_floor_mib"] for r in results.values()), default=0)
    print(f"\nMachine: {cpu_model()}, {os.cpu_count()} cores, load average {load:.2f} at the start "
          f"and {os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, "
          f"TensorFlow {versions.get('tensorflow', '?')}, Keras {versions.get('keras', '?')}, "
          f"TFDS {versions.get('tensorflow_datasets', '?')}; commit {commit}; this process's "
          f"peak RSS {floor:.0f} MiB (a floor under each child's)")
    print(f"Command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    hp = " ".join(f"--hp {h}" for h in args.hp)
    print(f"cnn {hp} {args.zoo_args}".rstrip() + f", seed {args.seed}, --memory-budget "
          f"{args.memory_budget}; images {args.image_size}x{args.image_size}x{args.channels} "
          f"uint8, {NUM_CLASSES} classes; steady = epochs 2..N (epoch 1 for a 1-epoch run)\n")
    for spec, p in prepared.items():
        decoded = spec.num_train * spec.image_bytes
        how = "reused; generating it took" if p["reused"] else "generated in"
        print(f"- `{spec.name}`: train {spec.num_train:,} examples, {gib(decoded)} decoded, "
              f"{gib(p['encoded_train_bytes'])} encoded in {p['shards']} shards; test "
              f"{spec.num_test:,}; {how} {p['seconds'] or 0:.1f} s "
              f"({(spec.num_train + spec.num_test) / (p['seconds'] or 1):,.0f} examples/s)")
    print("\n| run | dataset | --input | train / evaluation path | memory path's train split | "
          "peak RSS | RSS / split | steady train ex/s | train s | test accuracy | epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, spec, input_path, epochs in jobs:
        if key not in results:
            continue
        r = results[key]
        taken = r["input"]
        split = taken.get("decoded_bytes", {}).get("train")
        ratio = f"{r['peak_rss'] / split:.2f}" if split else "–"
        which = "big" if spec is big else "small"
        print(f"| ({key}) | {which} | {input_path} | {taken.get('train', '?')} / "
              f"{taken.get('evaluation', '?')} | {gib(split) if split else '?'} | "
              f"{gib(r['peak_rss'])} | {ratio} | {r['steady']:,.0f} | {r['train_seconds']:.0f} | "
              f"{r['test_accuracy']:.4f} | {epochs} |")
    print()
    decoded = big.num_train * big.image_bytes
    verdict = "PASS" if decoded >= 2 * 2**30 else "FAIL"
    print(f"{verdict} decoded training split of the big dataset {gib(decoded)} (target >= 2 GiB)")
    if "a" in results:
        a, taken = results["a"], results["a"]["input"]
        split = taken.get("decoded_bytes", {}).get("train")
        ok = taken.get("train") == "stream" and split and a["peak_rss"] < split
        print(f"{'PASS' if ok else 'FAIL'} (a) took the {taken.get('train', '?')} path, peak RSS "
              f"{gib(a['peak_rss'])} vs the memory path's training split {gib(split or 0)} "
              f"(target: stream, ratio < 1.0)")
        print(f"     why: {taken.get('reason', '?')}; shuffle buffer "
              f"{taken.get('shuffle_buffer')} examples, cache {taken.get('cache')}, budget "
              f"{gib(taken.get('budget_bytes') or 0)}")
    if "b" in results and "c" in results:
        b, c = results["b"], results["c"]
        print(f"small dataset: stream / memory throughput {c['steady'] / b['steady']:.2f}x, peak "
              f"RSS {gib(c['peak_rss'])} / {gib(b['peak_rss'])}")


if __name__ == "__main__":
    main()
