"""What TensorFlow op determinism costs: steady training examples/s with and without it.

Each model trains through `zoo train` (so the real runner and pipeline) with
--deterministic and --no-deterministic, alternately, in fresh processes; the figure is the mean of
the history.csv throughput of epochs 2..N.

    python scripts/bench_determinism.py [--models mlp cnn] [--epochs 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def steady_throughput(model: str, flag: str, epochs: int, data_dir: str | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "zoo", "train", model, "--epochs", str(epochs), "--no-augment",
               flag, "--run-dir", str(run)] + (["--data-dir", data_dir] if data_dir else [])
        subprocess.run(cmd, check=True, capture_output=True)
        with (run / "history.csv").open() as f:
            rows = list(csv.DictReader(f))
    return statistics.mean(float(r["examples_per_second"]) for r in rows[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    args = parser.parse_args()
    print("| model | deterministic ex/s | non-deterministic ex/s | cost |\n|---|---|---|---|")
    for model in args.models:
        on = steady_throughput(model, "--deterministic", args.epochs, args.data_dir)
        off = steady_throughput(model, "--no-deterministic", args.epochs, args.data_dir)
        print(f"| {model} | {on:,.0f} | {off:,.0f} | {100 * (1 - on / off):+.1f} % |", flush=True)


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("determinism", "What op determinism costs"):
        main()
