"""An exported file served as a server would: in its own runtime, in a fresh interpreter (``-I``,
no PYTHONPATH) where the zoo, Keras and every plugin cannot be imported, and TensorFlow neither
except for the SavedModel. ``serve`` returns how many of the images it classified right, the
classes it gave, the outputs' dtypes and the class names the file carries. One process serves
many exports (a fresh TensorFlow takes seconds to import)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

FILES = {"saved_model": ".", "onnx": "model.onnx", "litert": "model.tflite"}
# Never importable there: what a server without the zoo lacks. The plugin of tests/plugin_extra too.
BLOCKED = ("zoo", "registry", "keras", "tf_keras", "jax", "tf2onnx", "zoo_extra")

PRELUDE = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import keras` raises ImportError
import numpy as np
data = np.load(sys.argv[1])
images, labels = data["images"], data["labels"]
results = []
for path in sys.argv[2:]:
"""

RUNTIMES = {
    "saved_model": """
import tensorflow as tf
out = tf.saved_model.load(path).signatures["serving_default"](image=tf.constant(images))
probabilities, class_id = out["probabilities"].numpy(), out["class_id"].numpy()
names = {int(i): n.decode() for i, n in zip(class_id, out["class_name"].numpy())}  # those it served
names = [names.get(i) for i in range(probabilities.shape[-1])]
""",
    "onnx": """
import onnxruntime as ort
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
probabilities, class_id = session.run(["probabilities", "class_id"], {"image": images})
names = json.loads(session.get_modelmeta().custom_metadata_map["class_names"])
""",
    "litert": """
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
out = Interpreter(model_path=path).get_signature_runner("serving_default")(image=images)
probabilities, class_id = out["probabilities"], out["class_id"]
model = schema.Model.GetRootAs(open(path, "rb").read(), 0)
entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
names = json.loads(model.Buffers(entries["zoo"]).DataAsNumpy().tobytes())["class_names"]
""",
}

RESULT = """
    results.append({"correct": int((class_id == labels).sum()), "class_id": class_id.tolist(), "class_names": names,
                    "dtypes": [str(probabilities.dtype), str(class_id.dtype)],
                    "heavy": sorted(m for m in ("tensorflow", "keras", "zoo") if sys.modules.get(m))})
print(json.dumps(results))
"""


def serve(fmt: str, versions: list[Path], images: np.ndarray, labels: np.ndarray, tmp_path: Path) -> list[dict]:
    """Classify ``images`` with format ``fmt`` of each export in ``versions`` (version folders)."""
    split = tmp_path / f"split-{fmt}.npz"
    np.savez(split, images=images, labels=labels)
    body = textwrap.indent(textwrap.dedent(RUNTIMES[fmt]), "    ")
    code = textwrap.dedent(PRELUDE.format(blocked=BLOCKED)) + body + textwrap.dedent(RESULT)
    paths = [str(version / FILES[fmt]) for version in versions]
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(split), *paths],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{fmt}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
