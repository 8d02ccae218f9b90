"""The cnn.mnist preset exported to every format, float and int8, each measured in its own runtime (#27).

`zoo export cnn.mnist BASE --format onnx,litert` and `... --format litert --quantize int8` are run as
a user runs them (a process of its own each); then every file is measured by the code `zoo bench
--format` measures with (zoo.export.serving), each in a fresh process of its own runtime (TensorFlow
for the SavedModel, ONNX Runtime and LiteRT alone for model.onnx and model.tflite) on the whole
MNIST test split (10,000 images): test accuracy, batch-1 latency (median of --calls single-image
calls after a warm-up) and batch-N throughput (images/s over --calls/10 batches of --batch). Every
runtime uses every core.

Targets: int8 test accuracy within 0.5 points of float; the int8 file at most a third of the float
LiteRT file.

    python scripts/bench_export_formats.py [--batch 256] [--calls 300]
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="Images per batch for the throughput.")
    parser.add_argument("--calls", type=int, default=300, help="Single-image calls for the latency.")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or str(ROOT.parent / "shared" / "datasets" / "mnist"))
    return parser.parse_args()


def zoo_export(base: Path, env: dict[str, str], *options: str) -> Path:
    """``zoo export cnn.mnist BASE OPTIONS`` as a user runs it (the console script beside this
    Python); its format lines printed, the version folder returned."""
    argv = [str(Path(sys.executable).with_name("zoo")), "export", "cnn.mnist", str(base), *options]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} failed: {proc.stderr.strip()}")
    print(f"`zoo export cnn.mnist BASE {' '.join(options)}`:")
    for line in proc.stdout.splitlines():
        if line.startswith(("onnx: ", "litert: ")):
            print(f"    {line.replace(str(base), 'BASE')}")
    print()
    return max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-formats-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "ZOO_MANUAL_DIR": args.manual_dir, "TFDS_DATA_DIR": args.data_dir or str(tmp / "tfds")}
        os.environ.update(env)
        float_version = zoo_export(tmp / "float", env, "--format", "onnx,litert")
        int8_version = zoo_export(tmp / "int8", env, "--format", "litert", "--quantize", "int8")
        from zoo.data import pipeline
        from zoo.export import serving

        images, labels = pipeline.split_arrays("mnist", "test", data_dir=env["TFDS_DATA_DIR"], manual_dir=args.manual_dir)
        record = json.loads((int8_version / "assets.extra" / "zoo.json").read_text())["litert"]
        precision = json.loads((float_version / "assets.extra" / "zoo.json").read_text())["precision"]
        rows = [
            (f"SavedModel, {precision} as trained", "saved_model", float_version),
            ("ONNX, float32", "onnx", float_version / "model.onnx"),
            ("LiteRT, float32", "litert", float_version / "model.tflite"),
            ("LiteRT, int8", "litert", int8_version / "model.tflite"),
        ]
        print(f"cnn.mnist on the MNIST test split ({len(labels)} images); latency: median of {args.calls} "
              f"batch-1 calls; throughput: batches of {args.batch}; {os.cpu_count()} threads in each runtime.")
        print()
        print(f"| file | runtime | bytes | test accuracy | batch-1 latency (ms) | batch-{args.batch} images/s |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        results = {}
        for label, kind, path in rows:
            out = serving.measure(kind, path, images[: args.batch], (images, labels), calls=args.calls,
                                  rounds=max(3, args.calls // 10))
            results[label] = out
            print(f"| {label} | {out['runtime']} | {out['bytes']:,} | {100 * out['test_accuracy']:.2f}% | "
                  f"{out['latency_ms']:.3f} | {out['throughput']:,.0f} |")
        print()
        accuracy, calibration = record["accuracy"], record["calibration"]
        print(f"int8 calibrated on {calibration['images']} images of {calibration['dataset']} {calibration['split']}; "
              f"the export's own check: {100 * accuracy['quantized']:.2f}% int8 (LiteRT) against "
              f"{100 * accuracy['float']:.2f}% float (Keras) on {accuracy['examples']} {accuracy['split']} images.")
        targets(results["LiteRT, float32"], results["LiteRT, int8"])


def targets(float_out: dict, int8_out: dict) -> None:
    drop = 100 * (float_out["test_accuracy"] - int8_out["test_accuracy"])
    ratio = int8_out["bytes"] / float_out["bytes"]
    print()
    print(f"Target: int8 within 0.5 points of float: {drop:+.2f} points "
          f"({'met' if drop <= 0.5 else 'NOT met'}). Target: int8 file at most a third of the float "
          f"LiteRT file: {ratio:.2f} of it ({'met' if ratio <= 1 / 3 else 'NOT met'}).")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("export_formats", "Export formats: SavedModel, ONNX and LiteRT"):
        main()
