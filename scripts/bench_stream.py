"""MNIST on the streaming input path against the memory path: accuracy and throughput, side by side.

For each model and seed, `zoo.train` trains the model's recipe (with --epochs epochs) on the same
MNIST data twice, once with input="memory" (the decoded split held in RAM) and once with
input="stream" (read from the TFDS shards every epoch through a shuffle buffer), one right after
the other; which goes first alternates from seed to seed, so that the machine's drift falls on
both alike. Steady throughput = the mean training examples/s of epochs 2..N from the run's
history (epoch 1 includes tracing and filling caches; validation is not timed); with --epochs 1
it is epoch 1's, which is only good for a smoke test.

Both paths train in this one process, as in bench_precision.py and bench_runner.py: they share
the process alike (TensorFlow's thread pools, what was imported and traced before), Keras'
session is cleared between runs, and a child process per run would only add TensorFlow's start-up,
which the history does not time anyway. The run records which path it took; a run that did not
take the path asked for stops the benchmark.

Targets (#14), per model over 3 seeds: the streaming path's mean test accuracy within 0.2 points
of the memory path's, and its steady throughput (median over seeds) at least 0.8x the memory
path's. The recipes' own 15 epochs (cnn: 7 min a run here) are the target's; the default 3
epochs keep the recipe's other settings.

    .venv/bin/python scripts/bench_stream.py [--models mlp cnn] [--seeds 0 1 2] [--epochs 3]
        [--data-dir DIR] [--manual-dir DIR]

Smoke test: --models mlp --seeds 0 --epochs 1
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from _bench import git_state  # scripts/_bench.py

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("memory", "stream")
CACHED = "stream+cache"  # --input stream --cache-dir: decoded once to disk, read back each epoch
MIN_RATIO = 0.8  # stream / memory, steady throughput
MAX_POINTS = 0.2  # |stream - memory| mean test accuracy, in percentage points


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cache", action="store_true",
                        help=f"also train with {CACHED} (--input stream --cache-dir)")
    parser.add_argument("--precision", default="float32",
                        help="the same for both paths; float32 keeps the figures comparable with "
                             "the other tables in docs/results/ (default: %(default)s)")
    parser.add_argument("--data-dir", help="prepared TFDS data (default: a temporary folder, "
                        "MNIST prepared there once and removed at the end)")
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or
                        str(ROOT.parent / "shared" / "datasets" / "mnist"),
                        help="the four MNIST files (default: $ZOO_MANUAL_DIR or %(default)s)")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    commit = git_state()  # before the zoo is imported: the code this run measures
    load = os.getloadavg()[0]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    import zoo
    from zoo.compute import devices
    from zoo.data import catalog

    with tempfile.TemporaryDirectory(prefix="zoo-bench-stream-") as tmp:
        data_dir = args.data_dir or os.path.join(tmp, "tfds")
        with contextlib.redirect_stdout(sys.stderr):  # TFDS's messages; stdout is the report's
            catalog.prepared_builder("mnist", data_dir=data_dir, manual_dir=args.manual_dir)  # once
        # (model, path) -> [(steady ex/s, test accuracy, the run's input record)], seed order
        results: dict[tuple[str, str], list[tuple[float, float, dict]]] = {}
        variants = PATHS + ((CACHED,) if args.cache else ())
        for model in args.models:
            for i, seed in enumerate(args.seeds):
                for path in variants[i % len(variants):] + variants[:i % len(variants)]:
                    keras.backend.clear_session()  # every run starts from the same clean state
                    gc.collect()
                    cache = os.path.join(tmp, "cache") if path == CACHED else None
                    run = zoo.train(model, dataset="mnist", epochs=args.epochs, seed=seed,
                                    input=path.split("+")[0], cache_dir=cache,
                                    precision=args.precision, data_dir=data_dir,
                                    manual_dir=args.manual_dir,
                                    run_dir=Path(tmp) / f"{model}-{path}-{seed}", verbose=0)
                    taken = run.record.get("input") or run.metrics.get("input") or {}
                    if taken.get("train") != path.split("+")[0]:
                        sys.exit(f"{model} seed {seed}: asked for input={path}, the run "
                                 f"recorded {taken or 'no input block'}")
                    rates = [row["examples_per_second"] for row in run.history]
                    rate = statistics.mean(rates[1:] or rates)
                    accuracy = run.metrics["test_accuracy"]
                    results.setdefault((model, path), []).append((rate, accuracy, taken))
                    print(f"{model} seed {seed} {path}: {rate:,.0f} ex/s, test accuracy "
                          f"{accuracy:.4f}", file=sys.stderr, flush=True)

    print(f"\nMachine: {devices.cpu_model()}, {os.cpu_count()} cores, load average {load:.2f} at "
          f"the start and {os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}; commit {commit}")
    print(f"Command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    steady = f"epochs 2..{args.epochs}" if args.epochs > 1 else "epoch 1 (includes tracing)"
    seeds = " ".join(map(str, args.seeds))
    print(f"MNIST, the recipes with --epochs {args.epochs}, seeds {seeds} (order rotated); "
          f"steady = mean train ex/s of {steady}\n")
    print(f"| model | path | evaluation | steady train ex/s (median of {len(args.seeds)}) | "
          "min – max ex/s | vs memory | test accuracy (mean) | vs memory (points) |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for model in args.models:
        median = {p: statistics.median(r for r, _, _ in results[model, p]) for p in variants}
        mean = {p: statistics.mean(a for _, a, _ in results[model, p]) for p in variants}
        ratio = median["stream"] / median["memory"]
        points = 100 * (mean["stream"] - mean["memory"])
        for path in variants:
            rates = [r for r, _, _ in results[model, path]]
            evaluation = "/".join(sorted({t.get("evaluation", "?")
                                          for *_, t in results[model, path]}))
            versus = (f"{median[path] / median['memory']:.2f}x",
                      f"{100 * (mean[path] - mean['memory']):+.2f}")
            versus = versus if path != "memory" else ("1.00x", "–")
            print(f"| {model} | {path} | {evaluation} | {median[path]:,.0f} | {min(rates):,.0f} – "
                  f"{max(rates):,.0f} | {versus[0]} | {mean[path]:.4f} | {versus[1]} |")
        verdicts.append(f"{'PASS' if ratio >= MIN_RATIO else 'FAIL'} {model}: stream {ratio:.2f}x "
                        f"memory throughput (target >= {MIN_RATIO}x)")
        verdicts.append(f"{'PASS' if abs(points) <= MAX_POINTS else 'FAIL'} {model}: test "
                        f"accuracy {points:+.2f} points (target within ±{MAX_POINTS})")
    print("\n" + "\n".join(verdicts))
    buffers = sorted({t.get("shuffle_buffer") for (_, p), rows in results.items() if p == "stream"
                      for *_, t in rows}, key=str)
    print(f"Streaming path's shuffle buffer: {', '.join(map(str, buffers))} examples")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("stream", "Streaming against memory"):
        main()
