"""Training throughput of the zoo's TFDS pipeline against plain Keras fit on NumPy arrays.

For each built-in model, in one process and side by side: the same architecture (rebuilt with the
same seed), batch size, optimizer and loss, trained for N epochs on the same 54,000 MNIST
examples (train[:90%]) four ways:

  zoo      zoo.data.pipeline.load: decoded once, uint8 in memory, a seeded permutation each epoch (one
           gather per batch), normalised per batch, prefetched, tf.data's autotuner off
  autotune the same pipeline with tf.data's autotuner switched back on (TensorFlow's default)
  numpy    model.fit(x, y, shuffle=True) on float32 arrays already in memory
  naive    TFDS without cache/prefetch: decode and normalise each example every epoch

Steady throughput = training examples/s of epochs 2..N (epoch 1 includes tracing and the cache
fill; validation is not timed). This machine is a shared VM whose speed drifts by tens of percent
from minute to minute, so the variants run in --rounds rounds, each in a rotated order, and
the table shows the median over rounds. Target: zoo / numpy >= 1.0 for every model.

    python scripts/bench_pipeline.py [--models softmax mlp cnn] [--epochs 3] [--rounds 3] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    default_manual = ROOT.parent / "shared" / "datasets" / "mnist"
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or (str(default_manual) if default_manual.is_dir() else None))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    import tensorflow_datasets as tfds

    import registry
    from zoo.data import pipeline

    class TrainTimer(keras.callbacks.Callback):
        """Seconds of the training part of each epoch (until validation would start)."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    splits = pipeline.load("mnist", batch_size=args.batch_size, seed=args.seed, epochs=range(args.epochs),
                       data_dir=args.data_dir, manual_dir=args.manual_dir)
    steps = splits.steps_per_epoch  # the zoo's training stream holds every epoch, one after another
    info = splits.info
    builder = tfds.builder("mnist", data_dir=args.data_dir)
    # The NumPy baseline gets the very same examples, decoded and normalised up front.
    x, y = tfds.as_numpy(builder.as_dataset(split=info.train_split, as_supervised=True, batch_size=-1))
    x = x.astype("float32") / 255.0

    def naive_pipeline():
        ds = builder.as_dataset(split=info.train_split, as_supervised=True, shuffle_files=True,
                                read_config=tfds.ReadConfig(try_autocache=False))
        return ds.map(lambda i, l: (tf.cast(i, tf.float32) / 255.0, l)).batch(args.batch_size)

    autotune = tf.data.Options()
    autotune.autotune.enabled = True  # overrides the zoo's setting: later options win
    variants = {
        "zoo": lambda model, cb: model.fit(splits.train, steps_per_epoch=steps, epochs=args.epochs, callbacks=[cb], verbose=0, shuffle=False),
        "autotune": lambda model, cb: model.fit(splits.train.with_options(autotune), steps_per_epoch=steps, epochs=args.epochs, callbacks=[cb], verbose=0, shuffle=False),
        "numpy": lambda model, cb: model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=[cb], verbose=0, shuffle=True),
        "naive": lambda model, cb: model.fit(naive_pipeline(), epochs=args.epochs, callbacks=[cb], verbose=0, shuffle=False),
    }
    print(f"{info.num_train} training examples, batch {args.batch_size}, {args.epochs} epochs, "
          f"steady = epochs 2..{args.epochs}, median of {args.rounds} rounds; TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} cores\n")
    print("| model | zoo pipeline ex/s | NumPy fit ex/s | zoo / NumPy | zoo with autotuner ex/s | zoo / zoo with autotuner | naive TFDS ex/s | naive / NumPy |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        throughput: dict[str, list[float]] = {variant: [] for variant in variants}
        for round_ in range(args.rounds):
            names = list(variants)
            for variant in names[round_ % len(names):] + names[:round_ % len(names)]:
                keras.utils.set_random_seed(args.seed)
                model = registry.get(name).build(input_shape=info.input_shape, num_classes=info.num_classes)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                timer = TrainTimer()
                variants[variant](model, timer)
                steady = timer.seconds[1:] or timer.seconds
                throughput[variant].append(info.num_train / statistics.mean(steady))
        z, n, a, v = (statistics.median(throughput[k]) for k in ("zoo", "numpy", "autotune", "naive"))
        print(f"| {name} | {z:,.0f} | {n:,.0f} | {z / n:.2f} | {a:,.0f} | {z / a:.2f} | {v:,.0f} | {v / n:.2f} |", flush=True)


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("pipeline", "The input pipeline"):
        main()
