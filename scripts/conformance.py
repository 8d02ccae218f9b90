"""`zoo check` on every keras.applications family, wrapped as a real, pip-installed plugin.

The plugin package is tests/applications_plugin (zoo-applications: one builder per family,
weights=None, the smallest variant at the narrowest published width, resized up to the smallest
input the family accepts). This script installs it, with keras-zoo from this working tree, into a
virtualenv that borrows TensorFlow, Keras and JAX from the running environment (a .pth file, as
tests/test_plugin_install.py does; nothing is downloaded), then runs the installed `zoo check`
once per family and configuration, each in a process of its own with a timeout, and writes

    docs/results/conformance.json   every result, merged with the ones already there
    docs/results/conformance.md     the tables, headed by machine, dates, commits and commands

A configuration is BACKEND/PRECISION: tensorflow or jax, float32 or auto (the precision `zoo
train` picks on this machine; `zoo check --precision`). Results of earlier invocations are kept,
so the matrix can be filled in several runs (--fresh starts over). Run it nice'd:

    nice .venv/bin/python scripts/conformance.py                      # everything (hours on 2 cores)
    nice .venv/bin/python scripts/conformance.py --configs tensorflow/float32 tensorflow/auto
    nice .venv/bin/python scripts/conformance.py --families mobilenetv3small convnexttiny --configs jax/auto
    .venv/bin/python scripts/conformance.py --report                  # rewrite the page from the JSON

Invocations that share --out merge their results into it; give concurrent ones their own --venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "applications_plugin"
OUT = ROOT / "docs" / "results"
CONFIGS = ("tensorflow/float32", "tensorflow/auto", "jax/float32", "jax/auto")
# What `zoo check` prints, in this order; a check that never printed was not reached.
CHECKS = (
    "contract", "build 28x28x1 / 10 classes", "build 32x32x3 / 100 classes", "probabilities",
    "short fit moves the loss", "save and reload .keras", "export SavedModel and compare", "parameters",
)
SHORT = {
    "contract": "contract", "build 28x28x1 / 10 classes": "build 28x28x1", "build 32x32x3 / 100 classes": "build 32x32x3",
    "probabilities": "probabilities", "short fit moves the loss": "short fit",
    "save and reload .keras": "save/reload", "export SavedModel and compare": "export", "parameters": "parameters",
}
LINE = re.compile(r"^(PASS|FAIL)  (.+?): (.*)$")


def families() -> list[str]:
    """The plugin's entry points, in the order its pyproject.toml declares them."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    return list(project["entry-points"]["zoo.models"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", metavar="NAME", help=f"default: all ({', '.join(families())})")
    parser.add_argument("--configs", nargs="+", metavar="BACKEND/PRECISION", default=list(CONFIGS),
                        help=f"default: all ({', '.join(CONFIGS)})")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per `zoo check` (default 1800)")
    parser.add_argument("--venv", type=Path, help="install into this virtualenv and keep it (default: a temporary one)")
    parser.add_argument("--fresh", action="store_true", help="forget the results already in docs/results/conformance.json")
    parser.add_argument("--report", action="store_true", help="only rewrite the page from conformance.json")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="JSON",
                        help="add the results of other runs' conformance.json (a run with its own --out)")
    parser.add_argument("--note", help="a sentence for the page about this invocation (why it covers what it "
                                       "does); with --report, about the page")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for conformance.json and conformance.md")
    args = parser.parse_args()
    known = families()
    for name in args.families or []:
        if name not in known:
            parser.error(f"unknown family {name!r}; choose from {', '.join(known)}")
    for config in args.configs:
        if config not in CONFIGS:
            parser.error(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")
    args.families = args.families or known
    return args


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def commit() -> str:
    """The commit, and which of the tested sources differ from it."""
    changed = git("status", "--porcelain", "--", "zoo", "registry", "tests/applications_plugin").splitlines()
    dirty = f" with uncommitted changes to {', '.join(c[3:] for c in changed)}" if changed else ""
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def machine() -> str:
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{model}, {os.cpu_count()} vCPUs, {'with ' + ' and '.join(bf16) if bf16 else 'without bfloat16 arithmetic'}"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def install(venv: Path) -> None:
    """keras-zoo (this tree) and zoo-applications into ``venv``, borrowing everything else."""
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).check_returncode()
    python = str(venv / "bin" / "python")
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_outer.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(outer)))
    ignore = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "runs", "exports", "bench",
                                    "tfds_data", "mutants", "htmlcov", "docs")
    with tempfile.TemporaryDirectory(prefix="conformance-src-") as tmp:
        for name, source in (("keras-zoo", ROOT), ("zoo-applications", PLUGIN)):
            copy = Path(tmp) / name  # setuptools writes build/ and *.egg-info next to the sources
            shutil.copytree(source, copy, ignore=ignore)
            result = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--force-reinstall", str(copy)])
            if result.returncode != 0:
                sys.exit(f"pip install {name} failed:\n{result.stderr[-3000:]}")


