"""Mutation score of registry/, zoo/config.py and zoo/files.py (mutmut, configured in pyproject.toml).

Run from the repository root with the dev virtualenv:

    .venv/bin/python scripts/mutation.py              # fresh run, one worker
    .venv/bin/python scripts/mutation.py --keep       # reuse mutants/ (mutmut re-checks what changed)
    .venv/bin/python scripts/mutation.py --report     # only print the figures of the last run
    .venv/bin/python scripts/mutation.py --survivors  # also list the surviving mutants

mutmut mutates a copy of the sources in mutants/, never the sources themselves, and runs the fast
unit tests (tests/test_registry.py, test_files.py, test_config.py) against each mutant. Score =
killed / (killed + survived + no tests + timeout + suspicious). `mutmut show NAME` prints the diff
of one mutant. Takes about 4 minutes (731 mutants, one worker).

mutmut 3 does not mutate decorated functions (here: @contextmanager atomic_path, @property
accessors, the lru_cached _static._inspect); they are exercised by the same tests but not scored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit-code meanings (mutmut/stats.py); everything else counts as "suspicious".
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "killed",  # caught by the type checker
          None: "not checked"}  # a run filtered to some mutants, or interrupted


def run_mutmut(keep: bool) -> None:
    mutants = Path("mutants")
    if not keep and mutants.exists():
        shutil.rmtree(mutants)  # a fresh copy of the sources as they are now
    mutmut = Path(sys.executable).with_name("mutmut")
    mutants.mkdir(exist_ok=True)
    log = mutants / "run.log"  # mutmut's progress bar goes here, not to the terminal
    print(f"mutmut run (one worker: the machine may be shared); progress in {log}", flush=True)
    with open(log, "w") as out:
        code = subprocess.call([str(mutmut), "run", "--max-children", "1"], stdout=out, stderr=out)
    if code != 0:
        sys.exit(f"mutmut run failed with exit code {code}; see {log}")


def report(show_survivors: bool) -> float:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        sys.exit("no mutmut results in mutants/; run without --report first")
    totals: Counter[str] = Counter()
    survivors = []
    print(f"{'module':<24} {'killed':>6} {'total':>6} {'score':>7}   not killed")
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        counts = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        counts.pop("skipped", None)
        unchecked = counts.pop("not checked", 0)
        if not counts:
            continue
        total = sum(counts.values())
        killed = counts["killed"]
        totals.update(counts)
        rest = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "killed")
        rest += f" ({unchecked} not checked)" if unchecked else ""
        module = str(meta.relative_to("mutants")).removesuffix(".meta")
        print(f"{module:<24} {killed:>6} {total:>6} {killed / total:>7.1%}   {rest}")
        survivors += [k for k, c in codes.items() if STATUS.get(c) in ("survived", "no tests")]
    total = sum(totals.values())
    score = totals["killed"] / total
    print(f"{'all':<24} {totals['killed']:>6} {total:>6} {score:>7.1%}")
    if show_survivors:
        print("\nnot killed (mutmut show NAME for the diff):")
        print("\n".join(f"  {name}" for name in survivors))
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from the last run")
    parser.add_argument("--report", action="store_true", help="only report the last run")
    parser.add_argument("--survivors", action="store_true", help="list the mutants not killed")
    args = parser.parse_args()
    if not Path("pyproject.toml").is_file() or not Path("registry").is_dir():
        sys.exit("run this from the repository root")
    if not args.report:
        run_mutmut(keep=args.keep)
    score = report(args.survivors)
    print(f"\nmutation score: {score:.1%}")


if __name__ == "__main__":
    from _bench import results_page  # scripts/_bench.py: the page in docs/results

    with results_page("suite", "How good the test suite is"):
        main()
