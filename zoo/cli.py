"""The ``zoo`` launcher: the only module that imports click.

Options are turned into a RunConfig here; nothing below sees a Click object. TensorFlow is
imported only by the commands that train or load models, so ``zoo --help`` and ``zoo list`` are fast.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click

import registry
import zoo

from . import files, sweep
from .config import (
    BACKENDS,
    DEVICES_HELP,
    INPUTS,
    JIT_COMPILE,
    MAX_SEED,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    RunConfig,
)
from .errors import ZooError, ZooUsageError
from .runs import CONFIG, ERROR_LOG, Run
from .version import DIST_NAME

# Errors that mean "the request is wrong" (exit 2) rather than "something failed" (exit 1).
_USAGE_ERRORS = (
    ZooUsageError,
    registry.UnknownModelError,
    registry.AmbiguousModelError,
    registry.HyperparameterError,
)
# Shapes used to report a model's size in `zoo info`.
MNIST_SHAPE, MNIST_CLASSES = (28, 28, 1), 10


# Click 8.2+ raises this for a bare `zoo`; older versions print the help and exit by themselves.
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())
# Where a command keeps the run directory it works on: the place for an unexpected error's log.
_RUN_DIR = "zoo.run_dir"


class _ZooGroup(click.Group):
    """Every error is one line on stderr: exit 2 for usage, 1 for failure, 130 for Ctrl-C."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            self._main(args, prog_name, complete_var, **extra)
        except SystemExit as exc:
            from . import multihost

            if exc.code not in (0, None) and multihost.active():
                # Not through JAX's shutdown, which waits for peers that will not come.
                multihost.exit_now(exc.code if isinstance(exc.code, int) else 1)
            raise

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS as exc:  # bare `zoo`: help, not an error line
            click.echo(exc.ctx.get_help())
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `zoo list | head`: the reader left, nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # outside any command (option callbacks): no run directory
            if os.environ.get("ZOO_DEBUG"):
                raise
            click.echo(f"Error: {_unexpected(exc, None)}", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except _USAGE_ERRORS as exc:
            raise click.UsageError(_cli_words(str(exc), self._subcommand(ctx))) from None
        except (ZooError, registry.RegistryError) as exc:
            raise click.ClickException(_cli_words(str(exc), self._subcommand(ctx))) from None
        except OSError as exc:
            if os.environ.get("ZOO_DEBUG"):
                raise
            if exc.filename is None:
                raise click.ClickException(_unexpected(exc, ctx.meta.get(_RUN_DIR))) from None
            # A full disk, a read-only or vanished folder: what and where is all there is to say.
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename}") from None
        except Exception as exc:  # the last line of defence: a bug, or an error nobody foresaw
            if os.environ.get("ZOO_DEBUG"):
                raise
            raise click.ClickException(_unexpected(exc, ctx.meta.get(_RUN_DIR))) from None

    def _subcommand(self, ctx: click.Context) -> click.Command | None:
        return self.commands.get(ctx.invoked_subcommand or "")


def _cli_words(message: str, command: click.Command | None) -> str:
    """Library messages name settings as `python_name`; show the command's own option instead."""
    params = {p.name: p for p in (command.params if command else [])}

    def word(match: re.Match[str]) -> str:
        param = params.get(match.group(1))
        if isinstance(param, click.Option):
            return max(param.opts, key=len)
        return param.human_readable_name if param is not None else match.group(1)

    return re.sub(r"`([A-Za-z_]+)`", word, message)


def _unexpected(exc: BaseException, run_dir: str | None) -> str:
    """One line for an exception the zoo did not foresee; the traceback goes to a log file."""
    lines = str(exc).strip().splitlines()
    summary = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    text = f"zoo {' '.join(sys.argv[1:])}\n{''.join(traceback.format_exception(exc))}"
    try:
        if run_dir and (Path(run_dir) / CONFIG).is_file():
            log = Path(run_dir) / ERROR_LOG
            with log.open("a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}\n")
        else:
            fd, name = tempfile.mkstemp(prefix="zoo-error-", suffix=".log")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            log = Path(name)
        where = f"traceback in {log}"
    except OSError:
        where = "no log could be written"
    return f"{summary} ({where}; ZOO_DEBUG=1 prints it)"


