"""``zoo list``, ``zoo info`` and ``zoo check``: what is registered, and whether it conforms."""

from __future__ import annotations

import json

import click

import registry

from ..compute import backend as backend_lib
from ..config import BACKENDS, PRECISIONS
from ..errors import ZooError, ZooUsageError
from ..tuning import space as tuning_space
from .options import hp_pairs
from .output import table
from .presets import list_presets, model_presets

# Shapes used to report a model's size in `zoo info`.
MNIST_SHAPE, MNIST_CLASSES = (28, 28, 1), 10


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of models, for machines.")
@click.option("--check", is_flag=True,
              help="Also import every plugin and validate it (slower: imports TensorFlow); exit 1 if one is broken.")
@click.option("--datasets", is_flag=True,
              help="List dataset plugins (entry-point group zoo.datasets) instead of models.")
@click.option("--presets", is_flag=True,
              help="List trained presets (ZOO_PRESETS_PATH's folders, entry-point group zoo.presets) instead of models.")
def list_models(pattern: str | None, as_json: bool, check: bool, datasets: bool, presets: bool) -> None:
    """List registered models, optionally those matching a shell-style PATTERN (e.g. 'c*').

    Nothing is imported: a plugin's summary and obvious breakage are read from its source.
    """
    if datasets or presets:
        (_list_datasets if datasets else list_presets)(pattern, as_json)
        return
    everything = registry.entries()
    if check:  # the plugins import Keras: TensorFlow first, its start-up lines hidden
        backend_lib.import_tensorflow()
    rows = []
    for e in registry.find(pattern):
        # Importing tells the truth; without --check the source has to do.
        problem = _load_problem(e) if check else e.problem
        rows.append({
            "name": registry.selector(e, everything),
            "summary": e.summary,
            "distribution": e.dist,
            "version": e.version,
            "status": "broken" if problem else "ok",
            "reason": problem,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        raise ZooError(f"no model matches '{pattern}'" if pattern else "no models are installed")
    else:
        table([{**r, "status": f"broken: {r['reason']}" if r["reason"] else "ok"} for r in rows],
              ("name", "summary", "distribution", "version", "status"))
    if check and any(r["reason"] for r in rows):  # a check that can gate CI
        raise click.exceptions.Exit(1)


def _list_datasets(pattern: str | None, as_json: bool) -> None:
    """Dataset plugins, read from metadata and source alone (TFDS catalog names work too)."""
    import fnmatch

    rows = [
        {"name": e.name, "summary": e.summary, "distribution": e.dist, "version": e.version,
         "entry_point": e.value, "status": f"broken: {e.problem}" if e.problem else "ok"}
        for e in registry.dataset_entries()
        if not pattern or fnmatch.fnmatchcase(e.name, pattern)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows and pattern:
        raise ZooError(f"no dataset plugin matches '{pattern}'")
    if not rows:  # nothing wrong: catalog names and folders need no plugin
        click.echo("no dataset plugins are installed; TFDS catalog names and folders of images "
                   "work without one")
        return
    table(rows, ("name", "summary", "distribution", "version", "status"))


def _load_problem(entry: registry.Entry) -> str:
    try:
        entry.load()
    except registry.PluginError as exc:
        return str(exc)
    return ""


@click.command()
@click.argument("model")
def info(model: str) -> None:
    """Show MODEL's documentation, hyperparameters, recipe, source and size."""
    entry = registry.resolve(model)  # metadata only: an unknown name fails before TensorFlow loads
    backend_lib.import_tensorflow()
    try:
        builder = entry.load(shown_name=model)
    except registry.PluginError as exc:
        click.echo(f"{model}: broken")
        click.echo(f"source: {entry.dist} {entry.version} ({entry.value})")
        if exc.details.strip() != str(exc).strip():  # a traceback; a one-line reason is the error below
            click.echo("\n" + exc.details.rstrip())
        raise ZooError(str(exc)) from None
    click.echo(f"{model}: {builder.summary}")
    click.echo(f"source: {entry.dist} {entry.version} ({entry.value})")
    doc = builder.doc.split("\n", 1)
    if len(doc) > 1 and doc[1].strip():
        click.echo("\n" + doc[1].strip())
    click.echo("\nhyperparameters (--hp KEY=VALUE):")
    if builder.hyperparameters:
        table(
            [
                {"key": h.name, "type": h.type_name,
                 "default": repr(h.default) if isinstance(h.default, str) else registry.show_value(h.default)}
                for h in builder.hyperparameters.values()
            ],
            ("key", "type", "default"),
            indent="  ",
        )
    else:
        click.echo("  none")
    recipe = ", ".join(f"{k}={v}" for k, v in builder.recipe.items()) or "none (zoo defaults)"
    click.echo(f"\nrecommended recipe: {recipe}")
    try:
        searched = " ".join(f"{k}={v}" for k, v in tuning_space.default_space(builder).items())
    except ZooUsageError as exc:  # a builder's own search_space that is not text
        searched = f"(unusable: {exc})"
    click.echo(f"search space (zoo tune): {searched}")
    model_obj = builder.build(input_shape=MNIST_SHAPE, num_classes=MNIST_CLASSES)
    click.echo(f"parameters for {MNIST_SHAPE} with {MNIST_CLASSES} classes: {model_obj.count_params():,}")
    model_presets(entry.name)


@click.command()
@click.argument("model")
@click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE", help="Check with these hyperparameters.")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="Check on this Keras backend. [default: $KERAS_BACKEND, else tensorflow]")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Build, train, reload and export in this precision; auto picks as zoo train does "
                   "on this machine.")
def check(model: str, hp: tuple[str, ...], backend: str | None, precision: str) -> None:
    """Conformance checks for MODEL: build, probabilities, fit, save/reload, export."""
    entry, pairs = registry.resolve(model), hp_pairs(hp)  # fail before TensorFlow loads

    name = backend_lib.use(backend)
    click.echo(f"backend: {name}")
    backend_lib.import_tensorflow()
    builder = entry.load(shown_name=model)
    hparams = builder.parse_hparams(pairs)
    from ..check import iter_checks  # imports TensorFlow
    from ..compute import devices

    policy, reason = devices.resolve_precision(precision, name)
    click.echo(f"precision: {policy} ({reason})")
    failed = 0
    for result in iter_checks(builder, precision=policy, **hparams):
        failed += not result.passed
        click.echo(f"{'PASS' if result.passed else 'FAIL'}  {result.name}: {result.detail}")
    if failed:
        raise ZooError(f"{model}: {failed} check(s) failed")
    click.echo(f"{model}: all checks passed")
