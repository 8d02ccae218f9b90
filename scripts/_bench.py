"""What every benchmark script prints about the code it measured, and the docs/results page it
writes (imported by the scripts here)."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_state() -> str:
    """The commit, and the zoo's files that differ from it: call before importing the zoo."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], check=False, capture_output=True, text=True,
                              cwd=ROOT).stdout

    # Not stripped: a porcelain line starts with its status columns, " M path" included.
    changed = git("status", "--porcelain", "--", "zoo", "registry").splitlines()
    dirty = f" with uncommitted changes to {', '.join(c[3:] for c in changed)}" if changed else ""
    return f"{git('rev-parse', '--short', 'HEAD').strip() or 'unknown'}{dirty}"


RESULTS = Path(os.environ.get("ZOO_RESULTS_DIR") or ROOT / "docs" / "results")
_BEGIN, _END = "<!-- run: ", "<!-- end of run -->"


def _machine() -> str:
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{cpu}, {os.cpu_count()} cores, "
            + (f"with {' and '.join(bf16)}" if bf16 else "without bfloat16 arithmetic (no avx512_bf16 or amx_bf16)")
            + ", no GPU" * (not Path("/proc/driver/nvidia").exists()))


def _markdown(text: str) -> str:
    """The script's output as Markdown: tables kept, every other line a paragraph of its own."""
    out: list[str] = []
    for line in text.rstrip().splitlines():
        table = line.lstrip().startswith("|")
        if out and out[-1] and line.strip() and not (table and out[-1].lstrip().startswith("|")):
            out.append("")
        out.append(line)
    return "\n".join(out)


@contextlib.contextmanager
def results_page(page: str, title: str):
    """Print as usual and, if the script succeeds, write what it printed to docs/results/PAGE.md.

    The page holds one block per command, headed by the machine, date, command and commit that
    made it: a run replaces the block of the same command and leaves the others (a page may show
    several commands of one script, or of several). ZOO_RESULTS_DIR writes the page elsewhere.
    """
    command = shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    head = [f"{_BEGIN}{command} -->", "",
            f"- machine: {_machine()}",
            f"- date: {time.strftime('%Y-%m-%d', time.gmtime())}",
            f"- command: `{command}`",
            f"- commit: {git_state()}", ""]
    captured = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s: str) -> int:
            captured.write(s)
            return stdout.write(s)

        def flush(self) -> None:
            stdout.flush()

    stdout = sys.stdout
    sys.stdout = Tee()
    try:
        yield
    finally:
        sys.stdout = stdout
    block = "\n".join(head) + "\n" + _markdown(captured.getvalue()) + f"\n\n{_END}\n"
    path = RESULTS / f"{page}.md"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# {title}\n\n"
    start = text.find(f"{_BEGIN}{command} -->")
    if start >= 0:
        end = text.index(_END, start) + len(_END) + 1
        text = text[:start] + block + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"written to {path}", file=sys.stderr)
