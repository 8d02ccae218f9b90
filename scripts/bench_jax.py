"""JAX against TensorFlow, and two processes against one, training on MNIST on this machine.

Every figure is `zoo train` run as a user runs it (a process of its own per run), one run right
after the other. Steady throughput = training examples/s of the last epoch in the run's
history.csv (the first epoch includes tracing and compilation; validation is not timed).

1. Each built-in model on one process, with --backend tensorflow and --backend jax.
2. mlp on JAX as one process and as two (`--local-processes 2`, 127.0.0.1) with the same
   global batch: on a 2-core machine two processes share the cores, so this measures what the
   collectives cost, not a speed-up.

    python scripts/bench_jax.py [--models softmax mlp cnn] [--epochs 2] [--precision float32]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import ROOT, git_state


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR", str(ROOT.parent / "shared/datasets/mnist")))
    return parser.parse_args()


def train(work: Path, name: str, model: str, args: argparse.Namespace, *extra: str) -> dict:
    run = work / name
    cmd = [sys.executable, "-m", "zoo", "train", model, "--epochs", str(args.epochs), "--precision", args.precision,
           "--data-dir", str(work / "tfds"), "--manual-dir", args.manual_dir, "--run-dir", str(run), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_BACKEND", "KERAS_DISTRIBUTION"))}
    result = subprocess.run(cmd, capture_output=True, text=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    with (run / "history.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    return {"throughput": float(last["examples_per_second"]), "accuracy": metrics["test_accuracy"]}


def main() -> None:
    args = parse_args()
    commit = git_state()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-jax-") as tmp:
        work = Path(tmp)
        for model in args.models:
            tf_run = train(work, f"{model}-tf", model, args, "--backend", "tensorflow")
            jax_run = train(work, f"{model}-jax", model, args, "--backend", "jax")
            rows.append((model, tf_run, jax_run))
            print(f"{model}: tensorflow {tf_run['throughput']:.0f}/s, jax {jax_run['throughput']:.0f}/s", file=sys.stderr)
        one = train(work, "mlp-one", "mlp", args, "--backend", "jax")
        two = train(work, "mlp-two", "mlp", args, "--local-processes", "2")

    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {_cpu()}; commit {commit}")
    print(f"command: python scripts/bench_jax.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"{args.epochs} epochs, {args.precision}, the recipe's batch size; steady = last epoch\n")
    print("| model | TensorFlow examples/s | JAX examples/s | JAX / TF | test acc TF | test acc JAX |")
    print("|---|---|---|---|---|---|")
    for model, t, j in rows:
        print(f"| {model} | {t['throughput']:.0f} | {j['throughput']:.0f} | {j['throughput'] / t['throughput']:.2f}x "
              f"| {t['accuracy']:.4f} | {j['accuracy']:.4f} |")
    print("\n| mlp on JAX | examples/s (global) | vs one process | test acc |")
    print("|---|---|---|---|")
    print(f"| one process | {one['throughput']:.0f} | 1.00x | {one['accuracy']:.4f} |")
    print(f"| two processes (127.0.0.1) | {two['throughput']:.0f} | {two['throughput'] / one['throughput']:.2f}x "
          f"| {two['accuracy']:.4f} |")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("jax", "JAX against TensorFlow, one and two processes"):
        main()
