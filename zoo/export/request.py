"""What an export is asked for, checked before anything is written or TensorFlow loads: the
formats, their extras, and the quantization a format takes.

``saved_model`` is always written (``BASE/<version>/`` stays a valid TF-Serving version); the
other formats sit beside ``saved_model.pb`` in the same version folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import ZooUsageError

FORMATS = ("saved_model", "onnx", "litert")
FILES = {"onnx": "model.onnx", "litert": "model.tflite"}
# The modules each format's export and check need, and the extra of keras-zoo that installs them.
EXTRAS = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}
QUANTIZATIONS = {"litert": ("float16", "int8")}
MAX_ACCURACY_DROP = 0.5  # points of test accuracy a quantized export may lose


@dataclass(frozen=True)
class ExportRequest:
    formats: tuple[str, ...] = ("saved_model",)
    quantize: str | None = None
    max_accuracy_drop: float = MAX_ACCURACY_DROP


SAVED_MODEL_ONLY = ExportRequest()  # what an export is without --format or --quantize


def resolve(formats: str | tuple[str, ...] | list[str] | None = None, quantize: str | None = None,
            max_accuracy_drop: float | None = None, backend: str = "tensorflow") -> ExportRequest:
    """``saved_model,onnx`` (or a sequence) -> an ExportRequest, or a one-line usage error that says
    what to install or do."""
    if formats is None:
        formats = ("saved_model",)
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ZooUsageError(f"unknown `formats` {','.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    chosen = tuple(f for f in FORMATS if f in names)  # saved_model first: it is the version's
    if "saved_model" not in chosen:
        chosen = ("saved_model", *chosen)
    for fmt in chosen:
        missing = [m for m in EXTRAS.get(fmt, ()) if importlib.util.find_spec(m) is None]
        if missing:
            raise ZooUsageError(f"--format {fmt} needs {', '.join(missing)}: pip install 'keras-zoo[{fmt}]'")
    if "litert" in chosen and backend != "tensorflow":
        raise ZooUsageError(f"--format litert converts TensorFlow graphs, and Keras would run on {backend}: export with "
                            f"KERAS_BACKEND=tensorflow (a model trained on JAX loads there)")
    if quantize is not None:
        able = [f for f in chosen if quantize in QUANTIZATIONS.get(f, ())]
        if not able:
            kinds = ", ".join(f"{q} for {f}" for f, qs in QUANTIZATIONS.items() for q in qs)
            raise ZooUsageError(f"`quantize` {quantize}: no format asked for takes it ({kinds}; add --format litert)")
    if max_accuracy_drop is not None and quantize is None:
        raise ZooUsageError("`max_accuracy_drop` bounds what a quantized LiteRT file may lose: give it with `quantize`")
    drop = MAX_ACCURACY_DROP if max_accuracy_drop is None else float(max_accuracy_drop)
    if not 0 <= drop <= 100:
        raise ZooUsageError(f"`max_accuracy_drop` must be 0 to 100 points, received {max_accuracy_drop!r}")
    return ExportRequest(chosen, quantize, drop)