def has_precision_option(zoo: Path) -> bool:
    return "--precision" in run([str(zoo), "check", "--help"]).stdout


def check(zoo: Path, family: str, config: str, timeout: float, precision_option: bool) -> dict:
    backend, precision = config.split("/")
    cmd = [str(zoo), "check", family, "--backend", backend]
    if precision_option:
        cmd += ["--precision", precision]
    elif precision != "float32":  # before `--precision`, zoo check ran in Keras' default, float32
        return {"status": "n/a", "reason": "this zoo check has no --precision option", "checks": {}}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_BACKEND", "KERAS_DISTRIBUTION"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    start = time.monotonic()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        stdout, stderr, code = result.stdout, result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr, code = "", None
    seconds = round(time.monotonic() - start)
    checks, policy = {}, None
    for line in stdout.splitlines():
        if m := LINE.match(line):
            checks[m[2]] = {"passed": m[1] == "PASS", "detail": m[3]}
        elif line.startswith("precision: "):
            policy = line[len("precision: "):].split(" ")[0]
    failed = [name for name, c in checks.items() if not c["passed"]]
    if code is None:
        status, reason = "TIMEOUT", f"no result within {timeout:g} s (last check done: {list(checks)[-1] if checks else 'none'})"
    elif code == 0 and not failed and len(checks) == len(CHECKS):
        status, reason = "PASS", ""
    else:
        status = "FAIL"
        if failed:
            reason = "; ".join(f"{SHORT.get(n, n)}: {checks[n]['detail']}" for n in failed)
        else:  # it stopped before or between the checks: its own error line says why
            lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
            reason = next((ln for ln in reversed(lines) if ln.startswith("Error: ")), lines[-1] if lines else f"exit {code}")
    return {
        "status": status, "reason": reason, "checks": checks, "policy": policy or ("float32" if not precision_option else None),
        "seconds": seconds, "command": " ".join(["zoo", *cmd[1:]]),
    }


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"invocations": [], "results": {}}


