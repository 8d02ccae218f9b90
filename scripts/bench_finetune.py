"""Fine-tuning the built-in cnn.mnist preset on a small folder of new digits, against training the
same cnn from random weights.

The folder: digits of MNIST's *test* split (which cnn.mnist never trained on: it trained on the
train split's first 90%), of --classes classes (default 0 to 4), each renamed ("zero", "one",
...), written as grayscale PNGs in the zoo's split layout: --folder/train/<name>/<index>.png
(--train-per-class each; the zoo holds out the last 10% for validation) and
--folder/test/<name>/<index>.png (--test-per-class each, other images). The class names and
their count are not the preset's (0 to 9), so fine-tuning gets a new head (the last Dense) and
loads every other weight. The folder is never written inside the repository.

Training: for each seed, `zoo.train("cnn", ...)` with the cnn recipe (Adam 2e-3, cosine, shifts)
but --batch-size (default 32: 500 images make 15 steps an epoch) and --epochs epochs, once per
way of starting, in this one process, the order alternating from seed to seed:

- scratch: random weights (what a user without presets does);
- cnn.mnist: `init="cnn.mnist"`, every layer training;
- cnn.mnist, freeze all: `init="cnn.mnist", freeze="all"` (only the new head trains).

The folder is prepared (TFDS) once before the first run, untimed. Reported: test accuracy on
the folder's test split (mean and each seed), and how long each takes
to reach --target validation accuracy: the training seconds (history.csv's train_seconds, summed
to the first epoch at or above the target) and that epoch; "not in N epochs" otherwise.

    .venv/bin/python scripts/bench_finetune.py [--seeds 0 1 2] [--epochs 5] [--target 0.95]
        [--folder /tmp/zoo-finetune-folder] [--manual-dir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ARMS = {  # label -> zoo.train options
    "scratch (random weights)": {},
    "cnn.mnist, every layer": {"init": "cnn.mnist"},
    "cnn.mnist, freeze all": {"init": "cnn.mnist", "freeze": "all"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--target", type=float, default=0.95, help="validation accuracy (default: %(default)s)")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="digits to keep")
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--folder", default="/tmp/zoo-finetune-folder")
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or
                        str(ROOT.parent / "shared" / "datasets" / "mnist"),
                        help="the four MNIST files (default: $ZOO_MANUAL_DIR or %(default)s)")
    args = parser.parse_args()
    args.folder = Path(args.folder).expanduser().resolve()
    if args.folder == ROOT or ROOT in args.folder.parents:
        parser.error(f"--folder {args.folder} is inside the repository; MNIST's images stay out of it")
    return args


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (magic,) = struct.unpack(">I", raw[:4])
    dims = struct.unpack(f">{1 + 2 * (magic == 2051)}I", raw[4:8 + 8 * (magic == 2051)])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def write_folder(args: argparse.Namespace) -> dict[str, int]:
    """MNIST test-split digits as a folder of PNGs (written anew each time: it takes a second)."""
    from PIL import Image

    manual = Path(args.manual_dir)
    images = read_idx(manual / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(manual / "t10k-labels-idx1-ubyte.gz")
    shutil.rmtree(args.folder, ignore_errors=True)
    counts = {"train": 0, "test": 0}
    for digit in args.classes:
        where = np.flatnonzero(labels == digit)  # in the file's order: the same folder every time
        take = {"train": where[:args.train_per_class],
                "test": where[args.train_per_class:args.train_per_class + args.test_per_class]}
        for split, indices in take.items():
            target = args.folder / split / NAMES[digit]
            target.mkdir(parents=True)
            for i in indices:
                Image.fromarray(images[i], "L").save(target / f"{i:05d}.png")
            counts[split] += len(indices)
    return counts


def reached(history: list[dict], target: float) -> tuple[int, float] | None:
    """(epoch, training seconds to the end of it) of the first epoch at ``target`` validation accuracy."""
    seconds = 0.0
    for row in history:
        seconds += float(row["train_seconds"])
        if float(row["val_accuracy"]) >= target:
            return int(row["epoch"]), seconds
    return None


def main() -> None:
    args = parse_args()
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("finetune", "Fine-tuning a preset against training from scratch"):
        run(args)


def run(args: argparse.Namespace) -> None:
    counts = write_folder(args)
    import zoo
    from zoo.presets import catalog

    preset = catalog.find("cnn.mnist")
    work = Path(tempfile.mkdtemp(prefix="zoo-finetune-"))
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    from zoo.data import catalog as data_catalog

    data_catalog.prepared_builder(str(args.folder), data_dir=str(work / "data"))  # not timed: once for all
    started = time.perf_counter()
    try:
        for n, seed in enumerate(args.seeds):
            arms = list(ARMS) if n % 2 == 0 else list(reversed(ARMS))
            for arm in arms:
                begin = time.perf_counter()
                r = zoo.train("cnn", dataset=str(args.folder), epochs=args.epochs, batch_size=args.batch_size,
                              seed=seed, data_dir=str(work / "data"), run_dir=work / "runs" / f"{seed}-{list(ARMS).index(arm)}",
                              verbose=0, **ARMS[arm])
                wall = time.perf_counter() - begin
                results[arm].append({
                    "seed": seed, "test_accuracy": r.metrics["test_accuracy"], "reached": reached(r.history, args.target),
                    "train_seconds": r.metrics["train_seconds"], "wall": wall, "precision": r.metrics["hardware"]["precision"],
                    "new_head": (r.record.get("init") or {}).get("new_head"),
                })
                print(f"  seed {seed}, {arm}: test accuracy {r.metrics['test_accuracy']:.4f}, "
                      f"{r.metrics['train_seconds']:.1f} s of training, {wall:.1f} s in all", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started

    first = next(iter(results.values()))[0]
    names = ", ".join(f'"{NAMES[d]}"' for d in args.classes)
    print(f"cnn on {counts['train']} training images ({args.train_per_class} a class, 10% of them held out for "
          f"validation) and {counts['test']} test images of MNIST's test split, {len(args.classes)} classes "
          f"named {names}: digits that {preset.name} (digest {preset.digest[:19]}…, trained on MNIST's train "
          f"split, classes \"0\" to \"9\") never saw, under other class names, so its head is new. "
          f"Recipe of cnn (Adam 2e-3, cosine, shifts), batch size {args.batch_size}, {args.epochs} epochs, "
          f"seeds {', '.join(map(str, args.seeds))}, {first['precision']}.")
    print()
    print(f"| start | test accuracy (mean of {len(args.seeds)}) | each seed | validation accuracy "
          f"≥ {args.target:g} after (median: epoch, training s) | training s (mean) | zoo.train s in all (mean) |")
    print("|---|---|---|---|---|---|")
    for arm, rows in results.items():
        accuracies = [r["test_accuracy"] for r in rows]
        hits = [r["reached"] for r in rows]
        if all(h is not None for h in hits):
            when = f"epoch {statistics.median(h[0] for h in hits):g}, {statistics.median(h[1] for h in hits):.1f} s"
        else:
            done = [h for h in hits if h is not None]
            when = f"not in {args.epochs} epochs for {len(hits) - len(done)} of {len(hits)} seeds"
        print(f"| {arm} | {statistics.mean(accuracies):.4f} | {' '.join(f'{a:.4f}' for a in accuracies)} | {when} "
              f"| {statistics.mean(r['train_seconds'] for r in rows):.1f} | {statistics.mean(r['wall'] for r in rows):.1f} |")
    print()
    scratch, tuned = (statistics.mean(r["test_accuracy"] for r in results[a]) for a in list(ARMS)[:2])
    print(f"Fine-tuning every layer from {preset.name}: {100 * (tuned - scratch):+.2f} points of test accuracy over "
          f"random weights; new head in every fine-tuned run: "
          f"{all(r['new_head'] for a in list(ARMS)[1:] for r in results[a])}. Benchmark time {total:.0f} s.")


if __name__ == "__main__":
    main()
