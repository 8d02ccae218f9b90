"""What every benchmark script prints about the code it measured (imported by the scripts here)."""

from __future__ import annotations

import subprocess
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
