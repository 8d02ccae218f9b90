"""The Python blocks of README.md and of every page in docs/, verbatim: what a reader would paste.

Each page runs in a fresh interpreter of its own, its ```python blocks in order, in a temporary
working directory. A block that is not meant to run is written in another fence language
(```text, ```console, ```bash); nothing is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)
# Fence languages that render as Python but would not be run: write ```python (runs) or ```text.
PYTHON_ALIASES = {"py", "py3", "python3", "pycon", "ipython", "ipython3", "pyi"}


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def python_blocks(page: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text(encoding="utf-8"))
            if lang.strip() == "python"]


RUNNABLE = [page for page in PAGES if python_blocks(page)]


def test_every_python_block_is_run():
    """Python that is neither run nor marked as not runnable would be skipped silently."""
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        langs = [lang.strip().split()[0] if lang.strip() else "" for lang, _ in FENCE.findall(text)]
        problems += [f"{name(page)}: ```{lang} (write ```python to run it, ```text if not)"
                     for lang in langs if lang.lower() in PYTHON_ALIASES]
        # An indented fence (in a list or an admonition) is not found above, so would not run.
        if len(re.findall(r"```python\b", text)) != langs.count("python"):
            problems.append(f"{name(page)}: a ```python fence that is not at the start of a line")
    assert not problems, problems


def test_the_notebook_example_is_documented():
    blocks = [b for page in RUNNABLE for b in python_blocks(page)]
    assert any("@zoo.register" in b and "zoo.train(" in b and "zoo.Run.open(" in b for b in blocks)
    assert python_blocks(ROOT / "README.md"), "README.md's Python quickstart is gone"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=name)
def test_python_blocks_run_as_written(page, mnist_data_dir, tmp_path):
    script = tmp_path / "page_blocks.py"
    body = "\n\n".join(f"# --- {name(page)}, block {i}\n{b}"
                       for i, b in enumerate(python_blocks(page), 1))
    # A block may define a test function (the plugin page's); a reader would then run it.
    script.write_text(body + "\n\nfor _name, _test in list(globals().items()):\n"
                      "    if _name.startswith('test_') and callable(_test):\n        _test()\n")
    # MNIST already prepared (no second preparation), in a data folder of this test's own: what
    # a page prepares (a folder of images) is not written into the session's shared MNIST folder,
    # which other tests, on other xdist workers, check is left unchanged.
    data_dir = tmp_path / "tfds-data"
    data_dir.mkdir()
    (data_dir / "mnist").symlink_to(Path(mnist_data_dir) / "mnist", target_is_directory=True)
    env = {
        **os.environ,
        "TFDS_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "plugin_example"), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, f"{name(page)}:\n{result.stderr[-3000:]}"
    text = "\n".join(python_blocks(page))
    if "zoo.list_models()" in text:
        assert "'cnn'" in result.stdout
    if 'export="exports"' in text:
        assert (tmp_path / "exports" / "1" / "saved_model.pb").is_file()
    if "zoo.Run.open(" in text and '.export("exports")' in text:  # the notebook example
        assert (tmp_path / "exports" / "2" / "saved_model.pb").is_file()
