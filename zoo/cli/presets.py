"""``zoo publish``, ``zoo verify`` and ``zoo list --presets``: trained presets, and where a run
directory is named (evaluate, export) a preset may be named instead."""

from __future__ import annotations

import json

import click

from ..compute import backend as backend_lib
from ..config import show_size
from ..errors import ZooError
from ..presets import catalog
from ..presets.store import Preset, check_license
from ..runs import Run, named_run
from .output import RUN_DIR_KEY, check_finished_run, table


@click.command()
@click.argument("run_dir", type=click.Path())
@click.argument("dest", type=click.Path())
@click.option("--license", "license_", required=True, metavar="SPDX",
              help="The weights' license, an SPDX expression (Apache-2.0, MIT, CC-BY-4.0, ...).")
@click.option("--name", help="The preset's name. [default: MODEL.DATASET, e.g. cnn.mnist]")
@click.option("--dataset-terms", metavar="TEXT", help="The training data's terms of use, for the model card.")
@click.pass_context
def publish(ctx: click.Context, run_dir: str, dest: str, license_: str, name: str | None,
            dataset_terms: str | None) -> None:
    """Publish a finished run as the preset DEST/NAME: weights, preset.json, model card; the
    model is reloaded and re-evaluated first, and must give the run's recorded accuracy."""
    run_dir = str(named_run(run_dir))
    ctx.meta[RUN_DIR_KEY] = run_dir
    check_license(license_)  # before TensorFlow loads
    Run.open(run_dir)
    backend_lib.import_tensorflow()
    from ..presets import publish as publish_lib

    preset = publish_lib.publish(Run.open(run_dir), dest, license=license_, name=name, dataset_terms=dataset_terms)
    metrics = preset.record["metrics"]
    figures = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith("accuracy") and v is not None)
    click.echo(f"published {preset.path} ({preset.model}, {figures}, {preset.record['license']}, "
               f"{show_size(preset.size)}; digest {preset.digest})")


@click.command()
@click.argument("preset")
def verify(preset: str) -> None:
    """Re-hash every file of PRESET (a name or a folder) against its preset.json manifest."""
    found = catalog.find(preset)
    found.verify(rehash=True)
    click.echo(f"{found.name}: {len(found.record['files'])} files verified ({show_size(found.size)}; "
               f"digest {found.digest})")


def list_presets(pattern: str | None, as_json: bool) -> None:
    """Every preset that can be found, read from preset.json alone (nothing imported)."""
    rows = catalog.listing(pattern)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise ZooError(f"no preset matches '{pattern}'" if pattern else
                       f"no presets found (installed packages ship none, and {catalog.SEARCH_ENV} names no folder with one)")
    table([_row(r) for r in rows], ("name", "model", "dataset", "test_acc", "size", "license", "from"))


def model_presets(model: str) -> None:
    """``zoo info``'s presets of ``model``: name, dataset, metrics, license."""
    rows = [_row(r) for r in catalog.listing() if r.get("model") == model and not r["shadowed_by"]]
    click.echo("\npresets (zoo evaluate NAME, zoo train MODEL --init NAME):")
    if rows:
        table(rows, ("name", "dataset", "test_acc", "size", "license", "from"), indent="  ")
    else:
        click.echo("  none")


def _row(r: dict) -> dict[str, str]:
    if "error" in r:
        return {"name": r["name"], "model": "-", "dataset": "-", "test_acc": "-", "size": "-",
                "license": "-", "from": f"{r['origin']} (unreadable: {r['error']})"}
    accuracy = r["test_accuracy"]
    origin = r["origin"] + (f" (shadowed by {r['shadowed_by']})" if r["shadowed_by"] else "")
    return {"name": r["name"], "model": r["model"], "dataset": r["dataset"] or "-",
            "test_acc": f"{accuracy:.4f}" if isinstance(accuracy, float) else "-",
            "size": show_size(r["size"]), "license": r["license"], "from": origin}


def open_target(ctx: click.Context, target: str) -> Preset | None:
    """For evaluate and export: the preset ``target`` names (verified), or None after the run
    directory's checks passed."""
    preset = catalog.named(target)
    if preset is not None:
        preset.verify()
        return preset
    run_dir = str(named_run(target))
    ctx.meta[RUN_DIR_KEY] = run_dir
    check_finished_run(run_dir)
    return None
