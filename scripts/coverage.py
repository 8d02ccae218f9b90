"""Branch coverage of zoo/ and registry/ over the whole test suite, subprocesses included.

Run from the repository root with the dev virtualenv (pip install -e ".[test,dev]"):

    .venv/bin/python scripts/coverage.py                          # the whole suite
    .venv/bin/python scripts/coverage.py -m "not integration"     # extra arguments go to pytest
    .venv/bin/python scripts/coverage.py --report                 # only report the last run

The suite starts `python -m zoo` and the installed `zoo` script in child processes; coverage's
subprocess patch (configured in pyproject.toml, coverage >= 7.10) measures those too, and the
pip-installed copy the plugin tests use is mapped back onto the sources. The integration tests
need the real MNIST files: ZOO_MANUAL_DIR defaults to ../shared/datasets/mnist when it exists.
Writes .coverage (combined) and htmlcov/; prints the per-file table and the total. The whole suite
takes about 17 minutes under coverage on 2 shared cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def coverage(*args: str, env: dict[str, str] | None = None) -> int:
    return subprocess.call([sys.executable, "-m", "coverage", *args], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only report the last run")
    args, pytest_args = parser.parse_known_args()
    root = Path.cwd()
    if not (root / "pyproject.toml").is_file() or not (root / "zoo").is_dir():
        sys.exit("run this from the repository root")
    # Absolute, so the child processes the tests start in other folders write next to it.
    env = {**os.environ, "COVERAGE_FILE": str(root / ".coverage")}
    if not args.report:
        mnist = root.parent / "shared" / "datasets" / "mnist"
        if "ZOO_MANUAL_DIR" not in env and mnist.is_dir():
            env["ZOO_MANUAL_DIR"] = str(mnist)
        coverage("erase", env=env)
        start = time.monotonic()
        code = coverage("run", "-m", "pytest", *pytest_args, env=env)
        minutes = (time.monotonic() - start) / 60
        print(f"\npytest under coverage: exit code {code}, {minutes:.1f} min", flush=True)
        coverage("combine", "--quiet", env=env)
    coverage("html", "--quiet", env=env)
    code = coverage("report", env=env)
    if code != 0:
        sys.exit(code)


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("suite", "How good the test suite is"):
        main()
