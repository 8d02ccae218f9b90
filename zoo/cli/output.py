"""What the commands print and share: tables, an export's summary, the run directory an error's
log goes to."""

from __future__ import annotations

import unicodedata
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
    if result.random_because:
        click.echo(f"note: compared on random images, not test images: {result.random_because}")
    click.echo(f"serving_default takes {result.accepts}; returns probabilities, class_id, class_name")
    for name, info in (result.formats or {}).items():  # each other format: its file and its check
        click.echo(f"{name}: {result.path / info['file']} ({info['bytes']:,} bytes); {info['check']}")
        if info.get("warning"):
            click.echo(f"{name}: WARNING: {info['warning']}")
        for note in info.get("notes") or []:
            click.echo(f"{name}: note: {note}")
    fixed = [name for name, info in (result.formats or {}).items() if not info.get("any_size")]
    if result.any_size and fixed:  # trained on a folder: who takes any size, who does not
        anysize = ["saved_model", *(name for name in result.formats if name not in fixed)]
        click.echo(f"any size: {', '.join(anysize)}; training size only: {', '.join(fixed)} (see the warnings above)")


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes: East Asian wide characters (犬; not ç) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cut(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells."""
    while cells(text) > width:
        text = text[:-1]
    return text


def right(text: str, width: int) -> str:
    """``text`` aligned right in ``width`` cells."""
    return " " * (width - cells(text)) + text


def table(rows: list[dict[str, Any]], columns: tuple[str, ...], indent: str = "") -> None:
    widths = {c: max(len(c), *(cells(str(r[c])) for r in rows)) for c in columns}
    click.echo(indent + "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo(indent + "  ".join(str(r[c]) + " " * (widths[c] - cells(str(r[c]))) for c in columns).rstrip())
