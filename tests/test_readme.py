"""README's Python blocks, verbatim, in order, in one fresh interpreter: what a reader would paste."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_the_notebook_example():
    blocks = python_blocks()
    assert any("@zoo.register" in b and "zoo.train(" in b and "zoo.Run.open(" in b for b in blocks)


def test_readme_python_blocks_run_as_written(mnist_data_dir, tmp_path):
    script = tmp_path / "readme_blocks.py"
    body = "\n\n".join(f"# --- README block {i}\n{b}" for i, b in enumerate(python_blocks(), 1))
    # The plugin section's test function is defined by a block; a reader would then run it.
    script.write_text(body + "\n\nif 'test_lenet_conforms' in globals():\n    test_lenet_conforms()\n")
    env = {
        **os.environ,
        "TFDS_DATA_DIR": mnist_data_dir,  # MNIST already prepared: no second preparation
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "plugin_example"), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "exports" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "exports" / "2" / "saved_model.pb").is_file()
    assert "['cnn', 'mlp', 'softmax'" in result.stdout or "'cnn'" in result.stdout