def _import_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up log lines hidden.

    TensorFlow prints several lines to stderr while loading that no setting silences (not even
    TF_CPP_MIN_LOG_LEVEL=3); they would bury one-line errors. ZOO_TF_LOGS=1 shows them.
    """
    if "tensorflow" in sys.modules or os.environ.get("ZOO_TF_LOGS"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # later C++ messages (e.g. no CUDA driver)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@click.group(cls=_ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DIST_NAME, prog_name="zoo")
def main() -> None:
    """A plugin model zoo for Keras 3: list, train, evaluate and export models."""


# The training recipe, shared by train and bench; each defaults to the model's recommended recipe.
_RECIPE_OPTIONS = (
    click.option("--epochs", type=int, help="Default: the model's recipe."),
    click.option("--batch-size", type=int, help="Default: the model's recipe."),
    click.option("--learning-rate", type=float, help="Default: the model's recipe."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Default: the model's recipe."),
    click.option("--schedule", type=click.Choice(SCHEDULES), help="Default: the model's recipe."),
    click.option("--label-smoothing", type=float, help="Default: the model's recipe (0 if none)."),
    click.option("--augment/--no-augment", default=None,
                 help="Random shifts of up to 2 pixels on training images. "
                      "Default: the model's recipe."),
)


# Where and how a run computes, shared by train and bench. None means auto, and keeps
# `zoo bench --from-runs` able to tell that nothing was asked for.
_HARDWARE_OPTIONS = (
    click.option("--backend", type=click.Choice(BACKENDS),
                 help="Keras' backend: tensorflow, or jax (pip install \"keras-zoo[jax]\"; the "
                      "one that trains across machines). [default: $KERAS_BACKEND, else "
                      "tensorflow; for --resume, the run's own]"),
    click.option("--precision", type=click.Choice(PRECISIONS),
                 help="Keras dtype policy. auto: mixed_float16 on NVIDIA GPUs of compute capability "
                      "7.0 or newer, mixed_bfloat16 on CPUs with avx512_bf16 or amx_bf16, "
                      "float32 otherwise. The softmax always computes in float32. [default: auto]"),
    click.option("--jit-compile", type=click.Choice(JIT_COMPILE),
                 help="XLA compilation. auto: Keras' default (on with a GPU, off on a CPU-only "
                      "machine, with several devices and with deterministic ops). on needs "
                      "--no-deterministic. [default: auto]"),
    click.option("--devices",
                 help=f"{DEVICES_HELP}. auto: every GPU, else the CPU. N: the first N GPUs; "
                      "on a machine without GPUs, N logical CPU devices, which exist to test the "
                      "multi-device path and make nothing faster. Several devices train "
                      "data-parallel (MirroredStrategy; DataParallel on JAX); the recipe's batch size is the global "
                      "batch, split over them, and the learning rate is unchanged. [default: auto]"),
)


# How the data reaches the model, shared by train and bench. None means the default (auto).
_INPUT_OPTIONS = (
    click.option("--input", type=click.Choice(INPUTS),
                 help="memory: decode the splits once into RAM (fastest); stream: read the TFDS "
                      "shards every epoch through a shuffle buffer (any size); auto: memory when "
                      "the decoded splits fit --memory-budget. [default: auto]"),
    click.option("--memory-budget", metavar="SIZE",
                 help="Memory the data may take, e.g. 512MB or 4GB (powers of 1024). It decides "
                      "auto and sizes the streaming shuffle buffer. [default: a quarter of the "
                      "machine's memory]"),
    click.option("--cache-dir", type=click.Path(), callback=lambda ctx, param, value: _folder_path(param, value),
                 help="Streaming: write the decoded examples here once and read them back in "
                      "later epochs and runs (for datasets whose decoding is the bottleneck)."),
)


# Where datasets come from, shared by train and bench.
_DATA_OPTIONS = (
    click.option("--image-size", metavar="H,W",
                 help="Folders of images: resize every image to this height and width while "
                      "preparing (needed when their sizes differ); the export resizes served "
                      "images the same way."),
    click.option("--channels", type=int,
                 help="Folders of images: 1 (grayscale) or 3 (RGB). [default: 1 if every "
                      "image is grayscale, else 3]"),
    click.option("--data-dir", envvar="TFDS_DATA_DIR",
                 type=click.Path(file_okay=False, resolve_path=True),
                 help="Where TFDS keeps prepared datasets [env: TFDS_DATA_DIR]."),
    click.option("--manual-dir", envvar="ZOO_MANUAL_DIR",
                 type=click.Path(exists=True, file_okay=False, resolve_path=True),
                 help="Folder with the dataset's downloaded files, to prepare offline "
                      "[env: ZOO_MANUAL_DIR]."),
)


def _folder_path(param: click.Parameter, value: str | None) -> str | None:
    """An absolute folder path; "" is refused (resolved, it would be the working directory)."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("must be a folder path, not empty", param=param)
    return str(Path(value).expanduser().resolve())


