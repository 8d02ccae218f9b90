"""MNIST as a folder of PNG files against the catalog `mnist`: preparation, throughput, accuracy.

The four official MNIST files (--manual-dir) are read directly (gzip + NumPy) and written as
--folder/train/<digit>/<index>.png (60,000) and --folder/test/<digit>/<index>.png (10,000),
grayscale PNG, by --write-processes processes (2); a folder that already holds exactly those
files is reused. The folder is never written inside the repository (the images are MNIST's).

Preparation: each dataset is prepared once, in a fresh TFDS data dir of its own, by
`zoo.data.prepared_builder` in a child process (TensorFlow's start-up is not timed): the catalog
`mnist` by TFDS's own MNIST builder from the four files, the folder by the zoo's ZooImageFolder
(scan: file names, sizes and modification times, then every image's header; then TFDS's
generation, one PNG decode per image). The scan is also timed alone, after the preparation.

The same examples: TFDS stores a split's examples sorted by a hash of their keys (md5, salted with
the split's name; TFDS's hashing.Hasher), and the zoo slices validation off the stored order
(train[:90%] / train[90%:]). The catalog's keys are the MNIST indices, the folder's its files'
relative paths, so by default the two would train on different 54,000 of the 60,000 images.
This script names each training file so that its hash falls on the side of a threshold where its
image falls in the catalog's order (<index>.png, or <index>-<k>.png with the first k that does):
the folder's train[:90%] then holds exactly the catalog's 54,000 training images, and train[90%:]
its 6,000 validation images, in another order. After preparation both datasets are read back
and compared split by split (images and labels as multisets); the table says how many examples
they share. Test accuracy is on the same 10,000 official test images for both.

Training: for each model and seed, `zoo.train` trains the model's recipe (with --epochs epochs,
--precision, input="memory") on `mnist` and on the folder, one right after the other in this one
process (as bench_stream.py does); which goes first alternates from seed to seed. Steady
throughput = the mean training examples/s of epochs 2..N from the run's history (epoch 1
includes tracing; validation is not timed); with --epochs 1 it is epoch 1's, only good for a
smoke test.

Target (#18): the folder's mean test accuracy within 0.2 points of the catalog's, per model.

    .venv/bin/python scripts/bench_folder.py [--models mlp] [--seeds 0 1 2] [--epochs 3]
        [--folder /tmp/zoo-mnist-folder] [--data-dir DIR] [--manual-dir DIR] [--limit N]

Smoke test: --limit 3000 --seeds 0 --epochs 1 (the first 3000 training and 500 test images, in
a folder of their own: not the same examples as the catalog's, so no verdict is meaningful)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import hashlib
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _bench import git_state  # scripts/_bench.py

ROOT = Path(__file__).resolve().parents[1]
MAX_POINTS = 0.2  # |folder - catalog| mean test accuracy, in percentage points
VAL_FRACTION = 0.1  # the zoo's default val_split, used for both datasets
FILES = {  # split -> (images, labels), as TFDS's MNIST builder names them
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CATALOG, FOLDER = "catalog mnist", "folder"
HASH_SPACE = 2 ** 128  # TFDS's md5 keys

# Run in a child process, so that both preparations are timed alike and TFDS's generation
# leaves nothing behind in the benchmark's process. Prints one JSON line on stdout.
PREPARE = """
import contextlib, json, os, sys, time
from zoo.data import catalog
from zoo.data import folders
name, data_dir, manual_dir = sys.argv[1:4]
with contextlib.redirect_stdout(sys.stderr):
    start = time.perf_counter()
    builder = catalog.prepared_builder(name, data_dir=data_dir, manual_dir=manual_dir)
    seconds = time.perf_counter() - start
    scan = None
    if folders.written_as_path(name):
        start = time.perf_counter()
        folders.scan(name, progress=False)
        scan = time.perf_counter() - start
