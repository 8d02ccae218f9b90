"""Where and in what precision a run computes: its devices, distribution strategy and dtype policy.

``place`` turns a run's ``devices`` and ``precision`` settings into a :class:`Placement`, and
refuses a request this machine cannot meet before any data is read. Several devices train
data-parallel: with ``tf.distribute.MirroredStrategy`` on TensorFlow, with
``keras.distribution.DataParallel`` on JAX (which also spans the devices of several processes, see
zoo/compute/multihost.py). Each step splits the recipe's batch over the replicas (the global batch and the
learning rate stay as the recipe says). Chosen GPUs are the
only ones TensorFlow sees, as with CUDA_VISIBLE_DEVICES; ``cpu`` hides them all. Without GPUs, a count
above 1 splits the CPU into that many logical devices, which exists to exercise the multi-device
path on a machine without GPUs; it makes nothing faster.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ..config import parse_devices
from ..errors import ZooUsageError

# Mixed float16 pays off on tensor cores, which NVIDIA GPUs have from compute capability 7.0 on.
TENSOR_CORES = (7, 0)
# CPU flags of native bfloat16 arithmetic (AVX512_BF16 on Cooper Lake / Zen 4 and newer, AMX).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Placement:
    devices: tuple[str, ...]  # TensorFlow's names, e.g. ("GPU:0", "GPU:2") or ("CPU:0",)
    kind: str  # "CPU" or "GPU"
    name: str  # the CPU's or the GPUs' model
    precision: str  # a Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    reason: str  # why `precision` was chosen
    backend: str = "tensorflow"
    processes: int = 1  # JAX across processes: `devices` are this process's, the same on each
    mesh: tuple[Any, ...] = ()  # JAX: the devices of every process to train on, when not JAX's default

    @property
    def replicas(self) -> int:
        return len(self.devices) * self.processes

    @property
    def text(self) -> str:
        """The ``devices`` setting a run records: the same request, resolved."""
        return ",".join(d.lower() for d in self.devices)

    def check_batch(self, batch_size: int) -> None:
        """A one-line usage error unless TensorFlow's MirroredStrategy can split ``batch_size``
        into equal shares, one per device (Keras fails mid-epoch on unequal ones; JAX pads)."""
        if self.backend != "jax" and self.replicas > 1 and batch_size % self.replicas:
            raise ZooUsageError(f"batch_size {batch_size} does not split evenly over the {self.replicas} devices: "
                                f"choose a multiple of {self.replicas}")

    def scope(self) -> contextlib.AbstractContextManager:
        """The distribution strategy's scope to build, compile and train in.

        ``place`` left TensorFlow only the chosen GPUs, so they are its GPU:0, GPU:1, ... now.
        """
        if self.backend == "jax" and self.mesh:
            # Each process feeds its own share of the data (zoo.data), not a slice Keras cuts.
            return keras.distribution.DataParallel(devices=list(self.mesh), auto_shard_dataset=False).scope()
        if self.replicas == 1 or self.backend == "jax":
            return contextlib.nullcontext()  # the backend's own placement: the GPU, else the CPU
        kind = self.kind.lower()
        return tf.distribute.MirroredStrategy([f"/{kind}:{i}" for i in range(self.replicas)]).scope()

    def record(self, jit_compile: Any) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "precision_reason": self.reason,
            "jit_compile": jit_compile,
            "device_kind": self.kind,
            "device_name": self.name,
            "devices": list(self.devices),
            "replicas": self.replicas,
            "backend": self.backend,
            "processes": self.processes,
        }


def place(devices: str, precision: str, backend: str = "tensorflow", deterministic: bool = True) -> Placement:
    """Resolve the ``devices`` and ``precision`` settings on this machine, or refuse them."""
    request = parse_devices(devices)
    if request is None:  # RunConfig has checked it; this is for direct callers
        raise ZooUsageError(f"`devices` cannot be {devices!r}")
    if backend == "jax":
        return _place_jax(devices, request, precision, deterministic)
    gpus = tf.config.list_physical_devices("GPU")
    if request == "auto":
        names = [("GPU", i) for i in range(len(gpus))] or [("CPU", 0)]
    elif isinstance(request, int):
        if gpus and request > len(gpus):
            raise ZooUsageError(f"`devices` asks for {request} GPUs; this machine has {len(gpus)}")
        names = [("GPU" if gpus else "CPU", i) for i in range(request)]
    else:
        names = list(request)
    kind = names[0][0]
    if kind == "GPU":
        missing = [i for _, i in names if i >= len(gpus)]
        if missing:
            have = f"{len(gpus)} (gpu:0 to gpu:{len(gpus) - 1})" if gpus else "none"
            raise ZooUsageError(f"`devices` names gpu:{missing[0]}, but this machine's GPUs are: {have}")
        used = [gpus[i] for _, i in names]
        name = ", ".join(dict.fromkeys(_gpu_details(g).get("device_name", "GPU") for g in used))
    else:
        if [i for _, i in names] != list(range(len(names))):
            raise ZooUsageError(
                f"`devices` {devices!r}: logical CPU devices are cpu:0, cpu:1, ... in order; "
                "ask for a number of them instead (e.g. 2)"
            )
        used = []
        _split_cpu(len(names))
        name = cpu_model()
    if gpus:
        _show_only(used, names)
    resolved, reason = _precision(precision, kind, [gpus[i] for _, i in names] if kind == "GPU" else [])
    return Placement(tuple(f"{k}:{i}" for k, i in names), kind, name, resolved, reason)


def _place_jax(devices: str, request: Any, precision: str, deterministic: bool) -> Placement:
    """``place`` on JAX: its settings must be made before JAX starts (its first computation)."""
    import jax

    # The tf.data pipeline runs on the CPU; TensorFlow must not claim the GPUs JAX computes on.
    with contextlib.suppress(RuntimeError):  # TensorFlow already started: it saw them before
        tf.config.set_visible_devices([], "GPU")

    count = request if isinstance(request, int) else len(request) if request != "auto" else None
    try:
        if count:  # only the CPU platform reads it: N logical CPU devices where there is no GPU
            jax.config.update("jax_num_cpu_devices", count)
        if request != "auto" and not isinstance(request, int) and request[0][0] == "GPU":
            jax.config.update("jax_cuda_visible_devices", ",".join(str(i) for _, i in request))
        if deterministic:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_gpu_deterministic_ops" not in flags:
                os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    except RuntimeError:  # JAX already computed in this process
        if count and count != len(jax.local_devices(backend="cpu")) and not _jax_gpus():
            raise ZooUsageError(
                f"`devices` needs {count} CPU devices, but JAX already started in this process with "
                f"{len(jax.local_devices(backend='cpu'))}; ask for them in a new process"
            ) from None
    gpus = _jax_gpus()
    if request == "auto":
        used = gpus or jax.local_devices(backend="cpu")[:1]
    elif isinstance(request, int):
        if gpus and request > len(gpus):
            raise ZooUsageError(f"`devices` asks for {request} GPUs; this machine has {len(gpus)}")
        used = (gpus or jax.local_devices(backend="cpu"))[:request]
    elif request[0][0] == "GPU":
        if len(gpus) < len(request):
            raise ZooUsageError(f"`devices` names {devices}, but JAX sees {len(gpus)} GPU(s) here")
        used = gpus[: len(request)]  # the visible ones are the chosen ones, renumbered from 0
    else:
        if [i for _, i in request] != list(range(len(request))):
            raise ZooUsageError(
                f"`devices` {devices!r}: logical CPU devices are cpu:0, cpu:1, ... in order; "
                "ask for a number of them instead (e.g. 2)"
            )
        used = jax.local_devices(backend="cpu")[: len(request)]
    kind = "GPU" if used[0].platform == "gpu" else "CPU"
    if len(used) != jax.local_device_count() and jax.process_count() > 1:
        raise ZooUsageError("training on several processes uses every device of each process; "
                            "leave `devices` at auto or ask for all of them")
    name = ", ".join(dict.fromkeys(d.device_kind for d in used)) if kind == "GPU" else cpu_model()
    capabilities = [getattr(d, "compute_capability", None) for d in used] if kind == "GPU" else []
    resolved, reason = _precision(precision, kind, [{"compute_capability": _capability(c)} for c in capabilities])
    # Several processes train on the chosen kind of device of all of them (every one of each).
    mesh = tuple(used) if jax.process_count() == 1 else tuple(jax.devices(used[0].platform))
    if mesh == tuple(jax.devices()[:1]):
        mesh = ()  # JAX's default device: nothing to lay out
    return Placement(
        tuple(f"{kind}:{i}" for i in range(len(used))), kind, name, resolved, reason,
        backend="jax", processes=jax.process_count(), mesh=mesh,
    )


def _jax_gpus() -> list[Any]:
    import jax

    try:
        return jax.local_devices(backend="gpu")
    except RuntimeError:  # no GPU platform
        return []


def _capability(text: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return None


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Build under ``precision``'s Keras policy; the process's own policy is put back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def load_model(path: str | os.PathLike, precision: str) -> keras.Model:
    """Load a ``.keras`` file (safe mode, uncompiled) under the dtype policy it was trained in.

    The file records each layer's policy, but sub-layers that a custom layer makes in ``build()``
    or ``__init__`` are not in it: they take the global policy at load time, and a bfloat16 model
    whose inner Dense comes back in float32 fails (or computes other numbers). The caller's policy
    is put back afterwards. The output layers compute in float32 as they trained (the file of a
    subclassed model records none of its layers' policies).
    """
    with dtype_policy(precision):
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    float32_outputs(model)
    return model


def resolve_precision(precision: str, backend: str = "tensorflow") -> tuple[str, str]:
    """``precision`` (``auto`` or a policy) as the Keras policy a one-device run here would use,
    and why; nothing is placed (``place`` decides for a run's devices)."""
    if backend == "jax":
        gpus = _jax_gpus()[:1]
        details = [{"compute_capability": _capability(getattr(g, "compute_capability", None))} for g in gpus]
    else:
        details = gpus = tf.config.list_physical_devices("GPU")[:1]
    return _precision(precision, "GPU" if gpus else "CPU", details)


def float32_outputs(model: keras.Model) -> None:
    """Let the layers that produce the model's outputs (the softmax) compute in float32.

    Under a mixed policy every layer computes in 16 bits; probabilities that sum to 1 and a loss
    near 0 need float32. The builder is not asked to know: the output layers are found in the
    model's graph (for a subclassed model, its last layer) and switched after the build.
    """
    if model.dtype_policy.name == "float32":
        return
    try:
        layers = [t._keras_history.operation for t in model.outputs]
    except (AttributeError, ValueError):  # a subclassed model has no graph of layers
        layers = model.layers[-1:]
    for layer in layers:
        layer.dtype_policy = keras.DTypePolicy("float32")


def _precision(requested: str, kind: str, gpus: list[Any]) -> tuple[str, str]:
    if requested != "auto":
        return requested, "requested"
    if kind == "GPU":
        capabilities = [(g if isinstance(g, dict) else _gpu_details(g)).get("compute_capability") for g in gpus]
        if all(c and tuple(c) >= TENSOR_CORES for c in capabilities):
            oldest = min(tuple(c) for c in capabilities)
            return "mixed_float16", f"auto: NVIDIA GPU of compute capability {oldest[0]}.{oldest[1]}"
        return "float32", "auto: a GPU older than compute capability 7.0 (no tensor cores)"
    flags = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    if flags:
        return "mixed_bfloat16", f"auto: the CPU has {' and '.join(flags)}"
    return "float32", f"auto: the CPU has neither {' nor '.join(BF16_CPU_FLAGS)}"


def _show_only(gpus: list[Any], names: list[tuple[str, int]]) -> None:
    """Leave TensorFlow only ``gpus`` (none for the CPU), as CUDA_VISIBLE_DEVICES would."""
    if tf.config.get_visible_devices("GPU") == gpus:
        return
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError:
        shown = ",".join(f"{kind}:{i}".lower() for kind, i in names)
        raise ZooUsageError(
            f"`devices` asks for {shown}, but TensorFlow already started in this process with other "
            "GPUs; ask for them in a new process (or the first run of a notebook)"
        ) from None


def _split_cpu(count: int) -> None:
    """Make at least ``count`` logical CPU devices, which TensorFlow allows only before it starts."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    have = len(tf.config.get_logical_device_configuration(cpu) or [None])
    if count <= have:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise ZooUsageError(
            f"`devices` needs {count} CPU devices, but TensorFlow already started in this process "
            f"with {have}; ask for them in a new process (or the first run of a notebook)"
        ) from None


def _gpu_details(gpu: Any) -> dict[str, Any]:
    try:
        return tf.config.experimental.get_device_details(gpu)
    except Exception:  # details are informative only; a driver that cannot give them is no error
        return {}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is not to be had."""
    return set(_cpuinfo("flags").split())


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


# Read instead of /proc/cpuinfo: runs (and the test suite) as on a CPU with other flags, e.g. one
# without bfloat16 arithmetic (docs/development.md says how to make such a file).
CPUINFO_ENV = "ZOO_CPUINFO"


def _cpuinfo(key: str) -> str:
    """The first ``key`` line of /proc/cpuinfo, or of the file ``ZOO_CPUINFO`` names ("" where
    there is no such line, or no /proc/cpuinfo). A ``ZOO_CPUINFO`` that cannot be read is a usage
    error: a run must not quietly compute as on another CPU than the one asked for."""
    override = os.environ.get(CPUINFO_ENV)
    try:
        text = Path(override or "/proc/cpuinfo").read_text()
    except OSError as e:
        if override:
            raise ZooUsageError(f"{CPUINFO_ENV}={override}: cannot read it ({e.strerror or e})") from None
        return ""
    for line in text.splitlines():
        if line.split(":", 1)[0].strip() == key:
            return line.split(":", 1)[1].strip()
    return ""