def _options(options):
    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


_recipe_options, _data_options = _options(_RECIPE_OPTIONS), _options(_DATA_OPTIONS)
_hardware_options, _input_options = _options(_HARDWARE_OPTIONS), _options(_INPUT_OPTIONS)


@main.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of models, for machines.")
@click.option("--check", is_flag=True,
              help="Also import every plugin and validate it (slower: imports TensorFlow).")
@click.option("--datasets", is_flag=True,
              help="List dataset plugins (entry-point group zoo.datasets) instead of models.")
def list_models(pattern: str | None, as_json: bool, check: bool, datasets: bool) -> None:
    """List registered models, optionally those matching a shell-style PATTERN (e.g. 'c*').

    Nothing is imported: a plugin's summary and obvious breakage are read from its source.
    """
    if datasets:
        _list_datasets(pattern, as_json)
        return
    everything = registry.entries()
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
        return
    if not rows:
        raise ZooError(f"no model matches '{pattern}'" if pattern else "no models are installed")
    for r in rows:
        r["status"] = f"broken: {r['reason']}" if r["reason"] else "ok"
    _table(rows, ("name", "summary", "distribution", "version", "status"))


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
    _table(rows, ("name", "summary", "distribution", "version", "status"))


def _load_problem(entry: registry.Entry) -> str:
    try:
        entry.load()
    except registry.PluginError as exc:
        return str(exc)
    return ""


