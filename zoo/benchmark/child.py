"""One job of a sweep: written to ``OUT/jobs/<run>.json`` and trained by
``python -m zoo.benchmark JOB`` in a child process (the only way to read that run's own peak memory,
``os.wait4``), then its export measured here. A model registered in this process
(``zoo.register``) exists only here, so its jobs train in this process. A job whose run directory
holds an unfinished run (a killed sweep) resumes it; a finished run is exported and measured
without training again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

import registry

from .. import evaluation, files, formats, plan
from ..compute import backend
from ..config import RunConfig
from ..data import catalog
from ..errors import ZooError, ZooUsageError
from ..export.bundle import latest_version
from ..presets import use
from ..presets.store import Preset
from ..recipes import Recipe
from ..runs import CONFIG, Run
from ..training import runner
from .jobs import Job, export_dict, export_request, plan_from_presets
from .measure import environment, measure, measure_preset, peak_path, peak_rss_mb


def check_presets(jobs: list[Job]) -> None:
    """A one-line usage error unless the dataset each preset job is measured on has the preset's
    classes (names, in order) and input shape: read from the dataset's metadata, before anything
    is prepared or written."""
    for job in jobs:
        if not job.preset:
            continue
        preset = Preset(job.run_dir, name=job.preset)
        features = catalog.describe(job.config.dataset, **job.config.dataset_options())
        if list(features.class_names) != preset.class_names:
            shown = ", ".join(features.class_names[:10]) + (" …" if len(features.class_names) > 10 else "")
            raise ZooUsageError(
                f"preset {preset.name} cannot be measured on {job.config.dataset}: its classes are not the "
                f"preset's ({len(features.class_names)}: {shown}; the preset has {len(preset.class_names)}: "
                f"{', '.join(preset.class_names[:10])}{' …' if len(preset.class_names) > 10 else ''})"
            )
        if tuple(features.input_shape) != tuple(preset.input_shape):
            raise ZooUsageError(
                f"preset {preset.name} takes images of shape {tuple(preset.input_shape)}, "
                f"{job.config.dataset} has {tuple(features.input_shape)}"
            )


def preset_jobs(presets: list[str], options: Mapping[str, Any], request) -> list[Job]:
    """The jobs measuring ``presets`` as they are (``options``: ``dataset``, None for each
    preset's own, ``data_dir``, ``manual_dir``), each checked against the dataset it is measured on."""
    dataset = options.get("dataset")
    planned = plan_from_presets(presets, {**options, "dataset": catalog.dataset_name(dataset) if dataset else None},
                                request)
    check_presets(planned)
    return planned


def prepare(jobs: list[Job], out: Path) -> None:
    """Prepare each dataset the jobs train on, once, before any of them runs: shards (and Ray tasks
    on this machine) starting at once on a fresh data folder would otherwise prepare it at the
    same time, and all but one fail. Processes that share ``out`` take turns."""
    needed = {json.dumps([j.config.dataset, j.config.dataset_options()], default=list): j.config
              for j in jobs if not j.from_run}
    if not needed:
        return
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".prepare.lock"
    try:
        with files.locked(lock):
            for config in needed.values():
                catalog.prepared_builder(config.dataset, **config.dataset_options())
    except BaseException:  # a dataset that cannot be prepared leaves no bench folder it made
        if created and [f.name for f in out.iterdir()] == [lock.name]:
            lock.unlink()
            out.rmdir()
        raise


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
        with backend.quiet_retracing():  # one process measures job after job: not one function retraced
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


def _measured(job: Job, out: Path, threads: int | None, where: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    export_base = out / "exports" / job.run_dir.name
    if job.preset:  # measured as it is, in this process; the preset's folder is never written
        preset = Preset(job.run_dir, name=job.preset)
        export_base = out / "exports" / f"preset-{files.safe_name(preset.name)}-{preset.digest[7:15]}"
        export_dir = use.export(preset, export_base, job.export).path
        record = measure_preset(preset, job.config, export_dir, job.export, threads)
        where["measure_tf_threads"] = tf_threads()
        record.update(status="ok", job=job.key, peak_rss_mb=None, where=where)
        return record
    run, child = Run(job.run_dir), {}
    resume = (run.path / CONFIG).is_file()  # a killed job's run: continued, not restarted
    if job.from_run or run.complete:  # measured as it is
        evaluation.export(Run.open(job.run_dir), export_base, job.export)
    elif registry.resolve(job.config.model).local:
        runner.train(plan.resolve_config(job.config, job.run_dir, resume=resume, export_base=export_base,
                                         export_request=job.export, recipe=_recipe(job.config, job.recipe)), verbose=0)
    else:
        child = _train_in_child(job, export_base, out, resume=resume, threads=threads)
    record = measure(job.run_dir, export_base / str(latest_version(export_base)), job.export, threads)
    where["tf_threads"] = child.get("tf_threads")  # as the training process's TensorFlow reports them
    where["measure_tf_threads"] = tf_threads()  # this process's, which measured the export
    record.update(status="ok", job=job.key, peak_rss_mb=child.get("peak_rss_mb"), where=where)
    return record


def _train_in_child(job: Job, export_base: Path, out: Path, *, resume: bool, threads: int | None) -> dict[str, Any]:
    """Hand the job to ``python -m zoo.benchmark JOB`` as a file; return the child's peak memory
    and thread pools."""
    for folder in ("jobs", "logs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    job_path = out / "jobs" / f"{job.run_dir.name}.json"
    formats.write(formats.BENCH_JOB, job_path, {
        "config": job.config.to_dict(), "run_dir": str(job.run_dir), "export_base": str(export_base),
        "resume": resume, "threads": threads, "parent": os.getpid(), "export": export_dict(job.export),
        "recipe": job.recipe,
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
    if code < 0:  # the log's last line would be whatever the training printed last
        raise ZooError(f"{job.label}: training failed (killed by {_signal_name(-code)}); log: {log_path}")
    if code != 0:
        lines = log_path.read_text(errors="replace").strip().splitlines()
        raise ZooError(f"{job.label}: training failed ({lines[-1] if lines else f'exit {code}'}); log: {log_path}")
    peak = formats.load(formats.BENCH_PEAK, peak_path(job_path)) if peak_path(job_path).is_file() else {}
    # ru_maxrss only where the child could not tell: Linux carries the forking process's peak
    # (this one's, which grows with every measurement) over into the child's.
    return {**peak, "peak_rss_mb": peak.get("peak_rss_mb") or round(usage.ru_maxrss / 1024, 1)}  # KiB


def _recipe(config: RunConfig, record: Mapping[str, Any] | None) -> Recipe | None:
    """The recipe file a job's config was made with, for its run's config.json to record."""
    return None if record is None else Recipe.from_record(config.model, record)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


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


def tf_threads() -> list[int]:
    """This process's TensorFlow intra- and inter-op pool sizes (0: TensorFlow's default)."""
    return [tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads()]


def run_job_file(path: str) -> int:
    """The child's side: train the job a file describes. Errors are one line, as in the CLI."""
    job = child_job(formats.BENCH_JOB, path)
    if job is None:
        return 1
    try:
        config = RunConfig(**job["config"])
        request = plan.resolve_config(config, job["run_dir"], resume=job.get("resume", False),
                                      export_base=job["export_base"], export_request=export_request(job.get("export")),
                                      recipe=_recipe(config, job.get("recipe")))
        runner.train(request, verbose=2)
    except (ZooError, registry.RegistryError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    formats.write(formats.BENCH_PEAK, peak_path(Path(path)), {"peak_rss_mb": peak_rss_mb(), "tf_threads": tf_threads()})
    return 0


def child_job(kind: str, path: str) -> dict | None:
    """A child's start: the file ``path`` (of format ``kind``) its parent wrote, read once this
    process dies with the parent (None: the parent is gone already) and its threads are limited."""
    job = formats.load(kind, Path(path))
    if not dies_with(job.get("parent")):
        return None
    if job.get("threads"):
        limit_threads(job["threads"])
    return job


def dies_with(parent: int | None) -> bool:
    """Linux: be killed when the process that started this one dies (a killed shard or Ray
    worker must not leave its training running, holding the run's lock); False if it is gone."""
    if parent is None or not sys.platform.startswith("linux"):
        return True
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def failed_record(job: Job, error: str, out: Path, where: Mapping[str, Any]) -> dict[str, Any]:
    return {"status": "failed", "job": job.key, "model": job.config.model, "seed": job.config.seed,
            "variant": job.variant, **({"preset": {"name": job.preset}} if job.preset else {}), "run_dir": str(job.run_dir), "error": error.splitlines()[0],
            "log": str(_log_path(out, job)), "where": dict(where), "env": environment()}
