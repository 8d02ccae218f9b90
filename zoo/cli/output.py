"""What the commands print and share: tables, an export's summary, the run directory an error's
log goes to."""

from __future__ import annotations

from typing import Any

import click

from ..runs import Run

# Where a command keeps the run directory it works on: the place for an unexpected error's log.
RUN_DIR_KEY = "zoo.run_dir"


def check_finished_run(run_dir: str) -> None:
    """The run's one-line errors before TensorFlow loads: no run, still training, unfinished."""
    run = Run.open(run_dir)
    with run.locked(exclusive=False):
        run.model_path()


def echo_export(result) -> None:
    click.echo(
        f"exported {result.path} (version {result.version}); reloaded and compared on "
        f"{result.examples_compared} images: max abs diff {result.max_abs_diff:.3g} "
        f"(tolerance {result.tolerance:g})"
    )
    click.echo(f"serving_default takes {result.accepts}; returns probabilities, class_id, class_name")
    for name, checked in (result.formats or {}).items():
        click.echo(f"{name}: {format_line(checked)}")


def format_line(checked: dict[str, Any]) -> str:
    """One format's file and check in a line: ``model.tflite 0.21 MB (int8); checked in its runtime
    ...``. What a format's check returned (zoo.json's record of it) is all it reads."""
    parts = [f"{checked['file']} {checked['bytes'] / 1e6:.2f} MB" + (f" ({checked['quantization']})" if checked.get("quantization") else "")]
    if "tolerance" in checked:
        parts.append(f"max abs diff {checked['max_abs_diff']:.3g} on {checked['examples_compared']} images "
                     f"(tolerance {checked['tolerance']:g})")
    accuracy = checked.get("accuracy")
    if accuracy:
        parts.append(f"test accuracy {100 * accuracy['quantized']:.2f}% quantized vs {100 * accuracy['float']:.2f}% "
                     f"float on {accuracy['examples']} {accuracy['split']} images")
    if "class_agreement" in checked and "tolerance" not in checked:
        parts.append(f"same class as the float model on {100 * checked['class_agreement']:.1f}% of {checked['examples_compared']} images")
    parts.extend(checked.get("notes") or [])
    return "; ".join(parts)


def table(rows: list[dict[str, Any]], columns: tuple[str, ...], indent: str = "") -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    click.echo(indent + "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo(indent + "  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip())
