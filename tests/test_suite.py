"""The suite's own promises: what the docs say about it is what it does.

- docs/runs.md's count of bad invocations is the length of tests/test_bad_input.py's table.
- With CI=true a skip fails the run unless docs/development.md lists its reason (tests/conftest.py),
  shown on a real pytest run of a few skipping tests; each listed reason is one a test can give.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conftest
from test_bad_input import CASES

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def test_the_docs_count_of_bad_invocations_is_the_tables():
    text = (ROOT / "docs" / "runs.md").read_text()
    counts = re.findall(r"which runs (\d+) bad invocations", text)
    assert counts, "docs/runs.md no longer says how many bad invocations tests/test_bad_input.py runs"
    assert [int(c) for c in counts] == [len(CASES)], (
        f"docs/runs.md says {counts}; tests/test_bad_input.py's CASES has {len(CASES)}: "
        f"write 'which runs {len(CASES)} bad invocations'")


def test_every_allowed_skip_is_one_a_test_gives():
    allowed = conftest.allowed_skips()
    assert 1 <= len(allowed) <= 3, allowed  # a short list, or the policy means nothing
    sources = "".join(p.read_text() for p in TESTS.glob("test_*.py"))
    for reason in allowed:
        assert reason in sources, f"docs/development.md allows a skip no test gives: {reason!r}"


SKIPPING = """
import pytest

def test_allowed():
    pytest.skip("{allowed}: here, for the test")

@pytest.mark.skipif(True, reason="not on the list")
def test_unlisted():
    pass

def test_runs():
    pass
"""

# tests/conftest.py's hooks for a suite of its own (importing it whole also registers tinydata).
CONFTEST = f"""
import importlib.util, sys
sys.path.insert(0, {str(TESTS)!r})
spec = importlib.util.spec_from_file_location("zoo_tests_conftest", {str(TESTS / "conftest.py")!r})
zoo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo)
pytest_runtest_logreport = zoo.pytest_runtest_logreport
pytest_terminal_summary = zoo.pytest_terminal_summary
pytest_sessionfinish = zoo.pytest_sessionfinish
"""


@pytest.mark.slow  # two pytest processes: 5 s
def test_in_ci_a_skip_fails_the_run_unless_the_docs_list_its_reason(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_skipping.py").write_text(
        textwrap.dedent(SKIPPING).format(allowed=conftest.allowed_skips()[0]))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}

    def pytest(*args: str, ci: bool) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
             str(tmp_path), *args, str(tmp_path)],
            capture_output=True, text=True, cwd=tmp_path, timeout=120, env={**env, **({"CI": "true"} if ci else {})})

    failed = pytest(ci=True)
    assert failed.returncode == 1, failed.stdout[-2000:]
    flagged = [line for line in failed.stdout.splitlines() if line.startswith("SKIPPED IN CI ")]
    assert flagged == ["SKIPPED IN CI test_skipping.py::test_unlisted: not on the list"], failed.stdout[-2000:]
    # The listed reason alone passes in CI.
    passed = pytest("-k", "not unlisted", ci=True)
    assert passed.returncode == 0 and "1 passed, 1 skipped" in passed.stdout, passed.stdout[-2000:]
