"""What running a sweep's jobs as Ray tasks costs and gains on this machine, measured side by side.

The same sweep (softmax and mlp x seeds 0, 1, 1 epoch on MNIST: 4 jobs) runs in this process
through the zoo's executors, each into a fresh --out:

- plainly, one job after another (`zoo bench`), TensorFlow's own thread pools;
- on a local Ray cluster with every CPU, `--cpus-per-job` = all of them (1 job at a time);
- the same with `--cpus-per-job 1` (as many jobs at a time as CPUs);

--rounds times, in a rotated order; the table shows medians.

For each: the cluster's start, the sweep's wall time (first job submitted to last record
written), the sum of the jobs' own times (each job's `job_seconds`: training process, export and
measurements, timed inside the job) and the overhead per job, (wall x concurrent jobs - sum of
job times) / jobs: the slot time not spent in jobs (starting workers, imports, scheduling,
recording, a slot idle at the end). Then the round trip of an empty task in a reused worker (as
the jobs of a CPU sweep run), in a fresh worker (`max_calls=1`, as GPU tasks run) and in a fresh
worker that imports the zoo's benchmark module (TensorFlow), each the median of --calls.

    python scripts/bench_sweep.py [--models softmax mlp] [--seeds 0 1] [--epochs 1] [--rounds 1] [--calls 5]
"""

from __future__ import annotations

import argparse
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["softmax", "mlp"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="each way this often, in a rotated order")
    parser.add_argument("--calls", type=int, default=5, help="empty-task round trips per kind")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR") or
                        os.path.join(tempfile.gettempdir(), "zoo-bench-sweep-tfds"),
                        help="prepared TFDS data, reused across runs (default: %(default)s)")
    parser.add_argument("--manual-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    return parser.parse_args()


def _import_benchmark() -> None:
    import zoo.benchmark.child  # noqa: F401  (TensorFlow, Keras, the zoo: what a fresh job worker imports)


def main() -> None:
    args = parse_args()
    commit = git_state()  # before the zoo is imported: the code this run measures
    load = f"{os.getloadavg()[0]:.2f}"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import keras
    import tensorflow as tf

    from zoo.benchmark import jobs, sweep
    from zoo.benchmark import records as bench_records
    from zoo.benchmark.ray import RayCluster
    from zoo.compute import devices
    from zoo.data import catalog

    cores = os.cpu_count()
    catalog.prepared_builder("mnist", data_dir=args.data_dir, manual_dir=args.manual_dir)
    options = {"dataset": "mnist", "epochs": args.epochs, "precision": "float32", "data_dir": args.data_dir}
    ways = [("plain `zoo bench`", None, None, 1), (f"Ray, --cpus-per-job {cores}", "local", cores, 1),
            ("Ray, --cpus-per-job 1", "local", 1, cores)]
    measured: dict[str, list[tuple[float, float, float, float]]] = {label: [] for label, *_ in ways}
    accuracies = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for number, (label, ray, cpus, concurrent) in enumerate(ways[round_ % len(ways):] + ways[:round_ % len(ways)]):
                out = Path(tmp) / f"round{round_}-{number}"
                planned = jobs.plan(args.models, seeds=args.seeds, out=out, hparams={}, options=options)
                selection = bench_records.select(planned, out)
                start = time.monotonic()
                with sweep.executing(selection.todo, out, ray=ray, cpus_per_job=cpus) as results:
                    started = time.monotonic()
                    records = [record for _, record in sweep.execute(out, results, selection)]
                    wall = time.monotonic() - started
                assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
                own = sum(r["job_seconds"] for r in records)
                accuracies[label, round_] = {(r["model"], r["seed"]): r["test_accuracy"] for r in records}
                measured[label].append((started - start, wall, own, (wall * concurrent - own) / len(records)))
                print(f"round {round_ + 1}/{args.rounds} {label}: {len(records)} jobs in {wall:.1f} s", flush=True)

        import ray as ray_lib

        with RayCluster("local", cpus_per_job=1):
            fresh = ray_lib.remote(num_cpus=1, max_calls=1)(lambda: None)
            importing = ray_lib.remote(num_cpus=1, max_calls=1)(_import_benchmark)
            reused = ray_lib.remote(num_cpus=1)(lambda: None)
            trips = {}
            for name, task in (("reused worker, empty task", reused), ("fresh worker, empty task", fresh),
                               ("fresh worker importing zoo.benchmark (TensorFlow)", importing)):
                times = []
                for _ in range(args.calls):
                    start = time.monotonic()
                    ray_lib.get(task.remote())
                    times.append(time.monotonic() - start)
                trips[name] = statistics.median(times)

    jobs = len(args.models) * len(args.seeds)
    print(f"\n{jobs} jobs ({', '.join(args.models)} x seeds {', '.join(map(str, args.seeds))}, {args.epochs} "
          f"epoch(s), MNIST, float32), a Ray cluster of {cores} CPUs on this machine started for each Ray "
          f"sweep; median of {args.rounds} round(s)\n")
    print("| way | jobs at a time | cluster start s | sweep wall s | sum of job s | overhead per job s | "
          "vs plain |")
    print("|---|---|---|---|---|---|---|")
    medians = {label: [statistics.median(v) for v in zip(*runs)] for label, runs in measured.items()}
    plain_wall = medians[ways[0][0]][1]
    for label, ray, _, concurrent in ways:
        started, wall, own, overhead = medians[label]
        shown = f"{started:.1f}" if ray else "–"
        print(f"| {label} | {concurrent} | {shown} | {wall:.1f} | {own:.1f} | {overhead:.1f} | "
              f"{plain_wall / wall:.2f}x |")
    print("\n| Ray task round trip (median of {}) | s |\n|---|---|".format(args.calls))
    for name, seconds in trips.items():
        print(f"| {name} | {seconds:.2f} |")
    first = next(iter(accuracies.values()))
    same = all(a == first for a in accuracies.values())
    print(f"\nTest accuracies {'equal' if same else 'DIFFER'} in all three ways and rounds: "
          + ", ".join(f"{m} seed {s} {a:.4f}" for (m, s), a in sorted(first.items())))
    print(f"\nMachine: {devices.cpu_model()}, {cores} cores, load average {load} at the start and "
          f"{os.getloadavg()[0]:.2f} at the end; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}, Ray {ray_lib.__version__}; commit {commit}")
    print(f"Command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("sweep", "Sweeps: plain, Ray"):
        main()
