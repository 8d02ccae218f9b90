"""``zoo runs``, ``zoo evaluate``, ``zoo export`` and ``zoo predict``: the runs there are, and
operations on a finished one (``latest`` stands for the newest run under ./runs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import files
from .. import runs as runs_lib
from ..compute import backend as backend_lib
from ..data import imagefiles
from ..export.request import resolve as resolve_request
from ..presets import catalog as preset_catalog
from ..runs import Run, named_run
from .options import dataset_place_options, export_options
from .output import RUN_DIR_KEY, cells, check_finished_run, cut, echo_export, right, table
from .presets import open_target


@click.command()
@click.argument("target", metavar="RUN_DIR|PRESET", type=click.Path())
@click.option("--split", help="A TFDS split or slice, e.g. test, validation or train[:1000]. [default: test, or "
                              "the run's held-out validation slice for a dataset without one]")
@dataset_place_options
@click.pass_context
def evaluate(ctx: click.Context, target: str, split: str | None, data_dir: str | None,
             manual_dir: str | None) -> None:
    """Evaluate a finished run's model, or a preset, on a split of its dataset: accuracy, loss,
    accuracy per class and the confusion matrix (for a run also in eval-SPLIT.json and
    confusion-SPLIT.png; a preset's folder is never written)."""
    preset = open_target(ctx, target)
    backend_lib.import_tensorflow()
    where = {"data_dir": data_dir, "manual_dir": manual_dir}
    if preset is not None:
        from ..presets import use

        result = use.evaluate(preset, split, **where)
    else:
        result = Run.open(ctx.meta[RUN_DIR_KEY]).evaluate(split, **where)
    if "note" in result:
        click.echo(result["note"])
    click.echo(f"{result['split']}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}"
               + (f" (published: {result['published_accuracy']:.4f})" if "published_accuracy" in result else ""))
    _echo_confusion(result)
    if "trained_on_fingerprint" in result:
        click.echo(f"note: the images changed since this run trained (fingerprint "
                   f"{result['trained_on_fingerprint']}, now {result['fingerprint']}): these "
                   f"figures are for the images as they are now")


def _echo_confusion(result: dict) -> None:
    """Accuracy per class, and the matrix itself for up to 12 classes (else its largest confusions)."""
    names, matrix = result["confusion"]["labels"], result["confusion"]["matrix"]
    shown = [f"{name} {acc:.3f}" for name, acc in result["per_class_accuracy"].items() if acc is not None]
    click.echo("per class: " + ", ".join(shown))
    if len(names) <= 12:  # columns as wide as the counts, or the names up to 6 cells
        width = max(max(len(str(v)) for row in matrix for v in row), min(max(map(cells, names)), 6)) + 1
        label = max(map(cells, names))
        click.echo("confusion (rows: true class, columns: predicted):")
        click.echo(" " * (label + 1) + "".join(right(cut(n, width - 1), width) for n in names))
        for name, row in zip(names, matrix):
            click.echo(right(name, label) + " " + "".join(str(v).rjust(width) for v in row))
        return
    pairs = sorted(((v, i, j) for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v),
                   reverse=True)[:5]
    if pairs:
        click.echo("most confused: " + ", ".join(f"{names[i]} as {names[j]} ({v})" for v, i, j in pairs))


@click.command()
@click.argument("target", metavar="RUN_DIR|PRESET", type=click.Path())
@click.argument("export_base", type=click.Path())
@export_options("side by side in the version folder, each checked in its runtime.")
@dataset_place_options
@click.pass_context
def export(ctx: click.Context, target: str, export_base: str, formats: str, quantize: str | None,
           max_accuracy_drop: float | None, data_dir: str | None, manual_dir: str | None) -> None:
    """Export a run or a preset as EXPORT_BASE/<next version>/: a SavedModel for TF Serving, and
    the other formats asked for beside it. The export is checked on the run's test images where
    its dataset is on this machine, else on random ones; a quantized file needs the dataset."""
    request = resolve_request(formats, quantize, max_accuracy_drop, backend_lib.default())  # before anything loads
    preset = open_target(ctx, target)
    files.check_creatable(files.given(export_base, "export base"), "export base")
    backend_lib.import_tensorflow()
    if preset is not None:
        from ..presets import use

        echo_export(use.export(preset, export_base, request, data_dir=data_dir, manual_dir=manual_dir))
    else:
        from .. import evaluation

        echo_export(evaluation.export(Run.open(ctx.meta[RUN_DIR_KEY]), export_base, request, data_dir=data_dir,
                                      manual_dir=manual_dir))


@click.command("runs")
@click.argument("folder", type=click.Path(), default=runs_lib.DEFAULT_RUNS, required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of runs, for machines.")
def list_runs(folder: str, as_json: bool) -> None:
    """The run directories in FOLDER (default ./runs; a bench's --out too), newest first."""
    rows = runs_lib.summaries(folder)  # a damaged run is a row of its own, not fatal
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no run directories in {Path(folder).resolve()}", err=True)
        return
    shown = [_row(r) for r in rows]
    table(shown, RUN_COLUMNS)


RUN_COLUMNS = ("run", "model", "dataset", "status", "epochs", "val_acc", "test_acc", "precision", "created")


def _row(r: dict) -> dict[str, str]:
    def accuracy(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-"

    if r["status"] == "unreadable":
        return {**dict.fromkeys(RUN_COLUMNS, "-"), "run": r["run"], "status": "unreadable"}
    return {"run": r["run"], "model": r["model"], "dataset": r["dataset"], "status": r["status"],
            "epochs": f"{r['epochs']}/{r['of_epochs']}", "val_acc": accuracy(r["val_accuracy"]),
            "test_acc": accuracy(r["test_accuracy"]), "precision": r["precision"],
            "created": (r["created"] or "-")[:16].replace("T", " ")}


@click.command()
@click.argument("target", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Classes shown per image.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one entry per image, for machines.")
@click.pass_context
def predict(ctx: click.Context, target: str, images: tuple[str, ...], top: int, as_json: bool) -> None:
    """The most likely classes of IMAGES (files, or folders of them; any format the folders accept,
    any size: resized as in training) from TARGET: a run directory (or latest), an export version,
    an export base or a preset. A file that cannot be read is an error line of its own after the
    others' answers, and the exit status is 2."""
    paths = imagefiles.image_paths(list(images))
    preset_catalog.named(target)  # an unknown name: one line before TensorFlow loads
    if (Path(target) / "config.json").is_file() or target == runs_lib.LATEST:
        ctx.meta[RUN_DIR_KEY] = str(named_run(target))
        check_finished_run(ctx.meta[RUN_DIR_KEY])
    backend_lib.import_tensorflow()
    from .. import prediction as predict_lib

    answer = predict_lib.open_target(target)
    unreadable: list[tuple[str, str]] = []  # the other files are still answered; a bad input: exit 2
    results = predict_lib.predict(answer, paths, top=top, unreadable=unreadable)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for result in results:
            best = ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in result["top"])
            click.echo(f"{result['image']}: {best}")
    for _, reason in unreadable:
        click.echo(f"Error: {reason}", err=True)
    if unreadable:
        ctx.exit(2)
