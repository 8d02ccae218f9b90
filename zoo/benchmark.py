"""Benchmark zoo entries side by side: the same data, the same runner, the same measurements.

A sweep is a list of jobs, each a RunConfig (data, never re-rendered command-line flags), with a
run directory named by the job's identity (``runs/<model>-seed<seed>-<key>``), so that every
process of a sweep agrees on it (zoo/sweep.py: plans, shards, recording). Each job is written to
``OUT/jobs/<run>.json`` and trained by ``python -m zoo.benchmark JOB`` in a child process — the
only way to read that run's own peak memory (``os.wait4``) — then its exported SavedModel is
measured here. A model registered in this process (``zoo.register``) exists only here, so its
jobs train in this process. A job whose run directory holds an unfinished run (a killed sweep)
resumes it; a finished run is exported and measured without training again.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import registry

from . import data, evaluation, files, runner, sweep
from .config import DEFAULTS, RunConfig
from .errors import ZooError, ZooUsageError
from .export import latest_version
from .runs import CONFIG, Run
from .sweep import read_records, succeeded

LATENCY_CALLS, THROUGHPUT_BATCH, THROUGHPUT_CALLS = 200, 256, 20


@dataclass(frozen=True)
class Job:
    config: RunConfig  # what to train (the recorded one, for an existing run)
    run_dir: Path  # to train into, or an existing run (from_run)
    from_run: bool = False
    index: int = 0  # the job's number in its plan, from 1 (0: --from-runs, no plan)
    key: str | None = None  # its identity (sweep.job_key); None for --from-runs
    variant: str = ""  # what it changes from the model's recipe: "units=8 epochs=1"

    @property
    def label(self) -> str:
        return f"{self.config.model} seed {self.config.seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, to hand to another process (a Ray worker)."""
        return {"config": self.config.to_dict(), "run_dir": str(self.run_dir), "from_run": self.from_run,
                "index": self.index, "key": self.key, "variant": self.variant}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**{**d, "config": RunConfig(**d["config"]), "run_dir": Path(d["run_dir"])})


def select_models(patterns: list[str]) -> list[str]:
    """Model names for the patterns (all healthy models without any); each pattern must match."""
    everything = registry.entries()
    if not patterns:
        return [registry.selector(e, everything) for e in everything if not e.problem]
    names: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = [
                registry.selector(e, everything) for e in registry.find(pattern) if not e.problem
            ]
            if not found:
                raise ZooUsageError(f"no model matches '{pattern}'")
        else:
            registry.resolve(pattern)  # unknown or ambiguous names fail here, with suggestions
            found = [pattern]
        names += [n for n in found if n not in names]
    return names


def plan(
    models: list[str],
    *,
    seeds: list[int],
    out: str | os.PathLike,
    hparams: Mapping[str, Any],
    options: Mapping[str, Any],
) -> list[Job]:
    """One job per model and seed, each a validated RunConfig, numbered from 1.

    ``hparams`` apply to every model, typed by each model's own signature (``--hp`` text or
    Python values); ``options`` are RunConfig fields. What one model does not accept fails here,
    before hours of training. The same arguments give the same plan on every machine.
    """
    out = Path(out).resolve()
    if options.get("cache_dir"):  # every job would fail on it, after --out was written
        files.check_creatable(Path(options["cache_dir"]).expanduser().resolve(), "cache folder")
    jobs = []
    for name in select_models(models):
        builder, entry = registry.get(name), registry.resolve(name)
        values = {"hparams": builder.coerce_hparams(hparams), **options}
        for seed in dict.fromkeys(seeds):  # a seed given twice is one job
            config = RunConfig.from_recipe(name, builder.recipe, {**values, "seed": seed})
            as_dict = config.to_dict()
            key = sweep.job_key(as_dict, entry.dist, entry.version)
            changed = {**config.hparams, **{k: as_dict[k] for k, default in DEFAULTS.items()
                                            if as_dict[k] != builder.recipe.get(k, default)}}
            run_dir = out / "runs" / f"{files.safe_name(name)}-seed{seed}-{key[:8]}"
            jobs.append(Job(config, run_dir, index=len(jobs) + 1, key=key, variant=_settings(changed)))
    return jobs