@main.command()
@click.argument("model")
def info(model: str) -> None:
    """Show MODEL's documentation, hyperparameters, recipe, source and size."""
    entry = registry.resolve(model)  # metadata only: an unknown name fails before TensorFlow loads
    _import_tensorflow()
    try:
        builder = entry.load(shown_name=model)
    except registry.PluginError as exc:
        click.echo(f"{model}: broken")
        click.echo(f"source: {entry.dist} {entry.version} ({entry.value})\n")
        click.echo(exc.details.rstrip())
        raise ZooError(str(exc)) from None
    click.echo(f"{model}: {builder.summary}")
    click.echo(f"source: {entry.dist} {entry.version} ({entry.value})")
    doc = builder.doc.split("\n", 1)
    if len(doc) > 1 and doc[1].strip():
        click.echo("\n" + doc[1].strip())
    click.echo("\nhyperparameters (--hp KEY=VALUE):")
    if builder.hyperparameters:
        _table(
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
    model_obj = builder.build(input_shape=MNIST_SHAPE, num_classes=MNIST_CLASSES)
    click.echo(f"parameters for {MNIST_SHAPE} with {MNIST_CLASSES} classes: {model_obj.count_params():,}")


@main.command()
@click.argument("model")
@click.option("--dataset", default="mnist", show_default=True,
              help="A TFDS image-classification dataset, a dataset plugin (zoo list --datasets) "
                   "or a folder of class folders of images.")
@_recipe_options
@click.option("--val-split", type=float, default=0.1, show_default=True,
              help="Fraction of the train split held out for validation (the last part).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE", help="A builder hyperparameter; repeatable.")
@click.option("--run-dir", type=click.Path(), help="Default: runs/MODEL-TIMESTAMP.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --run-dir.")
@_data_options
@click.option("--export", "export_base", type=click.Path(), help="Also export a SavedModel under this folder.")
@click.option("--deterministic/--no-deterministic", default=True, show_default=True,
              help="Deterministic TensorFlow ops: the same seed gives the same history.")
@_hardware_options
@_input_options
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
def train(ctx: click.Context, model: str, hp: tuple[str, ...], run_dir: str | None, resume: bool,
          export_base: str | None, coordinator: str | None, num_processes: int | None,
          process_id: int | None, peer_timeout: float | None, local_processes: int | None,
          **options: Any) -> None:
    """Train MODEL, evaluate it on the test split and (with --export) export it."""
    from . import launch, multihost

    if local_processes is not None:
        if coordinator or num_processes is not None or process_id is not None:
            raise ZooUsageError("--local-processes chooses --coordinator, --num-processes and "
                                "--process-id itself; give none of them")
        if not 1 <= local_processes <= launch.MAX_LOCAL:
            raise ZooUsageError(f"--local-processes must be between 1 and {launch.MAX_LOCAL}, "
                                f"received {local_processes}")
        sys.exit(launch.local_processes(launch.without_option(sys.argv[1:], "--local-processes"),
                                        local_processes, options["backend"]))
    # What the command line says is checked before TensorFlow loads (seconds) and data is read.
    pairs = _pairs(hp)
    cluster = multihost.cluster(coordinator, num_processes, process_id, peer_timeout)
    if options["backend"] is None:
        recorded = zoo.recorded_backend(run_dir) if resume and run_dir else None
        options["backend"] = recorded or (
            "jax" if cluster is not None and not os.environ.get("KERAS_BACKEND") else None)
    RunConfig.from_recipe(model, {}, {**options, "backend": options["backend"] or "tensorflow"})
    if run_dir is None:
        if resume:
            raise ZooUsageError("--resume needs the --run-dir of the run to continue")
        run_dir = zoo.default_run_dir(model)
    if cluster is None or cluster.writer:  # the others never touch the run directory
        ctx.meta[_RUN_DIR] = str(Run.for_training(run_dir, resume=resume).path)
    if export_base is not None and (cluster is None or cluster.writer):
        files.check_creatable(Path(export_base).resolve(), "export base")
    if options["cache_dir"] is not None:
        files.check_creatable(Path(options["cache_dir"]), "cache folder")
    registry.resolve(model)  # reads metadata only: an unknown name fails in a second
    from . import backend

    options["backend"] = backend.use(options["backend"])  # before TensorFlow, which imports Keras
    _import_tensorflow()
    try:
        run = zoo.train(
            model, hparams=pairs, run_dir=run_dir, resume=resume, export=export_base,
            verbose=1 if sys.stdout.isatty() else 2, coordinator=coordinator,
            num_processes=num_processes, process_id=process_id, peer_timeout=peer_timeout, **options,
        )
    except KeyboardInterrupt:
        if not (Path(run_dir) / CONFIG).is_file():  # stopped while the data was being prepared
            click.echo("\nInterrupted before training started; nothing was written.", err=True)
            sys.exit(130)
        command = ["zoo", *sys.argv[1:]] if sys.argv[1:2] == ["train"] else ["zoo", "train", model]
        extra = ([] if "--resume" in command else ["--resume"]) + (
            [] if "--run-dir" in command else ["--run-dir", run_dir]
        )
        click.echo(
            f"\nInterrupted. Finished epochs are kept; resume with:\n  {shlex.join(command + extra)}",
            err=True,
        )
        sys.exit(130)
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
    if cluster is not None:
        click.echo(f"weights digest {m['weights_digest']}, the same on all {cluster.num_processes} processes")
    if cluster is not None and not cluster.writer:
        click.echo(f"{cluster.label}: process 0 writes the run directory and the export")
    else:
        click.echo(f"run directory: {run.path}")
    if run.exported is not None:
        _echo_export(run.exported)


@main.command()
@click.argument("model")
@click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE", help="Check with these hyperparameters.")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="Check on this Keras backend. [default: $KERAS_BACKEND, else tensorflow]")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Build, train, reload and export in this precision; auto picks as zoo train does "
                   "on this machine.")
