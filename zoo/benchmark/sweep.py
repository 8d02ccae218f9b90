"""Running a sweep's jobs: here one after another, as one shard of several, or as Ray tasks.

Importing this module loads no TensorFlow: the CLI checks ``--shard`` and ``--gpus-per-job`` before
it loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import files
from ..errors import ZooError, ZooUsageError, first_line
from ..export.request import ExportRequest
from .child import attempt, limit_threads, prepare
from .jobs import Job, Shard, broken_matches, check_gpus, parse_shard, recipe_files, select_models, sweep_jobs
from .ray import RayCluster, check_jobs
from .records import FAILED_STATE, Selection, select, where, write_plan
from .reports import save


def training_jobs(models: Sequence[str], *, seeds: Sequence[int], out: Path, hparams: Mapping[str, Any],
                  options: Mapping[str, Any], export: ExportRequest, recipe_paths: Sequence[str | os.PathLike] = (),
                  tune: int | None = None, space: Mapping[str, str] | None = None, threads: int | None = None,
                  say: Callable[[str], None] = print) -> list[Job]:
    """A training sweep's jobs (:func:`zoo.benchmark.jobs.sweep_jobs`): with ``recipe_paths``, the
    model each file is for trains with it; with ``tune``, every model is tuned first by a study of
    that many trials (:mod:`zoo.benchmark.studies`) and trains with its best recipe. Everything is
    checked before the first trial or job trains."""
    names = select_models(list(models))
    for entry in broken_matches(list(models)):
        say(f"note: {entry.name} is left out, broken: {first_line(entry.problem)} (zoo info {entry.name})")
    found = recipe_files(recipe_paths, names)
    if tune is not None and found:
        name, recipe = next(iter(found.items()))
        raise ZooUsageError(f"--tune {tune} tunes {name}, and the recipe file {recipe.path} is for it too: "
                            "give one of them")
    planned = {"seeds": list(seeds), "out": out, "hparams": hparams, "options": options, "export": export}
    jobs = sweep_jobs(names, **planned, recipes=found)
    if tune is None:
        return jobs
    from . import studies  # loads Optuna, which only tuning needs

    requests = studies.resolve(names, trials=tune, out=out, options=options, space=space, seed=seeds[0],
                               threads=threads)
    return sweep_jobs(names, **planned, recipes=studies.run_all(requests, say, threads))


def execute(out: Path, results: Iterator[tuple[Job, dict[str, Any]]], selection: Selection,
        command: str = "") -> Iterator[tuple[Job, dict[str, Any]]]:
    """Record each (job, record) an executor yields, as it comes, and pass it on.

    The plan is written to ``OUT/plans`` before the first job runs.
    """
    plan = selection.fingerprint
    if plan is not None:
        write_plan(out, plan, selection.jobs)
    for job, record in results:
        if plan is not None:
            record["plan"] = {"fingerprint": plan, "index": job.index, "jobs": len(selection.jobs)}
        record.update(command=command, time=files.timestamp())
        save(out, record)
        yield job, record


@contextmanager
def executing(jobs: Sequence[Job], out: Path, *, shard: Shard | None = None, ray: str | None = None,
              cpus_per_job: int | None = None, gpus_per_job: float | None = None):
    """The executor's (job, record) iterator for ``jobs``: here, one after another, or on Ray
    (connected and checked on entry, before anything is written; disconnected on exit). The
    datasets are prepared here first."""

    check_gpus(ray, gpus_per_job)
    if ray is None:
        if cpus_per_job:
            # Before preparing: a dataset TFDS prepares here starts TensorFlow, which then refuses
            # new pool sizes, and the jobs' measurements would run on every core.
            limit_threads(cpus_per_job)
        prepare(jobs, out)
        yield run_here(jobs, out, threads=cpus_per_job, shard=shard)
        return

    check_jobs(jobs)
    with RayCluster(ray, cpus_per_job=cpus_per_job or 1, gpus_per_job=gpus_per_job or 0) as cluster:
        prepare(jobs, out)
        yield cluster.run(jobs, out, shard=shard)


def run_jobs(planned: Sequence[Job], out: Path, shard: str | None, **executor: Any) -> list[dict[str, Any]]:
    """Run the jobs of ``planned`` that ``out`` does not record yet (of shard ``shard``), record
    them, and return their records (``zoo.bench``); a ZooError after them if one failed."""
    part = parse_shard(shard) if shard is not None else None
    selection = select(planned, out, part)
    with executing(selection.todo, out, shard=part, **executor) as results:
        done = [record for _, record in execute(out, results, selection)]
    raise_failures(done)
    return done


def raise_failures(records: Sequence[dict[str, Any]]) -> None:
    """One ZooError for a sweep's failed jobs, naming the first; nothing if none failed."""
    failed = [r for r in records if r["status"] == FAILED_STATE]
    if failed:
        first = failed[0]
        log = "" if first["log"] in first["error"] else f" (log: {first['log']})"
        what = f"preset {first['preset']['name']}" if first.get("preset") else f"{first['model']} seed {first['seed']}"
        raise ZooError(f"{len(failed)} of {len(records)} job(s) failed, first {what}: "
                       f"{first['error']}{log}; the same command again retries them")


def run_here(jobs: Iterable[Job], out: Path, *, threads: int | None = None,
             shard: Shard | None = None) -> Iterator[tuple[Job, dict[str, Any]]]:
    """The local executor: one job after another, each trained in a child process."""

    if threads:
        limit_threads(threads)  # the measurements in this process, where TensorFlow still allows it
    for job in jobs:
        yield job, attempt(job, out, threads=threads, where=where(shard))