splits = {s: int(v.num_examples) for s, v in builder.info.splits.items()}
print(json.dumps({"seconds": seconds, "scan_seconds": scan, "splits": splits,
                  "data_dir": str(builder.data_dir)}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp"], help="e.g. mlp cnn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="float32",
                        help="the same for both datasets (default: %(default)s)")
    parser.add_argument("--folder", default="/tmp/zoo-mnist-folder",
                        help="where the PNG files are written and kept for the next run "
                             "(default: %(default)s; with --limit N, %(default)s-limitN)")
    parser.add_argument("--data-dir", help="where a temporary folder is made for the two fresh "
                        "TFDS data dirs and the run dirs, removed at the end (default: the "
                        "system's temporary folder)")
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or
                        str(ROOT.parent / "shared" / "datasets" / "mnist"),
                        help="the four MNIST files (default: $ZOO_MANUAL_DIR or %(default)s)")
    parser.add_argument("--write-processes", type=int, default=2,
                        help="processes that write the PNG files (1: this one; default: "
                             "%(default)s)")
    parser.add_argument("--limit", type=int,
                        help="smoke test: only the first N training and N/6 test images in the "
                             "folder (the catalog keeps all of MNIST)")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.write_processes < 1:
        parser.error("--write-processes must be at least 1")
    if args.limit is not None and not 60 <= args.limit <= 60_000:
        parser.error("--limit must be between 60 and 60000")
    folder = Path(args.folder).expanduser().resolve()
    if args.limit:
        folder = folder.with_name(f"{folder.name}-limit{args.limit}")
    if folder == ROOT or ROOT in folder.parents:
        parser.error(f"--folder {folder} is inside the repository; MNIST's images stay out of it")
    args.folder = folder
    return args


