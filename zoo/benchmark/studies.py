"""``zoo bench --tune N``: before the bench, a study of N trials per model in ``OUT/tune/<model>``,
made of :mod:`zoo.tuning`'s parts (resolved once by ``request``, run by ``run.work``, reported by
``report.finish``); each model's jobs then train with its best recipe (``best-recipe.json``).

The bench's fixed options (dataset, epochs, precision, ...) are every study's fixed options, and
the bench's first seed is its seed. Each study runs in a child process (``python -m zoo.benchmark
--study FILE``): the bench process measures every export afterwards, with TensorFlow thread pools
it can size only before it first computes (``--cpus-per-job``), and N trainings leave memory
(graphs, allocator arenas) that a long sweep should not carry into its measurements. A model
registered in this process (``zoo.register``) exists only here, so its study runs here. A study
that already holds its N finished trials and its best recipe is reused as it is: the same command
again retrains nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

import registry

from .. import files, formats, recipes
from ..errors import ZooError
from ..recipes import Recipe
from ..tuning import report, run
from ..tuning import request as request_lib
from ..tuning import study as study_lib
from ..tuning.request import TuneRequest
from .child import child_job, limit_threads

STUDIES = "tune"  # OUT/tune/<model>: each model's study, its trials and its best recipe
STUDY_JOB = "bench-study.json"  # in the study's folder: what its child process runs


def resolve(models: Sequence[str], *, trials: int, out: Path, options: Mapping[str, Any],
            space: Mapping[str, str] | None, seed: int, threads: int | None = None) -> list[TuneRequest]:
    """Each model's study resolved (its space and ranges checked) and any study already in
    ``out`` checked to tune the same: all before the first trial trains."""
    if threads:  # before the ranges' models are built here: TensorFlow sizes its pools once
        limit_threads(threads)
    requests = [request_lib.resolve(name, trials=trials, out=out / STUDIES / files.safe_name(name),
                                    options={**options, "seed": seed}, space=space) for name in models]
    for request in requests:
        reusable(request)
    return requests


def reusable(request: TuneRequest) -> Recipe | None:
    """The study's best recipe if the study has its budget of finished trials, none running, and
    the recipe of that budget; None while it has not (or does not exist). A study in ``out`` that
    tunes something else is a one-line usage error."""
    if not (request.out / study_lib.JOURNAL).is_file():
        return None
    study = run.study_of(request)  # as a worker of it opens it
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    path = request.out / report.RECIPE
    if running or len(study_lib.finished(study)) < request.trials or not path.is_file():
        return None
    recipe = recipes.read(path, request.model)
    return recipe if (recipe.tuning or {}).get("budget") == request.trials else None


def run_all(requests: Sequence[TuneRequest], say: Callable[[str], None], threads: int | None = None) -> dict[str, Recipe]:
    """Run (or reuse) every study; each model's best recipe, by the model's name in the bench."""
    found = {}
    for request in requests:
        recipe = reusable(request)
        if recipe is None:
            say(f"tuning {request.model}: study {request.study} in {request.out}, {request.trials} trials of "
                f"{request.epochs} epoch(s), seed {request.seed}")
            if registry.resolve(request.model).local:
                work_here(request, say)
            else:
                _work_in_child(request, say, threads)
            recipe = recipes.read(request.out / report.RECIPE, request.model)
        else:
            say(f"study {request.study} in {request.out}: its {request.trials} trials are finished; reused")
        tuning = recipe.tuning or {}
        say(f"{request.model}: best of {request.trials} trials is trial {tuning.get('best_trial')}, validation "
            f"accuracy {tuning.get('val_accuracy', float('nan')):.4f}; the bench trains with {recipe.path}")
        found[request.model] = recipe
    return found


def work_here(request: TuneRequest, say: Callable[[str], None]) -> None:
    """Run the study's trials in this process, then measure its best on test and write its recipe."""
    summary = report.finish(request, run.work(request, say))
    if summary.running:  # only another process could be running them: this one waits for none
        raise ZooError(f"study {request.study} in {request.out} has {summary.running} trial(s) running in "
                       "another process; run the bench again once they finish")


def _work_in_child(request: TuneRequest, say: Callable[[str], None], threads: int | None) -> None:
    """The study in ``python -m zoo.benchmark --study FILE``; its trial lines passed on, all of its
    output in OUT/logs/tune-<model>.log."""
    job = request.out / STUDY_JOB
    request.out.mkdir(parents=True, exist_ok=True)
    formats.write(formats.BENCH_STUDY, job, {
        "model": request.model, "trials": request.trials, "out": str(request.out),
        "options": files.jsonable(dict(request.options)), "space": {d.key: d.text for d in request.space},
        "pruner": request.pruner, "threads": threads, "parent": os.getpid(),
    })
    log_path = request.out.parents[1] / "logs" / f"tune-{request.out.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-u", "-m", "zoo.benchmark", "--study", str(job)]
    env = {**os.environ, "KERAS_BACKEND": request.options["backend"]}
    last = ""
    with log_path.open("w") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL, text=True, env=env) as proc:
        for line in proc.stdout:
            log.write(line)
            last = line.strip() or last
            if line.startswith("trial "):
                say(f"{request.model} {line.rstrip()}")
    if proc.returncode != 0:
        raise ZooError(f"tuning {request.model} failed ({last.removeprefix('Error: ') or f'exit {proc.returncode}'}); "
                       f"log: {log_path}")


def run_study_file(path: str) -> int:
    """The child's side: resolve the study the file describes and run it. Errors are one line."""
    job = child_job(formats.BENCH_STUDY, path)
    if job is None:
        return 1
    try:
        request = request_lib.resolve(job["model"], trials=job["trials"], out=job["out"], options=job["options"],
                                      space=job["space"], pruner=job["pruner"])
        work_here(request, print)
    except (ZooError, registry.RegistryError) as exc:
        print(f"Error: {exc}")
        return 1
    return 0
