"""Tuning under an equal budget: for each model (default mlp and cnn on MNIST), the default recipe
against the recipe `zoo tune` finds, and the epochs the median pruner saves.

Every model gets the same budget: --trials trials of --epochs epochs each (default 12 of 2), seed
--seed. For each model, in this one process and in this order, as a user calls the zoo:

1. default recipe: `zoo.train(model, epochs=E, seed=S)`, the model's own recipe (optimizer, rate,
   schedule, batch size, augmentation) at the trials' epoch count; its last epoch's validation
   accuracy and its test accuracy;
2. tuned, median pruner: `zoo.tune(model, trials=T, epochs=E, seed=S, pruner="median")` on a fresh
   study; its best trial's validation accuracy and the test accuracy the study measured for that
   trial alone (no other trial touches the test split), trials complete and pruned, the epochs
   every trial trained in total, and the study's seconds;
3. tuned, no pruning: the same call with `pruner="none"`; the same figures. The sampler has the same
   seed: TPE draws its first trials (a quarter of the budget, 3 to 10) at random from the seed
   alone, so both studies train those alike; its later draws follow the trials so far, which pruning cuts short, and may differ.

Pruning saved = epochs of study 3 − epochs of study 2 (and the seconds). Validation accuracy is
the last epoch's on the held-out end of the train split (10%), as the study's objective is; the
test split is MNIST's official 10,000. The study folders are written under --work (a temporary
folder by default, removed afterwards).

    ZOO_MANUAL_DIR=../shared/datasets/mnist .venv/bin/python scripts/bench_tune.py
        [--models mlp cnn] [--trials 12] [--epochs 2] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--trials", type=int, default=12, help="every study's budget (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="of every trial and of the default recipe's run "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the runs and studies, kept "
                        "(default: a temporary folder, removed)")
    parser.add_argument("--manual-dir", default=os.environ.get("ZOO_MANUAL_DIR") or
                        str(ROOT.parent / "shared" / "datasets" / "mnist"),
                        help="the four MNIST files (default: $ZOO_MANUAL_DIR or %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ["ZOO_MANUAL_DIR"] = args.manual_dir
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("tuning", "Tuning under an equal budget"):
        run(args)


def study_figures(summary: dict, seconds: float) -> dict:
    rows = summary["trials"]
    return {
        "complete": summary["counts"]["complete"], "pruned": summary["counts"]["pruned"],
        "failed": summary["counts"]["failed"], "epochs": sum(r["epochs"] for r in rows),
        "seconds": seconds, "trial_seconds": sum(r["seconds"] or 0 for r in rows),
        "val": summary["best"]["val_accuracy"], "test": summary["best"]["test"]["accuracy"],
        "best": summary["best"]["trial"],
        "params": next(r["params"] for r in rows if r["trial"] == summary["best"]["trial"]),
        "draws": [r["params"] for r in rows],
    }


def run(args: argparse.Namespace) -> None:
    import zoo

    work = Path(args.work).expanduser().resolve() if args.work else Path(tempfile.mkdtemp(prefix="zoo-bench-tune-"))
    results: dict[str, dict] = {}
    started = time.perf_counter()
    try:
        for model in args.models:
            say = f"{model}:"
            # zoo.tune prints a line per trial: to the log (stderr), not to the results page.
            with contextlib.redirect_stdout(sys.stderr):
                begin = time.perf_counter()
                r = zoo.train(model, epochs=args.epochs, seed=args.seed, run_dir=work / model / "default", verbose=0)
                default = {"val": float(r.history[-1]["val_accuracy"]), "test": float(r.metrics["test_accuracy"]),
                           "epochs": len(r.history), "seconds": time.perf_counter() - begin}
                print(f"{say} default recipe: validation {default['val']:.4f}, test {default['test']:.4f}, "
                      f"{default['seconds']:.0f} s", file=sys.stderr)
                studies = {}
                for pruner in ("median", "none"):
                    begin = time.perf_counter()
                    summary = zoo.tune(model, trials=args.trials, epochs=args.epochs, seed=args.seed, pruner=pruner,
                                       out=work / model / f"tune-{pruner}", verbose=True)
                    studies[pruner] = study_figures(summary, time.perf_counter() - begin)
                    s = studies[pruner]
                    print(f"{say} pruner {pruner}: {s['complete']} complete, {s['pruned']} pruned, {s['epochs']} epochs, "
                          f"best trial {s['best']} validation {s['val']:.4f} test {s['test']:.4f}, {s['seconds']:.0f} s",
                          file=sys.stderr)
            results[model] = {"default": default, **studies}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    report(args, results, total)


def _same_draws(a: list[dict], b: list[dict]) -> int:
    """How many trials, from the first, the two studies drew the same settings for."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _setting(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def report(args: argparse.Namespace, results: dict[str, dict], total: float) -> None:
    from zoo.tuning.study import startup_trials

    budget = args.trials * args.epochs
    print(f"MNIST (train split: the first 90% for training, the last 10% for validation; the official test "
          f"split for test), seed {args.seed}. Every model has the same budget: {args.trials} trials of "
          f"{args.epochs} epoch(s), at most {budget} epochs a study. \"default recipe\" is one `zoo.train` run of "
          f"the model's own recipe for {args.epochs} epoch(s). \"tuned\" is the best trial of a fresh "
          f"`zoo.tune` study (TPE over the model's default space, objective: the last epoch's validation "
          f"accuracy); its test accuracy is the study's one test measurement, of that trial alone.")
    print()
    print("| model | recipe | trials complete / pruned | epochs trained | seconds | validation accuracy | test accuracy |")
    print("|---|---|---|---|---|---|---|")
    for model, r in results.items():
        d = r["default"]
        print(f"| {model} | default recipe | 1 run | {d['epochs']} | {d['seconds']:.0f} | {d['val']:.4f} | {d['test']:.4f} |")
        for pruner, label in (("median", "tuned, median pruner"), ("none", "tuned, no pruning")):
            s = r[pruner]
            failed = f" ({s['failed']} failed)" if s["failed"] else ""
            print(f"| {model} | {label} | {s['complete']} / {s['pruned']}{failed} | {s['epochs']} | {s['seconds']:.0f} "
                  f"| {s['val']:.4f} | {s['test']:.4f} |")
    print()
    print("| model | epochs without pruning | epochs with the median pruner | pruning saved | seconds without | "
          "seconds with | same draws before the studies diverge |")
    print("|---|---|---|---|---|---|---|")
    for model, r in results.items():
        m, n = r["median"], r["none"]
        saved = n["epochs"] - m["epochs"]
        print(f"| {model} | {n['epochs']} | {m['epochs']} | {saved} epochs ({100 * saved / n['epochs']:.0f}%), "
              f"{n['seconds'] - m['seconds']:.0f} s | {n['seconds']:.0f} | {m['seconds']:.0f} "
              f"| {_same_draws(m['draws'], n['draws'])} of {args.trials} trials |")
    print()
    for model, r in results.items():
        for pruner in ("median", "none"):
            s = r[pruner]
            print(f"- {model}, {'median pruner' if pruner == 'median' else 'no pruning'}: best trial {s['best']}: "
                  f"{_setting(s['params'])}.")
    print()
    print(f"\"seconds\" is the wall time of the `zoo.train` or `zoo.tune` call: a study's includes checking its "
          f"space, the test measurement of its best trial and its plots. The two studies of a model share the "
          f"sampler's seed. Optuna's TPE sampler draws its first {startup_trials(args.trials)} trials at random "
          f"(zoo tune's: a quarter of the budget, 3 to 10), from the seed alone, "
          f"so both studies train the same settings there; its later draws follow the trials so far, whose "
          f"values the pruner cuts short (the last column counts the trials drawn alike, from the first). "
          f"Benchmark time {total:.0f} s.")


if __name__ == "__main__":
    main()
