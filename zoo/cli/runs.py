"""``zoo evaluate`` and ``zoo export``: operations on a finished run."""

from __future__ import annotations

from pathlib import Path

import click

from .. import files
from ..compute import backend as backend_lib
from ..runs import Run
from .output import RUN_DIR_KEY, check_finished_run, echo_export


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--split", default="test", show_default=True, help="A TFDS split, e.g. test or train[90%:].")
@click.pass_context
def evaluate(ctx: click.Context, run_dir: str, split: str) -> None:
    """Evaluate a finished run's model on a split of its dataset."""
    ctx.meta[RUN_DIR_KEY] = run_dir
    check_finished_run(run_dir)
    backend_lib.import_tensorflow()

    result = Run.open(run_dir).evaluate(split)
    click.echo(f"{split}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    if "trained_on_fingerprint" in result:
        click.echo(f"note: the images changed since this run trained (fingerprint "
                   f"{result['trained_on_fingerprint']}, now {result['fingerprint']}): these "
                   f"figures are for the images as they are now")


@click.command()
@click.argument("run_dir", type=click.Path())
@click.argument("export_base", type=click.Path())
@click.pass_context
def export(ctx: click.Context, run_dir: str, export_base: str) -> None:
    """Export a run as EXPORT_BASE/<next version>/, a SavedModel for TF Serving."""
    ctx.meta[RUN_DIR_KEY] = run_dir
    check_finished_run(run_dir)
    files.check_creatable(Path(export_base).resolve(), "export base")
    backend_lib.import_tensorflow()

    echo_export(Run.open(run_dir).export(export_base))
