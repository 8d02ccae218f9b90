"""``zoo train``: the request resolved once (zoo.plan), then executed (zoo.training)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .. import plan
from ..data import folders
from ..errors import ZooUsageError
from ..runs import CONFIG
from .options import hp_pairs, run_options
from .output import RUN_DIR_KEY, echo_export


@click.command()
@click.argument("model")
@run_options("source", "init", "recipe", "run")
@click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE", help="A builder hyperparameter; repeatable.")
@click.option("--recipe", "recipe_file", type=click.Path(), metavar="FILE",
              help="A recipe file (zoo tune writes the best trial's): its settings and hyperparameters "
                   "where no option gives them.")
@click.option("--run-dir", type=click.Path(), help="Default: runs/MODEL-TIMESTAMP.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --run-dir.")
@click.option("--export", "export_base", type=click.Path(), help="Also export a SavedModel under this folder.")
@run_options("data", "hardware", "input")
@click.option("--coordinator", metavar="HOST:PORT",
              help="Train on several processes (JAX): process 0's address, the same for every "
                   "process [env: KERAS_DISTRIBUTION_JOB_ADDRESSES].")
@click.option("--num-processes", type=int,
              help="How many processes train together [env: KERAS_DISTRIBUTION_NUM_PROCESSES].")
@click.option("--process-id", type=int,
              help="This process's number, 0 to N-1; 0 writes the run directory and the export "
                   "[env: KERAS_DISTRIBUTION_PROCESS_ID].")
@click.option("--peer-timeout", type=float,
              help="Seconds a silent peer is waited for before every process stops with an "
                   "error. [default: 30]")
@click.option("--local-processes", type=int,
              help="Start this many processes on this machine (127.0.0.1, a free port), to try "
                   "the multi-process path without a cluster; their lines are prefixed [I].")
@click.pass_context
def train(ctx: click.Context, model: str, hp: tuple[str, ...], recipe_file: str | None, run_dir: str | None, resume: bool,
          export_base: str | None, coordinator: str | None, num_processes: int | None,
          process_id: int | None, peer_timeout: float | None, local_processes: int | None,
          **options: Any) -> None:
    """Train MODEL, evaluate it on the test split and (with --export) export it."""
    from ..compute import multihost

    if local_processes is not None:
        _local_processes(local_processes, coordinator, num_processes, process_id, options["backend"])
    cluster = multihost.cluster(coordinator, num_processes, process_id, peer_timeout)
    request = plan.resolve(model, options=options, hparams=hp_pairs(hp), run_dir=run_dir, resume=resume,
                           export_base=export_base, cluster=cluster, recipe=recipe_file)
    tuned_on = ((request.recipe.tuning if request.recipe else None) or {}).get("dataset")
    if tuned_on and tuned_on != request.config.dataset:
        click.echo(f"note: recipe {request.recipe.path} was tuned on {tuned_on}; this run trains on "
                   f"{request.config.dataset} (--dataset)")
    if request.writer:
        ctx.meta[RUN_DIR_KEY] = str(request.run_dir)
    from ..training import runner  # after the plan chose the backend: it imports Keras

    try:
        result = runner.train(request, verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        _interrupted(request.run_dir, model)
    run = result.run
    run.exported = result.export
    _echo_summary(run, cluster)


def _local_processes(count: int, coordinator: str | None, num_processes: int | None,
                     process_id: int | None, backend: str | None) -> None:
    """--local-processes: run this command on ``count`` processes of this machine; exit with them."""
    from ..compute import launch

    if coordinator or num_processes is not None or process_id is not None:
        raise ZooUsageError("--local-processes chooses --coordinator, --num-processes and "
                            "--process-id itself; give none of them")
    if not 1 <= count <= launch.MAX_LOCAL:
        raise ZooUsageError(f"--local-processes must be between 1 and {launch.MAX_LOCAL}, "
                            f"received {count}")
    sys.exit(launch.local_processes(launch.without_option(sys.argv[1:], "--local-processes"), count, backend))


def _interrupted(run_dir: Path, model: str) -> NoReturn:
    """Ctrl-C: say what was kept and how to resume; exit 130."""
    if not (run_dir / CONFIG).is_file():  # stopped while the data was being prepared
        click.echo("\nInterrupted before training started; nothing was written.", err=True)
        sys.exit(130)
    command = ["zoo", *sys.argv[1:]] if sys.argv[1:2] == ["train"] else ["zoo", "train", model]
    extra = ([] if "--resume" in command else ["--resume"]) + (
        [] if "--run-dir" in command else ["--run-dir", str(run_dir)]
    )
    click.echo(
        f"\nInterrupted. Finished epochs are kept; resume with:\n  {shlex.join(command + extra)}",
        err=True,
    )
    sys.exit(130)


def _echo_summary(run, cluster) -> None:
    """What a finished `zoo train` prints: test metrics, size and time, hardware, input, where."""
    m = run.metrics
    if "test_accuracy" in m:
        click.echo(f"test accuracy {m['test_accuracy']:.4f}, test loss {m['test_loss']:.4f}")
    else:
        click.echo(f"no test split in {run.dataset['name']}: no test metrics (validation "
                   f"accuracy {run.history[-1]['val_accuracy']:.4f}, on {run.dataset['validation_split']})")
    click.echo(f"{m['params']:,} parameters, {m['train_seconds']:.1f} s of training "
               f"(+{m['val_seconds']:.1f} s of validation)")
    hw = m["hardware"]
    local = len(hw["devices"])
    where = f"{local} {hw['device_kind']} devices" if local > 1 else hw["device_kind"]
    processes = f" x {hw['processes']} processes" if hw.get("processes", 1) > 1 else ""
    click.echo(f"{hw['precision']} on {where}{processes} ({hw['device_name']}), "
               f"{hw.get('backend', 'tensorflow')} backend, XLA {'on' if hw['jit_compile'] else 'off'}")
    source = m["input"]
    count = source["shuffle_buffer"]
    buffer = f", shuffle buffer of {count:,} example{'s' * (count != 1)}" if count else ""
    cache = f", decoded cache in {source['cache']}" if source.get("cache") else ""
    click.echo(f"input: {source['train']} ({source['reason']}{buffer}{cache})")
    for note in (folders.skipped_summary(run.dataset.get("source") or {}),
                 folders.colour_summary(run.dataset.get("source") or {})):
        if note:
            click.echo(note)
    if cluster is not None:
        click.echo(f"weights digest {m['weights_digest']}, the same on all {cluster.num_processes} processes")
    if cluster is not None and not cluster.writer:
        click.echo(f"{cluster.label}: process 0 writes the run directory and the export")
    else:
        click.echo(f"run directory: {run.path}")
    if run.exported is not None:
        echo_export(run.exported)
