"""What mixed precision and XLA do to `zoo train` on this machine, measured side by side.

For each model and seed, `zoo.train` trains the same recipe on the same MNIST data in each
precision (and, with --xla, float32 with XLA off and on, both with --no-deterministic: Keras turns
XLA off under op determinism), one right after the other in a rotated order, in this one process. Steady throughput = training examples/s of epochs 2..N from the run's history
(epoch 1 includes tracing; validation is not timed). The table shows the median over seeds of the
steady throughput, its ratio to float32, and the mean test accuracy; then what `auto` resolves to
here and why.

Targets (#13), on a CPU with avx512_bf16: cnn in mixed_bfloat16 >= 1.5x float32 with test accuracy
within 0.1 points (mean of 3 seeds). On a CPU without it bfloat16 is emulated, and `auto` must
pick float32.

With --fast-cnn it also trains the leaderboard's cnn variant that reaches 99 % in two epochs
(filters 16,64, dense 256, learning rate 0.003, label smoothing 0.1, no augmentation) in float32
and with `--precision auto`, and prints each one's training seconds and test accuracy: the time
to 99 % that `auto` is to halve on a CPU with bfloat16.

    python scripts/bench_precision.py [--models softmax mlp cnn] [--epochs 3] [--seeds 0 1 2] [--xla] [--fast-cnn]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "cnn"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--xla", action="store_true", help="Also float32 with --jit-compile on.")
    parser.add_argument("--fast-cnn", action="store_true", help="Time to 99 %% in float32 and auto.")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    parser.add_argument("--manual-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import zoo
    from zoo.compute import devices

    # (precision, XLA, deterministic ops); XLA's baseline is float32 without determinism.
    variants = [(p, "auto", True) for p in args.precisions]
    variants += [("float32", "off", False), ("float32", "on", False)] if args.xla else []
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="zoo-bench-tfds-")
    results: dict[tuple[str, str, bool], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as runs:
        for model in args.models:
            for i, seed in enumerate(args.seeds):
                rotated = variants[i % len(variants):] + variants[: i % len(variants)]
                for precision, jit, deterministic in rotated:
                    run = zoo.train(
                        model, epochs=args.epochs, seed=seed, precision=precision, jit_compile=jit,
                        deterministic=deterministic, data_dir=data_dir,
                        run_dir=Path(runs) / f"{model}-{precision}-{jit}-{deterministic}-{seed}",
                        manual_dir=args.manual_dir, verbose=0,
                    )
                    steady = [r["examples_per_second"] for r in run.history[1:]] or [
                        r["examples_per_second"] for r in run.history
                    ]
                    results.setdefault((model, precision, jit, deterministic), []).append(
                        (statistics.mean(steady), run.metrics["test_accuracy"])
                    )
                    print(f"{model} seed {seed} {precision} XLA {jit} deterministic {deterministic}: "
                          f"{statistics.mean(steady):,.0f} ex/s, "
                          f"test accuracy {run.metrics['test_accuracy']:.4f}", flush=True)

    print(f"\n| model | precision | XLA | deterministic | steady train ex/s (median of {len(args.seeds)}) | "
          "vs baseline | test accuracy (mean) | vs baseline (points) |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for (m, precision, jit, deterministic), rows in sorted(results.items(), key=lambda kv: not kv[0][3]):
            if m != model:
                continue
            # The baseline: float32 with the same determinism setting (XLA off).
            base = results[(model, "float32", "auto" if deterministic else "off", deterministic)]
            base_eps, base_acc = statistics.median(e for e, _ in base), statistics.mean(a for _, a in base)
            eps, acc = statistics.median(e for e, _ in rows), statistics.mean(a for _, a in rows)
            print(f"| {model} | {precision} | {jit} | {deterministic} | {eps:,.0f} | {eps / base_eps:.2f}x | "
                  f"{acc:.4f} | {100 * (acc - base_acc):+.2f} |")

    if args.fast_cnn:
        fast = {"hparams": {"filters": (16, 64), "dense_units": 256}, "learning_rate": 0.003,
                "label_smoothing": 0.1, "augment": False, "epochs": 2}
        print("\n| fast cnn, 2 epochs | resolved precision | train s | test accuracy |\n|---|---|---|---|")
        with tempfile.TemporaryDirectory() as runs:
            for precision in ("float32", "auto"):
                run = zoo.train("cnn", precision=precision, run_dir=Path(runs) / precision, data_dir=data_dir,
                                manual_dir=args.manual_dir, verbose=0, **fast)
                m = run.metrics
                print(f"| --precision {precision} | {m['hardware']['precision']} | {m['train_seconds']:.1f} | "
                      f"{m['test_accuracy']:.4f} |", flush=True)

    placement = devices.place("auto", "auto")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    print(f"\n`--precision auto` here: {placement.precision} ({placement.reason}).")
    print(f"Machine: {devices.cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"commit {commit.stdout.strip() or 'unknown'}; {args.epochs} epochs per run.")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("precision", "Precision and XLA"):
        main()
