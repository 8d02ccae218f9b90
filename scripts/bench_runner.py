"""What the zoo's runner costs over plain Keras: steady training throughput, side by side.

For each built-in model, in this one process, every variant builds the same architecture with the
same seed and trains it with the model's recipe (optimizer, learning rate, schedule, batch size)
for --epochs epochs on the same 54,000 MNIST examples (train[:90%]), validating on train[90%:]:

  zoo                      zoo.train(augment=False): the whole runner (its tf.data pipeline,
                           history, backup, TensorBoard, NaN guard) with op determinism, its default
  zoo, deterministic off   the same with deterministic=False
  keras                    plain Keras: model.fit(x, y, shuffle=True) on float32 NumPy arrays in
                           [0, 1], same optimizer, schedule and loss, no op determinism
  keras + ...              plain Keras plus one thing, so that each cost shows on its own:
                           op determinism, a TensorBoard callback (update_freq="epoch",
                           write_graph=False), a callback reading the loss on the host after every
                           batch (a device-to-host sync per step); "keras, constant rate" drops the
                           recipe's cosine schedule instead (above 1.0x = what the schedule costs)
  zoo + augment            zoo.train(augment=True), for models whose recipe augments (cnn)

Augmentation is a cost of the recipe, not of the runner: every variant but the last trains with
augment=False, and the last row shows that cost separately.

Steady throughput = training examples/s over epochs 2..E (epoch 1 includes tracing). Training time
runs from on_epoch_begin to on_test_begin, so validation is not counted; the zoo's history.csv
(train_seconds, examples_per_second) measures the same span. This 2-core machine's speed drifts,
so the variants run in --rounds rounds, each in a rotated order, and the table shows the median
over rounds (and the range). Targets, per model: zoo >= 0.95x keras, zoo with deterministic off
>= 1.0x keras.

    .venv/bin/python scripts/bench_runner.py [--models softmax mlp cnn] [--epochs 3] [--rounds 3]
        [--only VARIANT ...] [--data-dir DIR] [--manual-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _bench import git_state  # scripts/_bench.py

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
VARIANTS = {  # --only name: row label
    "zoo": "zoo",
    "zoo-nondet": "zoo, deterministic off",
    "keras": "keras",
    "keras+determinism": "keras + op determinism",
    "keras+tensorboard": "keras + TensorBoard callback",
    "keras+loss-read": "keras + loss read every step",
    "keras-constant": "keras, constant rate",
    "zoo+augment": "zoo + augment",
}
TARGETS = {"zoo": 0.95, "zoo-nondet": 1.0}  # minimum ratio to keras


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                        help=f"run only these variants: {', '.join(VARIANTS)}")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR") or
                        os.path.join(tempfile.gettempdir(), "zoo-bench-runner-tfds"),
                        help="prepared TFDS data, reused across runs (default: %(default)s)")
    parser.add_argument("--manual-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: steady throughput is epochs 2..E")
    return args


def steady(epochs: list[tuple[float, float]]) -> float:
    """Examples/s over epochs 2..E from (examples, training seconds) per epoch."""
    return sum(n for n, _ in epochs[1:]) / sum(s for _, s in epochs[1:])


def main() -> None:
    args = parse_args()
    commit = git_state()  # before the zoo is imported: the code this run measures
    load = f"{os.getloadavg()[0]:.2f}"  # others' work on the machine skews every variant
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from tensorflow.python.framework import config as tf_config  # the only way to switch it off

    import registry
    import zoo
    import zoo.training.runner  # (imported now, from the tree `commit` describes)
    from zoo.compute import devices
    from zoo.config import RunConfig
    from zoo.data import catalog

    builder = catalog.prepared_builder("mnist", data_dir=args.data_dir, manual_dir=args.manual_dir)

    def arrays(split: str):
        x, y = tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True, batch_size=-1))
        return x.astype("float32") / 255.0, y

    # The zoo's own split strings: the very examples zoo.train trains and validates on.
    train, val, test = (arrays(s) for s in (*catalog.split_strings(0.1), "test"))
    optimizers = {  # as the runner builds them
        "adam": keras.optimizers.Adam,
        "adamw": lambda lr: keras.optimizers.AdamW(lr, weight_decay=1e-4),
        "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
        "rmsprop": keras.optimizers.RMSprop,
    }

    class TrainTimer(keras.callbacks.Callback):
        """Training seconds of each epoch: from its start until validation begins."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    class LossRead(keras.callbacks.Callback):
        """What a naive NaN guard does: the step's loss on the host, so every step waits for it."""

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])

    def zoo_run(name: str, recipe: RunConfig, tmp: str, **options) -> tuple[float, float]:
        run = zoo.train(name, dataset="mnist", epochs=args.epochs, run_dir=Path(tmp) / "run",
                        manual_dir=args.manual_dir, data_dir=args.data_dir, verbose=0, **options)
        rows = [(r["examples_per_second"] * r["train_seconds"], r["train_seconds"]) for r in run.history]
        return steady(rows), run.metrics["test_accuracy"]

    def keras_run(name: str, recipe: RunConfig, tmp: str, *, callback=None, determinism=False,
                  schedule=True) -> tuple[float, float]:
        keras.utils.set_random_seed(SEED)
        model = registry.get(name).build(input_shape=(28, 28, 1), num_classes=10)
        lr = recipe.learning_rate
        if schedule and recipe.schedule == "cosine":
            steps = -(-len(train[1]) // recipe.batch_size)
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=args.epochs * steps)
        model.compile(optimizer=optimizers[recipe.optimizer](lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
        timer = TrainTimer()
        if determinism:
            tf.config.experimental.enable_op_determinism()
        try:
            model.fit(*train, batch_size=recipe.batch_size, epochs=args.epochs, shuffle=True,
                      validation_data=val, callbacks=[timer] + ([callback] if callback else []), verbose=0)
        finally:
            if determinism:
                tf_config.disable_op_determinism()
        _, accuracy = model.evaluate(*test, batch_size=recipe.batch_size, verbose=0)
        return steady([(len(train[1]), s) for s in timer.seconds]), accuracy

    runs = {
        "zoo": lambda *a: zoo_run(*a, augment=False, deterministic=True),
        "zoo-nondet": lambda *a: zoo_run(*a, augment=False, deterministic=False),
        "keras": keras_run,
        "keras+determinism": lambda *a: keras_run(*a, determinism=True),
        "keras+tensorboard": lambda n, r, tmp: keras_run(n, r, tmp, callback=keras.callbacks.TensorBoard(
            tmp, update_freq="epoch", write_graph=False)),
        "keras+loss-read": lambda *a: keras_run(*a, callback=LossRead()),
        "keras-constant": lambda *a: keras_run(*a, schedule=False),
        "zoo+augment": lambda *a: zoo_run(*a, augment=True, deterministic=True),
    }

    recipes = {m: RunConfig.from_recipe(m, registry.get(m).recipe, {"epochs": args.epochs}) for m in args.models}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, recipe in recipes.items():
        keys = [k for k in VARIANTS if k in (args.only or VARIANTS)
                and (k != "zoo+augment" or recipe.augment) and (k != "keras-constant" or recipe.schedule != "constant")]
        for round_ in range(args.rounds):
            for key in keys[round_ % len(keys):] + keys[:round_ % len(keys)]:
                keras.backend.clear_session()  # every variant starts from the same clean state
                gc.collect()
                with tempfile.TemporaryDirectory() as tmp:
                    rate, accuracy = runs[key](name, recipe, tmp)
                results.setdefault((name, key), []).append((rate, accuracy))
                print(f"{name} round {round_ + 1}/{args.rounds} {VARIANTS[key]}: {rate:,.0f} ex/s, "
                      f"test accuracy {accuracy:.4f}", file=sys.stderr, flush=True)

    print(f"{len(train[1]):,} training examples, {len(val[1]):,} validation, {args.epochs} epochs, steady = "
          f"epochs 2..{args.epochs}, median of {args.rounds} rounds in rotated order; recipes: "
          + "; ".join(f"{m} {r.optimizer} {r.learning_rate:g} {r.schedule} batch {r.batch_size}"
                      for m, r in recipes.items()) + "\n")
    print("| model | variant | steady train ex/s (median) | min – max ex/s | vs keras | test accuracy (mean) |")
    print("|---|---|---|---|---|---|")
    ratios = {}
    for name in recipes:
        base = statistics.median(r for r, _ in results[name, "keras"]) if (name, "keras") in results else None
        for key, label in VARIANTS.items():
            if (name, key) not in results:
                continue
            rates = [r for r, _ in results[name, key]]
            rate, accuracy = statistics.median(rates), statistics.mean(a for _, a in results[name, key])
            ratios[name, key] = rate / base if base else None
            ratio = f"{rate / base:.2f}x" if base else "–"
            print(f"| {name} | {label} | {rate:,.0f} | {min(rates):,.0f} – {max(rates):,.0f} | {ratio} | {accuracy:.4f} |")
    print()
    for (name, key), ratio in ratios.items():
        if key in TARGETS and ratio is not None:
            verdict = "PASS" if ratio >= TARGETS[key] else "FAIL"
            print(f"{verdict} {name}: {VARIANTS[key]} {ratio:.2f}x keras (target >= {TARGETS[key]:.2f}x)")
    print(f"\nMachine: {devices.cpu_model()}, {os.cpu_count()} cores, load average {load} at the start and "
          f"{os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}; commit {commit}")
    print(f"Command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("runner", "The runner against plain Keras"):
        main()
