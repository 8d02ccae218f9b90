"""The ``zoo`` group: every error one line on stderr, with its exit code; the commands are in the
modules beside this one. The CLI package is the only place that imports click: options become a
plan (zoo.plan) or a RunConfig here, and nothing below sees a Click object. TensorFlow is imported
only by the commands that train or load models, so ``zoo --help`` and ``zoo list`` are fast.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click

import registry

from ..errors import ZooError, ZooUsageError
from ..runs import CONFIG, ERROR_LOG
from ..version import DIST_NAME
from .bench import bench
from .models import check, info, list_models
from .output import RUN_DIR_KEY
from .presets import publish, verify
from .runs import evaluate, export, list_runs, predict
from .train import train
from .tune import tune

# Errors that mean "the request is wrong" (exit 2) rather than "something failed" (exit 1).
_USAGE_ERRORS = (
    ZooUsageError,
    registry.UnknownModelError,
    registry.AmbiguousModelError,
    registry.HyperparameterError,
)


# Click 8.2+ raises this for a bare `zoo`; older versions print the help and exit by themselves.
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())
# After Ctrl-C, what running the same command again does (zoo train prints its own resume command).
CONTINUES = {
    "bench": "the same command continues the sweep: recorded jobs are kept, and an interrupted job's run "
             "resumes after its last finished epoch",
    "tune": "the same command continues the study: finished trials are kept, and the interrupted one runs again",
}


class _ZooGroup(click.Group):
    """Every error is one line on stderr: exit 2 for usage, 1 for failure, 130 for Ctrl-C."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            self._main(args, prog_name, complete_var, **extra)
        except SystemExit as exc:
            from ..compute import multihost

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
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except KeyboardInterrupt:  # Ctrl-C: what the same command does next, where it is not obvious
            again = CONTINUES.get(ctx.invoked_subcommand or "")
            if again is None:
                raise
            click.echo(f"interrupted: {again}", err=True)
            sys.exit(130)
        except _USAGE_ERRORS as exc:
            raise click.UsageError(_cli_words(str(exc), self._subcommand(ctx))) from None
        except (ZooError, registry.RegistryError) as exc:
            raise click.ClickException(_cli_words(str(exc), self._subcommand(ctx))) from None
        except OSError as exc:
            if os.environ.get("ZOO_DEBUG"):
                raise
            if exc.filename is None:
                raise click.ClickException(_unexpected(exc, ctx.meta.get(RUN_DIR_KEY))) from None
            # A full disk, a read-only or vanished folder: what and where is all there is to say.
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename}") from None
        except Exception as exc:  # the last line of defence: a bug, or an error nobody foresaw
            if os.environ.get("ZOO_DEBUG"):
                raise
            raise click.ClickException(_unexpected(exc, ctx.meta.get(RUN_DIR_KEY))) from None

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


@click.group(cls=_ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DIST_NAME, prog_name="zoo")
def main() -> None:
    """A plugin model zoo for Keras 3: list, train, evaluate and export models."""


for command in (list_models, info, check, train, tune, bench, list_runs, evaluate, export, predict, publish, verify):
    main.add_command(command)
