"""``zoo tune``: a study on Optuna, resolved once (zoo.tuning.request), run as one of its workers
(zoo.tuning.run), and reported (zoo.tuning.report)."""

from __future__ import annotations

from typing import Any

import click

from ..errors import ZooUsageError
from .options import run_options, space_pairs


@click.command()
@click.argument("model")
@click.option("--trials", type=int, required=True,
              help="The study's budget of finished trials (complete, pruned or failed on their own), "
                   "shared by every worker of the study.")
@click.option("--out", type=click.Path(), default="tune", show_default=True,
              help="Folder of the trials' run directories, the journal, the table, the plots and best-recipe.json.")
@click.option("--space", "space", multiple=True, metavar="KEY=RANGE",
              help="Search a recipe field or hyperparameter over log(a,b), uniform(a,b), int(a,b) or "
                   "choice(a,b,...) (tuples as (8,16)); repeatable, over the model's default space "
                   "(zoo info MODEL shows it).")
@click.option("--pruner", type=click.Choice(["median", "hyperband", "none"]), default="median", show_default=True,
              help="Stops trials whose validation accuracy falls behind, epoch by epoch.")
@click.option("--storage", metavar="URL",
              help="Optuna storage: a database URL (postgresql://..., sqlite:///...) or a journal file "
                   "shared by the workers. [default: the journal file OUT/study.journal]")
@click.option("--study", "study_name", metavar="NAME", help="[default: MODEL-DATASET]")
@click.option("--shard", metavar="I/N",
              help="This process is worker I of N (a task of an array job): every worker runs trials "
                   "of the same study until its budget is met.")
@click.option("--ray", is_flag=False, flag_value="local", metavar="[ADDRESS]",
              help="Run the study's workers as Ray tasks on the cluster at ADDRESS (HOST:PORT or auto), "
                   "or on one started on this machine; OUT (or --storage) must be shared by its nodes. "
                   'Needs pip install "keras-zoo[ray]".')
@click.option("--workers", type=click.IntRange(min=1),
              help="Ray workers. [default: the cluster's CPUs / --cpus-per-job, at most --trials]")
@click.option("--cpus-per-job", type=click.IntRange(min=1),
              help="CPUs a Ray worker reserves, and its TensorFlow threads. [default: 1]")
@run_options("source", "recipe", "run", "data", "hardware", "input")
def tune(model: str, trials: int, out: str, space: tuple[str, ...], pruner: str, storage: str | None,
         study_name: str | None, shard: str | None, ray: str | None, workers: int | None,
         cpus_per_job: int | None, **options: Any) -> None:
    """Tune MODEL on Optuna: trials judged on validation accuracy, the best measured on test.

    Each trial is a run directory under OUT/trials. Re-running the command continues the study;
    several workers (--shard, or the same --storage from several machines) share its budget. The
    best trial's settings are written to OUT/best-recipe.json for zoo train --recipe.
    """
    from ..tuning.request import resolve

    if ray is not None and shard is not None:
        raise ZooUsageError("--ray starts the study's workers itself; give --shard to workers you start yourself")
    if ray is None and (workers is not None or cpus_per_job is not None):
        raise ZooUsageError("--workers and --cpus-per-job are for --ray")
    if ray is not None:
        from ..benchmark.jobs import check_address

        check_address(ray)  # before TensorFlow loads
    arguments = dict(trials=trials, out=out, options=options, space=space_pairs(space), storage=storage,
                     study=study_name, pruner=pruner)
    request = resolve(model, **arguments, shard=shard)
    from ..tuning import report, run

    click.echo(f"study {request.study} ({request.where}): {request.builder.name} on {request.dataset}, "
               f"{request.trials} trials of {request.epochs} epoch(s); searching "
               + ", ".join(f"{d.key}={d.text}" for d in request.space))
    if ray is not None:
        from ..benchmark.ray import RayCluster

        with RayCluster(ray, cpus_per_job=cpus_per_job or 1) as cluster:
            done = cluster.tune({"model": model, **arguments, "out": str(request.out)}, workers)
        click.echo(f"{len(done)} workers on Ray ({cluster.shown}) finished")
        summary = report.finish(request, run.study_of(request))
    else:
        summary = report.finish(request, run.work(request, click.echo))
    click.echo(report.markdown(request, summary.rows).split("\n", 4)[4].rstrip())
    if summary.running:
        click.echo(f"{summary.running} trials still running in other workers; the last to finish measures "
                   "the best trial on test")
        return
    best, counts = summary.best, summary.counts
    click.echo(f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed")
    click.echo(f"best: trial {best['trial']}, validation accuracy {best['val_accuracy']:.4f}; "
               f"{best['test']['split']} accuracy {best['test']['accuracy']:.4f} (the only trial measured on it)")
    click.echo(f"recipe: {summary.recipe} ({_train_command(request, summary.recipe)})")
    for path in summary.plots:
        click.echo(f"plot: {path}")
    click.echo(f"run directory: {best['run']}")


def _train_command(request, recipe) -> str:
    """The ``zoo train`` command that trains the recipe on what the study tuned it on: the recipe
    holds the training settings; the dataset, its form and the validation slice are said here."""
    import shlex

    from ..config import RunConfig
    from ..tuning.request import config_of

    config, default = config_of(request), RunConfig(request.builder.name)
    words = ["zoo", "train", request.builder.name, "--recipe", str(recipe)]
    for field in ("dataset", "data_dir", "image_size", "channels", "val_split", "seed"):
        value = getattr(config, field)
        if value is not None and value != getattr(default, field):
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
            words += [f"--{field.replace('_', '-')}", shown]
    return shlex.join(words)

