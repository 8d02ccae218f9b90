"""Make the built-in presets softmax.mnist, mlp.mnist and cnn.mnist: train each built-in model
with its own recipe on MNIST (or take finished runs of it) and publish it with `zoo publish`
into zoo/models/presets/, the package data that setup.cfg's zoo.presets entry points name.

    ZOO_MANUAL_DIR=../shared/datasets/mnist python scripts/make_presets.py [--runs FOLDER]

--runs FOLDER: use FOLDER/<model>-mnist where it holds a finished run of the model's recipe
(for example the run of the README's first command) instead of training again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import zoo

MODELS = ("softmax", "mlp", "cnn")
DEST = Path(__file__).resolve().parents[1] / "zoo" / "models" / "presets"
LICENSE = "Apache-2.0"  # the zoo's own
MNIST_TERMS = ("MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges), "
               "distributed under CC BY-SA 3.0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("preset-runs"), help="where the runs are (or go)")
    args = parser.parse_args()
    for model in MODELS:
        run_dir = args.runs / f"{model}-mnist"
        run = zoo.Run.open(run_dir) if (run_dir / "metrics.json").is_file() else zoo.train(model, run_dir=run_dir)
        preset = run.publish(DEST, license=LICENSE, name=f"{model}.mnist", dataset_terms=MNIST_TERMS)
        print(f"{preset.name}: test accuracy {preset.record['metrics']['test_accuracy']:.4f}, {preset.path}")


if __name__ == "__main__":
    main()