def check(model: str, hp: tuple[str, ...], backend: str | None, precision: str) -> None:
    """Conformance checks for MODEL: build, probabilities, fit, save/reload, export."""
    entry, pairs = registry.resolve(model), _pairs(hp)  # fail before TensorFlow loads
    from . import backend as backend_lib

    name = backend_lib.use(backend)
    click.echo(f"backend: {name}")
    _import_tensorflow()
    builder = entry.load(shown_name=model)
    hparams = builder.parse_hparams(pairs)
    from . import devices
    from .check import iter_checks  # imports TensorFlow

    policy, reason = devices.resolve_precision(precision, name)
    click.echo(f"precision: {policy} ({reason})")
    failed = 0
    for result in iter_checks(builder, precision=policy, **hparams):
        failed += not result.passed
        click.echo(f"{'PASS' if result.passed else 'FAIL'}  {result.name}: {result.detail}")
    if failed:
        raise ZooError(f"{model}: {failed} check(s) failed")
    click.echo(f"{model}: all checks passed")


@main.command()
@click.argument("models", nargs=-1)
@click.option("--dataset", default="mnist", show_default=True,
              help="A TFDS dataset, a dataset plugin or a folder of images (see zoo train --help).")
@_recipe_options
@click.option("--seeds", default="0", show_default=True, help="Comma-separated, e.g. 0,1,2.")
@click.option("--hp", "hp", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter for every selected model; repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default="bench", show_default=True,
              help="Results folder; results.jsonl there is appended to, never rewritten. Jobs it "
                   "already records are skipped.")
@click.option("--from-runs", "from_runs", multiple=True, type=click.Path(),
              help="Measure this finished run instead of training; repeatable.")
@click.option("--plan", "show_plan", is_flag=True,
              help="Print the sweep's numbered jobs (and which --out records) and run nothing.")
@click.option("--shard", metavar="I/N",
              help="Run only shard I of N: the jobs numbered I, I+N, I+2N, ... (e.g. one task of a "
                   "Slurm array or a Kubernetes Indexed Job; every shard writes to the same --out).")
@click.option("--ray", is_flag=False, flag_value="local", metavar="[ADDRESS]",
              help="Run every job as a Ray task on the cluster at ADDRESS (HOST:PORT or auto); "
                   "without one, on a Ray cluster started on this machine for the sweep. "
                   'Needs pip install "keras-zoo[ray]".')
@click.option("--cpus-per-job", type=click.IntRange(min=1),
              help="CPUs a Ray task reserves, and the TensorFlow threads of every job. "
                   "[default: 1 with --ray, else TensorFlow's own (every core)]")
@click.option("--gpus-per-job", type=click.FloatRange(min=0),
              help="GPUs a Ray task reserves (--ray only). [default: 0]")
@click.option("--report", type=click.Path(file_okay=False),
              help="Rebuild results.csv, results.md and results.png of this folder from all its "
                   "records (of every shard), print results.md and run nothing.")
