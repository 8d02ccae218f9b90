"""The precision matrix, decided on every host alike (#30, item 1).

`--precision auto` picks mixed_bfloat16 where the CPU flags say bfloat16 arithmetic is native, so
a test that leaves it at `auto` proves one cell of the matrix on one machine and another on the
next. Here each precision is asked for by name, so every host proves all three: a run killed
after its first backup and resumed equals one never interrupted (history and weights), and its
export verifies, serves and computes in the precision it was trained in. mixed_float16 is the GPU
default, and its loss-scale optimizer carries state of its own that a resume must restore.

The real flag reading (`/proc/cpuinfo`, or the file ZOO_CPUINFO names) is checked against an
independent parse of the same file, and `auto` against what those flags say: relative to this
machine, never to a hard-coded CPU.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import warm

# ZOO_CPUINFO: the suite run as on another CPU (docs/development.md); the zoo reads it instead.
CPUINFO = Path(os.environ.get("ZOO_CPUINFO") or "/proc/cpuinfo")
# docs/precision.md: "`auto` picks ... `mixed_bfloat16` on CPUs whose flags include `avx512_bf16`
# or `amx_bf16`, and `float32` otherwise"; the export tolerances of "Exports in every precision".
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
DOCUMENTED_TOLERANCE = {"float32": 1e-5, "mixed_float16": 5e-3, "mixed_bfloat16": 3e-2}
COMPUTE_DTYPE = {"float32": None, "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _first_value(text: str, key: str) -> str | None:
    """The value of the first ``key : value`` line of cpuinfo text, parsed here on its own."""
    match = re.search(rf"^{re.escape(key)}[ \t]*:[ \t]*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


# -- the flags as this host's /proc/cpuinfo has them ----------------------------------------------


def test_cpu_flags_and_model_are_this_hosts_cpuinfo():
    from zoo.compute import devices

    if not CPUINFO.is_file():
        assert devices.cpu_flags() == set()
        assert devices.cpu_model()  # platform's name of the processor instead
        pytest.skip("no /proc/cpuinfo on this host: the flags are empty, as documented")
    text = CPUINFO.read_text()
    flags = _first_value(text, "flags")
    # x86 Linux has a "flags" line; where there is none (ARM says "Features"), the zoo sees none.
    expected = set(flags.split()) if flags is not None else set()
    assert devices.cpu_flags() == expected
    if flags:
        assert devices.cpu_flags(), "/proc/cpuinfo lists flags, but the zoo read none"
    model = _first_value(text, "model name")
    if model:
        assert devices.cpu_model() == model


def test_auto_precision_is_what_this_hosts_flags_say():
    import tensorflow as tf

    from zoo.compute import devices

    precision, reason = devices.resolve_precision("auto")
    if tf.config.list_physical_devices("GPU"):
        # A GPU host decides by compute capability (tested with faked details in test_devices.py).
        assert precision in ("mixed_float16", "float32") and "GPU" in reason
        return
    text = CPUINFO.read_text() if CPUINFO.is_file() else ""
    have = sorted(BF16_FLAGS & set((_first_value(text, "flags") or "").split()))
    if have:
        assert precision == "mixed_bfloat16", reason
        assert all(flag in reason for flag in have), reason
    else:
        assert precision == "float32", reason
        assert all(flag in reason for flag in BF16_FLAGS), reason  # "has neither ... nor ..."
    # What a run records is the same resolution (the run's `hardware` block).
    assert devices.place("cpu", "auto").precision == precision


def test_zoo_cpuinfo_is_read_instead_of_proc_cpuinfo(monkeypatch, tmp_path):
    """ZOO_CPUINFO=FILE: the flags, the model name and `auto` come from FILE, whatever this CPU has;
    a FILE that cannot be read is a one-line usage error, not the host's flags."""
    from zoo.compute import devices
    from zoo.errors import ZooUsageError

    def cpuinfo(*flags: str) -> Path:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        block = f"processor\t: {{}}\nmodel name\t: Test CPU {len(flags)}\nflags\t\t: fpu sse2 avx2 {' '.join(flags)}\n"
        path.write_text(block.format(0) + "\n" + block.format(1).replace("avx2", "avx2 second_core_only"))
        return path

    monkeypatch.setattr(devices.tf.config, "list_physical_devices",
                        lambda kind=None: [] if kind == "GPU" else [devices.tf.config.PhysicalDevice("/physical_device:CPU:0", "CPU")])
    monkeypatch.setenv("ZOO_CPUINFO", str(cpuinfo()))
    assert devices.cpu_flags() == {"fpu", "sse2", "avx2"}  # the first processor's line only
    assert devices.cpu_model() == "Test CPU 0"
    assert devices.resolve_precision("auto") == ("float32", "auto: the CPU has neither avx512_bf16 nor amx_bf16")
    monkeypatch.setenv("ZOO_CPUINFO", str(cpuinfo("amx_bf16")))
    assert devices.resolve_precision("auto") == ("mixed_bfloat16", "auto: the CPU has amx_bf16")
    assert devices.cpu_model() == "Test CPU 1"
    monkeypatch.setenv("ZOO_CPUINFO", str(tmp_path / "missing"))
    with pytest.raises(ZooUsageError) as err:
        devices.cpu_flags()
    assert str(err.value) == f"ZOO_CPUINFO={tmp_path / 'missing'}: cannot read it (No such file or directory)"
    monkeypatch.setenv("ZOO_CPUINFO", "")  # empty is unset: this host's /proc/cpuinfo
    proc = Path("/proc/cpuinfo")
    assert devices.cpu_flags() == (set((_first_value(proc.read_text(), "flags") or "").split())
                                   if proc.is_file() else set())