def _settings(changed: Mapping[str, Any]) -> str:
    """``units=8,8 batch_size=64``: settings as the leaderboard and the plan show them."""
    return " ".join(f"{k}={registry.show_value(v)}" for k, v in changed.items())


def plan_from_runs(run_dirs: list[str]) -> list[Job]:
    jobs = []
    for path in run_dirs:
        run = Run.open(path)
        if not run.complete:
            raise ZooUsageError(f"{run.path} is not a finished run (no metrics.json)")
        jobs.append(Job(run.config, run.path, from_run=True))
    return jobs


def prepare(jobs: list[Job], out: Path) -> None:
    """Prepare each dataset the jobs train on, once, before any of them runs: shards (and Ray tasks
    on this machine) starting at once on a fresh data folder would otherwise prepare it at the
    same time, and all but one fail. Processes that share ``out`` take turns."""
    needed = {json.dumps([j.config.dataset, evaluation.data_options(j.config)], default=list): j.config
              for j in jobs if not j.from_run}
    if not needed:
        return
    out.mkdir(parents=True, exist_ok=True)
    with files.locked(out / ".prepare.lock"):
        for config in needed.values():
            data.prepared_builder(config.dataset, **evaluation.data_options(config))


def attempt(job: Job, out: Path, *, threads: int | None = None,
            where: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train (unless the job is an existing or finished run), export, measure: the job's record.

    A failure of the job's own is its record too (status ``failed``, the error, the log), so a
    sweep goes on; the caller appends records. ``threads`` limits TensorFlow's thread pools in
    the training process; ``where`` says where this runs (host, shard, Ray node).
    """
    start = time.monotonic()
    where = {**(where or {}), "threads": threads}
    try:
        record = _measured(job, out, threads, where)
    except Exception as exc:  # noqa: BLE001  (any failure of one job is recorded; the others go on)
        expected = isinstance(exc, (ZooError, registry.RegistryError))
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        log = _log_path(out, job)
        if f"log: {log}" not in message:  # a failed training's log says it already
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a", encoding="utf-8") as f:
                f.write(f"Error: {message}\n" if expected else "".join(traceback.format_exception(exc)))
        record = failed_record(job, message, out, where)
    record["job_seconds"] = round(time.monotonic() - start, 3)
    return record


def failed_record(job: Job, error: str, out: Path, where: Mapping[str, Any]) -> dict[str, Any]:
    return {"status": "failed", "job": job.key, "model": job.config.model, "seed": job.config.seed,
            "variant": job.variant, "run_dir": str(job.run_dir), "error": error.splitlines()[0],
            "log": str(_log_path(out, job)), "where": dict(where), "env": environment()}


def _measured(job: Job, out: Path, threads: int | None, where: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    export_base = out / "exports" / job.run_dir.name
    run, child = Run(job.run_dir), {}
    resume = (run.path / CONFIG).is_file()  # a killed job's run: continued, not restarted
    if job.from_run or run.complete:  # measured as it is
        Run.open(job.run_dir).export(export_base)
    elif registry.resolve(job.config.model).local:
        runner.train(job.config, job.run_dir, resume=resume, export_base=export_base, verbose=0)
    else:
        child = _train_in_child(job, export_base, out, resume=resume, threads=threads)
    record = measure(job.run_dir, export_base / str(latest_version(export_base)))
    where["tf_threads"] = child.get("tf_threads")  # as the training process's TensorFlow reports them
    record.update(status="ok", job=job.key, peak_rss_mb=child.get("peak_rss_mb"), where=where)
    return record


def _train_in_child(job: Job, export_base: Path, out: Path, *, resume: bool, threads: int | None) -> dict[str, Any]:
    """Hand the job to ``python -m zoo.benchmark JOB`` as a file; return the child's peak memory
    and thread pools."""
    for folder in ("jobs", "logs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    job_path = out / "jobs" / f"{job.run_dir.name}.json"
    files.write_json(job_path, {
        "config": job.config.to_dict(), "run_dir": str(job.run_dir), "export_base": str(export_base),
        "resume": resume, "threads": threads, "parent": os.getpid(),
    })
    log_path = _log_path(out, job)
    cmd = [sys.executable, "-m", "zoo.benchmark", str(job_path)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "KERAS_BACKEND": job.config.backend})
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        lines = log_path.read_text(errors="replace").strip().splitlines()
        raise ZooError(f"{job.label}: training failed ({lines[-1] if lines else f'exit {code}'}); log: {log_path}")
    peak = json.loads(_peak_path(job_path).read_text()) if _peak_path(job_path).is_file() else {}
    # ru_maxrss only where the child could not tell: Linux carries the forking process's peak
    # (this one's, which grows with every measurement) over into the child's.
    return {**peak, "peak_rss_mb": peak.get("peak_rss_mb") or round(usage.ru_maxrss / 1024, 1)}  # KiB


def _log_path(out: Path, job: Job) -> Path:
    return out / "logs" / f"{job.run_dir.name}.log"


def limit_threads(threads: int) -> None:
    """TensorFlow's intra- and inter-op thread pools at ``threads`` each: possible only before
    this process has computed anything (a notebook that has keeps its pools)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


def _peak_path(job_path: Path) -> Path:
    return job_path.with_name(f"{job_path.stem}.peak.json")


def peak_rss_mb() -> float | None:
    """This process's own peak resident memory (VmHWM, Linux), in MiB; None where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return None


def _run_job_file(path: str) -> int:
    """The child's side: train the job a file describes. Errors are one line, as in the CLI."""
    job = json.loads(Path(path).read_text(encoding="utf-8"))
    if not _dies_with(job.get("parent")):
        return 1
    if job.get("threads"):
        limit_threads(job["threads"])
    try:
        config = RunConfig(**job["config"])
        runner.train(config, job["run_dir"], resume=job.get("resume", False), export_base=job["export_base"],
                     verbose=2)
    except (ZooError, registry.RegistryError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    threads = [tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads()]  # 0: TensorFlow's default
    files.write_json(_peak_path(Path(path)), {"peak_rss_mb": peak_rss_mb(), "tf_threads": threads})
    return 0


def _dies_with(parent: int | None) -> bool:
    """Linux: be killed when the process that started this one dies (a killed shard or Ray
    worker must not leave its training running, holding the run's lock); False if it is gone."""
    if parent is None or not sys.platform.startswith("linux"):
        return True
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def measure(run_dir: Path, export_dir: Path) -> dict[str, Any]:
    """One benchmark record for a finished run and its exported SavedModel."""
    run = Run.open(run_dir)
    record_json, metrics, history = run.record, run.metrics, run.history
    config, info = record_json["config"], record_json["dataset"]
    # Epoch 1 includes tracing and filling the cache; later epochs are the steady state.
    steady = [r["examples_per_second"] for r in history[1:]] or [
        r["examples_per_second"] for r in history
    ]
    images = data.sample_images(
        config["dataset"],
        info["test_split"] or info["validation_split"],
        THROUGHPUT_BATCH,
        **evaluation.data_options(run.config),
    )
    model = evaluation.load_model(run)
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    p50, p99 = _latency_ms(serve, images[:1])
    saved_model_eps = _saved_model_throughput(serve, images)
    keras_eps = _keras_predict_throughput(model, images)
    return {
        "model": config["model"],
        "distribution": record_json["model"]["distribution"],
        "version": record_json["model"]["version"],
        "hparams": record_json["model"]["hparams_resolved"],
        "hparams_set": config["hparams"],  # what the command line changed from the defaults
        "recipe_changed": _recipe_changed(config, record_json["model"]),
        "dataset": _dataset_label(info),
        "dataset_version": info["version"],
        # Which images exactly, for a folder (path, files per split and class, fingerprint).
        "dataset_source": info.get("source"),
        "splits": {"train": info["train_split"], "validation": info["validation_split"], "test": info["test_split"]},
        "seed": config["seed"],
        "hardware": metrics.get("hardware", LEGACY_HARDWARE),
        "input": metrics.get("input", LEGACY_INPUT),
        "epochs": len(history),
        "batch_size": config["batch_size"],
        "params": metrics["params"],
        "flops_per_example": forward_flops(model),
        "train_seconds": metrics["train_seconds"],  # training only; validation apart
        "val_seconds": metrics.get("val_seconds"),
        "train_examples_per_second": round(statistics.mean(steady), 1),
        "test_accuracy": metrics.get("test_accuracy"),
        "test_loss": metrics.get("test_loss"),
        "saved_model_bytes": sum(p.stat().st_size for p in export_dir.rglob("*") if p.is_file()),
        "latency_ms_p50": round(p50, 3),
        "latency_ms_p99": round(p99, 3),
        "saved_model_examples_per_second": round(saved_model_eps, 1),
        "keras_predict_examples_per_second": round(keras_eps, 1),
        "saved_model_vs_keras": round(saved_model_eps / keras_eps, 3),
        "run_dir": str(run_dir),
        "export_dir": str(export_dir),
        "env": environment(),
    }


def _dataset_label(info: dict[str, Any]) -> str:
    """A leaderboard's dataset: a folder by path, fingerprint and the shape it was prepared at,
    since its images (and their size) change while its name does not."""
    source = info.get("source") or {}
    if source.get("kind") != "folder":
        return info["name"]
    return f"{info['name']}@{source['fingerprint'][:8]} {'x'.join(map(str, info['input_shape']))}"


# What a run from before precision, devices and input were settings computed with.
LEGACY_HARDWARE = {"precision": "float32", "device_kind": "CPU", "replicas": 1}
LEGACY_INPUT = {"train": "memory", "evaluation": "memory"}


def hardware_label(hardware: dict[str, Any], input: dict[str, Any] | None = None) -> str:
    """Where and how a leaderboard row's runs computed: ``float32, CPU, memory``,
    ``mixed_float16, 2 GPU (A100), stream``, ``jax, float32, CPU, memory`` (backends other than
    TensorFlow are named).

    The CPU's model is in the environment line under the table; a GPU's is named here.
    """
    count = hardware["replicas"]
    devices = f"{count} {hardware['device_kind']}" if count > 1 else hardware["device_kind"]
    if hardware["device_kind"] == "GPU":
        devices += f" ({hardware.get('device_name')})"
    label = f"{hardware['precision']}, {devices}, {(input or LEGACY_INPUT)['train']}"
    backend = hardware.get("backend", "tensorflow")
    return label if backend == "tensorflow" else f"{backend}, {label}"


def _recipe_changed(config: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Training settings that differ from the model's recipe (epochs has a column of its own).

    The recipe recorded with the run, not the plugin's current one, which may have changed since.
    """
    recipe = model.get("recipe")
    if recipe is None:  # a run from before recipes were recorded
        recipe = registry.get(config["model"]).recipe
    return {
        key: config[key]
        for key, default in DEFAULTS.items()
        if key != "epochs" and config[key] != recipe.get(key, default)
    }


def _latency_ms(serve, image: np.ndarray) -> tuple[float, float]:
    x = tf.constant(image)
    for _ in range(10):  # warm-up: the first calls trace and allocate
        serve(image=x)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        serve(image=x)["class_id"].numpy()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _saved_model_throughput(serve, images: np.ndarray) -> float:
    x = tf.constant(images)
    serve(image=x)
    start = time.perf_counter()
    for _ in range(THROUGHPUT_CALLS):
        serve(image=x)["probabilities"].numpy()
    return THROUGHPUT_CALLS * len(images) / (time.perf_counter() - start)


def _keras_predict_throughput(model: keras.Model, images: np.ndarray) -> float:
    """``model.predict`` on in-memory float32 arrays, the usual way to run a Keras model."""
    x = np.concatenate([data.to_model_input(images).numpy()] * THROUGHPUT_CALLS)
    model.predict(x[: len(images)], batch_size=THROUGHPUT_BATCH, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=THROUGHPUT_BATCH, verbose=0)
    return len(x) / (time.perf_counter() - start)


def forward_flops(model: keras.Model) -> int | None:
    """Floating-point operations of one forward pass for one example (TF's graph profiler)."""
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
        # A plain trace: AutoGraph has nothing to convert here and warns that it cannot.
        forward = tf.function(lambda x: model(x, training=False), autograph=False)
        concrete = forward.get_concrete_function(spec)
        graph = convert_variables_to_constants_v2(concrete).graph
        options = (
            tf.compat.v1.profiler.ProfileOptionBuilder(
                tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            )
            .with_empty_output()
            .build()
        )
        level = tf.get_logger().level
        tf.get_logger().setLevel("ERROR")  # the v1 profiler warns about its own deprecation
        try:
            profile = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
        finally:
            tf.get_logger().setLevel(level)
        return int(profile.total_float_ops)
    except Exception:  # a profiler limitation must not lose the rest of the record
        return None


def environment() -> dict[str, Any]:
    """Library versions (as runs record them) and the machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {**runner.versions(), "cpu": cpu, "cores": os.cpu_count()}


# ---------------------------------------------------------------------------------------------
# Reports, rebuilt from results.jsonl (through sweep.save and sweep.rebuild, under its lock)


def leaderboard(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (± std) over seeds per model and setting, best test accuracy first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        changed = _settings({**r.get("hparams_set", {}), **r.get("recipe_changed", {})})
        label = f"{r['model']} {changed}" if changed else r["model"]
        # Precisions, devices and input paths apart: their speeds (and accuracies) are not the
        # same measurement.
        setup = hardware_label(r.get("hardware", LEGACY_HARDWARE), r.get("input"))
        groups[(label, r["dataset"], r["epochs"], r["batch_size"], setup)].append(r)
    rows = []
    for (label, dataset, epochs, batch, hardware), rs in groups.items():
        acc = [r["test_accuracy"] for r in rs if r["test_accuracy"] is not None]
        rows.append({
            "model": label,
            "hardware": hardware,
            "dataset": dataset,
            "epochs": epochs,
            "seeds": len(rs),
            "acc_mean": statistics.mean(acc) if acc else float("nan"),
            "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            **{k: statistics.mean(r[k] for r in rs) for k in _MEANS},
            "params": rs[0]["params"],
            "flops_per_example": rs[0]["flops_per_example"],
            "peak_rss_mb": max((r["peak_rss_mb"] for r in rs if r.get("peak_rss_mb")), default=None),
        })
    return sorted(rows, key=lambda r: -r["acc_mean"])


_MEANS = (
    "train_seconds",
    "train_examples_per_second",
    "saved_model_bytes",
    "latency_ms_p50",
    "latency_ms_p99",
    "saved_model_examples_per_second",
    "keras_predict_examples_per_second",
    "saved_model_vs_keras",
)


def write_reports(out: Path, records: list[dict[str, Any]] | None = None, notes: Sequence[str] = ()) -> None:
    """results.csv, results.md and results.png from the successful records; ``notes`` (a sweep's
    missing and failed jobs) end results.md."""
    records = [r for r in (read_records(out) if records is None else records) if succeeded(r)]
    if not records:
        if notes:
            files.write_text(out / "results.md", "No job has succeeded yet.\n\n" + _bullets(notes))
        return
    _write_csv(out / "results.csv", records)
    rows = leaderboard(records)
    commands = list(dict.fromkeys(r["command"] for r in records if r.get("command")))
    files.write_text(out / "results.md", markdown(rows, records[-1]["env"], commands, notes))
    _plot(out / "results.png", rows)


def _bullets(notes: Sequence[str]) -> str:
    return "".join(f"- {n}\n" for n in notes)


def markdown(rows: list[dict[str, Any]], env: dict[str, Any], commands: list[str],
             notes: Sequence[str] = ()) -> str:
    header = (
        "| # | model | precision, devices, input | dataset | epochs | seeds | test accuracy | train s | "
        "train ex/s | params | MFLOPs/ex | SavedModel MB | p50 / p99 ms (batch 1) | "
        "SavedModel ex/s (256) | vs Keras predict | peak RSS MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for i, r in enumerate(rows, 1):
        flops = f"{r['flops_per_example'] / 1e6:.2f}" if r["flops_per_example"] else "n/a"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "n/a"
        lines.append(
            f"| {i} | {r['model']} | {r['hardware']} | {r['dataset']} | {r['epochs']} | {r['seeds']} | "
            f"{_accuracy(r)} | {r['train_seconds']:.1f} | "
            f"{r['train_examples_per_second']:,.0f} | {r['params']:,} | {flops} | "
            f"{r['saved_model_bytes'] / 1e6:.2f} | {r['latency_ms_p50']:.2f} / {r['latency_ms_p99']:.2f} | "
            f"{r['saved_model_examples_per_second']:,.0f} | {r['saved_model_vs_keras']:.2f}x | {rss} |"
        )
    env_line = (
        f"Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"TFDS {env['tensorflow_datasets']}; {env['cpu']}, {env['cores']} cores."
    )
    made = ("\n\nMade by " + ", then ".join(f"`{c}`" for c in commands) + ".") if commands else ""
    return header + "\n".join(lines) + f"\n\n{env_line}{made}\n" + (f"\n{_bullets(notes)}" if notes else "")


def _accuracy(row: dict[str, Any]) -> str:
    if row["acc_mean"] != row["acc_mean"]:  # NaN: the dataset has no test split
        return "no test split"
    return f"{row['acc_mean']:.4f} ± {row['acc_std']:.4f}"


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    flat = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("env", "splits")}
        for key in ("hparams", "hparams_set", "recipe_changed", "hardware", "input", "dataset_source", "where",
                    "plan"):
            row[key] = json.dumps(r.get(key, {}), sort_keys=True)
        row.update({f"split_{k}": v for k, v in r["splits"].items()})
        row.update({f"env_{k}": v for k, v in r["env"].items()})
        flat.append(row)
    files.write_csv(path, flat, dict.fromkeys(k for row in flat for k in row))


def _plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    # Points carry their leaderboard number; the key below the plots gives the full labels,
    # which are too long (hyperparameters of a variant) to print next to a point.
    key_height = 0.3 * (len(rows) + 1)  # inches
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5 + key_height))
    for ax, key, label in (
        (axes[0], "train_seconds", "training time (s)"),
        (axes[1], "params", "parameters"),
    ):
        for number, r in enumerate(rows, 1):
            ax.errorbar(r[key], r["acc_mean"], yerr=r["acc_std"], fmt="o", capsize=3,
                        label=f"#{number}  {r['model']} ({r['epochs']} epochs)")
            ax.annotate(f"#{number}", (r[key], r["acc_mean"]), textcoords="offset points", xytext=(5, 5))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels overlap on short ranges
        ax.margins(x=0.15, y=0.08)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3, which="both")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower left", frameon=False)
    fig.suptitle(f"zoo bench on {rows[0]['dataset']}: mean ± std over seeds")
    fig.tight_layout(rect=(0, key_height / fig.get_figheight(), 1, 1))
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


if __name__ == "__main__":  # python -m zoo.benchmark JOB.json: one job of a sweep, in a child process
    sys.exit(_run_job_file(sys.argv[1]))