@_hardware_options
@_input_options
@_data_options
@click.pass_context
def bench(ctx: click.Context, models: tuple[str, ...], dataset: str, seeds: str, hp: tuple[str, ...],
          out: str, from_runs: tuple[str, ...], show_plan: bool, shard: str | None,
          ray: str | None, cpus_per_job: int | None, gpus_per_job: float | None,
          report: str | None, data_dir: str | None, manual_dir: str | None, **recipe: Any) -> None:
    """Train, export and measure MODELS (names or patterns; default all) side by side."""
    if report is not None:
        given = [max(p.opts, key=len) if isinstance(p, click.Option) else p.human_readable_name
                 for p in ctx.command.params if p.name not in ("report", "data_dir", "manual_dir")
                 and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise ZooUsageError(f"--report rebuilds a folder's reports from its records; give nothing else "
                                f"with it ({', '.join(given)})")
        _report(Path(report).resolve())
        return
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ZooUsageError(f"--seeds expects comma-separated integers, received {seeds!r}") from None
    if not seed_list or not all(0 <= s <= MAX_SEED for s in seed_list):
        raise ZooUsageError(f"--seeds expects integers between 0 and {MAX_SEED}, received {seeds!r}")
    recipe = {k: v for k, v in recipe.items() if v is not None}
    if from_runs and (models or hp or recipe):
        raise ZooUsageError(
            "--from-runs measures finished runs as they are; "
            "give no MODELS, --hp or training options with it"
        )
    if from_runs and (show_plan or shard or ray):
        raise ZooUsageError("--from-runs measures finished runs here; --plan, --shard and --ray are for "
                            "training sweeps")
    selected_shard = sweep.parse_shard(shard) if shard is not None else None
    if ray is not None:
        from .ray_executor import check_address

        check_address(ray)
    sweep.check_gpus(ray, gpus_per_job)
    hp_pairs = _pairs(hp)
    from . import backend

    if not from_runs:  # each job trains in a process of its own, on this backend
        recipe["backend"] = recipe.get("backend") or backend.default()
    _import_tensorflow()
    from . import benchmark as bench_lib
    from .data import dataset_name

    out_dir = Path(out).resolve()
    if from_runs:
        jobs = bench_lib.plan_from_runs(list(from_runs))
    else:
        options = {"dataset": dataset_name(dataset), "data_dir": data_dir, "manual_dir": manual_dir, **recipe}
        jobs = bench_lib.plan(list(models), seeds=seed_list, out=out_dir, hparams=hp_pairs, options=options)
    selection = sweep.select(jobs, out_dir, selected_shard)
    if show_plan:
        _echo_plan(selection, selected_shard, out_dir)
        return
    todo, records = selection.todo, []
    if not todo:
        _echo_selection(selection, selected_shard, out_dir)
        click.echo("nothing to run", err=True)
        _echo_results(out_dir)
        return
    command = shlex.join(["zoo", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else ""
    with sweep.executing(todo, out_dir, shard=selected_shard, ray=ray, cpus_per_job=cpus_per_job,
                         gpus_per_job=gpus_per_job) as results:
        _echo_selection(selection, selected_shard, out_dir)  # once connected: an error stays one line
        start, terminal = time.monotonic(), sys.stderr.isatty()
        with click.progressbar(length=len(todo), label=f"{len(todo)} benchmark job(s)", show_eta=True,
                               show_pos=True, item_show_func=lambda j: j.label if j else "",
                               file=sys.stderr) as bar:
            for done, (job, record) in enumerate(sweep.run(out_dir, results, selection, command), 1):
                bar.update(1, job)
                records.append(record)
                if not terminal:  # a log or CI: Click draws no bar there, so a line per job instead
                    eta = (time.monotonic() - start) / done * (len(todo) - done)
                    click.echo(f"[{done}/{len(todo)}] {job.label}: {_outcome(record)}; ETA {eta / 60:.0f} min",
                               err=True)
    _echo_results(out_dir)
    sweep.raise_failures(records)


def _outcome(record: dict[str, Any]) -> str:
    if record["status"] == "failed":
        return f"failed ({record['error']})"
    if record["test_accuracy"] is None:
        return "no test split"
    return f"test accuracy {record['test_accuracy']:.4f}"


def _echo_results(out_dir: Path) -> None:
    if (out_dir / "results.md").is_file():
        click.echo((out_dir / "results.md").read_text())
        click.echo(f"results: {out_dir}/results.{{jsonl,csv,md,png}}")


def _echo_selection(selection, shard, out_dir: Path) -> None:
    """What this process will run, on stderr: the plan, the shard, what --out has already."""
    if selection.fingerprint is None:
        return
    parts = [f"sweep {selection.fingerprint}: {len(selection.jobs)} job(s)"]
    if shard is not None:
        parts.append(f"shard {shard}: {len(selection.mine)}")
    skipped = len(selection.mine) - len(selection.todo)
    if skipped:
        parts.append(f"{skipped} already recorded in {out_dir}, skipped")
    click.echo("; ".join(parts), err=True)


def _echo_plan(selection, shard, out_dir: Path) -> None:
    count = len(selection.jobs)
    where = f"; shard {shard}: {len(selection.mine)} of them" if shard is not None else ""
    click.echo(f"sweep {selection.fingerprint or '(finished runs)'}: {count} job(s){where}; --out {out_dir}")
    rows = [{"#": j.index or "-", "model": j.config.model, "seed": j.config.seed, "variant": j.variant or "recipe",
             "status": selection.states.get(j.key, "to run"), "run directory": j.run_dir}
            for j in selection.mine]
    if rows:
        _table(rows, ("#", "model", "seed", "variant", "status", "run directory"))


def _report(folder: Path) -> None:
    if not (folder / sweep.RESULTS).is_file():
        raise ZooUsageError(f"{folder} holds no benchmark records (no {sweep.RESULTS})")
    _import_tensorflow()
    sweep.rebuild(folder)
    _echo_results(folder)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--split", default="test", show_default=True, help="A TFDS split, e.g. test or train[90%:].")
@click.pass_context
def evaluate(ctx: click.Context, run_dir: str, split: str) -> None:
    """Evaluate a finished run's model on a split of its dataset."""
    ctx.meta[_RUN_DIR] = run_dir
    _check_finished_run(run_dir)
    _import_tensorflow()

    result = Run.open(run_dir).evaluate(split)
    click.echo(f"{split}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")
    if "trained_on_fingerprint" in result:
        click.echo(f"note: the images changed since this run trained (fingerprint "
                   f"{result['trained_on_fingerprint']}, now {result['fingerprint']}): these "
                   f"figures are for the images as they are now")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.argument("export_base", type=click.Path())
@click.pass_context
def export(ctx: click.Context, run_dir: str, export_base: str) -> None:
    """Export a run as EXPORT_BASE/<next version>/, a SavedModel for TF Serving."""
    ctx.meta[_RUN_DIR] = run_dir
    _check_finished_run(run_dir)
    files.check_creatable(Path(export_base).resolve(), "export base")
    _import_tensorflow()

    _echo_export(Run.open(run_dir).export(export_base))


def _check_finished_run(run_dir: str) -> None:
    """The run's one-line errors before TensorFlow loads: no run, still training, unfinished."""
    run = Run.open(run_dir)
    with run.locked(exclusive=False):
        run.model_path()


def _echo_export(result) -> None:
    click.echo(
        f"exported {result.path} (version {result.version}); reloaded and compared on "
        f"{result.examples_compared} images: max abs diff {result.max_abs_diff:.3g} "
        f"(tolerance {result.tolerance:g})"
    )


def _pairs(items: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ZooUsageError(f"--hp expects KEY=VALUE, received {item!r}")
        if key.strip() in pairs:
            raise ZooUsageError(f"--hp {key.strip()} is given twice")
        pairs[key.strip()] = value.strip()
    return pairs


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], indent: str = "") -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    click.echo(indent + "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo(indent + "  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip())
