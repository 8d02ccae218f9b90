"""A format's check in its own runtime, in a fresh process that cannot import the zoo, Keras,
TensorFlow, JAX or any plugin: the environment of a server that has only the runtime.

The caller gives the check's code (a string run as ``__main__``), arrays and arguments; the code
reads them from the folder named by ``sys.argv[1]`` (``inputs.npz``, ``args.json``) and writes
``result.json`` there. The process's own error, if any, comes back as a one-line ZooError.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import registry

from ..errors import ZooError

# Never importable in the check's process: a file that needs them would not run where it is served.
BLOCKED = ("zoo", "registry", "keras", "tensorflow", "tf_keras", "jax", "jaxlib", "tf2onnx")

PRELUDE = """
import json, sys
import numpy as np
for _name in {blocked!r}:
    sys.modules[_name] = None  # `import keras` here raises ImportError
FOLDER = sys.argv[1]
INPUTS = dict(np.load(FOLDER + "/inputs.npz"))
ARGS = json.load(open(FOLDER + "/args.json"))
def done(result):
    json.dump(result, open(FOLDER + "/result.json", "w"))
"""


def _plugin_modules() -> list[str]:
    """The top-level modules of every installed model plugin (none of them may be imported)."""
    return sorted({e.value.split(":")[0].split(".")[0] for e in registry.entries() if not e.local})


def run(what: str, code: str, inputs: dict[str, np.ndarray], args: dict[str, Any], timeout: float = 900,
        allow: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (``-I``: no PYTHONPATH, no user site) with the zoo,
    Keras, TensorFlow, JAX and plugins blocked (but the modules ``allow`` names, for a runtime
    that is one of them); return what it passed to ``done``."""
    blocked = tuple(m for m in dict.fromkeys((*BLOCKED, *_plugin_modules())) if m not in allow)
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as folder:
        np.savez(Path(folder) / "inputs.npz", **inputs)
        (Path(folder) / "args.json").write_text(json.dumps(args))
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", PRELUDE.format(blocked=blocked) + code, folder],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ZooError(f"{what}: the check in its runtime took more than {timeout:g} s") from None
        result = Path(folder) / "result.json"
        if proc.returncode != 0 or not result.is_file():
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            raise ZooError(f"{what}: the check in its runtime failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
        return json.loads(result.read_text())
