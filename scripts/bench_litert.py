"""The cnn.mnist preset exported to LiteRT, float and int8, against its SavedModel (#27).

`zoo export cnn.mnist BASE --format litert [--quantize int8]` is run as a user runs it (a process
of its own each); then, each in a fresh process of its own runtime (TensorFlow for the SavedModel,
LiteRT alone for the .tflite files), every file is measured on the whole MNIST test split (10,000
images): test accuracy, batch-1 latency (median of --calls single-image calls after a warm-up) and
batch-N throughput (images/s over --calls/10 batches of --batch). Both runtimes use every core
(LiteRT's interpreter with num_threads = the core count).

Targets: int8 test accuracy within 0.5 points of float; the int8 file at most a third of the float
LiteRT file.

    python scripts/bench_litert.py [--batch 256] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT

# Each runtime in a fresh process: argv = kind, path, data.npz, batch, calls; prints a JSON line.
CHILD = r"""
import json, os, statistics, sys, time
import numpy as np
kind, path, data, batch, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
arrays = np.load(data)
images, labels = arrays["images"], arrays["labels"]
if kind == "saved_model":
    import tensorflow as tf
    serve = tf.saved_model.load(path).signatures["serving_default"]
    def classify(x):
        return serve(image=tf.constant(x))["class_id"].numpy()
else:
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=path, num_threads=os.cpu_count()).get_signature_runner("serving_default")
    def classify(x):
        return runner(image=x)["class_id"]
correct = sum(int((classify(images[i:i + 500]) == labels[i:i + 500]).sum()) for i in range(0, len(images), 500))
for i in range(20):  # warm-up: tracing, allocation, resizing to batch 1
    classify(images[i:i + 1])
times = []
for i in range(calls):
    start = time.perf_counter()
    classify(images[i:i + 1])
    times.append(time.perf_counter() - start)
classify(images[:batch])
start, rounds = time.perf_counter(), max(3, calls // 10)
for i in range(rounds):
    classify(images[(i * batch) % (len(images) - batch):][:batch])
throughput = rounds * batch / (time.perf_counter() - start)
print(json.dumps({"correct": correct, "examples": len(labels), "latency_ms": 1000 * statistics.median(times),
                  "throughput": throughput}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="Images per batch for the throughput.")
    parser.add_argument("--calls", type=int, default=300, help="Single-image calls for the latency.")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or str(ROOT.parent / "shared" / "datasets" / "mnist"))
    return parser.parse_args()


def zoo_export(base: Path, env: dict[str, str], *options: str) -> Path:
    argv = [str(Path(sys.executable).with_name("zoo")), "export", "cnn.mnist", str(base), *options]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} failed: {proc.stderr.strip()}")
    print(f"`zoo export cnn.mnist BASE {' '.join(options)}`:")
    for line in proc.stdout.splitlines():
        if line.startswith("litert: "):
            print(f"    {line}")
    return max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def measure(kind: str, path: Path, data: Path, args: argparse.Namespace) -> dict:
    python = [sys.executable, "-I"] if kind == "litert" else [sys.executable]  # LiteRT: no TF to lean on
    proc = subprocess.run([*python, "-c", CHILD, kind, str(path), str(data), str(args.batch), str(args.calls)],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measuring {path} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-litert-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "ZOO_MANUAL_DIR": args.manual_dir, "TFDS_DATA_DIR": args.data_dir or str(tmp / "tfds")}
        os.environ.update(env)
        float_version = zoo_export(tmp / "float", env, "--format", "litert")
        int8_version = zoo_export(tmp / "int8", env, "--format", "litert", "--quantize", "int8")
        from zoo.data import pipeline

        images, labels = pipeline.split_arrays("mnist", "test", data_dir=env["TFDS_DATA_DIR"], manual_dir=args.manual_dir)
        np_file = tmp / "test.npz"
        import numpy as np

        np.savez(np_file, images=images, labels=labels)
        record = json.loads((int8_version / "assets.extra" / "zoo.json").read_text())["litert"]
        precision = json.loads((float_version / "assets.extra" / "zoo.json").read_text())["precision"]
        saved_model_files = [p for p in float_version.iterdir() if p.name in ("saved_model.pb", "variables")]
        rows = [
            (f"SavedModel, {precision} as trained (TensorFlow)", "saved_model", float_version,
             sum(size(p) for p in saved_model_files)),
            ("LiteRT, float32", "litert", float_version / "model.tflite", size(float_version / "model.tflite")),
            ("LiteRT, int8", "litert", int8_version / "model.tflite", size(int8_version / "model.tflite")),
        ]
        print()
        print(f"cnn.mnist on the MNIST test split ({len(labels)} images); latency: median of {args.calls} "
              f"batch-1 calls; throughput: batches of {args.batch}; {os.cpu_count()} threads in each runtime.")
        print()
        print(f"| file | bytes | test accuracy | batch-1 latency (ms) | batch-{args.batch} images/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        results = {}
        for label, kind, path, nbytes in rows:
            out = measure(kind, path, np_file, args)
            results[label] = (out, nbytes)
            print(f"| {label} | {nbytes:,} | {100 * out['correct'] / out['examples']:.2f}% | "
                  f"{out['latency_ms']:.3f} | {out['throughput']:,.0f} |")
        print()
        accuracy = record["accuracy"]
        calibration = record["calibration"]
        print(f"int8 calibrated on {calibration['images']} images of {calibration['dataset']} {calibration['split']}; "
              f"the export's own check: {100 * accuracy['quantized']:.2f}% int8 (LiteRT) against "
              f"{100 * accuracy['float']:.2f}% float (Keras) on {accuracy['examples']} {accuracy['split']} images.")
        float_out, float_bytes = results["LiteRT, float32"]
        int8_out, int8_bytes = results["LiteRT, int8"]
        drop = 100 * (float_out["correct"] - int8_out["correct"]) / float_out["examples"]
        ratio = int8_bytes / float_bytes
        print(f"Target: int8 within 0.5 points of float: {drop:+.2f} points "
              f"({'met' if drop <= 0.5 else 'NOT met'}). Target: int8 file at most a third of the float "
              f"LiteRT file: {ratio:.2f} of it ({'met' if ratio <= 1 / 3 else 'NOT met'}).")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("export_formats", "Export formats: SavedModel and LiteRT"):
        main()
