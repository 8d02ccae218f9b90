"""zoo.compute.devices: what `--devices` and `--precision` resolve to, on this CPU and on GPU machines.

There is no GPU here, so the GPU rules are tested against TensorFlow's device list and device
details as a GPU machine reports them (the same calls, answered by the test); the CPU paths run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from zoo.compute import devices
from zoo.errors import ZooUsageError


def gpu_machine(monkeypatch, *capabilities, name="NVIDIA A100-SXM4-40GB") -> dict[str, list]:
    """Make TensorFlow report one GPU per compute capability given; returns what it lets be seen."""
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(len(capabilities))]
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else real(kind))
    details = {g.name: {"device_name": name, "compute_capability": c} for g, c in zip(gpus, capabilities)}
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda g: details[g.name])
    visible = {"GPU": gpus}
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind: visible[kind])
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda devices, kind: visible.update({kind: devices}))
    return visible


def cpu_with(monkeypatch, *flags):
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"sse2", "avx2", *flags})


@pytest.mark.parametrize(
    "flags, precision, reason",
    [
        ((), "float32", "auto: the CPU has neither avx512_bf16 nor amx_bf16"),
        (("avx512_bf16",), "mixed_bfloat16", "auto: the CPU has avx512_bf16"),
        (("amx_bf16", "avx512_bf16"), "mixed_bfloat16", "auto: the CPU has amx_bf16 and avx512_bf16"),
    ],
)
def test_auto_precision_on_a_cpu_follows_its_bfloat16_flags(monkeypatch, flags, precision, reason):
    cpu_with(monkeypatch, *flags)
    placement = devices.place("auto", "auto")
    assert (placement.precision, placement.reason) == (precision, reason)
    assert placement.devices == ("CPU:0",) and placement.kind == "CPU" and placement.replicas == 1


def test_a_requested_precision_is_kept_whatever_the_hardware(monkeypatch):
    cpu_with(monkeypatch)
    assert devices.place("auto", "mixed_float16").precision == "mixed_float16"
    cpu_with(monkeypatch, "avx512_bf16")
    placement = devices.place("auto", "float32")
    assert (placement.precision, placement.reason) == ("float32", "requested")


@pytest.mark.parametrize(
    "capabilities, precision",
    [(((8, 0), (8, 0)), "mixed_float16"), (((7, 0),), "mixed_float16"), (((8, 0), (6, 1)), "float32")],
)
def test_auto_on_gpus_uses_all_of_them_in_float16_only_with_tensor_cores(monkeypatch, capabilities, precision):
    gpu_machine(monkeypatch, *capabilities)
    placement = devices.place("auto", "auto")
    assert placement.devices == tuple(f"GPU:{i}" for i in range(len(capabilities)))
    assert placement.kind == "GPU" and placement.name == "NVIDIA A100-SXM4-40GB"
    assert placement.precision == precision
    record = placement.record(True)
    assert record["replicas"] == len(capabilities) and record["device_name"] == "NVIDIA A100-SXM4-40GB"


def test_gpu_requests_leave_tensorflow_only_those_gpus_or_none(monkeypatch):
    visible = gpu_machine(monkeypatch, (7, 5), (7, 5), (7, 5))
    gpus = list(visible["GPU"])
    assert devices.place("2", "auto").devices == ("GPU:0", "GPU:1") and visible["GPU"] == gpus[:2]
    assert devices.place("gpu:0,gpu:2", "auto").text == "gpu:0,gpu:2" and visible["GPU"] == [gpus[0], gpus[2]]
    one = devices.place("gpu:1", "auto")
    assert one.replicas == 1 and visible["GPU"] == [gpus[1]]  # TensorFlow's GPU:0 now
    on_cpu = devices.place("cpu", "auto")
    assert on_cpu.devices == ("CPU:0",) and on_cpu.kind == "CPU" and visible["GPU"] == []


def test_gpus_cannot_be_chosen_again_once_tensorflow_started(monkeypatch):
    gpu_machine(monkeypatch, (8, 0), (8, 0))

    def started(devices, kind):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_visible_devices", started)
    assert devices.place("auto", "auto").replicas == 2  # what it sees already: nothing to change
    with pytest.raises(ZooUsageError, match=r"^`devices` asks for gpu:1, but TensorFlow already started"):
        devices.place("gpu:1", "auto")


@pytest.mark.parametrize(
    "request_, message",
    [
        ("4", "`devices` asks for 4 GPUs; this machine has 2"),
        ("gpu:7", "`devices` names gpu:7, but this machine's GPUs are: 2 (gpu:0 to gpu:1)"),
        ("gpu:0,gpu:2", "`devices` names gpu:2"),
    ],
)
def test_gpu_requests_that_cannot_be_met_are_usage_errors(monkeypatch, request_, message):
    gpu_machine(monkeypatch, (8, 0), (8, 0))
    with pytest.raises(ZooUsageError) as err:
        devices.place(request_, "auto")
    assert str(err.value).startswith(message)


def test_a_gpu_beyond_this_machines_is_refused_naming_the_ones_it_has():
    have = len(tf.config.list_physical_devices("GPU"))  # relative to this machine, GPUs or none
    listed = f"{have} (gpu:0 to gpu:{have - 1})" if have else "none"
    with pytest.raises(ZooUsageError) as err:
        devices.place(f"gpu:{have}", "auto")
    assert str(err.value) == f"`devices` names gpu:{have}, but this machine's GPUs are: {listed}"


def test_without_gpus_a_gpu_is_refused_and_a_count_means_logical_cpus(monkeypatch):
    gpu_machine(monkeypatch)  # a machine without GPUs, on every machine
    with pytest.raises(ZooUsageError, match=r"^`devices` names gpu:0, but this machine's GPUs are: none$"):
        devices.place("gpu:0", "auto")
    with pytest.raises(ZooUsageError, match=r"logical CPU devices are cpu:0, cpu:1, ... in order"):
        devices.place("cpu:1", "auto")
    assert devices.place("cpu:0", "auto").devices == ("CPU:0",)
    tf.constant(0)  # TensorFlow has started in this process: its CPU cannot be split any more
    with pytest.raises(ZooUsageError, match=r"needs 64 CPU devices, but TensorFlow already started"):
        devices.place("64", "auto")


@pytest.mark.slow  # a training process of its own (XLA and nondeterministic ops stay out of this one): 19 s
def test_xla_on_trains_and_is_recorded_as_keras_resolved_it(tiny_data_dir, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "softmax", "--dataset", "zoo_tiny", "--data-dir", tiny_data_dir,
         "--epochs", "1", "--jit-compile", "on", "--no-deterministic", "--precision", "float32",
         "--run-dir", str(run)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "float32 on CPU (" in result.stdout and "XLA on" in result.stdout
    hardware = json.loads((run / "metrics.json").read_text())["hardware"]
    assert hardware["jit_compile"] is True and hardware["devices"] == ["CPU:0"] and hardware["replicas"] == 1
    assert json.loads((run / "config.json").read_text())["hardware"]["jit_compile"] == "on"


@pytest.mark.parametrize("backend, names, batch_size, refused", [
    ("tensorflow", ("CPU:0", "CPU:1", "CPU:2"), 128, True),  # 43 + 43 + 42: Keras fails mid-epoch
    ("tensorflow", ("GPU:0", "GPU:1"), 127, True),
    ("tensorflow", ("CPU:0", "CPU:1"), 128, False),
    ("tensorflow", ("CPU:0",), 127, False),
    ("jax", ("CPU:0", "CPU:1"), 7, False),  # JAX pads the shares (test_multihost)
])
def test_a_batch_that_devices_cannot_share_equally_is_refused_before_training(backend, names, batch_size, refused):
    placement = devices.Placement(names, names[0].split(":")[0], "test", "float32", "requested", backend=backend)
    if not refused:
        placement.check_batch(batch_size)
        return
    with pytest.raises(ZooUsageError) as err:
        placement.check_batch(batch_size)
    assert str(err.value) == (f"batch_size {batch_size} does not split evenly over the {len(names)} devices: "
                              f"choose a multiple of {len(names)}")


@pytest.mark.slow  # two trainings in processes of their own (a process splits its CPU once): 20 s
def test_two_devices_share_the_last_uneven_batch_of_every_split(tmp_path):
    """51 training, 9 validation and 9 test images in batches of 14: the last batch of each (9
    images) cannot be shared equally by two devices. It is padded with images of weight 0, so
    every split's figures are those of its real images."""
    import warm
    from imagefolders import write

    folder = write(tmp_path / "odd", {"train": 20, "test": 3}, sizes=((16, 16),), formats=("png",), channels=1)

    def train(name: str, *extra: str) -> dict:
        result = warm.run([sys.executable, "-m", "zoo", "train", "softmax", "--dataset", str(folder), "--data-dir",
                           str(tmp_path / "tfds"), "--epochs", "2", "--batch-size", "14", "--val-split", "0.15",
                           "--precision", "float32", "--run-dir", str(tmp_path / name), *extra], timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads((tmp_path / name / "metrics.json").read_text())

    two, one = train("two", "--devices", "2"), train("one", "--devices", "cpu:0")
    assert two["hardware"]["replicas"] == 2 and one["hardware"]["replicas"] == 1
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 1 / 9  # a padded last batch weighs a little less