def cell(result: dict | None) -> str:
    if result is None:
        return "not run"
    if result["status"] == "PASS":
        return f"PASS ({result['seconds']} s)"
    if result["status"] == "n/a":
        return f"n/a: {result['reason']}"
    failed = [SHORT.get(n, n) for n, c in result["checks"].items() if not c["passed"]]
    where = f": {', '.join(failed)}" if failed else ""
    return f"**{result['status']}**{where} ({result.get('seconds', '?')} s)"


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(data: dict) -> str:
    results = data["results"]
    names = families()
    lines = ["# keras.applications conformance", ""]
    lines += [
        "Every family of `keras.applications` wrapped as a plugin (`tests/applications_plugin`, package",
        "zoo-applications: `weights=None`, the smallest variant, the narrowest published width, resized",
        "up to the smallest input it accepts, the family's own input range, the backbone nested under a",
        "softmax head) and checked with the installed `zoo check`, one process per family and",
        "configuration. Written by `scripts/conformance.py`; `auto` is the precision `zoo train` picks",
        "on the machine (the resolved policy is in the details).",
        "",
    ]
    for inv in data["invocations"]:
        lines.append(f"- {inv['date']} on {inv['machine']}, at {inv['commit']}: `{inv['command']}`"
                     f" ({inv['configs']}; {inv['families']})" + (f". {inv['note']}" if inv.get("note") else ""))
    if data.get("notes"):
        lines += ["", *(f"Note: {note}" for note in data["notes"])]
    lines += ["", "## Summary", ""]
    configs = [c for c in CONFIGS if any(k.endswith("|" + c) for k in results)]
    lines.append("| family | parameters (28x28x1, 10 classes) | " + " | ".join(configs) + " |")
    lines.append("|---" * (len(configs) + 2) + "|")
    for name in names:
        counts = {r["checks"]["parameters"]["detail"].split(" ")[0] for k, r in results.items()
                  if k.startswith(name + "|") and "parameters" in r["checks"]}
        lines.append(f"| {name} | {', '.join(sorted(counts)) or '?'} | "
                     + " | ".join(cell(results.get(f"{name}|{c}")) for c in configs) + " |")
    counts = []
    for c in configs:
        done = [results[k] for k in results if k.endswith("|" + c) and results[k]["status"] != "n/a"]
        counts.append(f"{c}: {sum(r['status'] == 'PASS' for r in done)} of {len(done)} run pass")
    lines += ["", "; ".join(counts) + ".", ""]
    for c in configs:
        lines += [f"## {c}", ""]
        lines.append("| family | policy | " + " | ".join(SHORT[n] for n in CHECKS) + " |")
        lines.append("|---" * (len(CHECKS) + 2) + "|")
        reasons = []
        for name in names:
            r = results.get(f"{name}|{c}")
            if r is None or r["status"] == "n/a":
                continue
            row = []
            for check_name in CHECKS:
                got = r["checks"].get(check_name)
                if got is None:
                    row.append("TIMEOUT" if r["status"] == "TIMEOUT" else "not reached")
                elif got["passed"]:
                    row.append("PASS")
                else:
                    row.append("**FAIL**")
                    reasons.append(f"- {name}, {SHORT[check_name]}: {escape(got['detail'])}")
            if r["status"] != "PASS" and not any(not c_["passed"] for c_ in r["checks"].values()):
                reasons.append(f"- {name}: {escape(r['reason'])}")
            lines.append(f"| {name} | {r.get('policy') or '?'} | " + " | ".join(row) + " |")
        if reasons:
            lines += ["", "Reasons:", "", *reasons]
        lines.append("")
    lines += ["## Commands", "", "Each cell is one process:", ""]
    for name in names:
        for c in configs:
            r = results.get(f"{name}|{c}")
            if r and r.get("command"):
                lines.append(f"- `{r['command']}` ({r['status']}, {r['seconds']} s, at {r.get('commit', '?')})")
    return "\n".join(lines) + "\n"


def save(store: Path, mine: dict, invocation: dict | None) -> dict:
    """Merge this invocation's results into the store as it is now (another invocation may be
    writing to it too), write it, and return it."""
    data = load(store)
    if invocation is not None and invocation not in data["invocations"]:
        data["invocations"].append(invocation)
    data["results"].update(mine)
    store.write_text(json.dumps(data, indent=1) + "\n")
    (store.parent / "conformance.md").write_text(report(data))
    return data


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "conformance.json"
    if args.fresh:
        store.write_text(json.dumps({"invocations": [], "results": {}}) + "\n")
    for other in args.merge:
        extra = load(other)
        data = load(store)
        data["invocations"] += [i for i in extra["invocations"] if i not in data["invocations"]]
        data["results"].update(extra["results"])
        store.write_text(json.dumps(data, indent=1) + "\n")
    mine, invocation = {}, None
    if args.report and args.note:  # a note about the page as a whole (what was left out, and why)
        data = load(store)
        data.setdefault("notes", []).append(args.note)
        store.write_text(json.dumps(data, indent=1) + "\n")
    if not args.report:
        at = commit()
        invocation = {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "commit": at, "command": " ".join(["python", "scripts/conformance.py", *sys.argv[1:]]),
            "configs": ", ".join(args.configs),
            "families": "all families" if args.families == families() else ", ".join(args.families),
            **({"note": args.note} if args.note else {}),
        }
        with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
            venv = args.venv.resolve() if args.venv else Path(tmp) / "venv"
            print(f"installing keras-zoo ({at}) and zoo-applications into {venv}", flush=True)
            install(venv)
            zoo = venv / "bin" / "zoo"
            precision_option = has_precision_option(zoo)
            for config in args.configs:
                for family in args.families:
                    result = check(zoo, family, config, args.timeout, precision_option)
                    result["commit"] = at
                    mine[f"{family}|{config}"] = result
                    print(f"{family:18} {config:20} {result['status']:7} {result.get('seconds', 0):5} s  {result['reason']}",
                          flush=True)
                    save(store, mine, invocation)  # a killed run keeps what it did
    print(report(save(store, mine, invocation)))


if __name__ == "__main__":
    main()
