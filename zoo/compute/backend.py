"""Which Keras backend a process computes with: TensorFlow (the default) or JAX.

Keras reads its backend once, when it is first imported (``KERAS_BACKEND``), so the choice is
made here before anything imports Keras, and a later request for another backend in the same
process is refused with the way out. The input pipeline is tf.data on every backend; what the
runner would otherwise ask of TensorFlow directly while training (op determinism, the in-step
check of the loss) is asked through this module.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys

from ..config import BACKENDS
from ..errors import ZooUsageError

JAX_EXTRA = 'pip install "keras-zoo[jax]"'


def default() -> str:
    """``KERAS_BACKEND`` if it is set, else tensorflow."""
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def use(name: str | None) -> str:
    """Make ``name`` (None: :func:`default`) this process's Keras backend; return it.

    Before Keras is imported (TensorFlow imports it as well) this sets ``KERAS_BACKEND``;
    afterwards only the backend Keras started with can be used.
    """
    name = default() if name is None else name
    if name not in BACKENDS:
        raise ZooUsageError(f"unknown `backend` {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise ZooUsageError(f"the jax backend needs JAX, which is not installed: {JAX_EXTRA}") from None
    if "keras" in sys.modules:
        started = sys.modules["keras"].backend.backend()
        if started != name:
            raise ZooUsageError(
                f"Keras already started with the {started} backend in this process; `backend` "
                f"{name} needs a new process with KERAS_BACKEND={name} set before Keras is "
                f"imported (a new notebook kernel, or the zoo command)"
            )
        return name
    os.environ["KERAS_BACKEND"] = name
    return name


def import_tensorflow() -> None:
    """Import TensorFlow with its C++ log lines hidden (the commands, ``zoo.train``, ``zoo.bench``
    and ``zoo.predict`` all import it here first).

    TensorFlow prints several lines to stderr while loading that no setting silences (not even
    TF_CPP_MIN_LOG_LEVEL=3); they would bury one-line errors. Later C++ messages (``E0000 ...
    failed call to cuInit`` without a GPU) are hidden by TF_CPP_MIN_LOG_LEVEL=3, set for this
    process and its children. ZOO_TF_LOGS=1, or a TF_CPP_MIN_LOG_LEVEL below 3 of one's own,
    shows them all.
    """
    if "tensorflow" in sys.modules or os.environ.get("ZOO_TF_LOGS") or _own_log_level():
        return
    _hide_later_messages()
    with quiet_cpp():
        import tensorflow  # noqa: F401


def _hide_later_messages() -> None:
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip():  # unset or empty: later C++ messages too
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def quiet_tensorflow_import() -> None:
    """Make this process's first import of TensorFlow quiet, whoever makes it, as
    :func:`import_tensorflow` is: a notebook's own ``import keras`` after ``import zoo`` too."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: gives TensorFlow's own spec, with a loader that imports it quietly."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and not for the lookup below
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self.loader = loader

    def __getattr__(self, name):  # resources and the like: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        if os.environ.get("ZOO_TF_LOGS") or _own_log_level():
            self.loader.exec_module(module)
            return
        _hide_later_messages()
        with quiet_cpp():
            self.loader.exec_module(module)


@contextlib.contextmanager
def quiet_cpp():
    """Hide what C++ code writes to stderr meanwhile (file descriptor 2: no Python setting reaches
    it), unless ZOO_TF_LOGS=1 or a TF_CPP_MIN_LOG_LEVEL below 3 asks to see it."""
    if os.environ.get("ZOO_TF_LOGS") or _own_log_level():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _NotRetracing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing():
    """Hide TensorFlow's "N out of the last M calls ... triggered tf.function retracing" warning
    meanwhile: trials that each train a model of their own in one process trace Keras' train
    function once each, which TensorFlow counts as retracing one function."""
    logger, hush = logging.getLogger("tensorflow"), _NotRetracing()
    logger.addFilter(hush)
    try:
        yield
    finally:
        logger.removeFilter(hush)


def _own_log_level() -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL asks for TensorFlow's C++ messages (0, 1 or 2)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3").strip() in ("0", "1", "2")


def current() -> str:
    import keras

    return keras.backend.backend()


def checked(values, message: str):
    """``values`` with NaN and inf stopping the step that made them (TensorFlow).

    JAX cannot raise from inside a compiled step; there a non-finite loss is caught at the end of
    its epoch instead (the runner's guard), before the history or the backup see it.
    """
    if current() != "tensorflow":
        return values
    import tensorflow as tf

    return tf.debugging.check_numerics(values, message)


@contextlib.contextmanager
def deterministic_ops(enabled: bool):
    """Deterministic kernels for the duration, and the process's own setting put back after.

    TensorFlow switches them on per process. JAX on a CPU is deterministic already; on a GPU its
    XLA flag must be set before JAX starts, which :func:`zoo.devices.place` does.
    """
    if not enabled or current() != "tensorflow":
        yield
        return
    import tensorflow as tf

    # TensorFlow's public API can switch determinism on only; these two are its own internals.
    from tensorflow.python.framework import config as tf_config

    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_deterministic:
            tf_config.disable_op_determinism()
