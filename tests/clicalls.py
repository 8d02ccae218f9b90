"""The zoo's command line called in the test's own process (Click's runner), and its one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from zoo.cli import main


def zoo_cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_line_error(result) -> str:
    """The one ``Error: ...`` line of a command that failed without a traceback."""
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    return line