# -- exact resume and export in every precision ---------------------------------------------------


def _zoo(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("zoo")), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _history(run: Path) -> list[dict[str, str]]:
    path = run / "history.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
EPOCHS = 8


@pytest.fixture(scope="module")
def matrix(tiny_data_dir, tmp_path_factory):
    """For each precision, asked for by name: a run never interrupted (exported) and one killed
    after its first backup, then resumed. All six runs start at once and the three resumes run
    side by side: the two cores stay busy, and with six processes on them an epoch takes long
    enough that each kill lands mid-run. Returns precision -> what happened (or what failed)."""
    if not Path(_zoo()[0]).is_file():  # (conftest's `installed` is per test)
        pytest.skip(f"no installed console script at {_zoo()[0]}")
    base = tmp_path_factory.mktemp("precisions")
    cases, procs = {}, []

    def start(name: str, cmd: list[str]) -> subprocess.Popen | warm.WarmProcess:
        # Output to files: six processes writing into pipes nobody reads yet could fill them.
        proc = warm.popen(cmd, stdout=base / f"{name}.out", stderr=base / f"{name}.err", env=_env())
        procs.append(proc)
        return proc

    def tail(name: str) -> str:
        return (base / f"{name}.err").read_text()[-2000:]

    def command(precision: str, run: Path, *more: str) -> list[str]:
        return _zoo("train", "mlp", "--hp", "units=64,64,64", "--epochs", str(EPOCHS),
                    "--batch-size", "32", "--augment", "--precision", precision,
                    "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir, "--run-dir", str(run), *more)

    try:
        for precision in PRECISIONS:
            folder = base / precision
            case = cases[precision] = {"whole": folder / "whole", "killed": folder / "killed",
                                       "exports": folder / "exports", "error": None}
            case["uninterrupted"] = start(f"{precision}-whole",
                                          command(precision, case["whole"], "--export", str(case["exports"])))
            case["proc"] = start(f"{precision}-killed", command(precision, case["killed"]))
        waiting = dict(cases)
        deadline = time.monotonic() + 300
        while waiting:  # kill each as soon as its first backup is there
            for precision, case in list(waiting.items()):
                if (case["killed"] / "backup" / "state.json").is_file():
                    case["proc"].kill()
                elif case["proc"].poll() is not None or time.monotonic() > deadline:
                    case["proc"].kill()
                    case["error"] = f"ended or hung before a backup: {tail(precision + '-killed')}"
                else:
                    continue
                case["proc"].wait()
                del waiting[precision]
            time.sleep(0.01)
        for precision, case in cases.items():
            if case["error"] is None and (case["killed"] / "metrics.json").exists():
                case["error"] = "killed too late: the run had finished"
            if case["error"] is None:
                case["saved"] = json.loads((case["killed"] / "backup" / "state.json").read_text())["epoch"]
                case["before"] = _history(case["killed"])[: case["saved"]]
                case["resume"] = start(f"{precision}-resume", command(precision, case["killed"], "--resume"))
        for precision, case in cases.items():
            for key in ("resume", "uninterrupted"):
                if key in case:
                    name = f"{precision}-{'whole' if key == 'uninterrupted' else key}"
                    if case[key].wait(timeout=600) != 0 and case["error"] is None:
                        case["error"] = f"{key} failed ({case[key].returncode}): {tail(name)}"
                    case[f"{key}_out"] = (base / f"{name}.out").read_text()
        yield cases
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_resume_and_export_are_exact_in_every_precision(precision, matrix, tiny_data_dir):
    """Killed after its first backup and resumed = never interrupted, in ``precision`` asked by
    name (so on every host); the uninterrupted run's export verifies, serves and computes in it.

    mlp with dropout and augmentation: the shuffle order, the shifts, dropout's random state and
    the optimizer's state (with mixed_float16 the loss scale and its counter) all have to carry on
    from the backup.
    """
    import keras
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from zoo.compute import devices

    case = matrix[precision]
    assert case["error"] is None, case["error"]
    whole, killed, exports, saved = case["whole"], case["killed"], case["exports"], case["saved"]
    assert 0 < saved < EPOCHS
    assert _history(killed)[:saved] == case["before"]  # finished epochs kept, not retrained
    assert not (killed / "backup").exists()

    for run in (whole, killed):
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["hardware"]["precision"] == precision
        assert metrics["hardware"]["precision_reason"] == "requested"
    columns = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
    rows = [[{k: r[k] for k in columns} for r in _history(run)] for run in (whole, killed)]
    assert len(rows[0]) == EPOCHS and rows[1] == rows[0]
    models = [devices.load_model(run / "model.keras", precision) for run in (whole, killed)]
    assert models[0].dtype_policy.name == precision
    assert all(np.array_equal(a, b) for a, b in zip(models[0].get_weights(), models[1].get_weights()))
    # ... and the optimizer's state (model.keras keeps it): Adam's moments and step, and with
    # mixed_float16 the loss-scale optimizer's own variables. In so short a run its scale stays at
    # the initial 2**15 (no overflow, growth only after 2000 steps); its step counter moves every
    # step, so a resume that lost the loss-scale state shows here (checked by resetting it).
    states = [_saved_variables(run / "model.keras") for run in (whole, killed)]
    assert states[0].keys() == states[1].keys()
    assert [k for k, v in states[0].items() if not np.array_equal(v, states[1][k])] == []
    scaled = any(k.startswith("optimizer/inner_optimizer/") for k in states[0])
    assert scaled == (precision == "mixed_float16"), sorted(states[0])
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (whole, killed)]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    assert metrics[0]["test_loss"] == metrics[1]["test_loss"]
    out = case["uninterrupted_out"]

    # The export: verified within the documented tolerance, and it serves.
    tolerance = DOCUMENTED_TOLERANCE[precision]
    assert re.search(rf"exported .*/1 \(version 1\).*max abs diff .*\(tolerance {tolerance:g}\)", out), out
    zoo_json = json.loads((exports / "1" / "assets.extra" / "zoo.json").read_text())
    assert zoo_json["precision"] == precision and zoo_json["verified_tolerance"] == tolerance
    test = tfds.as_numpy(tfds.builder("zoo_tiny", data_dir=tiny_data_dir).as_dataset(
        split="test", batch_size=-1, as_supervised=True))
    images, labels = test
    loaded = tf.saved_model.load(str(exports / "1"))
    served = loaded.signatures["serving_default"](image=tf.constant(images))
    probabilities = served["probabilities"].numpy()
    assert served["probabilities"].dtype == tf.float32 and probabilities.shape == (len(images), 3)
    assert served["class_id"].dtype == tf.int64
    assert np.array_equal(served["class_id"].numpy(), probabilities.argmax(-1))
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=max(tolerance, 1e-5))
    expected = models[0].predict(images.astype("float32") / 255, verbose=0)
    assert np.abs(probabilities - expected).max() <= tolerance
    # Evaluated on the same images, the export's accuracy is the run's (up to near-ties).
    agree = np.mean(probabilities.argmax(-1) == expected.argmax(-1))
    assert agree >= 0.95, agree

    # The `normalized` signature: the model alone, on float32 images in [0, 1].
    normalized = loaded.signatures["normalized"]
    (name, spec), = normalized.structured_input_signature[1].items()
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 8, 8, 1]
    (alone,) = normalized(**{name: tf.constant(images.astype("float32") / 255)}).values()
    assert alone.dtype == tf.float32
    np.testing.assert_allclose(alone.numpy(), probabilities, atol=1e-6)

    # It computes in the precision it was trained in, not in a float32 copy.
    graph_dtypes = _graph_dtypes(normalized)
    compute = COMPUTE_DTYPE[precision]
    if compute:
        assert compute in graph_dtypes, graph_dtypes
    else:
        assert not {"float16", "bfloat16"} & graph_dtypes, graph_dtypes
    keras.backend.clear_session()


def _saved_variables(path: Path) -> dict[str, np.ndarray]:
    """Every variable a .keras file holds (the model's and its optimizer's), by its place in it."""
    import io
    import zipfile

    import h5py

    found = {}
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as f:
        f.visititems(lambda name, item: found.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return found


def _graph_dtypes(function) -> set[str]:
    """Every dtype an op of ``function``'s graph (and the functions it calls) works with."""
    import tensorflow as tf

    graph = function.graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    found = set()
    for node in nodes:
        for value in node.attr.values():
            if value.type:
                found.add(tf.dtypes.as_dtype(value.type).name)
            found.update(tf.dtypes.as_dtype(t).name for t in value.list.type)
    return found