# ---------------------------------------------------------------------------------------------
# The folder


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An MNIST idx file: magic 2051 -> (n, 28, 28) uint8 images, 2049 -> (n,) uint8 labels."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        sys.exit(f"{path}: magic number {found}, expected {magic}")
    dims = struct.unpack(f">{1 + 2 * (magic == 2051)}I", raw[4:8 + 8 * (magic == 2051)])
    offset = 4 + 4 * len(dims)
    if len(raw) != offset + int(np.prod(dims)):
        sys.exit(f"{path}: {len(raw):,} bytes, expected {offset + int(np.prod(dims)):,}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def read_mnist(manual_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    splits = {}
    for split, (images, labels) in FILES.items():
        x, y = read_idx(manual_dir / images, 2051), read_idx(manual_dir / labels, 2049)
        if len(x) != len(y):
            sys.exit(f"{manual_dir}: {len(x)} {split} images but {len(y)} labels")
        splits[split] = (x, y)
    return splits


def tfds_hash(salt: str, key: str) -> int:
    """TFDS's hashing.Hasher(salt).hash_key(key): the order a split's examples are stored in."""
    return int(hashlib.md5(salt.encode() + key.encode()).hexdigest(), 16)


def catalog_validation(num_train: int) -> set[int]:
    """The MNIST indices in the catalog's train[90%:]: TFDS's MNIST builder keys its examples
    by index, and the last 10 % of them in hash order are the zoo's validation split."""
    order = sorted(range(num_train), key=lambda i: tfds_hash("train", str(i)))
    return set(order[round(num_train * (1 - VAL_FRACTION)):])


def file_names(mnist: dict, limit: int | None) -> dict[str, list[tuple[int, str]]]:
    """split -> [(MNIST index, path relative to the folder)].

    A training file's name puts its hash below the threshold if the catalog trains on its image,
    at or above it if the catalog validates on it: the folder's stored order then has the
    catalog's 54,000 training images first and its 6,000 validation images last.
    """
    threshold = round(HASH_SPACE * (1 - VAL_FRACTION))
    validation = catalog_validation(len(mnist["train"][1]))
    names: dict[str, list[tuple[int, str]]] = {}
    for split, (_, labels) in mnist.items():
        count = len(labels) if not limit else min(len(labels), limit if split == "train"
                                                  else max(1, limit // 6))
        names[split] = []
        for index in range(count):
            stem, k = f"{split}/{labels[index]}/{index:05d}", 0
            rel = f"{stem}.png"
            if split == "train":
                while (tfds_hash("train", rel) >= threshold) != (index in validation):
                    k += 1
                    rel = f"{stem}-{k}.png"
            names[split].append((index, rel))
    return names


_IMAGES: dict[str, np.ndarray] = {}  # split -> images, for the writer processes (forked)


def _write(job: tuple[str, str, list[tuple[int, str]]]) -> int:
    from PIL import Image

    root, split, items = job
    for index, rel in items:
        Image.fromarray(_IMAGES[split][index]).save(os.path.join(root, rel), format="PNG")
    return len(items)


def existing_files(folder: Path) -> set[str]:
    return {str(Path(d, f).relative_to(folder)) for d, _, fs in os.walk(folder) for f in fs}


def write_folder(folder: Path, mnist: dict, names: dict, processes: int) -> float | None:
    """Write the PNG files (seconds taken), or reuse the folder if it holds exactly them (None)."""
    expected = {rel for items in names.values() for _, rel in items}
    if folder.exists():
        found = existing_files(folder)
        if found == expected:
            return None
        sys.exit(f"{folder} exists but does not hold exactly the {len(expected):,} files this "
                 f"benchmark writes ({len(found):,} files, {len(found - expected):,} unexpected, "
                 f"{len(expected - found):,} missing); remove it or pass another --folder")
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    start = time.perf_counter()
    try:
        for rel in {str(Path(rel).parent) for rel in expected}:
            (partial / rel).mkdir(parents=True, exist_ok=True)
        _IMAGES.update({split: images for split, (images, _) in mnist.items()})
        jobs = [(str(partial), split, items[i:i + 1000])
                for split, items in names.items() for i in range(0, len(items), 1000)]
        if processes > 1:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                written = sum(pool.imap_unordered(_write, jobs))
        else:
            written = sum(map(_write, jobs))
        assert written == len(expected), (written, len(expected))
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        _IMAGES.clear()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Preparation and the examples each dataset holds


def prepare(name: str, data_dir: Path, manual_dir: str) -> dict:
    """Prepare ``name`` in the fresh ``data_dir`` in a child process; its timings and splits."""
    data_dir.mkdir(parents=True)
    child = subprocess.run([sys.executable, "-c", PREPARE, name, str(data_dir), manual_dir],
                           stdout=subprocess.PIPE, text=True, cwd=ROOT, check=False)
    if child.returncode:
        sys.exit(f"preparing {name} failed (exit status {child.returncode}; see above)")
    return json.loads(child.stdout.strip().splitlines()[-1])


def split_examples(builder, split: str) -> Counter:
    """The (label, image bytes) multiset of a split (or slice), as the zoo reads it."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False,
                            read_config=tfds.ReadConfig(try_autocache=False)).batch(2048)
    examples: Counter = Counter()
    for images, labels in tfds.as_numpy(ds):
        examples.update(zip(labels.tolist(), (image.tobytes() for image in images)))
    return examples


def compare_examples(catalog, folder) -> list[tuple[str, int, int, int]]:
    """(slice, catalog examples, folder examples, examples in common) for train, validation and
    test, as the zoo slices them."""
    from zoo.data import catalog

    rows = []
    for split in (*catalog.split_strings(VAL_FRACTION), "test"):
        a, b = split_examples(catalog, split), split_examples(folder, split)
        rows.append((split, a.total(), b.total(), (a & b).total()))
    return rows


# ---------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    wall = time.perf_counter()
    commit = git_state()  # before the zoo is imported: the code this run measures
    load = os.getloadavg()[0]
    manual_dir = Path(args.manual_dir).expanduser().resolve()
    folder: Path = args.folder

    mnist = read_mnist(manual_dir)
    names = file_names(mnist, args.limit)
    counts = {split: Counter(str(mnist[split][1][i]) for i, _ in items)
              for split, items in names.items()}
    if len(counts["train"]) != 10:
        sys.exit(f"--limit {args.limit} leaves digits out of the training images; use more")
    renamed = sum("-" in Path(rel).name for _, rel in names["train"])
    print(f"writing (or reusing) {sum(map(len, names.values())):,} PNG files in {folder} ...",
          file=sys.stderr, flush=True)
    write_seconds = write_folder(folder, mnist, names, args.write_processes)
    num_files = {split: len(items) for split, items in names.items()}
    del mnist

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="zoo-bench-folder-", dir=args.data_dir) as tmp:
        dirs = {CATALOG: Path(tmp) / "tfds-catalog", FOLDER: Path(tmp) / "tfds-folder"}
        prepared = {}
        for dataset, name in ((CATALOG, "mnist"), (FOLDER, str(folder))):
            print(f"preparing {dataset} in {dirs[dataset]} ...", file=sys.stderr, flush=True)
            prepared[dataset] = prepare(name, dirs[dataset], str(manual_dir))

        import keras
        import PIL
        import tensorflow as tf
        import tensorflow_datasets as tfds

        import zoo
        from zoo.compute import devices
        from zoo.data import catalog

        with contextlib.redirect_stdout(sys.stderr):  # TFDS's messages; stdout is the report's
            builders = {CATALOG: catalog.prepared_builder("mnist", data_dir=str(dirs[CATALOG])),
                        FOLDER: catalog.prepared_builder(str(folder), data_dir=str(dirs[FOLDER]))}
        print("comparing the examples of both datasets ...", file=sys.stderr, flush=True)
        shared = compare_examples(builders[CATALOG], builders[FOLDER])
        del builders
        gc.collect()

        datasets = {CATALOG: "mnist", FOLDER: str(folder)}
        expected_files = {s: dict(sorted(c.items())) for s, c in counts.items()}
        # (model, dataset) -> [(steady ex/s, test accuracy)], seed order
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for model in args.models:
            for i, seed in enumerate(args.seeds):
                order = (CATALOG, FOLDER) if i % 2 == 0 else (FOLDER, CATALOG)
                for dataset in order:
                    keras.backend.clear_session()  # every run starts from the same clean state
                    gc.collect()
                    tag = "catalog" if dataset == CATALOG else "folder"
                    run = zoo.train(model, dataset=datasets[dataset], epochs=args.epochs,
                                    seed=seed, input="memory", precision=args.precision,
                                    data_dir=str(dirs[dataset]), manual_dir=str(manual_dir),
                                    run_dir=Path(tmp) / f"{model}-{tag}-{seed}", verbose=0)
                    taken = run.record.get("input") or run.metrics.get("input") or {}
                    source = run.record["dataset"].get("source") or {}
                    if taken.get("train") != "memory":
                        sys.exit(f"{model} seed {seed} {dataset}: asked for input=memory, the "
                                 f"run recorded {taken or 'no input block'}")
                    if dataset == FOLDER and (source.get("kind") != "folder"
                                              or source.get("files") != expected_files):
                        sys.exit(f"{model} seed {seed}: the run's dataset source is {source}, "
                                 f"not the folder's {expected_files}")
                    rates = [row["examples_per_second"] for row in run.history]
                    rate = statistics.mean(rates[1:] or rates)
                    accuracy = run.metrics["test_accuracy"]
                    results.setdefault((model, dataset), []).append((rate, accuracy))
                    print(f"{model} seed {seed} {dataset}: {rate:,.0f} ex/s, test accuracy "
                          f"{accuracy:.4f}, {run.metrics['train_seconds']:.1f} s training",
                          file=sys.stderr, flush=True)

    print(f"\nMachine: {devices.cpu_model()}, {os.cpu_count()} cores, load average {load:.2f} at "
          f"the start and {os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}, TFDS {tfds.__version__}, "
          f"Pillow {PIL.__version__}, NumPy {np.__version__}; commit {commit}")
    print(f"Command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    total = sum(num_files.values())
    written = (f"written in {write_seconds:.1f} s ({total / write_seconds:,.0f} files/s, "
               f"{args.write_processes} process{'es' * (args.write_processes > 1)})"
               if write_seconds is not None else "reused (written by an earlier run)")
    print(f"Folder: {folder}, {num_files['train']:,} train + {num_files['test']:,} test PNG "
          f"files, {written}; {renamed:,} training files carry a -k suffix that puts them on "
          f"the catalog's side of the validation cut\n")

    print("| dataset | from | examples | scan s | prep s (scan included) | prep ex/s | "
          "vs catalog |")
    print("|---|---|---|---|---|---|---|")
    rate = {}
    for dataset in (CATALOG, FOLDER):
        p = prepared[dataset]
        examples = sum(p["splits"].values())
        rate[dataset] = examples / p["seconds"]
        scan = f"{p['scan_seconds']:.1f}" if p["scan_seconds"] is not None else "–"
        source = ("the 4 idx .gz files (TFDS's MNIST builder)" if dataset == CATALOG
                  else f"{examples:,} PNG files (ZooImageFolder)")
        versus = f"{rate[dataset] / rate[CATALOG]:.2f}x" if dataset == FOLDER else "1.00x"
        print(f"| {dataset} | {source} | {examples:,} | {scan} | {p['seconds']:.1f} | "
              f"{rate[dataset]:,.0f} | {versus} |")

    print("\n| slice | catalog examples | folder examples | in common |")
    print("|---|---|---|---|")
    for split, a, b, both in shared:
        print(f"| {split} | {a:,} | {b:,} | {both:,} |")
    same = all(a == b == both for _, a, b, both in shared)
    print("\nSame examples: " + ("yes, every slice holds the same images and labels (in "
                                 "another order)" if same else
                                 "NO: the two datasets train, validate or test on different "
                                 "images (the slices above)"))

    steady = f"epochs 2..{args.epochs}" if args.epochs > 1 else "epoch 1 (includes tracing)"
    seeds = " ".join(map(str, args.seeds))
    print(f"\nThe recipes with --epochs {args.epochs}, --precision {args.precision}, "
          f"input=memory, seeds {seeds} (order alternated); steady = mean train ex/s of "
          f"{steady}\n")
    print(f"| model | dataset | prep s | steady train ex/s (median of {len(args.seeds)}) | "
          "min – max ex/s | vs catalog | test accuracy (mean) | vs catalog (points) |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for model in args.models:
        median = {d: statistics.median(r for r, _ in results[model, d]) for d in (CATALOG, FOLDER)}
        mean = {d: statistics.mean(a for _, a in results[model, d]) for d in (CATALOG, FOLDER)}
        for dataset in (CATALOG, FOLDER):
            rates = [r for r, _ in results[model, dataset]]
            versus = (f"{median[dataset] / median[CATALOG]:.2f}x",
                      f"{100 * (mean[dataset] - mean[CATALOG]):+.2f}")
            versus = versus if dataset == FOLDER else ("1.00x", "–")
            print(f"| {model} | {dataset} | {prepared[dataset]['seconds']:.1f} | "
                  f"{median[dataset]:,.0f} | {min(rates):,.0f} – {max(rates):,.0f} | "
                  f"{versus[0]} | {mean[dataset]:.4f} | {versus[1]} |")
        points = 100 * (mean[FOLDER] - mean[CATALOG])
        verdict = "PASS" if abs(points) <= MAX_POINTS else "FAIL"
        verdicts.append(f"{verdict} {model}: folder test accuracy {points:+.2f} points against "
                        f"the catalog's (target within ±{MAX_POINTS})"
                        + ("" if same else "; NOT on the same examples, see above"))
    print("\n" + "\n".join(verdicts))
    print(f"Test accuracy is on the same {shared[-1][1]:,} official test images for both"
          if shared[-1][1] == shared[-1][2] == shared[-1][3] else
          "Test accuracy is NOT on the same test images (--limit)")
    print(f"Wall time: {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("folder", "A folder of images against the catalog"):
        main()
